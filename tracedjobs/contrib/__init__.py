"""Integrations with other frameworks (each imports its framework; install its extra)."""
