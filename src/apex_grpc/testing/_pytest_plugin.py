"""The pytest plugin of apex-grpc (entry point ``pytest11``): a fake Apex and clients for it.

Fixtures: ``apex_fake`` (a started `FakeApex`, verified when the test
passes), ``apex_client`` (an ApexClient pointed at it),
``async_apex_client`` (an AsyncApexClient; needs pytest-asyncio) and
``apex_fake_env`` (the fake, with the environment pointing clients built
without arguments at it). Options of the fake go on the marker
``@pytest.mark.apex_fake(assert_all_called=False)``.

Being part of apex_grpc, the plugin imports apex-grpc (and grpcio) when
pytest starts; the fake's server starts only for a test that asks for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from apex_grpc import ApexClient
from apex_grpc.testing._fake import FakeApex

if TYPE_CHECKING:
    from apex_grpc import AsyncApexClient  # loaded when the async fixture is used

MARKER = "apex_fake"

_FAILED = pytest.StashKey[bool]()

_async_fixture: Callable[..., Any]
try:  # pytest-asyncio's own decorator works in its strict and auto modes alike
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # then the async fixture needs another plugin that runs async fixtures
    _async_fixture = pytest.fixture


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``apex_fake`` marker."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(assert_all_called=True, assert_all_scripted=True, api_key=..., "
        "max_concurrent_streams=None, server_options=()): "
        "options of the apex_fake fixture's FakeApex",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Note whether the test itself failed, so the fixture does not pile a second error on it."""
    report = yield
    if report.when == "call" and (report.failed or hasattr(report, "wasxfail")):
        item.stash[_FAILED] = True
    return report


@pytest.fixture
def apex_fake(request: pytest.FixtureRequest) -> Iterator[FakeApex]:
    """A started FakeApex; at teardown it stops and, if the test passed, `verify()` runs.

    A call nothing was scripted for, or a route never called, then fails the
    test (turn either check off with ``@pytest.mark.apex_fake(...)``).
    """
    marker = request.node.get_closest_marker(MARKER)
    fake = FakeApex(**(marker.kwargs if marker is not None else {}))
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
    if not request.node.stash.get(_FAILED, False):
        fake.verify()


@pytest.fixture
def apex_client(apex_fake: FakeApex) -> Iterator[ApexClient]:
    """An ApexClient pointed at ``apex_fake`` (closed after the test)."""
    with apex_fake.client() as client:
        yield client


@pytest.fixture
def apex_fake_env(apex_fake: FakeApex, monkeypatch: pytest.MonkeyPatch) -> FakeApex:
    """``apex_fake``, with the environment set so that ``ApexClient()`` calls it.

    For code that builds its own client from the environment: for this test,
    MACROCOSMOS_BASE_URL is the fake's address, MACROCOSMOS_USE_HTTPS is
    "false" and APEX_API_KEY is its key (`FakeApex.environ`).
    """
    for name, value in apex_fake.environ().items():
        monkeypatch.setenv(name, value)
    return apex_fake


@_async_fixture
async def async_apex_client(apex_fake: FakeApex) -> AsyncIterator[AsyncApexClient]:
    """An AsyncApexClient pointed at ``apex_fake`` (closed after the test)."""
    async with apex_fake.async_client() as client:
        yield client
