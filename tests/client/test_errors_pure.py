"""The error tree driven directly: a grpc failure becomes a typed error that keeps everything."""

from __future__ import annotations

import pickle
from typing import Any

import grpc
import pytest

import apex_grpc as mc
from apex_grpc._errors import error_class_for, from_rpc_error, hint_for, metadata_value

from .test_state_machines import FakeRpcError

pytestmark = pytest.mark.oldest

METHOD = "/apex.v1.ApexService/GetChatSessions"
HANDSHAKE = "Ssl handshake failed: error:WRONG_VERSION_NUMBER"
FIX = (
    "answered the TLS handshake in plaintext: for a local plaintext server such as "
    "`apex-grpc serve`, connect with secure=False, MACROCOSMOS_USE_HTTPS=false or an "
    "http:// base URL"
)


class DebuggedError(FakeRpcError):
    def debug_error_string(self) -> Any:
        return "UNKNOWN:Error received from peer"


class BrokenError(grpc.RpcError):
    """A half-dead call: every getter raises."""

    def code(self) -> grpc.StatusCode:
        raise RuntimeError("gone")

    def details(self) -> str:
        raise RuntimeError("gone")


def test_a_grpc_failure_keeps_its_code_details_metadata_and_attempts() -> None:
    error = DebuggedError(
        grpc.StatusCode.NOT_FOUND,
        "no such chat",
        (("x-request-id", "r-1"), ("t", b"\x00")),
        (("i", "1"),),
    )
    typed = from_rpc_error(error, method=METHOD, attempts=3)
    assert type(typed) is mc.NotFoundError and typed.code is grpc.StatusCode.NOT_FOUND
    assert (typed.details, typed.method, typed.attempts) == ("no such chat", METHOD, 3)
    assert typed.trailing_metadata == (("x-request-id", "r-1"), ("t", b"\x00"))
    assert typed.initial_metadata == (("i", "1"),) and typed.request_id == "r-1"
    assert typed.debug_error_string == "UNKNOWN:Error received from peer"
    assert (
        str(typed) == "NOT_FOUND (GetChatSessions): no such chat after 3 attempts [request id r-1]"
    )
    assert from_rpc_error(error, method=METHOD).attempts == 1


def test_what_the_error_cannot_say_has_safe_defaults() -> None:
    typed = from_rpc_error(BrokenError(), method=METHOD)
    assert type(typed) is mc.UnknownError and typed.code is grpc.StatusCode.UNKNOWN
    assert typed.details == "UNKNOWN" and typed.initial_metadata == typed.trailing_metadata == ()
    assert typed.debug_error_string is None and typed.request_id is None
    plain = from_rpc_error(FakeRpcError(grpc.StatusCode.INTERNAL, "x"), method="")
    assert plain.debug_error_string is None and str(plain) == "INTERNAL: x"


def test_the_request_id_comes_from_trailing_then_initial_metadata() -> None:
    initial_only = FakeRpcError(grpc.StatusCode.INTERNAL, "x", (), (("x-request-id", b"r-\xff"),))
    typed = from_rpc_error(initial_only, method=METHOD)
    assert typed.request_id == "r-\ufffd" and "[request id r-\ufffd]" in str(typed)
    assert metadata_value([("a", "1"), ("x-request-id", "r-2"), ("x-request-id", "r-3")]) == "r-2"
    assert metadata_value([("a", "1")]) is None
    assert metadata_value([("a", "1"), ("b", "2")], "b") == "2"


def test_each_code_has_its_class_and_an_unknown_one_gets_the_base() -> None:
    assert error_class_for(grpc.StatusCode.UNAUTHENTICATED) is mc.AuthenticationError
    assert error_class_for(grpc.StatusCode.OK) is mc.APIError
    odd = from_rpc_error(FakeRpcError(grpc.StatusCode.OK, "odd"), method=METHOD)
    assert type(odd) is mc.APIError and odd.code is grpc.StatusCode.OK


def test_an_error_built_by_hand_names_only_what_it_was_given() -> None:
    bare = mc.NotFoundError("gone")
    assert (bare.method, bare.attempts, bare.request_id) == ("", 1, None)
    assert str(bare) == "NOT_FOUND: gone"
    assert (
        str(mc.APIError("x", method="Lookup", attempts=2)) == "UNKNOWN (Lookup): x after 2 attempts"
    )


