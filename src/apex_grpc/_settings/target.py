"""Where a client connects: base URLs and gRPC targets, and whether they stay on this machine."""

from __future__ import annotations

from apex_grpc._errors import ValidationError

DEFAULT_PORT = 443

# Targets in gRPC's own URI syntax pass through untouched.
URI_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:", "xds:")


def normalize_target(base_url: str, *, secure: bool) -> str:
    """Turn `host`, `host:port`, `http(s)://host[:port]` or a gRPC URI into a target.

    A bare host gets port 443. gRPC URIs (``dns:///``, ``ipv4:``, ``unix:``,
    ...) pass through unchanged.
    """
    url = base_url.strip()
    lowered = url.lower()
    if lowered.startswith(URI_SCHEMES):
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
    if lowered.startswith(URI_SCHEMES):
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
