"""Client configuration: frozen dataclasses and their resolution from arguments and env.

Everything here is pure: no channel is opened and nothing is read but the
environment mapping passed in. `resolve_client_config` turns the
constructor's arguments into one immutable `ClientConfig` that both
transports use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from apex_grpc._errors import (
    ConfigurationError,
    InsecureTransportError,
    MissingAPIKeyError,
    ValidationError,
)
from apex_grpc._retry import RetryPolicy
from apex_grpc._version import __version__

DEFAULT_BASE_URL = "constellation.api.cloud.macrocosmos.ai"
DEFAULT_PORT = 443
DEFAULT_TIMEOUT = 600.0
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DEFAULT_APP_NAME = "apex-grpc"
CLIENT_ID = "apex-grpc"

API_KEY_ENV_VARS = ("APEX_API_KEY", "MACROCOSMOS_API_KEY")
BASE_URL_ENV_VAR = "MACROCOSMOS_BASE_URL"
USE_HTTPS_ENV_VAR = "MACROCOSMOS_USE_HTTPS"
ALLOW_INSECURE_ENV_VAR = "APEX_GRPC_ALLOW_INSECURE_KEY"
_TRUE_WORDS = frozenset({"true", "1", "yes", "y", "on"})

# Targets in gRPC's own URI syntax pass through untouched.
_URI_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:", "xds:")

LoadBalancing = Literal["pick_first", "round_robin"]
MetadataValue = str | bytes


class Secret:
    """A string that never shows itself in repr, str or format()."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself; only for building the authorization header."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Secret values cannot be pickled")


class RedactedMetadata(tuple[tuple[str, "MetadataValue"], ...]):
    """Request metadata whose repr hides the authorization value (grpc sends it as is)."""

    __slots__ = ()

    def __repr__(self) -> str:
        shown = [(k, "***" if k == "authorization" else v) for k, v in self]
        return f"RedactedMetadata({shown!r})"

    __str__ = __repr__

    def __add__(self, other: tuple[tuple[str, MetadataValue], ...]) -> RedactedMetadata:  # type: ignore[override]
        return RedactedMetadata(tuple.__add__(self, other))


@dataclass(frozen=True)
class KeepAliveConfig:
    """HTTP/2 keepalive pings; the defaults detect a dead connection within ~40 s."""

    interval: float = 30.0
    """Seconds between pings while calls are in flight."""
    timeout: float = 10.0
    """Seconds to wait for a ping's answer before the connection is closed."""
    permit_without_calls: bool = False
    """Also ping when no call is in flight (the server must allow it)."""


@dataclass(frozen=True)
class TLSConfig:
    """TLS settings; with no fields set the system's root certificates are used."""

    root_certificates: bytes | None = None
    """PEM bundle of trusted CAs (None: the system's)."""
    private_key: bytes | None = None
    """PEM private key, for client-certificate (mutual) TLS."""
    certificate_chain: bytes | None = None
    """PEM certificate chain matching `private_key`."""
    server_hostname: str | None = None
    """Name to verify the server certificate against, if not the target's host."""

    @classmethod
    def from_files(
        cls,
        root_certificates: str | Path | None = None,
        private_key: str | Path | None = None,
        certificate_chain: str | Path | None = None,
        server_hostname: str | None = None,
    ) -> TLSConfig:
        """Build a TLSConfig by reading PEM files."""

        def read(path: str | Path | None) -> bytes | None:
            return Path(path).read_bytes() if path is not None else None

        return cls(
            read(root_certificates), read(private_key), read(certificate_chain), server_hostname
        )

    def __repr__(self) -> str:
        return (
            f"TLSConfig(root_certificates={'<pem>' if self.root_certificates else None}, "
            f"private_key={'<redacted>' if self.private_key else None}, "
            f"certificate_chain={'<pem>' if self.certificate_chain else None}, "
            f"server_hostname={self.server_hostname!r})"
        )


DEFAULT_RETRY = RetryPolicy()
DEFAULT_TLS = TLSConfig()
DEFAULT_KEEPALIVE = KeepAliveConfig()


