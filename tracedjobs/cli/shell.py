"""``tracedjobs shell``: Procrastinate's administration shell, over our job manager.

The same commands and output lines as ``procrastinate shell``: ``list_jobs``,
``list_queues``, ``list_tasks``, ``list_locks``, ``retry``, ``cancel``, ``exit``. Given a
command on the command line it runs that one and exits (status 1 if it failed).
Errors are one line, never a traceback.
"""

from __future__ import annotations

import cmd
import shlex
from typing import Any

import psycopg

from tracedjobs.connector import first_line
from tracedjobs.exceptions import TracedJobsError

STATUS_COUNTS = ("todo", "doing", "succeeded", "failed", "cancelled", "aborted")


def parse_argument(arg: str) -> dict[str, str]:
    """``queue=default status=failed details`` → {"queue": "default", ..., "details": ""}."""
    return {key: value for key, _, value in (item.partition("=") for item in arg.split())}


def job_line(job: Any, details: bool = False) -> str:
    line = f"#{job.id} {job.task_name} on {job.queue_name} - [{job.status}]"
    if details:
        scheduled = job.scheduled_at.isoformat() if job.scheduled_at else None
        line += (
            f" (attempts={job.attempts}, priority={job.priority}, scheduled_at={scheduled}, "
            f"args={job.args}, lock={job.lock})"
        )
    return line


def count_line(row: dict[str, Any]) -> str:
    counts = ", ".join(f"{status}: {row.get(status, 0)}" for status in STATUS_COUNTS)
    return f"{row['name']}: {row.get('jobs_count', 0)} jobs ({counts})"


class AdminShell(cmd.Cmd):
    intro = "Welcome to the tracedjobs shell.   Type help or ? to list commands.\n"
    prompt = "tracedjobs> "

    def __init__(self, job_manager: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_manager = job_manager
        self.failed = False

    def _say(self, line: str) -> None:
        self.stdout.write(line + "\n")

    def onecmd(self, line: str) -> bool:
        try:
            return super().onecmd(line)
        except (TracedJobsError, ValueError, TypeError) as exc:
            self.failed = True
            self._say(f"error: {exc}")
            return False
        except psycopg.Error as exc:  # as the CLI says it: one line, the shell goes on
            self.failed = True
            self._say(f"database error: {first_line(exc)}")
            return False

    def default(self, line: str) -> None:
        self.failed = True
        self._say(f"unknown command {line.split()[0]!r}: type help for the list")

    def emptyline(self) -> bool:
        return False  # cmd.Cmd would repeat the last command

    def _counts(self, listing: Any, arg: str) -> None:
        for row in listing(**parse_argument(arg)):
            self._say(count_line(row))

    def do_EOF(self, _: str) -> bool:
        "Exit the tracedjobs shell."
        return True

    do_exit = do_EOF

    def do_list_jobs(self, arg: str) -> None:
        """
        List jobs.
        Usage: list_jobs [id=ID] [queue=QUEUE_NAME] [task=TASK_NAME] [status=STATUS]
                         [lock=LOCK] [queueing_lock=QUEUEING_LOCK] [details]

        Jobs can be filtered by id, queue name, task name, status and lock.
        Use the details argument to get more info about jobs.

        Example: list_jobs queue=default task=sums status=failed details
        """
        kwargs: dict[str, Any] = parse_argument(arg)
        details = kwargs.pop("details", None) is not None
        if "id" in kwargs:
            kwargs["id"] = _job_id(kwargs["id"])
        # Oldest first, as Procrastinate's shell prints them.
        for job in sorted(self.job_manager.list_jobs(**kwargs), key=lambda j: j.id):
            self._say(job_line(job, details=details))

    def do_list_queues(self, arg: str) -> None:
        """
        List queues: get queue names and number of jobs per queue.
        Usage: list_queues [queue=QUEUE_NAME] [task=TASK_NAME] [status=STATUS] [lock=LOCK]

        Example: list_queues task=sums status=failed
        """
        self._counts(self.job_manager.list_queues, arg)

    def do_list_tasks(self, arg: str) -> None:
        """
        List tasks: get task names and number of jobs per task.
        Usage: list_tasks [queue=QUEUE_NAME] [task=TASK_NAME] [status=STATUS] [lock=LOCK]

        Example: list_tasks queue=default status=failed
        """
        self._counts(self.job_manager.list_tasks, arg)

    def do_list_locks(self, arg: str) -> None:
        """
        List locks: get lock names and number of jobs per lock.
        Usage: list_locks [queue=QUEUE_NAME] [task=TASK_NAME] [status=STATUS] [lock=LOCK]

        Example: list_locks queue=default status=todo
        """
        self._counts(self.job_manager.list_locks, arg)

    def do_retry(self, arg: str) -> None:
        """
        Retry a specific job (reset its status to todo).
        Usage: retry JOB_ID

        Example: retry 2
        """
        job_id = _job_id(arg)
        self.job_manager.retry_job_by_id(job_id)
        self._say(job_line(self.job_manager.get_job(job_id)))

    def do_cancel(self, arg: str) -> None:
        """
        Cancel a specific job (a waiting job is cancelled; see `jobs cancel --abort`).
        Usage: cancel JOB_ID

        Example: cancel 3
        """
        job_id = _job_id(arg)
        self.job_manager.cancel_job_by_id(job_id)
        self._say(job_line(self.job_manager.get_job(job_id)))


def _job_id(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a job id") from None


def run(job_manager: Any, command: list[str]) -> int:
    shell = AdminShell(job_manager)
    if command:
        shell.onecmd(shlex.join(command))
        return 1 if shell.failed else 0
    shell.cmdloop()
    return 0
