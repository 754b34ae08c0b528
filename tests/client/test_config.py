"""Client configuration from arguments and environment (pure; no I/O)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import apex_grpc as mc
from apex_grpc._settings.call import DEFAULT_TIMEOUT, choose_timeout
from apex_grpc._settings.client import (
    CONNECTION_OPTIONS,
    OPTION_NAMES,
    ClientSettings,
)
from apex_grpc._settings.configs import Secret
from apex_grpc._settings.target import is_loopback_target, normalize_target

pytestmark = pytest.mark.oldest


def resolve(environ: dict[str, str] | None = None, **options: object) -> ClientSettings:
    return ClientSettings.create(environ=environ or {}, **options)


def test_key_from_argument_wins_over_environment() -> None:
    config = resolve({"APEX_API_KEY": "env"}, api_key="arg")
    assert config.api_key.reveal() == "arg"


def test_key_from_apex_then_macrocosmos_env() -> None:
    both = {"APEX_API_KEY": "apex", "MACROCOSMOS_API_KEY": "mc"}
    assert resolve(both).api_key.reveal() == "apex"
    assert resolve({"MACROCOSMOS_API_KEY": " mc "}).api_key.reveal() == "mc"


def test_missing_key_is_a_clear_error_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APEX_API_KEY", raising=False)
    monkeypatch.delenv("MACROCOSMOS_API_KEY", raising=False)
    with pytest.raises(mc.MissingAPIKeyError) as caught:
        mc.ApexClient()
    assert "APEX_API_KEY" in str(caught.value)
    assert "MACROCOSMOS_API_KEY" in str(caught.value)
    assert caught.value.argument == "api_key"
    with pytest.raises(mc.MissingAPIKeyError):
        mc.AsyncApexClient(api_key="   ")


def test_endpoint_defaults_to_the_public_apex_over_tls() -> None:
    config = resolve(api_key="k")
    assert config.target == "constellation.api.cloud.macrocosmos.ai:443"
    assert config.secure is True


@pytest.mark.parametrize(
    ("flag", "secure"),
    [
        ("", True),
        ("true", True),
        ("1", True),
        ("YES", True),
        ("on", True),
        ("y", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("anything", False),
    ],
)
def test_use_https_env_follows_the_official_words(flag: str, secure: bool) -> None:
    env = {"MACROCOSMOS_BASE_URL": "127.0.0.1:5000", "MACROCOSMOS_USE_HTTPS": flag}
    assert resolve(env, api_key="k").secure is secure


def test_argument_secure_overrides_env() -> None:
    env = {"MACROCOSMOS_USE_HTTPS": "false"}
    assert resolve(env, api_key="k", base_url="localhost:1", secure=True).secure is True


@pytest.mark.parametrize(
    ("base_url", "secure", "target"),
    [
        ("example.com", True, "example.com:443"),
        ("example.com:8443", True, "example.com:8443"),
        ("https://example.com/", True, "example.com:443"),
        ("http://127.0.0.1:50051", False, "127.0.0.1:50051"),
        ("[::1]:50051", False, "[::1]:50051"),
        ("::1", False, "[::1]:443"),
        ("dns:///example.com:443", True, "dns:///example.com:443"),
        ("ipv4:127.0.0.1:1,127.0.0.1:2", False, "ipv4:127.0.0.1:1,127.0.0.1:2"),
        ("unix:/tmp/apex.sock", False, "unix:/tmp/apex.sock"),
    ],
)
def test_targets(base_url: str, secure: bool, target: str) -> None:
    assert normalize_target(base_url, secure=secure) == target


@pytest.mark.parametrize("bad", ["host:port", "host:99999", "example.com/path", "[::1]x", ""])
def test_bad_base_url_names_the_argument(bad: str) -> None:
    with pytest.raises(mc.ValidationError) as caught:
        normalize_target(bad, secure=True) if bad else resolve(api_key="k", base_url="   /")
    assert caught.value.argument == "base_url"


@pytest.mark.parametrize(
    ("target", "loopback"),
    [
        ("127.0.0.1:1", True),
        ("127.3.4.5:1", True),
        ("localhost:1", True),
        ("[::1]:1", True),
        ("unix:/tmp/x", True),
        ("ipv4:127.0.0.1:1,127.0.0.2:2", True),
        ("ipv4:127.0.0.1:1,10.0.0.1:2", False),
        ("dns:///localhost:50051", True),
        ("dns://8.8.8.8/localhost:50051", True),
        ("dns:///example.com:50051", False),
        ("10.1.2.3:50051", False),
        ("example.com:443", False),
        ("xds:///svc", False),
    ],
)
def test_loopback_detection(target: str, loopback: bool) -> None:
    assert is_loopback_target(target) is loopback


def test_plaintext_key_to_remote_host_is_refused_with_the_way_out() -> None:
    with pytest.raises(mc.InsecureTransportError) as caught:
        mc.ApexClient(api_key="sekrit", base_url="10.0.0.7:50051", secure=False)
    message = str(caught.value)
    assert "allow_insecure_key=True" in message
    assert "APEX_GRPC_ALLOW_INSECURE_KEY" in message
    assert "sekrit" not in message


def test_plaintext_opt_in_and_loopback_are_allowed() -> None:
    mc.ApexClient(api_key="k", base_url="10.0.0.7:50051", secure=False, allow_insecure_key=True)
    env = {"APEX_GRPC_ALLOW_INSECURE_KEY": "1"}
    assert resolve(env, api_key="k", base_url="10.0.0.7:1", secure=False).secure is False
    mc.ApexClient(api_key="k", base_url="127.0.0.1:1", secure=False).close()


def test_secret_never_shows_itself() -> None:
    secret = Secret("sk-live-123")
    for rendered in (repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret}"):
        assert "sk-live-123" not in rendered
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_client_repr_hides_the_key() -> None:
    with mc.ApexClient(api_key="sk-live-123", base_url="127.0.0.1:1", secure=False) as client:
        assert "sk-live-123" not in repr(client)
        assert "sk-live-123" not in str(vars(client))


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "10", True])
def test_bad_timeouts_are_validation_errors(timeout: object) -> None:
    with pytest.raises(mc.ValidationError) as caught:
        mc.ApexClient(api_key="k", base_url="127.0.0.1:1", secure=False, timeout=timeout)  # type: ignore[arg-type]
    assert caught.value.argument == "timeout"


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"metadata": {"Upper": "x"}}, "metadata['Upper']"),
        ({"metadata": {"authorization": "Bearer x"}}, "metadata['authorization']"),
        ({"metadata": {"x-bin": "text"}}, "metadata['x-bin']"),
        ({"load_balancing": "random"}, "load_balancing"),
        ({"max_message_bytes": -5}, "max_message_bytes"),
        ({"app_name": ""}, "app_name"),
        ({"secure": "yes"}, "secure"),
    ],
)
def test_bad_constructor_arguments_name_themselves(
    kwargs: dict[str, object], argument: str
) -> None:
    arguments = {"api_key": "k", "base_url": "127.0.0.1:1", "secure": False, **kwargs}
    with pytest.raises(mc.ValidationError) as caught:
        mc.ApexClient(**arguments)  # type: ignore[arg-type]
    assert caught.value.argument == argument


def test_tls_settings_with_plaintext_are_contradictory() -> None:
    with pytest.raises(mc.ConfigurationError):
        mc.ApexClient(api_key="k", base_url="127.0.0.1:1", secure=False, tls=mc.TLSConfig())


def test_aio_interceptors_are_refused_by_the_sync_client() -> None:
    import grpc.aio

    class Nop(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
        async def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
            return await continuation(details, request)

    with pytest.raises(mc.ValidationError):
        mc.ApexClient(api_key="k", base_url="127.0.0.1:1", secure=False, interceptors=[Nop()])


# The deadline of one call: call > client (chosen) > the method's default > 600 s.
N = mc.NOT_GIVEN


@pytest.mark.parametrize(
    ("call", "client", "method_default", "deadline"),
    [
        (N, N, None, DEFAULT_TIMEOUT),  # nobody chose: ten minutes
        (N, N, 40.0, 40.0),  # web search: max_response_time + 10
        (N, 5.0, 40.0, 5.0),  # a limit set on the client wins over a method's default
        (N, None, 40.0, None),  # ... also "no deadline"
        (3.0, 5.0, 40.0, 3.0),  # the call's own wins over everything
        (None, 5.0, None, None),  # the call asks for no deadline
        (3.0, N, None, 3.0),
        (N, 7.0, None, 7.0),
    ],
)
def test_deadline_precedence(
    call: float | None, client: float | None, method_default: float | None, deadline: float | None
) -> None:
    assert choose_timeout(call, client, method_default) == deadline
    settings = resolve(api_key="k", timeout=client)
    options = {} if call is N else {"timeout": call}
    assert settings.for_call(options, method_default).timeout == deadline


def test_a_calls_metadata_tuple_is_resolved_once_and_kept_apart_from_others() -> None:
    settings = resolve(api_key="k", timeout=9.0, metadata={"x-client": "c"})
    first = (("x-trace", "t1"),)
    again = settings.for_call({"metadata": first})
    assert settings.for_call({"metadata": (("x-trace", "t1"),)}) is again  # an equal tuple
    other = settings.for_call({"metadata": (("x-trace", "t2"),)})
    assert ("x-trace", "t1") in again.metadata and ("x-trace", "t2") not in again.metadata
    assert ("x-trace", "t2") in other.metadata and ("x-client", "c") in other.metadata
    assert again.timeout == other.timeout == 9.0
    # Only metadata alone is remembered; with another option the call resolves as given.
    timed = settings.for_call({"metadata": first, "timeout": 2.0})
    assert timed.timeout == 2.0 and ("x-trace", "t1") in timed.metadata
    assert settings.for_call({"metadata": first}).timeout == 9.0
    for _ in range(2):  # a bad tuple is refused every time, never remembered
        with pytest.raises(mc.ValidationError, match="reserved"):
            settings.for_call({"metadata": (("authorization", "x"),)})


def test_constructor_and_with_options_spell_each_option_as_the_settings_declare_it() -> None:
    import inspect

    constructor = set(inspect.signature(mc.ApexClient).parameters)
    assert constructor == OPTION_NAMES
    assert set(mc.ClientOptions.__annotations__) == OPTION_NAMES - CONNECTION_OPTIONS
    assert set(inspect.signature(mc.AsyncApexClient).parameters) == OPTION_NAMES
    for name in OPTION_NAMES:  # each option is documented where it is declared
        assert f"{name}: " in (mc.ApexClient.__init__.__doc__ or "")


@pytest.mark.parametrize("client_class", [mc.ApexClient, mc.AsyncApexClient])
def test_the_constructors_defaults_are_the_declared_ones(client_class: type) -> None:
    import dataclasses
    import inspect

    declared = {f.name: f.default for f in dataclasses.fields(mc.ClientSettings) if f.init}
    for name, parameter in inspect.signature(client_class).parameters.items():
        # None (and NOT_GIVEN) say "take the declared default" (or the environment's).
        if parameter.default is not None and parameter.default is not mc.NOT_GIVEN:
            assert parameter.default == declared[name], name
        elif declared[name] is not dataclasses.MISSING:
            assert parameter.default is declared[name] or parameter.default is None, name


def test_with_options_checks_as_the_constructor_does_and_keeps_the_rest() -> None:
    with mc.ApexClient(api_key="k", base_url="127.0.0.1:1", secure=False, timeout=9) as client:
        derived = client.with_options(max_retries=5, metadata={"x-a": "1"})
        assert derived.settings.timeout == 9 and derived.max_retries == 5
        assert derived.with_options(metadata={"x-b": "2"}).settings.metadata == (
            ("x-a", "1"),
            ("x-b", "2"),
        )
        for bad, argument in (
            ({"timeout": -1}, "timeout"),
            ({"max_retries": "3"}, "max_retries"),
            ({"metadata": {"Bad": "x"}}, "metadata['Bad']"),
            ({"api_key": " "}, "api_key"),
            ({"compression": 1}, "compression"),
            ({"nonsense": 1}, "nonsense"),
        ):
            with pytest.raises(mc.ValidationError) as caught:
                client.with_options(**bad)  # type: ignore[arg-type]
            assert caught.value.argument == argument
        with pytest.raises(mc.ValidationError, match="create a new client"):
            client.with_options(base_url="10.0.0.1:1")  # type: ignore[call-arg]
        assert client.settings.timeout == 9  # unchanged


def test_settings_are_frozen_and_hide_the_key() -> None:
    import dataclasses

    settings = resolve(api_key="sk-live-9", base_url="127.0.0.1:1", secure=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.timeout = 1  # type: ignore[misc]
    assert "sk-live-9" not in repr(settings)


def test_sync_interceptors_are_refused_by_the_async_client() -> None:
    import grpc

    class Nop(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
        def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
            return continuation(details, request)

    with pytest.raises(mc.ValidationError, match=r"takes grpc\.aio client interceptors"):
        mc.AsyncApexClient(api_key="k", base_url="127.0.0.1:1", secure=False, interceptors=[Nop()])


def test_tls_config_from_files_reads_str_and_path_paths(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(b"-----CA-----\n")
    (tmp_path / "chain.pem").write_bytes(b"-----CHAIN-----\n")
    tls = mc.TLSConfig.from_files(
        str(tmp_path / "ca.pem"),
        certificate_chain=tmp_path / "chain.pem",
        server_hostname="apex.internal",
    )
    assert tls.root_certificates == b"-----CA-----\n"
    assert tls.certificate_chain == b"-----CHAIN-----\n"
    assert tls.private_key is None
    assert tls.server_hostname == "apex.internal"


def test_tls_config_from_files_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.pem"):
        mc.TLSConfig.from_files(tmp_path / "missing.pem")
