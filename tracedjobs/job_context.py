"""Procrastinate's module name for the job context: ``from tracedjobs.job_context import
AbortReason, JobContext`` works as ``from procrastinate.job_context import ...`` did."""

from tracedjobs.context import AbortReason, JobContext

__all__ = ["AbortReason", "JobContext"]
