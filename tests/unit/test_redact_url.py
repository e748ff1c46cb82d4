"""`utils.redact_url` hides the password of every form of database URL (issue 10, fault 9).

Each case names every fragment of its secret that must not survive (a redaction that cuts
the password at the wrong place leaks its tail) and what must stay readable.
"""

from __future__ import annotations

import pytest

from tracedjobs.utils import redact_url

CASES = [
    # An unescaped "@" in the password: the userinfo ends at the *last* "@".
    (
        "postgresql://u:hunter@2000@db.example.com/appdb",
        ["hunter", "2000"],
        ["db.example.com", "appdb"],
    ),
    (
        "postgresql://u:p%40ssw0rd@db.example.com:5432/appdb?sslmode=require",
        ["p%40ssw0rd", "ssw0rd", "p@ss"],
        ["db.example.com", "5432", "appdb", "sslmode=require"],
    ),
    (
        "postgres://u:Tr0ub4dor@db1.example.com,db2.example.com/appdb",
        ["Tr0ub4dor"],
        ["db1.example.com", "db2.example.com", "appdb"],
    ),
    ("password='open sesame' host=db.example.com", ["open", "sesame"], ["db.example.com"]),
    (
        "host=db.example.com password=Sekr1tPw dbname=appdb",
        ["Sekr1tPw"],
        ["db.example.com", "appdb"],
    ),
    ("postgresql:///appdb?password=xyzzy42&host=/tmp", ["xyzzy42"], ["appdb", "/tmp"]),
    (
        r"host=db.example.com password='it\'s s3cret' dbname=appdb",
        ["s3cret", "it\\'s"],
        ["db.example.com", "appdb"],
    ),
    (
        "postgresql://u:Sekr1tPw@db.example.com/appdb?password=Other5ecret",
        ["Sekr1tPw", "Other5ecret"],
        ["db.example.com", "appdb"],
    ),
]


@pytest.mark.parametrize(("url", "secrets", "readable"), CASES)
def test_the_password_never_survives(url: str, secrets: list[str], readable: list[str]) -> None:
    redacted = redact_url(url)
    for secret in secrets:
        assert secret not in redacted, f"{secret!r} leaked: {redacted!r}"
    for part in readable:
        assert part in redacted, f"{part!r} should stay readable: {redacted!r}"


@pytest.mark.parametrize(
    ("url", "readable"),
    [
        (
            "postgresql://alice@db.example.com:5432/appdb",
            ["alice", "db.example.com", "5432", "appdb"],
        ),
        ("host=db.example.com dbname=appdb user=alice", ["alice", "db.example.com", "appdb"]),
        ("postgresql://postgres:@/postgres?host=/tmp/pgdata", ["postgres", "/tmp/pgdata"]),
    ],
)
def test_a_url_without_password_stays_readable(url: str, readable: list[str]) -> None:
    redacted = redact_url(url)
    for part in readable:
        assert part in redacted, f"{part!r} should stay readable: {redacted!r}"
