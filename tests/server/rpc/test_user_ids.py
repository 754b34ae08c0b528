"""User ids are an HMAC of the key with the database's secret (issue #19, item 9b).

``ChatSession.user_id`` is visible to its owner (and to whoever sees a reply);
without the secret it does not let anyone test guesses of the key. The secret
is created once per database by a migration, so it is stable across restarts
and shared by every replica on one PostgreSQL, and differs between databases.
A database that already held rows keeps the old ids, so its users keep their chats.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc
from apex_grpc_server import ServerConfig, run_server

KEY = "sk-user-id-test-0123"
AUTH = (("authorization", f"Bearer {KEY}"),)


def unsalted(key: str) -> str:
    """The id every database got before migration 4: anyone could compute it from a guess."""
    return hashlib.sha256(b"apex-grpc user\x00" + key.encode()).hexdigest()[:32]


def config(data_dir: Path, database_url: str | None = None) -> ServerConfig:
    return ServerConfig(
        port=0,
        engine="echo",
        api_keys=frozenset({KEY}),
        data_dir=data_dir,
        database_url=database_url,
        default_corpus=False,
        grace_period_s=0.5,
        drain_delay_s=0.0,
    )


def user_id_through(config: ServerConfig) -> str:
    """The user id a server on ``config`` gives KEY (it creates a chat to read it)."""
    with run_server(config) as server, grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.ApexServiceStub(channel)
        stub.CreateChatAndCompletion(
            pb.CreateChatAndCompletionRequest(user_prompt="hi"), metadata=AUTH
        )
        sessions = stub.GetChatSessions(pb.GetChatSessionsRequest(), metadata=AUTH).chat_sessions
        assert len({chat.user_id for chat in sessions}) == 1
        return str(sessions[0].user_id)


@pytest.fixture
def dirs(tmp_path: Path) -> Callable[[], Path]:
    """``dirs()``: a new data directory under the test's tmp_path."""
    count = iter(range(100))
    return lambda: tmp_path / f"data-{next(count)}"


@pytest.mark.oldest
def test_sqlite_user_ids_are_keyed_stable_across_restarts_and_differ_per_database(dirs) -> None:
    first, second = dirs(), dirs()
    user_id = user_id_through(config(first))
    assert len(user_id) == 32 and user_id != unsalted(KEY)
    assert user_id_through(config(first)) == user_id  # restarted on the same database
    assert user_id_through(config(second)) != user_id  # another database, another secret


def test_postgresql_replicas_share_the_user_ids_and_databases_do_not(
    dirs, postgres_url: str, local_postgres: Any
) -> None:
    user_id = user_id_through(config(dirs(), postgres_url))
    assert user_id != unsalted(KEY)
    assert user_id_through(config(dirs(), postgres_url)) == user_id  # another replica
    other = str(local_postgres.create_database("apex_user_ids_other"))
    assert user_id_through(config(dirs(), other)) != user_id


@pytest.mark.oldest
def test_a_database_that_held_chats_keeps_the_old_ids_and_its_users_their_chats(dirs) -> None:
    from apex_grpc_server._store.sqlite.schema import MIGRATIONS

    old, empty = dirs(), dirs()
    for data_dir, rows in ((old, True), (empty, False)):
        data_dir.mkdir()
        with sqlite3.connect(data_dir / "apex.sqlite3") as conn:  # as version 3 left it
            for migration in MIGRATIONS[:3]:
                for statement in migration.statements:
                    conn.execute(statement)
            conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '3')")
            if rows:
                conn.execute(
                    "INSERT INTO chats VALUES ('c-old', ?, 'kept', 'apex', 1, 1)", (unsalted(KEY),)
                )
    assert user_id_through(config(old)) == unsalted(KEY)
    with run_server(config(old)) as server, grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.ApexServiceStub(channel)
        titles = {
            chat.title
            for chat in stub.GetChatSessions(
                pb.GetChatSessionsRequest(), metadata=AUTH
            ).chat_sessions
        }
        assert "kept" in titles
    assert user_id_through(config(empty)) != unsalted(KEY)  # nothing to keep: keyed ids
