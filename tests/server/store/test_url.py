"""Which database a server uses: URL parsing, errors that name the problem, redaction."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from apex_grpc_server import ServerConfig
from apex_grpc_server._store.migrations import Migration, SchemaTooNew, to_apply
from apex_grpc_server._store.url import parse, redact

pytestmark = pytest.mark.oldest


def test_no_url_means_sqlite_in_the_data_directory(tmp_path: Path) -> None:
    target = parse(None, tmp_path)
    assert (target.kind, target.path) == ("sqlite", tmp_path / "apex.sqlite3")
    assert parse("sqlite:///srv/apex/chats.db", tmp_path).path == Path("/srv/apex/chats.db")
    for url in ("postgresql://u@db.internal/apex", "postgres://u:pw@10.0.0.5:5433/apex"):
        assert parse(url, tmp_path).kind == "postgresql"
    assert parse("postgres://u:pw@h/db", tmp_path).describe() == "PostgreSQL postgres://u:***@h/db"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:pw@h/db", "unknown scheme 'mysql' in 'mysql://u:***@h/db'"),
        ("chats.db", "unknown scheme '(none)'"),
        ("sqlite:relative.db", "a SQLite URL is sqlite:///path/to/file"),
        ("postgresql:///apex", "names no host"),
    ],
)
def test_a_bad_url_is_refused_by_validate_naming_the_problem(url: str, message: str) -> None:
    config = ServerConfig(allow_any_key=True, database_url=url)
    with pytest.raises(ValueError, match=f"database_url: .*{re.escape(message)}"):
        config.validate()
    assert "pw" not in repr(config)


def test_passwords_never_reach_a_log_line() -> None:
    assert redact("postgresql://apex:s3cr@t@h:5432/db") == "postgresql://apex:***@h:5432/db"
    assert redact("postgresql://h/db?password=s3cret&sslmode=require") == (
        "postgresql://h/db?password=***&sslmode=require"
    )
    assert redact("postgresql://apex@h/db") == "postgresql://apex@h/db"


def test_lease_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="job_renew_s: must be above 0 and below job_lease_s"):
        ServerConfig(allow_any_key=True, job_lease_s=1, job_renew_s=2).validate()
    with pytest.raises(ValueError, match="job_poll_s"):
        ServerConfig(allow_any_key=True, job_poll_s=0).validate()
    assert ServerConfig(job_lease_s=3).job_renew_interval == 1


def test_migrations_apply_in_order_and_refuse_a_newer_database() -> None:
    steps = [Migration(1, "a", ()), Migration(2, "b", ())]
    assert [m.version for m in to_apply(0, steps)] == [1, 2]
    assert [m.version for m in to_apply(1, steps)] == [2]
    assert to_apply(2, steps) == []
    with pytest.raises(SchemaTooNew, match="schema is version 3, newer than this apex-grpc's 2"):
        to_apply(3, steps)
    with pytest.raises(ValueError, match=r"numbered 1\.\.n"):
        to_apply(0, [Migration(2, "b", ())])
