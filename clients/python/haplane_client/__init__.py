"""haplane-client: an asyncio client of a haplane plane.

It follows the master over ``WatchMaster`` (pushed, never polled) by the rules of
docs/client-rules.md, sends each call to the master, and rides out failovers within the
failover timeout; entity writes carry one idempotency key across their retries, so a write
retried across a failover is applied once.

    async with Client.connect(["http://127.0.0.1:8081", "http://127.0.0.1:8082"]) as client:
        view = await client.wait_for_master(10)
        entity = await client.put_entity("apps/web", {"replicas": 3})
"""

from . import pb
from .client import Client, Retry, new_idempotency_key
from .errors import (
    AlreadyExists,
    Cancelled,
    ClientClosed,
    Compacted,
    Conflict,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    FailoverTimeout,
    HaplaneError,
    Internal,
    InvalidArgument,
    InvalidEndpoint,
    NoEndpoint,
    NoMaster,
    NotFound,
    NotMaster,
    OutcomeUnknown,
    PermissionDenied,
    ProtocolError,
    Reason,
    ResourceExhausted,
    StateNotLoaded,
    Unauthenticated,
    Unavailable,
    VersionMismatch,
    from_rpc_error,
)
from .follow import Follow, ProbeAnswer
from .models import (
    ClaimInfo,
    Entity,
    HaMode,
    MasterRef,
    MasterView,
    Member,
    NodeInfo,
    NodeState,
    PlaneStates,
    StateInfo,
    Stats,
)
from .options import ConnectOptions, Credentials
from .view_filter import ViewFilter, same_uri

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "Cancelled",
    "ClaimInfo",
    "Client",
    "ClientClosed",
    "Compacted",
    "Conflict",
    "ConnectOptions",
    "Credentials",
    "DataLoss",
    "DeadlineExceeded",
    "Entity",
    "FailedPrecondition",
    "FailoverTimeout",
    "Follow",
    "HaMode",
    "HaplaneError",
    "Internal",
    "InvalidArgument",
    "InvalidEndpoint",
    "MasterRef",
    "MasterView",
    "Member",
    "NoEndpoint",
    "NoMaster",
    "NodeInfo",
    "NodeState",
    "NotFound",
    "NotMaster",
    "OutcomeUnknown",
    "PermissionDenied",
    "PlaneStates",
    "ProbeAnswer",
    "ProtocolError",
    "Reason",
    "ResourceExhausted",
    "Retry",
    "StateInfo",
    "StateNotLoaded",
    "Stats",
    "Unauthenticated",
    "Unavailable",
    "VersionMismatch",
    "ViewFilter",
    "from_rpc_error",
    "new_idempotency_key",
    "pb",
    "same_uri",
]