class CallDefaults(NamedTuple):
    """Per-call settings a client applies unless a call overrides them.

    `client.with_options(...)` returns a client sharing the channel with a
    changed copy of these.
    """

    timeout: float | None = DEFAULT_TIMEOUT
    """Overall deadline of a call in seconds, across all attempts (None: none)."""
    timeout_is_default: bool = True
    """True when `timeout` was not chosen by the user (web search then derives its own)."""
    retry: RetryPolicy = DEFAULT_RETRY
    metadata: tuple[tuple[str, MetadataValue], ...] = ()
    """Extra request metadata sent on every call."""
    compression: bool = False
    """Gzip-compress requests."""
    wait_for_ready: bool = False
    """Queue calls while the channel connects instead of failing fast."""
    stream_first_chunk_timeout: float | None = None
    """Seconds a stream may take to produce its first chunk (None: no limit)."""
    stream_idle_timeout: float | None = None
    """Seconds a stream may stay silent between chunks (None: no limit)."""


class ClientConfig(NamedTuple):
    """Everything a client needs, resolved once at construction."""

    api_key: Secret
    target: str
    """The gRPC target the channel dials (e.g. ``host:443``, ``unix:/path``)."""
    base_url: str
    """What the user asked for, before normalisation."""
    secure: bool
    app_name: str
    defaults: CallDefaults
    tls: TLSConfig = DEFAULT_TLS
    keepalive: KeepAliveConfig = DEFAULT_KEEPALIVE
    max_send_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_receive_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    load_balancing: LoadBalancing | None = None
    channel_options: tuple[tuple[str, str | int], ...] = ()
    single_threaded_streams: bool = True

    def identity_metadata(self) -> RedactedMetadata:
        """Auth and client identification, sent on every call (as the official SDK does)."""
        return RedactedMetadata(
            (
                ("authorization", f"Bearer {self.api_key.reveal()}"),
                ("x-source", self.app_name),
                ("x-client-id", CLIENT_ID),
                ("x-client-version", __version__),
            )
        )

    def grpc_options(self) -> list[tuple[str, str | int]]:
        """Channel arguments for grpc (shared by the sync and aio channels)."""
        options: list[tuple[str, str | int]] = [
            ("grpc.max_send_message_length", self.max_send_message_bytes),
            ("grpc.max_receive_message_length", self.max_receive_message_bytes),
            ("grpc.keepalive_time_ms", int(self.keepalive.interval * 1000)),
            ("grpc.keepalive_timeout_ms", int(self.keepalive.timeout * 1000)),
            ("grpc.keepalive_permit_without_calls", int(self.keepalive.permit_without_calls)),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.primary_user_agent", f"{CLIENT_ID}/{__version__}"),
        ]
        if self.load_balancing is not None:
            options.append(("grpc.lb_policy_name", self.load_balancing))
        if self.tls.server_hostname:
            options.append(("grpc.ssl_target_name_override", self.tls.server_hostname))
        options.extend(self.channel_options)
        return options


