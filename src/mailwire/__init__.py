"""mailwire: finds out why outbound mail delivery fails, from mail logs and packet captures."""

__version__ = "0.1.0"
