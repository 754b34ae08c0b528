"""Authentication: bearer keys, constant-time checks, explicit dev mode."""

from __future__ import annotations

import grpc
import pytest

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_server import ServerConfig, run_server
from apex_grpc_server._auth import Authenticator, user_id_for_key
from apex_grpc_server._status import RpcAbort

pytestmark = pytest.mark.oldest

MISSING = "missing authorization metadata: send 'authorization: Bearer <api key>'"


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ((), MISSING),
        ((("authorization", "Bearer wrong-key"),), "invalid API key"),
        (
            (("authorization", "Basic abc"),),
            "malformed authorization metadata: expected 'Bearer <api key>'",
        ),
        (
            (("authorization", "Bearer "),),
            "malformed authorization metadata: expected 'Bearer <api key>'",
        ),
    ],
)
def test_rejected_calls_are_unauthenticated(stub, chat, metadata, message) -> None:
    for call in (
        lambda: stub.ChatCompletion(chat("hi"), metadata=metadata),
        lambda: list(stub.ChatCompletionStream(chat("hi"), metadata=metadata)),
        lambda: stub.WebRetrieval(pb.WebRetrievalRequest(search_query="x"), metadata=metadata),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert caught.value.details() == message


def test_scheme_is_case_insensitive(stub, chat, api_key) -> None:
    response = stub.ChatCompletion(chat("hi"), metadata=(("authorization", f"bearer {api_key}"),))
    assert response.choices[0].message.content


def test_one_of_several_keys(start_server, connect, chat) -> None:
    stub = connect(start_server(api_keys=frozenset({"key-a", "key-b"})).target)
    for key in ("key-a", "key-b"):
        assert stub.ChatCompletion(chat("hi"), metadata=(("authorization", f"Bearer {key}"),))
    with pytest.raises(grpc.RpcError) as caught:
        stub.ChatCompletion(chat("hi"), metadata=(("authorization", "Bearer key-c"),))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_dev_mode_accepts_any_key_but_still_needs_one(start_server, connect, chat) -> None:
    stub = connect(start_server(api_keys=frozenset(), allow_any_key=True).target)
    assert stub.ChatCompletion(chat("hi"), metadata=(("authorization", "Bearer anything"),))
    with pytest.raises(grpc.RpcError) as caught:
        stub.ChatCompletion(chat("hi"))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_no_keys_and_no_dev_mode_refuses_to_start(tmp_path) -> None:
    config = ServerConfig(port=0, engine="echo", data_dir=tmp_path)
    with pytest.raises(ValueError, match="no API keys configured"):
        run_server(config)


def test_keys_never_appear_in_the_config_repr() -> None:
    config = ServerConfig(api_keys=frozenset({"s3cret-key"}), openai_api_key="upstream-s3cret")
    assert "s3cret" not in repr(config)


def test_user_ids_are_stable_and_distinct() -> None:
    assert user_id_for_key("a") == user_id_for_key("a")
    assert user_id_for_key("a") != user_id_for_key("b")
    assert "a" not in user_id_for_key("a")[:0]  # derived, not the key
    authenticator = Authenticator(frozenset({"k1"}))
    assert authenticator.authenticate("Bearer k1") == user_id_for_key("k1")
    with pytest.raises(RpcAbort):
        authenticator.authenticate("Bearer k2")
