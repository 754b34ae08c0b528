"""The server's API-key check driven directly: what it accepts, and how it refuses."""

from __future__ import annotations

import grpc
import pytest

from apex_grpc_server._rpc.api_keys import (
    INVALID,
    MALFORMED,
    MISSING,
    Authenticator,
    user_id_for_key,
)
from apex_grpc_server._status import RpcAbort

pytestmark = pytest.mark.oldest

KEYS = frozenset({"key-b", "key-a", "key-c"})
SECRET = b"a database's user-id secret"


def refusal(authenticator: Authenticator, authorization: str | bytes | None) -> str:
    """The details of the UNAUTHENTICATED refusal of `authorization`."""
    with pytest.raises(RpcAbort) as caught:
        authenticator.authenticate(authorization)
    assert caught.value.code is grpc.StatusCode.UNAUTHENTICATED
    return caught.value.details


@pytest.mark.parametrize("key", sorted(KEYS))
def test_each_configured_key_is_accepted_as_its_own_user(key: str) -> None:
    user_id = Authenticator(KEYS, secret=SECRET).authenticate(f"Bearer {key}")
    assert user_id == user_id_for_key(key, SECRET)


@pytest.mark.parametrize("header", ["bearer key-a", "BEARER key-a", "  Bearer   key-a  "])
def test_the_scheme_is_case_insensitive_and_spaces_around_the_key_do_not_matter(
    header: str,
) -> None:
    user_id = Authenticator(KEYS, secret=SECRET).authenticate(header)
    assert user_id == user_id_for_key("key-a", SECRET)


@pytest.mark.parametrize(
    ("header", "details"),
    [
        (None, MISSING),
        ("Basic key-a", MALFORMED),
        ("key-a", MALFORMED),
        ("Bearer", MALFORMED),
        ("Bearer    ", MALFORMED),
        ("Bearer key-d", INVALID),
        ("Bearer key-a key-b", INVALID),
        ("Bearer KEY-A", INVALID),
    ],
)
def test_a_missing_malformed_or_wrong_key_is_refused_saying_which(
    header: str | None, details: str
) -> None:
    assert refusal(Authenticator(KEYS, secret=SECRET), header) == details


def test_metadata_sent_as_bytes_is_read_as_text_and_never_crashes() -> None:
    authenticator = Authenticator(KEYS, secret=SECRET)
    assert authenticator.authenticate(b"Bearer key-c") == user_id_for_key("key-c", SECRET)
    assert refusal(authenticator, b"Bearer \xff\xfe") == INVALID


def test_dev_mode_takes_any_key_but_still_needs_one() -> None:
    dev = Authenticator(frozenset(), secret=SECRET, allow_any_key=True)
    assert dev.authenticate("Bearer whatever") == user_id_for_key("whatever", SECRET)
    assert refusal(dev, None) == MISSING
    assert refusal(dev, "Bearer ") == MALFORMED
    assert refusal(Authenticator(frozenset(), secret=SECRET), "Bearer whatever") == INVALID


def test_user_ids_need_the_secret_and_differ_between_secrets() -> None:
    keyed = user_id_for_key("key-a", SECRET)
    assert keyed != user_id_for_key("key-a", None)  # the old unsalted id, computable by anyone
    assert keyed != user_id_for_key("key-a", b"another database's secret")
    assert len(keyed) == 32 and int(keyed, 16) >= 0
