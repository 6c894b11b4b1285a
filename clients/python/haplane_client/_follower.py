"""The master follower: one background task that holds a WatchMaster stream to some member,
believes what it is told only as docs/client-rules.md allows (``Follow``/``ViewFilter``),
moves to the next member the moment the stream breaks (backing off, jittered, only when every
member failed), moves to a member that reports the master when its own node has shown none for
a poll period (or a call found the master it shows unreachable: ``master_unreachable``), and
publishes every accepted view.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Callable, Iterable, List, Optional, Set

import grpc

from .pb import ha_pb2, ha_pb2_grpc
from ._transport import open_channel
from .errors import HaplaneError, InvalidEndpoint, from_rpc_error
from .follow import Follow, ProbeAnswer
from .models import MasterRef, MasterView, Stats
from .options import ConnectOptions
from .view_filter import same_uri

log = logging.getLogger("haplane_client.follower")

#: The longest back-off between two rounds in which every member failed (plus jitter).
MAX_BACKOFF = 2.0


def _norm(uri: str) -> str:
    return uri.strip().rstrip("/")


class _MoveTo:
    def __init__(self, uri: str) -> None:
        self.uri = uri


class Follower:
    """Follows the master through ``seeds`` and every member it learns of, until cancelled."""

    def __init__(
        self,
        seeds: Iterable[str],
        options: ConnectOptions,
        publish: Callable[[MasterView], None],
        refused: Callable[[HaplaneError], None],
        stats: Stats,
    ) -> None:
        self.members: Set[str] = {_norm(seed) for seed in seeds}
        self.options = options
        self.follow = Follow(options.poll_period)
        self._publish = publish
        self._refused = refused
        self._stats = stats
        self._metadata = options.authorization_metadata()
        #: The URI of the stream open now, if any (for tests and debugging).
        self.streaming_from: Optional[str] = None
        #: Set by calls that found the believed master unreachable (rule 5); the stream reader
        #: clears it and arms a probe. It stays set between streams, so the next one sees it.
        self._unreachable = asyncio.Event()

    def master_unreachable(self) -> None:
        """A call routed to the believed master failed with UNAVAILABLE (client rule 5): the
        other members are asked one poll period from now, even though the node streamed from
        may still show that master."""
        self._unreachable.set()

    async def run(self) -> None:
        failed_rounds = 0
        # The member that worked last, or the one a probe chose: tried first.
        first: Optional[str] = None
        while True:
            order = sorted(self.members)
            if first is not None:
                order = [first] + [uri for uri in order if uri != first]
            any_stream = False
            for uri in order:
                opened = await self._open(uri)
                if opened is None:
                    continue
                channel, call, event = opened
                any_stream = True
                first = uri
                try:
                    self.streaming_from = uri
                    end = await self._read_stream(uri, call, event)
                finally:
                    self.streaming_from = None
                    call.cancel()
                    await channel.close()
                if isinstance(end, _MoveTo):
                    log.info("%s shows no master; moving the stream to %s", uri, end.uri)
                    self.members.add(end.uri)
                    first = end.uri
                    break
                log.debug("master watch on %s ended; moving to the next member", uri)
            if any_stream:
                failed_rounds = 0
            else:
                failed_rounds += 1
                base = min(0.05 * (2 ** min(failed_rounds, 5)), MAX_BACKOFF)
                await asyncio.sleep(base + random.uniform(0, 0.05))

    async def _open(self, uri: str):
        """Opens WatchMaster on ``uri``: ``(channel, call, first event)``, or ``None``."""
        try:
            channel = open_channel(uri, self.options, own_connection=True)
        except InvalidEndpoint:
            return None
        call = ha_pb2_grpc.HaServiceStub(channel).WatchMaster(
            ha_pb2.WatchMasterRequest(), metadata=self._metadata
        )
        bound = self.options.connect_timeout + self.options.poll_period
        try:
            event = await asyncio.wait_for(call.read(), bound)
        except grpc.RpcError as err:
            error = from_rpc_error(err)
            log.debug("no master watch on %s: %s", uri, error)
            if error.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                self._refused(error)
            event = None
        except asyncio.TimeoutError:
            log.debug("no master watch on %s: no view within %.1fs", uri, bound)
            event = None
        if event is grpc.aio.EOF:
            log.debug("no master watch on %s: the stream ended at once (%s)", uri, await call.code())
        if event is None or event is grpc.aio.EOF:
            call.cancel()
            await channel.close()
            return None
        self._stats.watch_streams += 1
        return channel, call, event

    def _on_event(self, uri: str, event) -> None:
        view = MasterView.from_event(event)
        for member in view.members:
            if member.node_uri:
                self.members.add(_norm(member.node_uri))
        loop = asyncio.get_running_loop()
        if self.follow.on_view(view, uri, loop.time()):
            self._publish(view)

    async def _read_stream(self, uri: str, call, event):
        """Publishes the accepted views of one stream from ``uri``; while the node shows no
        master, or after a call found the believed master unreachable, probes the other members
        and says where to move when one reports a master. Returns ``None`` when the stream ends
        or breaks."""
        loop = asyncio.get_running_loop()
        self.follow.stream_opened()
        self._on_event(uri, event)
        reading: Optional[asyncio.Task] = None
        probing: Optional[asyncio.Task] = None
        signalled: Optional[asyncio.Task] = None
        try:
            while True:
                if reading is None:
                    reading = asyncio.ensure_future(call.read())
                if signalled is None:
                    signalled = asyncio.ensure_future(self._unreachable.wait())
                waits = {reading, signalled}
                if probing is not None:
                    waits.add(probing)
                due = self.follow.probe_at if probing is None else None
                timeout = None if due is None else max(0.0, due - loop.time())
                done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if reading in done:
                    finished, reading = reading, None
                    try:
                        event = finished.result()
                    except (grpc.RpcError, asyncio.CancelledError):
                        return None
                    if event is grpc.aio.EOF:
                        return None
                    self._on_event(uri, event)
                    if self.follow.probe_at is None and probing is not None:
                        # The node shows the master again: the probe under way is not needed.
                        probing.cancel()
                        probing = None
                    continue
                if signalled in done:
                    signalled = None
                    self._unreachable.clear()
                    self.follow.master_unreachable(loop.time())
                    continue
                if probing is not None and probing in done:
                    answers = probing.result()
                    probing = None
                    target = self.follow.after_probe(uri, answers, loop.time())
                    if target is not None:
                        return _MoveTo(_norm(target))
                    continue
                if probing is None and due is not None and loop.time() >= due:
                    others = [member for member in sorted(self.members) if not same_uri(member, uri)]
                    self._stats.probes += 1
                    probing = asyncio.ensure_future(self._probe(others))
        finally:
            for task in (reading, probing, signalled):
                if task is not None and not task.done():
                    task.cancel()

    async def _probe(self, uris: List[str]) -> List[ProbeAnswer]:
        """Asks every member in ``uris`` for its state at once, each bounded by the connect
        timeout plus a poll period; members that do not answer are left out."""
        bound = self.options.connect_timeout + self.options.poll_period

        async def ask(uri: str) -> Optional[ProbeAnswer]:
            try:
                channel = open_channel(uri, self.options, own_connection=True)
            except InvalidEndpoint:
                return None
            try:
                state = await ha_pb2_grpc.HaServiceStub(channel).GetState(
                    ha_pb2.GetStateRequest(), timeout=bound, metadata=self._metadata
                )
            except grpc.RpcError:
                return None
            finally:
                await channel.close()
            return ProbeAnswer(
                uri=uri,
                node_id=state.node_id,
                view=MasterView(
                    epoch=state.epoch,
                    master=MasterRef.from_wire(state.master_id, state.master_uri),
                    plane_id=state.plane_id,
                ),
            )

        answers = await asyncio.gather(*(ask(uri) for uri in uris))
        return [answer for answer in answers if answer is not None]
