"""govtrace.collector."""