def test_an_error_survives_pickling_whole() -> None:
    typed = from_rpc_error(
        FakeRpcError(
            grpc.StatusCode.UNAVAILABLE, "down", (("x-request-id", "r-5"),), (("i", "1"),)
        ),
        method=METHOD,
        attempts=2,
    )
    again = pickle.loads(pickle.dumps(typed))
    assert type(again) is mc.UnavailableError and str(again) == str(typed)
    assert (again.code, again.details, again.method, again.attempts) == (
        typed.code,
        "down",
        METHOD,
        2,
    )
    assert again.trailing_metadata == typed.trailing_metadata
    assert again.initial_metadata == (("i", "1"),) and again.request_id == "r-5"
    odd = pickle.loads(pickle.dumps(mc.APIError("odd", code=grpc.StatusCode.OK)))
    assert type(odd) is mc.APIError and odd.code is grpc.StatusCode.OK


@pytest.mark.parametrize(
    ("peer", "address"),
    [("ipv4:127.0.0.1:50051", "127.0.0.1:50051"), ("ipv6:[::1]:50051", "[::1]:50051")],
)
def test_tls_to_a_plaintext_loopback_server_gets_the_fix_as_a_hint(peer: str, address: str) -> None:
    details = f"failed to connect to all addresses; last error: {peer}: {HANDSHAKE}"
    assert hint_for(grpc.StatusCode.UNAVAILABLE, details) == f"{address} {FIX}"
    typed = mc.UnavailableError(details, code=grpc.StatusCode.UNAVAILABLE)
    assert typed.hint == f"{address} {FIX}" and str(typed).endswith(f". {address} {FIX}")
    assert hint_for(grpc.StatusCode.INTERNAL, details) is None
    assert hint_for(grpc.StatusCode.UNAVAILABLE, "connection refused") is None
    assert mc.UnavailableError("connection refused").hint is None


def test_deep_research_errors_say_which_job_and_why() -> None:
    failed = mc.DeepResearchJobError("j-1", "failed", "")
    assert str(failed) == "deep-research job j-1 failed: no reason given"
    assert (failed.job_id, failed.status, failed.error) == ("j-1", "failed", "")
    waited = mc.DeepResearchTimeoutError("j-2", 2.5, "running")
    assert str(waited) == (
        "deep-research job j-2 still 'running' after 2.5s; "
        "it keeps running on the server: wait again or fetch it later"
    )
    assert (waited.job_id, waited.timeout, waited.last_status) == ("j-2", 2.5, "running")
    assert isinstance(waited, TimeoutError)


def test_a_validation_error_names_the_argument_and_the_problem() -> None:
    error = mc.ValidationError("messages[2].content", "must be a string")
    assert (error.argument, error.problem) == ("messages[2].content", "must be a string")
    assert str(error) == "messages[2].content: must be a string"


@pytest.mark.parametrize(
    ("peer", "address", "command"),
    [
        ("ipv4:127.0.0.1:50051", "127.0.0.1:50051", "apex-grpc serve --api-key KEY"),
        ("ipv4:127.0.0.1:4000", "127.0.0.1:4000", "apex-grpc serve --port 4000 --api-key KEY"),
        (
            "ipv4:127.0.0.2:50051",
            "127.0.0.2:50051",
            "apex-grpc serve --host 127.0.0.2 --api-key KEY",
        ),
        (
            "ipv6:%5B::1%5D:4000",
            "[::1]:4000",
            "apex-grpc serve --host ::1 --port 4000 --api-key KEY",
        ),
        ("ipv6:[::1]:50051", "[::1]:50051", "apex-grpc serve --host ::1 --api-key KEY"),
    ],
)
def test_a_refused_loopback_address_gets_the_command_that_serves_it(
    peer: str, address: str, command: str
) -> None:
    details = (
        "failed to connect to all addresses; last error: UNKNOWN: "
        f"{peer}: Failed to connect to remote host: Connection refused"
    )
    hint = hint_for(grpc.StatusCode.UNAVAILABLE, details)
    assert hint == (
        f"nothing is listening on {address}: to serve apex.v1 there, start the local server "
        f"(`{command}`), or point the client at a running server"
    )
    assert mc.UnavailableError(details).hint == hint
    assert hint_for(grpc.StatusCode.INTERNAL, details) is None
    # Another machine refusing is not a local server to start.
    elsewhere = details.replace(peer, "ipv4:10.0.0.1:50051")
    assert hint_for(grpc.StatusCode.UNAVAILABLE, elsewhere) is None
