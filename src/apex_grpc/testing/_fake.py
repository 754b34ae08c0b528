"""FakeApex: a scripted Apex server for the tests of code that uses apex-grpc."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from apex_grpc._client import ApexClient
from apex_grpc._settings.client import API_KEY_ENV_VARS, BASE_URL_ENV_VAR, USE_HTTPS_ENV_VAR
from apex_grpc.testing._outcomes import ScriptError, method_named, research_polls
from apex_grpc.testing._routes import Predicate, RecordedCall, Route, Router
from apex_grpc.testing._server import FakeServer
from apex_grpc_proto.apex.v1 import apex_pb2 as pb

if TYPE_CHECKING:
    from apex_grpc._async_client import AsyncApexClient

TEST_API_KEY = "sk-apex-fake-test-key"
"""The key `FakeApex.client()` calls with unless the fake is given another."""


class UnscriptedCallError(AssertionError):
    """Raised by `FakeApex.verify`: calls nothing was scripted for, or routes never called."""


class FakeApex:
    """A fake Apex server on 127.0.0.1 (a free port) that answers as scripted and records calls.

    ``fake.on("ChatCompletion").reply("Hello")`` scripts an answer;
    ``fake.client()`` / ``fake.async_client()`` are clients pointed at it;
    ``fake.requests`` are the calls it saw. A call nothing was scripted for
    fails with UNIMPLEMENTED, and `verify` (run when a ``with`` block ends
    and by the pytest fixture's teardown) fails the test for it.

    assert_all_called: `verify` also fails when a route was never called.
    assert_all_scripted: `verify` fails when a call was not scripted.
    api_key: the key `client()`, `async_client()` and `environ()` give.
    max_concurrent_streams: how many calls one client connection may have
        in flight (grpc's ``grpc.max_concurrent_streams``, as production
        front ends set it); calls past it that a client sends before it
        knows the limit are refused (REFUSED_STREAM). None: grpc's default.
    server_options: more grpc server options, as ``(name, value)`` pairs.
    """

    def __init__(
        self,
        *,
        assert_all_called: bool = True,
        assert_all_scripted: bool = True,
        api_key: str = TEST_API_KEY,
        max_concurrent_streams: int | None = None,
        server_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        options = list(server_options)
        if max_concurrent_streams is not None:
            if isinstance(max_concurrent_streams, bool) or not isinstance(
                max_concurrent_streams, int
            ):
                raise ScriptError(
                    f"max_concurrent_streams must be an int, got {max_concurrent_streams!r}"
                )
            if max_concurrent_streams < 1:
                raise ScriptError(
                    f"max_concurrent_streams must be >= 1, got {max_concurrent_streams}"
                )
            options.append(("grpc.max_concurrent_streams", max_concurrent_streams))
        self.assert_all_called = assert_all_called
        self.assert_all_scripted = assert_all_scripted
        self.api_key = api_key
        self._router = Router()
        self._calls: list[RecordedCall] = []
        self._calls_lock = threading.Lock()
        self._server = FakeServer(self._router.choose, self._record, options)
        self._started = False

    # lifecycle

    def start(self) -> Self:
        """Start serving (a fake is started once); returns the fake."""
        if self._started:
            raise ScriptError("this FakeApex was already started")
        self._server.start()
        self._started = True
        return self

    def stop(self) -> None:
        """Stop the server; calls in flight are cancelled."""
        self._server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc_type is None:
            self.verify()

    @property
    def target(self) -> str:
        """The address to dial, ``127.0.0.1:PORT`` (plaintext): a client's ``base_url``."""
        if not self._started:
            raise ScriptError("start the FakeApex first: fake.start() or `with FakeApex()`")
        return f"127.0.0.1:{self._server.port}"

    def environ(self) -> dict[str, str]:
        """The environment that points a client built without arguments at the fake.

        ``ApexClient()`` (and the ``apex-grpc`` CLI) read the address from
        MACROCOSMOS_BASE_URL, TLS from MACROCOSMOS_USE_HTTPS and the key from
        APEX_API_KEY: give these to a child process, or use the pytest fixture
        ``apex_fake_env``, which sets them for one test.
        """
        return {
            BASE_URL_ENV_VAR: self.target,
            USE_HTTPS_ENV_VAR: "false",
            API_KEY_ENV_VARS[0]: self.api_key,
        }

    # clients

    def client(self, **options: Any) -> ApexClient:
        """An ApexClient pointed at the fake (plaintext loopback, `api_key`).

        `options` are ApexClient's (``timeout=``, ``max_retries=``, ``retry=``...).
        """
        options.setdefault("api_key", self.api_key)
        return ApexClient(base_url=self.target, secure=False, **options)

    def async_client(self, **options: Any) -> AsyncApexClient:
        """An AsyncApexClient pointed at the fake (see `client`)."""
        from apex_grpc._async_client import AsyncApexClient

        options.setdefault("api_key", self.api_key)
        return AsyncApexClient(base_url=self.target, secure=False, **options)

    # scripting

    def on(
        self,
        method: str,
        *,
        match: Predicate | None = None,
        times: int | None = None,
        delay: float = 0.0,
    ) -> Route:
        """A route for calls of `method` (an RPC name, e.g. "ChatCompletion"); then ``.reply(...)``.

        match: a predicate on the request message; only calls it accepts use the route.
        times: how many calls the route answers (None: any number; 1: one-shot).
        delay: seconds to wait before answering (a slow server, to test deadlines).
        Routes are tried in the order they were added.
        """
        route = Route(
            method_named(method), match=match, times=times, delay=delay, lock=self._router.lock
        )
        return self._router.add(route)

    def research_job(
        self,
        job_id: str = "job-fake",
        *,
        statuses: Sequence[str] = ("pending", "running"),
        chunks: Sequence[str] = (),
        error: str | None = None,
    ) -> tuple[Route, Route]:
        """Script a deep-research job: its submission, then its polls (see `research_polls`).

        Returns the SubmitDeepResearcherJob route and the GetDeepResearcherJob
        route (which answers polls for `job_id` only).
        """
        polls = research_polls(job_id, statuses=statuses, chunks=chunks, error=error)
        submit = self.on("SubmitDeepResearcherJob").reply(
            pb.SubmitDeepResearcherJobResponse(job_id=job_id, status="pending")
        )

        def for_job(request: pb.GetDeepResearcherJobRequest) -> bool:
            return request.job_id == job_id

        get = self.on("GetDeepResearcherJob", match=for_job).reply(*polls)
        return submit, get

    # what the fake saw

    def _record(self, call: RecordedCall) -> None:
        with self._calls_lock:
            self._calls.append(call)

    @property
    def requests(self) -> list[RecordedCall]:
        """Every call the fake received, in order (a copy)."""
        with self._calls_lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[RecordedCall]:
        """The calls of `method` (an RPC name), in order."""
        name = method_named(method).name
        return [call for call in self.requests if call.method == name]

    @property
    def call_count(self) -> int:
        """How many calls the fake received."""
        return len(self.requests)

    @property
    def last_request(self) -> RecordedCall:
        """The last call the fake received (AssertionError if there was none)."""
        calls = self.requests
        if not calls:
            raise AssertionError("the fake Apex received no call")
        return calls[-1]

    @property
    def unscripted(self) -> list[RecordedCall]:
        """The calls nothing was scripted for."""
        with self._router.lock:
            return list(self._router.unscripted)

    def reset(self) -> None:
        """Forget every route and recorded call (the server keeps running)."""
        self._router.clear()
        with self._calls_lock:
            self._calls.clear()

    def verify(self) -> None:
        """Fail (UnscriptedCallError) if a call was not scripted or a route never called.

        Which checks run follows `assert_all_scripted` and `assert_all_called`.
        """
        problems = self._router.failures(
            all_called=self.assert_all_called, all_scripted=self.assert_all_scripted
        )
        if problems:
            raise UnscriptedCallError(
                "the fake Apex was not used as scripted:\n  " + "\n  ".join(problems)
            )

    def __repr__(self) -> str:
        where = f"127.0.0.1:{self._server.port}" if self._started else "not started"
        return f"FakeApex({where}, {len(self._router.routes)} routes, {self.call_count} calls)"
