"""Small helpers shared across modules."""

from __future__ import annotations

import datetime
import importlib
import re
from typing import Any

from tracedjobs.exceptions import ConfigurationError


def utcnow() -> datetime.datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.datetime.now(datetime.UTC)


def import_object(path: str) -> Any:
    """Import ``module:attr`` (or ``module.attr``) and return the object.

    Every failure is a ConfigurationError with a one-line message; an error raised by the
    module's own code says where (its traceback is the exception's cause).
    """
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConfigurationError(f"{path!r} is not of the form 'module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Is the missing module the one asked for (or a package on its path), or one it imports?
        missing = exc.name or ""
        ours = missing == module_name or module_name.startswith(missing + ".")
        if ours and "." not in missing:
            where = "not found in the current directory nor on sys.path"
        elif ours:
            where = f"module {missing!r} does not exist"
        else:
            where = f"it imports {missing!r}, which is not installed"
        raise ConfigurationError(f"cannot import module {module_name!r}: {exc} ({where})") from exc
    except ImportError as exc:
        raise ConfigurationError(f"cannot import module {module_name!r}: {exc}") from exc
    except Exception as exc:
        raise ConfigurationError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}{_where(exc)}"
        ) from exc
    try:
        obj: Any = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _where(exc: BaseException) -> str:
    """`` (at file:line)`` of the innermost frame of an exception, when it has one."""
    if isinstance(exc, SyntaxError):
        return ""  # its message already says where
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f" (at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno})" if tb else ""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``'7d'``, ``'90m'``, ``'30s'``, ``'1.5h'`` or a bare number of seconds → seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (examples: 30s, 10m, 2h, 7d)")
    return float(match[1]) * _UNIT_SECONDS[match[2] or "s"]


def schedule_to_datetime(
    schedule_at: datetime.datetime | None, schedule_in: dict[str, float] | None
) -> datetime.datetime | None:
    """Resolve Procrastinate's ``schedule_at`` / ``schedule_in={"seconds": 30}`` pair."""
    if schedule_at is not None and schedule_in is not None:
        raise ValueError("give schedule_at or schedule_in, not both")
    if schedule_in is not None:
        try:
            return utcnow() + datetime.timedelta(**schedule_in)
        except TypeError as exc:
            raise ValueError(
                f"schedule_in={schedule_in!r} is not valid: use timedelta keywords "
                "such as {'seconds': 30} or {'minutes': 5}"
            ) from exc
    if schedule_at is not None and schedule_at.tzinfo is None:
        raise ValueError("schedule_at must be timezone-aware (e.g. tracedjobs.utils.utcnow())")
    return schedule_at


def redact_url(url: str) -> str:
    """The database URL without its password, for logs, errors and `top`.

    Parsed by libpq's own rules (psycopg's ``conninfo_to_dict``), so what is hidden is what
    libpq would send as the password, whatever the quoting or escaping. What cannot be
    parsed is not shown at all.
    """
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except (ProgrammingError, ValueError, TypeError):
        return "<database URL hidden: it could not be parsed>"
    had_password = params.pop("password", None) is not None
    secret = "***"
    if url.strip().startswith(("postgresql://", "postgres://")):
        # "u:p@ss@h": libpq reads host "ss@h"; the user meant "p@ss" as the password.
        host = str(params.pop("host", "") or "").rsplit("@", 1)[-1]
        user = params.pop("user", "")
        port = params.pop("port", "")
        dbname = params.pop("dbname", "")
        auth = f"{user}:{secret}@" if user and had_password else f"{user}@" if user else ""
        if had_password and not user:
            params["password"] = secret
        location = host if host and not host.startswith("/") else ""
        if location and port and "," not in str(port):
            location += f":{port}"
        elif host.startswith("/"):
            params = {"host": host, **({"port": port} if port else {}), **params}
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://{auth}{location}/{dbname}" + (f"?{query}" if query else "")
    shown = [f"{k}={_conninfo_value(str(v))}" for k, v in params.items()]
    if had_password:
        shown.append(f"password={secret}")
    return " ".join(shown)


def _conninfo_value(value: str) -> str:
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
