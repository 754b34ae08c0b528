"""ClientSettings: everything a client is configured with, declared, checked and documented once.

Each option is one field below: its type, its default, the check that
validates it and the sentence that documents it (the client constructor's
docstring is made from these sentences). `ClientSettings.create` fills what
the caller left out from the environment; `with_options` is
`dataclasses.replace`, which runs the same checks again.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import grpc

from apex_grpc._errors import (
    ConfigurationError,
    InsecureTransportError,
    MissingAPIKeyError,
    ValidationError,
)
from apex_grpc._retry import RetryPolicy
from apex_grpc._settings import checks, fields
from apex_grpc._settings.call import CallSettings, RedactedMetadata, choose_timeout, resolve
from apex_grpc._settings.checks import NOT_GIVEN, Metadata, NotGiven
from apex_grpc._settings.configs import KeepAliveConfig, Secret, TLSConfig
from apex_grpc._settings.fields import (
    DEFAULT_APP_NAME,
    DEFAULT_CONNECTION_IDLE_S,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_STREAMS,
    LoadBalancing,
    option,
    required,
    unset,
)
from apex_grpc._settings.target import is_loopback_target, normalize_target
from apex_grpc._version import __version__

DEFAULT_BASE_URL = "constellation.api.cloud.macrocosmos.ai"
CLIENT_ID = "apex-grpc"

API_KEY_ENV_VARS = ("APEX_API_KEY", "MACROCOSMOS_API_KEY")
BASE_URL_ENV_VAR = "MACROCOSMOS_BASE_URL"
USE_HTTPS_ENV_VAR = "MACROCOSMOS_USE_HTTPS"
ALLOW_INSECURE_ENV_VAR = "APEX_GRPC_ALLOW_INSECURE_KEY"
TRUE_WORDS = frozenset({"true", "1", "yes", "y", "on"})

HEALTH_SERVICE_NAME = ""
"""The health-check service name: the server's overall health (grpc.health.v1), which every
standard health service reports, and which `apex-grpc serve` turns NOT_SERVING as it drains."""
ROUND_ROBIN_SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": HEALTH_SERVICE_NAME},
    },
    separators=(",", ":"),
)
"""round_robin with client-side health checking (gRFC A17): a backend whose health service says
NOT_SERVING gets no new calls; one without a health service counts as healthy."""


METADATA_CALLS_KEPT = 256
"""Settings of calls given only metadata that a client remembers (cleared when full)."""


@dataclass(frozen=True, kw_only=True)
class ClientSettings:
    """Everything an ApexClient or AsyncApexClient is configured with, validated once.

    ``client.settings`` shows them; ``client.with_options(...)`` returns a
    client with some call defaults replaced (the connection options are
    fixed for the client's life).
    """

    api_key: Secret = required(
        "your Apex API key; default: $APEX_API_KEY, then $MACROCOSMOS_API_KEY "
        "(a missing key raises MissingAPIKeyError).",
        fields.check_api_key,
        accepts="str | Secret | None",
    )
    base_url: str = required(
        "``host``, ``host:port``, ``http(s)://host[:port]`` or any gRPC target "
        "(``dns:///host:port``, ``ipv4:a:p,b:p``, ``unix:/path``); default: "
        "$MACROCOSMOS_BASE_URL, then Apex's former endpoint, kept for compatibility: it may "
        "no longer answer apex.v1 since macrocosmos 3.0.0 removed Apex (host the contract "
        "with ``apex-grpc serve``). A bare host gets port 443.",
        checks.instance_of(str, "a string"),
        connection=True,
        accepts="str | None",
    )
    secure: bool = required(
        "TLS or plaintext; default: plaintext for ``http://`` URLs, else "
        "$MACROCOSMOS_USE_HTTPS (unset: TLS).",
        checks.boolean,
        connection=True,
        accepts="bool | None",
    )
    allow_insecure_key: bool = required(
        "allow sending the key in plaintext to a host that is not loopback; "
        "default: $APEX_GRPC_ALLOW_INSECURE_KEY=1, else refused.",
        checks.boolean,
        connection=True,
        accepts="bool | None",
    )
    tls: TLSConfig | None = option(
        None,
        "root certificates, client certificate, server name override (TLSConfig).",
        checks.instance_of((TLSConfig, type(None)), "a TLSConfig"),
        connection=True,
    )
    keepalive: KeepAliveConfig = option(
        KeepAliveConfig(),
        "HTTP/2 keepalive pings (KeepAliveConfig; default: 30 s).",
        fields.check_keepalive,
        connection=True,
        accepts="KeepAliveConfig | None",
    )
    max_message_bytes: int = option(
        DEFAULT_MAX_MESSAGE_BYTES,
        "largest message sent or received (default 64 MiB).",
        fields.check_max_message_bytes,
        connection=True,
    )
    load_balancing: LoadBalancing | None = option(
        None,
        '"pick_first" (grpc\'s default) or "round_robin" across the resolved addresses, '
        "skipping those whose health service says NOT_SERVING (a draining replica).",
        fields.check_load_balancing,
        connection=True,
    )
    channel_options: tuple[tuple[str, str | int], ...] = option(
        (),
        "raw grpc channel arguments, applied last.",
        fields.check_channel_options,
        connection=True,
        accepts="Sequence[tuple[str, str | int]]",
    )
    interceptors: tuple[Any, ...] = option(
        (),
        "grpc client interceptors (grpc.aio ones for AsyncApexClient).",
        fields.check_sequence,
        connection=True,
        accepts="Sequence[SyncInterceptor | grpc.aio.ClientInterceptor]",
    )
    single_threaded_streams: bool = option(
        True,
        "read sync streams on the caller's thread (grpcio's faster SingleThreadedUnaryStream).",
        checks.boolean,
        connection=True,
    )
    max_connections: int = option(
        DEFAULT_MAX_CONNECTIONS,
        "connections to the target the client may open when calls in flight fill one "
        "(see max_streams_per_connection); extra ones are closed when idle.",
        checks.positive_integer,
        connection=True,
    )
    max_streams_per_connection: int = option(
        DEFAULT_MAX_STREAMS,
        "calls in flight on one connection before the next goes to another; lowered "
        "automatically when the server refuses a stream (default 100, what most front "
        "ends allow).",
        checks.positive_integer,
        connection=True,
    )
    connection_idle_timeout: float = option(
        DEFAULT_CONNECTION_IDLE_S,
        "seconds an extra connection may stay idle before it is closed.",
        fields.check_positive_seconds,
        connection=True,
    )
    app_name: str = option(
        DEFAULT_APP_NAME, "sent as ``x-source`` on every call.", fields.check_app_name
    )
    timeout: float | NotGiven | None = unset(
        "overall deadline of a call in seconds, across its retries (None: no deadline); "
        "default 600, or the method's own (web search: max_response_time + 10).",
        fields.check_optional_timeout,
    )
    retry: RetryPolicy = option(
        RetryPolicy(),
        "when and how failed calls are retried (RetryPolicy; default: 2 retries of "
        "UNAVAILABLE, backoff 0.5 s doubling to 8 s, 25 % jitter).",
        checks.instance_of(RetryPolicy, "a RetryPolicy"),
        accepts="RetryPolicy | None",
    )
    max_retries: int | NotGiven = unset(
        "retry count; when given, it overrides the count in `retry`.",
        fields.check_optional_max_retries,
    )
    metadata: Metadata = option(
        (), "extra request metadata for every call.", checks.metadata, accepts="MetadataArg"
    )
    compression: bool = option(False, "gzip-compress requests.", checks.boolean)
    wait_for_ready: bool = option(
        False, "queue calls while the channel connects instead of failing fast.", checks.boolean
    )
    stream_first_chunk_timeout: float | None = option(
        None,
        "seconds a stream may wait for its first chunk (StreamTimeoutError after; None: no limit).",
        checks.timeout,
    )
    stream_idle_timeout: float | None = option(
        None, "seconds a stream may wait between chunks (None: no limit).", checks.timeout
    )
    stream_resume: bool = option(
        True,
        "continue a stream cut after its first chunk (lost connection, UNAVAILABLE, a "
        "drain) on another replica from the text received (False: StreamInterruptedError).",
        checks.boolean,
    )
    target: str = field(init=False, default="")
    """The gRPC target the channels dial, derived from `base_url`."""

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            check = spec.metadata.get("check")
            if check is not None:
                object.__setattr__(self, spec.name, check(getattr(self, spec.name), spec.name))
        object.__setattr__(self, "target", normalize_target(self.base_url, secure=self.secure))
        if self.tls is not None and not self.secure:
            raise ConfigurationError("tls", "TLS settings were given but secure=False")
        if not self.secure and not self.allow_insecure_key and not is_loopback_target(self.target):
            raise InsecureTransportError(
                "base_url",
                f"refusing to send the API key in plaintext to {self.target!r}, which is not "
                "a loopback address. Use TLS (secure=True, the default), or opt in with "
                f"allow_insecure_key=True or {ALLOW_INSECURE_ENV_VAR}=1 if the network "
                "path is trusted",
            )

    @classmethod
    def create(cls, environ: Mapping[str, str] = os.environ, **options: Any) -> ClientSettings:
        """Settings from the given options, the environment filling what is left out.

        Options passed as NOT_GIVEN, or as None (but for ``timeout=None``: no
        deadline), take their default.
        """
        given = {
            k: v
            for k, v in options.items()
            if v is not NOT_GIVEN and (v is not None or k == "timeout")
        }
        unknown = set(given) - OPTION_NAMES
        if unknown:
            raise ValidationError(sorted(unknown)[0], "unexpected keyword argument")
        given["api_key"] = _key_from(given.get("api_key"), environ)
        base_url = given.get("base_url")
        if base_url is None or (isinstance(base_url, str) and not base_url.strip()):
            base_url = environ.get(BASE_URL_ENV_VAR, "").strip() or DEFAULT_BASE_URL
        given["base_url"] = base_url.strip() if isinstance(base_url, str) else base_url
        if "secure" not in given:
            given["secure"] = _secure_from(given["base_url"], environ)
        if "allow_insecure_key" not in given:
            flag = environ.get(ALLOW_INSECURE_ENV_VAR, "").strip().lower()
            given["allow_insecure_key"] = flag in TRUE_WORDS
        return cls(**given)

    def replace(self, **changes: Any) -> ClientSettings:
        """A copy with some call options changed, checked again (what `with_options` does)."""
        for name in changes:
            if name not in OPTION_NAMES:
                raise ValidationError(name, "unexpected keyword argument")
            if name in CONNECTION_OPTIONS:
                raise ValidationError(
                    name, "shapes the connection and cannot change; create a new client"
                )
        if "metadata" in changes:  # merged over the current metadata, key by key
            extra = dict(self.metadata)
            extra.update(checks.metadata(changes["metadata"], "metadata"))
            changes["metadata"] = tuple(extra.items())
        return dataclasses.replace(self, **changes)

    @property
    def retry_policy(self) -> RetryPolicy:
        """`retry`, with `max_retries` applied when it was given."""
        if isinstance(self.max_retries, NotGiven):
            return self.retry
        return self.retry.with_max_retries(self.max_retries)

    @cached_property
    def call_defaults(self) -> CallSettings:
        """How a call runs when it passes no options of its own."""
        return CallSettings(
            timeout=choose_timeout(client=self.timeout),
            metadata=RedactedMetadata(self.identity_metadata() + self.metadata),
            retry=self.retry_policy,
            compression=grpc.Compression.Gzip if self.compression else None,
            wait_for_ready=self.wait_for_ready or None,
            first_chunk_timeout=self.stream_first_chunk_timeout,
            idle_timeout=self.stream_idle_timeout,
            resume=self.stream_resume,
        )

    @cached_property
    def _metadata_calls(self) -> dict[tuple[Any, ...], CallSettings]:
        """The settings of calls given only ``metadata=`` (a tuple), by that tuple."""
        return {}

    @cached_property
    def _joined_metadata(self) -> dict[Metadata, RedactedMetadata]:
        """Every call's metadata joined to this client's, by the call's (see `for_call`)."""
        return {}

    def for_call(
        self,
        options: Mapping[str, object],
        method_default: float | None = None,
        *,
        stream_options: bool = False,
    ) -> CallSettings:
        """How one call runs: its `options` (CallOptions) over these defaults.

        `method_default`: the method's own deadline (see `choose_timeout`);
        `stream_options`: whether StreamOptions are accepted too.
        """
        if method_default is None:
            if not options:
                return self.call_defaults
            if len(options) == 1 and type(options.get("metadata")) is tuple:
                return self._for_metadata(options["metadata"])  # type: ignore[arg-type]
        return resolve(
            self.call_defaults,
            self.timeout,
            self._joined_metadata,
            options,
            method_default,
            stream_options,
        )

    def _for_metadata(self, extra: tuple[Any, ...]) -> CallSettings:
        """The settings of a call given only ``metadata=extra``, resolved once per tuple.

        A call site usually passes one constant tuple, and a sequential call pays
        for each function it enters before it is sent (see `UnaryAttempts`).
        """
        remembered = self._metadata_calls
        try:
            known = remembered.get(extra)
        except TypeError:  # an unhashable entry: `resolve` names it
            known = None
        if known is None:
            known = resolve(
                self.call_defaults,
                self.timeout,
                self._joined_metadata,
                {"metadata": extra},
                None,
                False,
            )
            if len(remembered) >= METADATA_CALLS_KEPT:
                remembered.clear()
            remembered[extra] = known  # hashable now: `resolve` checked every entry
        return known

    def identity_metadata(self) -> Metadata:
        """Auth and client identification, sent on every call (as the official SDK does)."""
        return (
            ("authorization", f"Bearer {self.api_key.reveal()}"),
            ("x-source", self.app_name),
            ("x-client-id", CLIENT_ID),
            ("x-client-version", __version__),
        )

    def grpc_options(self) -> list[tuple[str, str | int]]:
        """Channel arguments for grpc (shared by the sync and aio channels)."""
        keepalive = self.keepalive
        options: list[tuple[str, str | int]] = [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.keepalive_time_ms", int(keepalive.interval * 1000)),
            ("grpc.keepalive_timeout_ms", int(keepalive.timeout * 1000)),
            ("grpc.keepalive_permit_without_calls", int(keepalive.permit_without_calls)),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.primary_user_agent", f"{CLIENT_ID}/{__version__}"),
        ]
        if self.load_balancing == "round_robin":
            options.append(("grpc.service_config", ROUND_ROBIN_SERVICE_CONFIG))
        elif self.load_balancing is not None:
            options.append(("grpc.lb_policy_name", self.load_balancing))
        if self.tls is not None and self.tls.server_hostname:
            options.append(("grpc.ssl_target_name_override", self.tls.server_hostname))
        options.extend(self.channel_options)
        return options

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{spec.name}={getattr(self, spec.name)!r}"
            for spec in dataclasses.fields(self)
            if spec.name not in ("interceptors", "tls") and spec.repr
        )
        return f"ClientSettings({shown})"


OPTION_NAMES = frozenset(spec.name for spec in dataclasses.fields(ClientSettings) if spec.init)
CONNECTION_OPTIONS = frozenset(
    spec.name for spec in dataclasses.fields(ClientSettings) if spec.metadata.get("connection")
)


def _key_from(value: object, environ: Mapping[str, str]) -> object:
    if value is not None and not isinstance(value, str | Secret):
        return value  # the field's check names the wrong type
    if isinstance(value, Secret) or (isinstance(value, str) and value.strip()):
        return value
    for name in API_KEY_ENV_VARS:
        found = environ.get(name, "").strip()
        if found:
            return found
    names = " or ".join(API_KEY_ENV_VARS)
    raise MissingAPIKeyError(
        "api_key", f"no API key: pass api_key=... or set {names} in the environment"
    )


def _secure_from(base_url: object, environ: Mapping[str, str]) -> bool:
    lowered = base_url.lower() if isinstance(base_url, str) else ""
    if lowered.startswith("https://"):
        return True
    if lowered.startswith("http://"):
        return False
    flag = environ.get(USE_HTTPS_ENV_VAR, "").strip().lower()
    return True if flag == "" else flag in TRUE_WORDS
