"""Channels to nodes: ``http://`` / ``https://`` URIs to grpc.aio channels with the keep-alive,
reconnect and TLS settings of the client's options."""

from __future__ import annotations

from typing import List, Tuple
from urllib.parse import urlsplit

import grpc

from .errors import InvalidEndpoint
from .options import ConnectOptions


def target_of(uri: str) -> Tuple[str, bool]:
    """``(host:port, tls)`` for a node URI; raises :class:`InvalidEndpoint`."""
    try:
        parts = urlsplit(uri.strip())
        port = parts.port
    except ValueError as err:
        raise InvalidEndpoint(f"invalid endpoint {uri!r}: {err}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise InvalidEndpoint(f"invalid endpoint {uri!r}: expected http://HOST:PORT or https://HOST:PORT")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidEndpoint(f"invalid endpoint {uri!r}: a node URI has no path")
    tls = scheme == "https"
    if port is None:
        port = 443 if tls else 80
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}", tls


def channel_options(options: ConnectOptions, own_connection: bool) -> List[Tuple[str, object]]:
    keep_alive_ms = max(1, int(options.keep_alive * 1000))
    connect_ms = max(1, int(options.connect_timeout * 1000))
    opts: List[Tuple[str, object]] = [
        ("grpc.keepalive_time_ms", keep_alive_ms),
        ("grpc.keepalive_timeout_ms", 3 * keep_alive_ms),
        # grpc-core 1.85 closes a connection on an unanswered ping only by this timeout (the
        # keep-alive timeout alone leaves a frozen node's stream open).
        ("grpc.http2.ping_timeout_ms", 3 * keep_alive_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # A node that comes back is reached again quickly (grpc's default backoff grows to 2 min).
        ("grpc.initial_reconnect_backoff_ms", min(connect_ms, 200)),
        ("grpc.min_reconnect_backoff_ms", min(connect_ms, 200)),
        ("grpc.max_reconnect_backoff_ms", max(connect_ms, 1000)),
        ("grpc.enable_retries", 0),
    ]
    if own_connection:
        # A fresh connection, never one shared with (or backing off in) another channel.
        opts.append(("grpc.use_local_subchannel_pool", 1))
    return opts


def open_channel(uri: str, options: ConnectOptions, own_connection: bool = False) -> grpc.aio.Channel:
    """A grpc.aio channel to the node at ``uri`` (connects lazily)."""
    target, tls = target_of(uri)
    opts = channel_options(options, own_connection)
    if tls:
        credentials = grpc.ssl_channel_credentials(root_certificates=options.ca_pem)
        return grpc.aio.secure_channel(target, credentials, options=opts)
    return grpc.aio.insecure_channel(target, options=opts)
