"""How a client connects: credentials, TLS trust, timeouts and the plane's poll period."""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from typing import Any, Optional, Tuple, Union


@dataclass(frozen=True)
class Credentials:
    """A user and password for nodes started with ``--auth-user``: sent as the gRPC metadata
    ``authorization: Basic base64(user:password)`` on every call. ``repr`` hides the password."""

    user: str
    password: str

    def authorization(self) -> str:
        token = base64.b64encode(f"{self.user}:{self.password}".encode("utf-8")).decode("ascii")
        return f"Basic {token}"

    def __repr__(self) -> str:
        return f"Credentials(user={self.user!r}, password='***')"


@dataclass(frozen=True)
class ConnectOptions:
    """How a client connects and how long it rides out a failover (seconds throughout)."""

    #: How long routed calls wait for a new master, and retry, during a failover.
    failover_timeout: float = 30.0
    #: How long opening a connection (and a WatchMaster stream, up to its first view) may take.
    connect_timeout: float = 1.0
    #: HTTP/2 keep-alive ping interval; a frozen node's connection is dropped after three
    #: intervals without an answer.
    keep_alive: float = 1.0
    #: The plane's poll period (the nodes' ``--poll-period``): how long the node streamed from
    #: may show no believed master before the other members are asked (client rule 2).
    poll_period: float = 1.0
    #: For nodes started with ``--auth-user``: a :class:`Credentials` or ``(user, password)``.
    credentials: Optional[Union[Credentials, Tuple[str, str]]] = None
    #: PEM CA certificate(s) trusted for ``https://`` endpoints. When given, they replace the
    #: default roots bundled with grpcio; ``None`` uses those defaults.
    ca_pem: Optional[bytes] = None

    def __post_init__(self) -> None:
        if isinstance(self.credentials, tuple):
            object.__setattr__(self, "credentials", Credentials(*self.credentials))
        if isinstance(self.ca_pem, str):
            object.__setattr__(self, "ca_pem", self.ca_pem.encode("ascii"))
        for name in ("failover_timeout", "connect_timeout", "keep_alive", "poll_period"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ConnectOptions.{name} must be positive")

    def with_(self, **changes: Any) -> "ConnectOptions":
        """A copy with some fields changed."""
        return replace(self, **changes)

    def authorization_metadata(self) -> Tuple[Tuple[str, str], ...]:
        creds = self.credentials
        if creds is None:
            return ()
        assert isinstance(creds, Credentials)
        return (("authorization", creds.authorization()),)
