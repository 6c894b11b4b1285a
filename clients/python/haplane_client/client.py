"""``Client``: follows the master (see ``_follower``), answers typed HA and entity calls on the
master, and during a failover waits for the next pushed master and retries what is safe to retry.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import secrets
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, Iterable, List, Mapping, Optional, Union

import grpc

from ._follower import Follower
from .pb import entity_pb2, entity_pb2_grpc, ha_pb2, ha_pb2_grpc
from ._transport import open_channel, target_of
from .errors import (
    ClientClosed,
    FailoverTimeout,
    HaplaneError,
    NoEndpoint,
    NoMaster,
    NotFound,
    ProtocolError,
    from_rpc_error,
    is_not_master,
    outcome_unknown,
)
from .models import (
    ClaimInfo,
    Entity,
    HaMode,
    MasterRef,
    MasterView,
    NodeInfo,
    NodeState,
    PlaneStates,
    StateInfo,
    Stats,
)
from .options import ConnectOptions

log = logging.getLogger("haplane_client")

#: gRPC request metadata that lets SetState / SetPriority act on a non-master.
ALLOW_NON_MASTER_METADATA = "allow-non-master-access"
#: How long a failed routed call waits for a newer pushed view before it is tried again.
RETRY_PAUSE = 0.2

_RETRY_CODES = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
)


class Retry(enum.Enum):
    #: Reads and writes carrying an idempotency key: retried on any failover symptom.
    SAFE = "safe"
    #: Retried only when the server said it did not apply the call (a non-master's refusal).
    IF_REFUSED = "if_refused"


def new_idempotency_key() -> str:
    """A fresh random idempotency key."""
    return "py-" + secrets.token_hex(16)


class Client:
    """A client of a haplane plane. Create it with :meth:`connect`; close it with
    :meth:`close` (or use it as an async context manager)."""

    def __init__(self, seeds: List[str], options: ConnectOptions) -> None:
        self.options = options
        self.seeds = list(seeds)
        self._stats = Stats()
        self._view: Optional[MasterView] = None
        self._version = 0
        self._changed = asyncio.Event()
        self._refusal: Optional[HaplaneError] = None
        self._closed = False
        self._channels: Dict[str, grpc.aio.Channel] = {}
        self._metadata = options.authorization_metadata()
        self._follower = Follower(seeds, options, self._publish, self._refuse, self._stats)
        self._task: Optional[asyncio.Task] = None

    # --- connecting and closing -------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        seeds: Union[str, Iterable[str]],
        options: Optional[ConnectOptions] = None,
        **overrides: Any,
    ) -> "_Connecting":
        """Connects to a plane through any of ``seeds`` (the other members are learnt from the
        views the nodes push) and waits for the first view, at most the failover timeout.
        ``overrides`` change fields of ``options`` (for example ``failover_timeout=10``).

        Use as ``client = await Client.connect([...])`` or ``async with Client.connect([...]) as
        client:``. Raises :class:`NoEndpoint` when no seed answers, :class:`Unauthenticated` /
        :class:`PermissionDenied` when a node refuses the credentials, :class:`InvalidEndpoint`
        for a URI that is not ``http(s)://host:port``."""
        return _Connecting(cls, seeds, options, overrides)

    @classmethod
    async def _connect(cls, seeds: Union[str, Iterable[str]], options: Optional[ConnectOptions], overrides) -> "Client":
        if isinstance(seeds, str):
            seeds = [seeds]
        seeds = [seed.strip() for seed in seeds]
        if not seeds:
            raise NoEndpoint("no endpoints given")
        for seed in seeds:
            target_of(seed)
        options = options or ConnectOptions()
        if overrides:
            options = options.with_(**overrides)
        client = cls(seeds, options)
        client._task = asyncio.ensure_future(client._follow())
        try:
            found = await client._wait_until(
                lambda view: view is not None or client._refusal is not None, options.failover_timeout
            )
            if client._refusal is not None:
                raise client._refusal
            if found is None and client._view is None:
                raise NoEndpoint(f"no haplane endpoint answered within {options.failover_timeout}s: {', '.join(seeds)}")
        except BaseException:
            await client.close()
            raise
        return client

    async def _follow(self) -> None:
        while True:
            try:
                await self._follower.run()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the follower must outlive a bug in one round
                log.exception("master follower failed; starting again")
                await asyncio.sleep(0.1)

    async def close(self) -> None:
        """Stops the follower and closes every channel; waiting calls raise ClientClosed."""
        if self._closed:
            return
        self._closed = True
        self._wake()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # --- the master -------------------------------------------------------------------------

    def _publish(self, view: MasterView) -> None:
        self._view = view
        self._version += 1
        self._wake()

    def _refuse(self, error: HaplaneError) -> None:
        if self._refusal is None:
            self._refusal = error
        self._wake()

    def _wake(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def _wait_until(
        self, predicate: Callable[[Optional[MasterView]], bool], timeout: Optional[float]
    ) -> Optional[MasterView]:
        """The current view once ``predicate`` holds for it; ``None`` after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self._closed:
                raise ClientClosed("the client is closed")
            if predicate(self._view):
                return self._view
            event = self._changed
            if deadline is None:
                await event.wait()
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def view(self) -> Optional[MasterView]:
        """The latest accepted view (its master may be ``None`` during a failover)."""
        return self._view

    def master(self) -> Optional[MasterView]:
        """The current accepted view if it names a master, else ``None``."""
        view = self._view
        return view if view is not None and view.master is not None else None

    async def watch_master(self) -> AsyncIterator[MasterView]:
        """Every accepted view from now on, starting with the current one (pushed, never polled).
        Views published while the consumer is busy are coalesced: it always gets the latest.
        Ends when the client is closed."""
        seen = -1
        while not self._closed:
            if self._view is not None and self._version != seen:
                seen = self._version
                yield self._view
                continue
            await self._changed.wait()

    async def wait_for_master(self, timeout: Optional[float] = None) -> MasterView:
        """The current master's view, waiting for one at most ``timeout`` seconds (default: the
        failover timeout). Raises :class:`NoMaster`."""
        timeout = self.options.failover_timeout if timeout is None else timeout
        view = await self._wait_until(lambda v: v is not None and v.master is not None, timeout)
        if view is None:
            raise NoMaster(f"no master within {timeout}s")
        return view

    def stats(self) -> Stats:
        """A copy of the client's counters."""
        return Stats(self._stats.unary_calls, self._stats.watch_streams, self._stats.probes)

    def members(self) -> List[str]:
        """Every member URI known to the follower (the seeds plus those the nodes reported)."""
        return sorted(self._follower.members)

    # --- routing ----------------------------------------------------------------------------

    def _channel(self, uri: str) -> grpc.aio.Channel:
        if self._closed:
            raise ClientClosed("the client is closed")
        key = uri.rstrip("/")
        channel = self._channels.get(key)
        if channel is None:
            channel = open_channel(key, self.options)
            self._channels[key] = channel
        return channel

    async def _on_master(self, retry: Retry, call: Callable[..., Awaitable[Any]]) -> Any:
        """Runs ``call(channel, timeout=, metadata=)`` against the master, waiting for the next
        pushed master and retrying as ``retry`` allows, within the failover timeout."""
        loop = asyncio.get_running_loop()
        failover = self.options.failover_timeout
        deadline = loop.time() + failover
        last_error: Optional[HaplaneError] = None
        while True:
            remaining = deadline - loop.time()
            view = await self._wait_until(lambda v: v is not None and v.master is not None, max(remaining, 0.0))
            if view is None:
                raise FailoverTimeout(f"no master within {failover}s", last_error) from last_error
            version = self._version
            channel = self._channel(view.master_uri)
            self._stats.unary_calls += 1
            try:
                return await call(channel, timeout=max(deadline - loop.time(), 0.001), metadata=self._metadata)
            except grpc.RpcError as err:
                error = from_rpc_error(err)
            except grpc.aio.UsageError:
                raise ClientClosed("the client is closed") from None
            if error.code == grpc.StatusCode.UNAVAILABLE:
                # The master was unreachable: have the follower ask the other members, in case
                # the node it streams from cannot see that the master is gone (client rule 5).
                self._follower.master_unreachable()
            retriable = is_not_master(error) or (retry is Retry.SAFE and error.code in _RETRY_CODES)
            if not retriable:
                raise outcome_unknown(error)
            last_error = error
            log.debug("call to %s failed (%s); waiting for the master", view.master_uri, error)
            if loop.time() >= deadline:
                raise FailoverTimeout(
                    f"no master completed the call within {failover}s: {error}", last_error
                ) from error
            # Wait briefly for a newer view (the push of the next master), then try again.
            pause = min(RETRY_PAUSE, max(deadline - loop.time(), 0.0))
            await self._wait_until(lambda _: self._version != version, pause)

    async def _node_uri(self, node_id: str) -> str:
        """The URI of node ``node_id``: from the pushed members, else the master's node list."""
        view = self._view
        if view is not None:
            for member in view.members:
                if member.node_id == node_id and member.node_uri:
                    return member.node_uri
        plane = await self.list_states()
        for node in plane.nodes:
            if node.node_id == node_id:
                return node.node_uri
        raise NotFound(f"no node {node_id!r} in plane {plane.plane_id}", code=grpc.StatusCode.NOT_FOUND)

    async def _on_node(self, node_id: str, call: Callable[..., Awaitable[Any]], change: bool = False) -> Any:
        """Runs ``call`` once on the node ``node_id`` (not retried). A ``change`` carries the
        allow-non-master marker, and one that broke on the way raises OutcomeUnknown."""
        uri = await self._node_uri(node_id)
        metadata = self._metadata
        if change:
            metadata = metadata + ((ALLOW_NON_MASTER_METADATA, "true"),)
        self._stats.unary_calls += 1
        try:
            return await call(self._channel(uri), timeout=self.options.failover_timeout, metadata=metadata)
        except grpc.RpcError as err:
            error = from_rpc_error(err)
            raise (outcome_unknown(error) if change else error) from None
        except grpc.aio.UsageError:
            raise ClientClosed("the client is closed") from None

    # --- HA calls ---------------------------------------------------------------------------

    async def get_state(self, node_id: Optional[str] = None) -> StateInfo:
        """The master's own state, or that of the node ``node_id``."""

        async def call(channel, **kw):
            return await ha_pb2_grpc.HaServiceStub(channel).GetState(ha_pb2.GetStateRequest(), **kw)

        if node_id is None:
            answer = await self._on_master(Retry.SAFE, call)
        else:
            answer = await self._on_node(node_id, call)
        return StateInfo(
            node_id=answer.node_id,
            state=NodeState.from_wire(answer.state),
            priority=answer.priority,
            epoch=answer.epoch,
            master=MasterRef.from_wire(answer.master_id, answer.master_uri),
            plane_id=answer.plane_id,
            lease_valid_for_ms=answer.lease_valid_for_ms if answer.HasField("lease_valid_for_ms") else None,
        )

    async def list_states(self, node_id: Optional[str] = None) -> PlaneStates:
        """Every node record, as the master (or the node ``node_id``) sees them."""

        async def call(channel, **kw):
            return await ha_pb2_grpc.HaServiceStub(channel).ListStates(ha_pb2.ListStatesRequest(), **kw)

        if node_id is None:
            answer = await self._on_master(Retry.SAFE, call)
        else:
            answer = await self._on_node(node_id, call)
        return PlaneStates(
            plane_id=answer.plane_id,
            own_id=answer.own_id,
            master_id=answer.master_id or None,
            epoch=answer.epoch,
            nodes=tuple(
                NodeInfo(
                    node_id=node.node_id,
                    node_uri=node.node_uri,
                    status=NodeState.from_wire(node.status),
                    priority=node.priority,
                    live=node.live,
                    last_seen_age_ms=node.last_seen_age_ms,
                    heartbeat=node.heartbeat,
                    version=node.version,
                    epoch_seen=node.epoch_seen,
                    state_seq=node.state_seq,
                )
                for node in answer.nodes
            ),
        )

    async def history(self, limit: int = 0) -> List[ClaimInfo]:
        """The plane's masters, newest first: the newest ``limit`` epochs (0: 100)."""

        async def call(channel, **kw):
            return await ha_pb2_grpc.HaServiceStub(channel).History(ha_pb2.HistoryRequest(limit=limit), **kw)

        answer = await self._on_master(Retry.SAFE, call)
        return [
            ClaimInfo(c.epoch, c.node_id, c.node_uri, c.claimed_at_ms, c.reason) for c in answer.claims
        ]

    async def set_state(self, mode: Union[HaMode, int], node_id: Optional[str] = None) -> NodeState:
        """Sets the HA mode of the master, or of the node ``node_id`` (for example
        ``HaMode.MASTER`` to promote a standby); answers that node's previous state. Retried only
        when a non-master refused it; a call that broke on the way raises
        :class:`OutcomeUnknown`."""
        request = ha_pb2.SetStateRequest(mode=int(mode))

        async def call(channel, **kw):
            return await ha_pb2_grpc.HaServiceStub(channel).SetState(request, **kw)

        if node_id is None:
            answer = await self._on_master(Retry.IF_REFUSED, call)
        else:
            answer = await self._on_node(node_id, call, change=True)
        return NodeState.from_wire(answer.previous_state)

    async def set_priority(self, priority: int, node_id: Optional[str] = None) -> int:
        """Sets the election priority of the master, or of the node ``node_id``; answers the
        previous priority. Retried as :meth:`set_state`."""
        request = ha_pb2.SetPriorityRequest(priority=priority)

        async def call(channel, **kw):
            return await ha_pb2_grpc.HaServiceStub(channel).SetPriority(request, **kw)

        if node_id is None:
            answer = await self._on_master(Retry.IF_REFUSED, call)
        else:
            answer = await self._on_node(node_id, call, change=True)
        return answer.previous_priority

    async def remove_terminated(self, node_id: Optional[str] = None) -> List[str]:
        """Removes terminated and long-dead records (or only ``node_id``'s); the removed ids."""
        request = ha_pb2.RemoveTerminatedRequest()
        if node_id is not None:
            request.node_id = node_id

        async def call(channel, **kw):
            return await ha_pb2_grpc.HaServiceStub(channel).RemoveTerminated(request, **kw)

        answer = await self._on_master(Retry.SAFE, call)
        return list(answer.removed)

    # --- entities ---------------------------------------------------------------------------

    async def get_entity(self, entity_id: str) -> Entity:
        """One entity, read from the master. Raises :class:`NotFound`."""

        async def call(channel, **kw):
            return await entity_pb2_grpc.EntityServiceStub(channel).Get(entity_pb2.GetRequest(id=entity_id), **kw)

        answer = await self._on_master(Retry.SAFE, call)
        return _answered_entity(answer)

    async def list_entities(self, prefix: str = "") -> List[Entity]:
        """Every entity whose id starts with ``prefix``, from the master, page after page."""
        entities: List[Entity] = []
        token = ""
        while True:
            request = entity_pb2.ListRequest(prefix=prefix, page_token=token)

            async def call(channel, **kw):
                return await entity_pb2_grpc.EntityServiceStub(channel).List(request, **kw)

            answer = await self._on_master(Retry.SAFE, call)
            entities.extend(Entity.from_wire(entity) for entity in answer.entities)
            if not answer.next_page_token:
                return entities
            token = answer.next_page_token

    async def put_entity(
        self,
        entity_id: str,
        attributes: Union[Mapping[str, Any], str],
        if_match: Optional[int] = None,
        idempotency_key: Optional[str] = None,
    ) -> Entity:
        """Creates or replaces an entity on the master; answers it as written.

        ``attributes``: a mapping (sent as a JSON object) or JSON text. ``if_match``: write only
        if the entity is at this version (0: only if it does not exist), else
        :class:`VersionMismatch`. The write carries one idempotency key (``idempotency_key``, or
        a fresh random one) on every attempt, so a write retried across a failover is applied
        once: a retry the server already applied is answered with the recorded outcome."""
        key = idempotency_key or new_idempotency_key()
        text = attributes if isinstance(attributes, str) else json.dumps(dict(attributes), separators=(",", ":"))
        request = entity_pb2.PutRequest(id=entity_id, attributes_json=text, idempotency_key=key)
        if if_match is not None:
            request.expected_version = if_match

        async def call(channel, **kw):
            return await entity_pb2_grpc.EntityServiceStub(channel).Put(request, **kw)

        answer = await self._on_master(Retry.SAFE, call)
        return _answered_entity(answer)

    async def delete_entity(
        self, entity_id: str, if_match: Optional[int] = None, idempotency_key: Optional[str] = None
    ) -> int:
        """Deletes an entity on the master, idempotently like :meth:`put_entity`; answers the log
        position of the delete."""
        key = idempotency_key or new_idempotency_key()
        request = entity_pb2.DeleteRequest(id=entity_id, idempotency_key=key)
        if if_match is not None:
            request.expected_version = if_match

        async def call(channel, **kw):
            return await entity_pb2_grpc.EntityServiceStub(channel).Delete(request, **kw)

        answer = await self._on_master(Retry.SAFE, call)
        return answer.seq


def _answered_entity(answer: Any) -> Entity:
    if not answer.HasField("entity"):
        raise ProtocolError("no entity in the answer")
    try:
        return Entity.from_wire(answer.entity)
    except ValueError as err:
        raise ProtocolError(f"unreadable attributes: {err}") from None


class _Connecting:
    """What :meth:`Client.connect` returns: awaitable, and an async context manager that closes
    the client at the end."""

    def __init__(self, cls, seeds, options, overrides) -> None:
        self._args = (cls, seeds, options, overrides)
        self._client: Optional[Client] = None

    def __await__(self):
        cls, seeds, options, overrides = self._args
        return cls._connect(seeds, options, overrides).__await__()

    async def __aenter__(self) -> Client:
        cls, seeds, options, overrides = self._args
        self._client = await cls._connect(seeds, options, overrides)
        return self._client

    async def __aexit__(self, *exc: Any) -> None:
        if self._client is not None:
            await self._client.close()


__all__ = ["Client", "Retry", "new_idempotency_key"]