def resolve_client_config(
    *,
    api_key: str | None,
    base_url: str | None,
    secure: bool | None,
    timeout: float | None,
    timeout_given: bool,
    max_retries: int | None,
    compress: bool,
    app_name: str | None,
    retry: RetryPolicy | None,
    metadata: MetadataArg,
    tls: TLSConfig | None,
    keepalive: KeepAliveConfig | None,
    max_message_bytes: int | None,
    load_balancing: LoadBalancing | None,
    channel_options: Sequence[tuple[str, str | int]] | None,
    allow_insecure_key: bool | None,
    wait_for_ready: bool,
    stream_first_chunk_timeout: float | None,
    stream_idle_timeout: float | None,
    single_threaded_streams: bool,
    environ: Mapping[str, str] = os.environ,
) -> ClientConfig:
    """Validate the constructor's arguments and fill the rest from the environment."""
    _check_types(
        base_url=(base_url, str | None),
        compress=(compress, bool),
        retry=(retry, RetryPolicy | None),
        tls=(tls, TLSConfig | None),
        keepalive=(keepalive, KeepAliveConfig | None),
        max_message_bytes=(max_message_bytes, int | None),
        wait_for_ready=(wait_for_ready, bool),
        single_threaded_streams=(single_threaded_streams, bool),
        allow_insecure_key=(allow_insecure_key, bool | None),
        channel_options=(channel_options, list | tuple | None),
    )
    for index, option in enumerate(channel_options or ()):
        if not (isinstance(option, tuple) and len(option) == 2 and isinstance(option[0], str)):
            raise ValidationError(f"channel_options[{index}]", "must be a (name, value) pair")
    key = _resolve_api_key(api_key, environ)
    requested = (base_url or environ.get(BASE_URL_ENV_VAR, "") or "").strip() or DEFAULT_BASE_URL
    use_tls = _resolve_secure(secure, requested, environ)
    target = normalize_target(requested, secure=use_tls)
    if not use_tls:
        opted_in = (
            allow_insecure_key
            if allow_insecure_key is not None
            else environ.get(ALLOW_INSECURE_ENV_VAR, "").strip().lower() in _TRUE_WORDS
        )
        if not opted_in and not is_loopback_target(target):
            raise InsecureTransportError(
                "base_url",
                f"refusing to send the API key in plaintext to {target!r}, which is not "
                "a loopback address. Use TLS (secure=True, the default), or opt in with "
                f"allow_insecure_key=True or {ALLOW_INSECURE_ENV_VAR}=1 if the network "
                "path is trusted",
            )
    if tls is not None and not use_tls:
        raise ConfigurationError("tls", "TLS settings were given but secure=False")
    policy = retry if retry is not None else RetryPolicy()
    if max_retries is not None:
        policy = policy.with_max_retries(check_max_retries(max_retries, "max_retries"))
    message_bytes = max_message_bytes or DEFAULT_MAX_MESSAGE_BYTES
    if message_bytes <= 0:
        raise ValidationError("max_message_bytes", f"must be > 0, got {message_bytes}")
    if load_balancing not in (None, "pick_first", "round_robin"):
        raise ValidationError(
            "load_balancing", f"must be 'pick_first' or 'round_robin', got {load_balancing!r}"
        )
    defaults = CallDefaults(
        timeout=check_timeout(timeout, "timeout") if timeout_given else DEFAULT_TIMEOUT,
        timeout_is_default=not timeout_given,
        retry=policy,
        metadata=normalize_metadata(metadata, "metadata"),
        compression=bool(compress),
        wait_for_ready=bool(wait_for_ready),
        stream_first_chunk_timeout=check_timeout(
            stream_first_chunk_timeout, "stream_first_chunk_timeout"
        ),
        stream_idle_timeout=check_timeout(stream_idle_timeout, "stream_idle_timeout"),
    )
    name = DEFAULT_APP_NAME if app_name is None else app_name
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("app_name", "must be a non-empty string")
    return ClientConfig(
        api_key=key,
        target=target,
        base_url=requested,
        secure=use_tls,
        app_name=name,
        defaults=defaults,
        tls=tls or DEFAULT_TLS,
        keepalive=keepalive or DEFAULT_KEEPALIVE,
        max_send_message_bytes=message_bytes,
        max_receive_message_bytes=message_bytes,
        load_balancing=load_balancing,
        channel_options=tuple(channel_options or ()),
        single_threaded_streams=single_threaded_streams,
    )


def _check_types(**arguments: tuple[object, object]) -> None:
    for name, (value, expected) in arguments.items():
        if isinstance(value, bool) and expected in (int | None,):
            raise ValidationError(name, f"must be an integer, got {value!r}")
        if not isinstance(value, expected):  # type: ignore[arg-type]
            raise ValidationError(name, f"has the wrong type: {type(value).__name__}")


def _resolve_api_key(api_key: str | None, environ: Mapping[str, str]) -> Secret:
    if api_key is not None and not isinstance(api_key, str):
        raise ValidationError("api_key", f"must be a string, got {type(api_key).__name__}")
    value = (api_key or "").strip()
    for name in API_KEY_ENV_VARS:
        if value:
            break
        value = environ.get(name, "").strip()
    if not value:
        raise MissingAPIKeyError(
            "api_key",
            "no API key: pass api_key=... or set "
            + " or ".join(API_KEY_ENV_VARS)
            + " in the environment",
        )
    if any(ch in value for ch in "\r\n\0"):
        raise ValidationError("api_key", "contains a line break or NUL character")
    return Secret(value)


def _resolve_secure(secure: bool | None, base_url: str, environ: Mapping[str, str]) -> bool:
    if isinstance(secure, bool):
        return secure
    if secure is not None:
        raise ValidationError("secure", f"must be True, False or None, got {secure!r}")
    lowered = base_url.lower()
    if lowered.startswith("https://"):
        return True
    if lowered.startswith("http://"):
        return False
    flag = environ.get(USE_HTTPS_ENV_VAR, "").strip().lower()
    return True if flag == "" else flag in _TRUE_WORDS


