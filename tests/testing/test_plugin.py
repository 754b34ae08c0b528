"""The pytest plugin, seen from a user's project: its fixtures, and failing at teardown.

Each test writes a user's test file and runs pytest on it (pytester), with
the plugin loaded from the ``pytest11`` entry point of the installed package.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def users_project(pytester: pytest.Pytester) -> None:
    """A project's pytest settings, as pytest-asyncio asks them to be given."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


UNSCRIPTED_SEARCH = """
import pytest
import apex_grpc as mc

def test_search(apex_fake, apex_client):
    with pytest.raises(mc.UnimplementedError):
        apex_client.web_search.search("nothing scripted")
"""


def test_pytest_lists_the_fixtures(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures")

    listed = result.stdout.str()
    assert "fixtures defined from apex_grpc.testing._pytest_plugin" in listed
    for name in ("apex_fake", "apex_client", "async_apex_client", "apex_fake_env"):
        assert f"{name} -- " in listed
    markers = pytester.runpytest_subprocess("--markers").stdout.str()
    assert "apex_fake(assert_all_called=True, assert_all_scripted=True, api_key=" in markers
    assert "max_concurrent_streams=None, server_options=())" in markers


def test_an_unscripted_call_fails_the_test_at_teardown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(UNSCRIPTED_SEARCH)

    result = pytester.runpytest()

    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_search*", "*unscripted call: RecordedCall(WebRetrieval*"]
    )


def test_the_marker_turns_the_teardown_checks_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "import pytest\n"
        "pytestmark = pytest.mark.apex_fake(assert_all_scripted=False, assert_all_called=False)\n"
        + UNSCRIPTED_SEARCH
        + "\ndef test_unused_route(apex_fake):\n"
        '    apex_fake.on("ChatCompletion").reply("never asked")\n'
    )

    result = pytester.runpytest("--strict-markers")

    result.assert_outcomes(passed=2)


def test_a_route_never_called_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_forgot_to_call(apex_fake):
            apex_fake.on("ChatCompletion").reply("never asked")
        """
    )

    result = pytester.runpytest()

    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*never called: Route(ChatCompletion*"])


def test_a_failed_test_gets_no_second_error_from_the_fake(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_fails(apex_fake, apex_client):
            apex_fake.on("ChatCompletion").reply("never asked")
            assert False, "the test's own failure"

        @pytest.mark.xfail(reason="known bug")
        def test_expected_to_fail(apex_fake):
            apex_fake.on("ChatCompletion").reply("never asked")
            assert False
        """
    )

    result = pytester.runpytest()

    result.assert_outcomes(failed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*the test's own failure*"])


def test_the_async_fixture_works_in_pytest_asyncios_strict_mode(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.asyncio
        async def test_chat(apex_fake, async_apex_client):
            apex_fake.on("ChatCompletion").reply("async hello")
            reply = await async_apex_client.chat.completions.create(
                messages=[{"role": "user", "content": "Hi"}]
            )
            assert reply.choices[0].message.content == "async hello"
            assert apex_fake.last_request.api_key == "sk-apex-fake-test-key"
        """
    )

    result = pytester.runpytest("-o", "asyncio_mode=strict")

    result.assert_outcomes(passed=1)


def test_importing_apex_grpc_imports_neither_pytest_nor_the_kit() -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import apex_grpc"],
        capture_output=True,
        text=True,
        check=True,
    )
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()]
    assert "apex_grpc._client" in imported  # the measurement saw apex_grpc's own imports
    assert not [m for m in imported if m.split(".")[0] in ("pytest", "_pytest")]
    assert not [m for m in imported if m.startswith("apex_grpc.testing")]


def test_apex_fake_env_points_clients_built_from_the_environment_at_the_fake(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        """
        import os
        import pytest
        import apex_grpc as mc

        @pytest.mark.apex_fake(api_key="sk-from-env")
        def test_a_client_built_without_arguments(apex_fake_env):
            apex_fake_env.on("GetChatSessions").reply(mc.GetChatSessionsResponse())
            with mc.ApexClient() as client:
                client.chats.list_sessions()
            assert apex_fake_env.last_request.api_key == "sk-from-env"
            assert os.environ["MACROCOSMOS_BASE_URL"] == apex_fake_env.target

        def test_the_environment_is_restored_after_the_test():
            assert os.environ.get("MACROCOSMOS_BASE_URL") == "https://elsewhere.example"
            assert "APEX_API_KEY" not in os.environ
        """
    )
    monkeypatch.setenv("MACROCOSMOS_BASE_URL", "https://elsewhere.example")
    monkeypatch.setenv("MACROCOSMOS_USE_HTTPS", "true")
    monkeypatch.delenv("APEX_API_KEY", raising=False)

    result = pytester.runpytest_subprocess()

    result.assert_outcomes(passed=2)
