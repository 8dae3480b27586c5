"""Subcommands owned by the collector: serve, demo, bench."""