def normalize_target(base_url: str, *, secure: bool) -> str:
    """Turn `host`, `host:port`, `http(s)://host[:port]` or a gRPC URI into a target.

    A bare host gets port 443. gRPC URIs (``dns:///``, ``ipv4:``, ``unix:``,
    ...) pass through unchanged.
    """
    url = base_url.strip()
    lowered = url.lower()
    if lowered.startswith(_URI_SCHEMES):
        return url
    for scheme in ("https://", "http://", "grpc://", "grpcs://"):
        if lowered.startswith(scheme):
            url = url[len(scheme) :]
            break
    url = url.rstrip("/")
    if "/" in url:
        raise ValidationError("base_url", f"must be host[:port] or a gRPC target, got {base_url!r}")
    if not url:
        raise ValidationError("base_url", "must not be empty")
    host, port = split_host_port(url)
    if port is None:
        port = DEFAULT_PORT
    if not 0 < port < 65536:
        raise ValidationError("base_url", f"port must be in 1-65535, got {port}")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_host_port(hostport: str) -> tuple[str, int | None]:
    """Split ``host:port`` / ``[v6]:port`` / ``host`` (port None when absent)."""
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValidationError("base_url", f"malformed address {hostport!r}")
        return host, _port(rest[1:], hostport) if rest else None
    if hostport.count(":") == 1:
        host, _, port_text = hostport.partition(":")
        return host, _port(port_text, hostport)
    return hostport, None  # a bare host, or a bare IPv6 literal


def _port(text: str, whole: str) -> int:
    if not text.isdigit():
        raise ValidationError("base_url", f"malformed port in {whole!r}")
    return int(text)


def is_loopback_target(target: str) -> bool:
    """True when every address the target names is on this machine."""
    lowered = target.lower()
    if lowered.startswith(("unix:", "unix-abstract:")):
        return True
    if lowered.startswith(("ipv4:", "ipv6:")):
        addresses = target.split(":", 1)[1].split(",")
        return all(_is_loopback_host(split_host_port(a.lstrip("/"))[0]) for a in addresses)
    if lowered.startswith("dns:"):
        rest = target[4:].lstrip("/")
        # dns://authority/host:port: the name to resolve is after the last slash.
        name = rest.rsplit("/", 1)[-1]
        return _is_loopback_host(split_host_port(name)[0])
    if lowered.startswith(_URI_SCHEMES):
        return False
    return _is_loopback_host(split_host_port(target)[0])


def _is_loopback_host(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    import ipaddress  # only clients with plaintext targets need it

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_timeout(value: float | None, argument: str) -> float | None:
    """A timeout must be None or a positive number of seconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(argument, f"must be a number of seconds, got {type(value).__name__}")
    if not value > 0 or value != value or value == float("inf"):
        raise ValidationError(argument, f"must be > 0 seconds, got {value!r}")
    return float(value)


def check_max_retries(value: int, argument: str) -> int:
    """Retries must be a non-negative whole number."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(argument, f"must be an integer >= 0, got {value!r}")
    return value


MetadataArg = Mapping[str, MetadataValue] | Sequence[tuple[str, MetadataValue]] | None


def normalize_metadata(
    metadata: MetadataArg, argument: str
) -> tuple[tuple[str, MetadataValue], ...]:
    """Validate user metadata: lowercase ASCII keys, no reserved or auth headers."""
    if metadata is None:
        return ()
    if isinstance(metadata, Mapping):
        items = list(metadata.items())
    elif isinstance(metadata, list | tuple):
        items = list(metadata)
    else:
        raise ValidationError(
            argument,
            f"must be a dict or a list of (key, value) pairs, got {type(metadata).__name__}",
        )
    result: list[tuple[str, MetadataValue]] = []
    for index, item in enumerate(items):
        if not (isinstance(item, tuple) and len(item) == 2):
            raise ValidationError(f"{argument}[{index}]", "must be a (key, value) pair")
        key, value = item
        where = f"{argument}[{key!r}]"
        if not isinstance(key, str) or not key or key != key.lower() or not key.isascii():
            raise ValidationError(where, "keys must be non-empty lowercase ASCII strings")
        if key.startswith("grpc-") or key in ("authorization", "te", "content-type"):
            raise ValidationError(where, "is reserved; set the API key with api_key=")
        if key.endswith("-bin"):
            if not isinstance(value, bytes):
                raise ValidationError(where, "values of -bin keys must be bytes")
        elif not isinstance(value, str) or not value.isascii() or "\n" in value or "\r" in value:
            raise ValidationError(where, "values must be printable ASCII strings")
        result.append((key, value))
    return tuple(result)
