"""Errors of the Django integration."""

from __future__ import annotations

from tracedjobs.exceptions import ConfigurationError, TracedJobsError


class ReadOnlyModel(TracedJobsError):
    """The tracedjobs models in Django are read-only (set TRACEDJOBS_READONLY_MODELS=False
    in tests that must write)."""


class DjangoNotReady(ConfigurationError):
    """The tracedjobs App was used before Django's app registry was ready."""
