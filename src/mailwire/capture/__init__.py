"""capture: capture files and interfaces into the columnar packet table (see ``table``)."""
