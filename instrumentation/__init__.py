"""govtrace.instrumentation."""
