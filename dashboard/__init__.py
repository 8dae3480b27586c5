"""govtrace.dashboard."""
