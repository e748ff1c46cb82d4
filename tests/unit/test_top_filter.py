"""The `/` filter language of `tracedjobs top`: what compiles, and that values stay parameters."""

from __future__ import annotations

import pytest
from psycopg import sql

from tracedjobs.tui.model import FilterError, parse_filter


def _text(composable: sql.Composable) -> str:
    return composable.as_string(None)


def test_each_key_compiles_to_a_fixed_fragment_with_bound_values() -> None:
    f = parse_filter("queue:mail task:app.send_* status:failed,todo error:Timeout args.user.id:42 age>10m id:7")
    text = _text(f.where)
    assert "j.queue_name = %(f0)s" in text
    assert "j.task_name LIKE %(f1)s" in text
    assert "j.status = ANY (%(f2)s::text[])" in text
    assert "fa.error_type ILIKE %(f3)s" in text
    assert "j.args #>> %(f4)s::text[] = %(f5)s" in text
    assert "j.created_at < now() - make_interval(secs => %(f6)s)" in text
    assert "j.id = %(f7)s" in text
    assert f.params == {
        "f0": "mail", "f1": "app.send\\_%", "f2": ["failed", "todo"], "f3": "%Timeout%",
        "f4": ["user", "id"], "f5": "42", "f6": 600.0, "f7": 7,
    }


def test_a_task_name_without_a_dot_also_matches_short_names() -> None:
    # The screen shows `boom_sync` for `tests.apps.x.boom_sync`: that is what users type.
    f = parse_filter("task:boom_sync")
    assert _text(f.where) == "(j.task_name LIKE %(f0)s OR j.task_name LIKE %(f1)s)"
    assert f.params == {"f0": "boom\\_sync", "f1": "%.boom\\_sync"}
    wildcard = parse_filter("task:send_*")
    assert wildcard.params == {"f0": "send\\_%", "f1": "%.send\\_%"}


def test_hostile_values_never_reach_the_sql_text() -> None:
    evil = "x'); DROP TABLE tracedjobs_jobs; --"
    f = parse_filter(f'queue:"{evil}" "args.{evil}:1" error:"{evil}"')
    assert "DROP" not in _text(f.where)
    assert evil in f.params.values()


def test_empty_filter_matches_everything() -> None:
    f = parse_filter("   ")
    assert not f.active and _text(f.where) == "TRUE" and f.params == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour:red", "unknown filter key 'colour'"),
        ("status:done", "unknown status 'done'"),
        ("age>soon", "is not a duration"),
        ("age:10m", "age needs > or <"),
        ("queue>3", "queue takes KEY:VALUE"),
        ("justaword", "is not KEY:VALUE"),
        ("id:abc", "is not a job id"),
        ('queue:"unterminated', "cannot read the filter"),
        ("args..x:1", "is not args.KEY"),
    ],
)
def test_bad_filters_give_a_one_line_reason(text: str, message: str) -> None:
    with pytest.raises(FilterError, match=message) as info:
        parse_filter(text)
    assert "\n" not in str(info.value)
