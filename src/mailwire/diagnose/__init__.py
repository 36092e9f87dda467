"""All of the evidence to ranked conclusions: correlation of log attempts with capture sessions,
and small rules each named after the cause it detects."""
