"""What the client answers with: the master view it follows, node states, entities, claims.

Plain frozen dataclasses and enums, independent of the generated protobuf classes.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple


class NodeState(enum.IntEnum):
    """The state a node publishes (haplane.v1.NodeState)."""

    UNSPECIFIED = 0
    INITIALIZING = 1
    STANDBY = 2
    HOT_STANDBY = 3
    HOT_BACKUP = 4
    MASTER = 5
    FAILED = 6
    TERMINATED = 7

    @classmethod
    def from_wire(cls, value: int) -> "NodeState":
        try:
            return cls(value)
        except ValueError:
            return cls.UNSPECIFIED


class HaMode(enum.IntEnum):
    """An HA mode for SetState (haplane.v1.HaMode)."""

    UNSPECIFIED = 0
    DISABLED = 1
    AUTO = 2
    MASTER = 3
    STANDBY = 4
    HOT_STANDBY = 5
    HOT_BACKUP = 6


@dataclass(frozen=True)
class MasterRef:
    """A master: its node id and the URI it advertises."""

    id: str
    uri: str

    @staticmethod
    def from_wire(master_id: str, master_uri: str) -> Optional["MasterRef"]:
        """The master named by the wire's two strings; ``None`` when the id is empty."""
        return MasterRef(master_id, master_uri) if master_id else None


@dataclass(frozen=True)
class Member:
    """One node of the plane as a master view lists it."""

    node_id: str
    node_uri: str
    status: NodeState = NodeState.UNSPECIFIED
    live: bool = False


@dataclass(frozen=True)
class MasterView:
    """One view of the plane's master, as pushed on WatchMaster (or answered by GetState, then
    without members). ``master`` is ``None`` while the view names no master."""

    epoch: int
    master: Optional[MasterRef]
    plane_id: str = ""
    members: Tuple[Member, ...] = ()

    @property
    def master_id(self) -> str:
        return self.master.id if self.master else ""

    @property
    def master_uri(self) -> str:
        return self.master.uri if self.master else ""

    @staticmethod
    def from_event(event: Any) -> "MasterView":
        """From a ``haplane.v1.MasterEvent``."""
        return MasterView(
            epoch=event.epoch,
            master=MasterRef.from_wire(event.master_id, event.master_uri),
            plane_id=event.plane_id,
            members=tuple(
                Member(m.node_id, m.node_uri, NodeState.from_wire(m.status), m.live)
                for m in event.members
            ),
        )


@dataclass(frozen=True)
class StateInfo:
    """One node's own state and its view of the master (GetState)."""

    node_id: str
    state: NodeState
    priority: int
    epoch: int
    master: Optional[MasterRef]
    plane_id: str
    #: Only while that node acts as master: how long its lease lasts, in milliseconds.
    lease_valid_for_ms: Optional[int] = None


@dataclass(frozen=True)
class NodeInfo:
    """One node record, as ListStates answers it."""

    node_id: str
    node_uri: str
    status: NodeState
    priority: int
    live: bool
    last_seen_age_ms: int
    heartbeat: int
    version: str
    epoch_seen: int
    state_seq: int


@dataclass(frozen=True)
class PlaneStates:
    """The plane as one node sees it (ListStates)."""

    plane_id: str
    own_id: str
    master_id: Optional[str]
    epoch: int
    nodes: Tuple[NodeInfo, ...]


@dataclass(frozen=True)
class Entity:
    """A managed-state entity."""

    id: str
    attributes: Dict[str, Any]
    #: 1 on creation, one higher on every change.
    version: int
    #: The epoch of the master that wrote this version.
    updated_epoch: int

    @staticmethod
    def from_wire(entity: Any) -> "Entity":
        return Entity(
            id=entity.id,
            attributes=json.loads(entity.attributes_json) if entity.attributes_json else {},
            version=entity.version,
            updated_epoch=entity.updated_epoch,
        )


@dataclass(frozen=True)
class ClaimInfo:
    """One epoch of the plane's history: who claimed it, when and why."""

    epoch: int
    node_id: str
    node_uri: str
    claimed_at_ms: int
    reason: str


@dataclass
class Stats:
    """What the client has done, for tests and dashboards."""

    #: Attempts of the client's routed calls (each retry counts; follower probes do not).
    unary_calls: int = 0
    #: WatchMaster streams opened by the follower (one per member moved to).
    watch_streams: int = 0
    #: GetState probes the follower sent to other members (rule 2).
    probes: int = 0
