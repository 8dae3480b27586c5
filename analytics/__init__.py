"""govtrace.analytics."""
