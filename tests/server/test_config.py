"""Settings resolved once: the database URL is parsed when the config is made, and only then."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from apex_grpc_server import ServerConfig, cli, run_server
from apex_grpc_server._store import url

pytestmark = pytest.mark.oldest


def test_the_config_holds_the_parsed_database(tmp_path: Path) -> None:
    config = ServerConfig(allow_any_key=True, data_dir=tmp_path)
    assert config.database == url.DatabaseTarget("sqlite", path=tmp_path / "apex.sqlite3")
    remote = dataclasses.replace(config, database_url="postgres://u:pw@h/db")
    assert remote.database is not None
    assert remote.database.describe() == "PostgreSQL postgres://u:***@h/db"
    assert "pw" not in repr(remote)


def test_a_url_that_does_not_parse_is_named_by_validate_not_by_the_constructor() -> None:
    config = ServerConfig(allow_any_key=True, database_url="mysql://u:pw@h/db")
    assert config.database is None
    with pytest.raises(ValueError, match=r"^database_url: unknown scheme 'mysql'"):
        config.validate()


def test_from_the_flag_to_the_open_store_the_url_is_parsed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str | None] = []
    real = url.parse

    def counting(database_url: str | None, data_dir: Path) -> url.DatabaseTarget:
        calls.append(database_url)
        return real(database_url, data_dir)

    import apex_grpc_server._config as config_module

    monkeypatch.setattr(url, "parse", counting)
    monkeypatch.setattr(config_module, "parse", counting)
    parser = argparse.ArgumentParser()
    cli.add_serve_arguments(parser)
    target = f"sqlite:///{tmp_path}/chats.db"
    args = parser.parse_args(
        [
            "--engine",
            "echo",
            "--port",
            "0",
            "--allow-any-key",
            "--database",
            target,
            "--data-dir",
            str(tmp_path),
        ]
    )
    config = cli.config_from_args(args)
    with run_server(config) as server:
        assert server.port > 0
    assert calls == [target]
    assert (tmp_path / "chats.db").is_file()
