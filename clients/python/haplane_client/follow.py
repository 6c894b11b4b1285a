"""The follower's decisions, free of I/O (rules 2 and 5 of docs/client-rules.md): the view
filter, when to ask the other members (the node streamed from has shown no believed master for
long enough, or a call found the believed master unreachable), and which member a probe's
answers say to move the stream to. Times are plain floats (seconds
of a monotonic clock) passed in by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

from .models import MasterView
from .view_filter import ViewFilter, same_uri

#: The shortest time between two probes of the other members, whatever the poll period says.
MIN_PROBE_INTERVAL = 0.01


@dataclass(frozen=True)
class ProbeAnswer:
    """One member's answer to GetState during a probe."""

    #: The URI the probe reached the member on.
    uri: str
    node_id: str
    #: Its view of the master (no members: GetState does not list them).
    view: MasterView


class Follow:
    """The view filter, plus when to probe: ``probe_at`` is set while the node streamed from
    shows no master, or a view the filter did not believe (one poll period after it first did),
    and after a call found the believed master unreachable (rule 5)."""

    def __init__(self, poll_period: float) -> None:
        self.filter = ViewFilter()
        self.poll_period = max(poll_period, MIN_PROBE_INTERVAL)
        self.probe_at: Optional[float] = None
        #: Whether the node streamed from shows a master the client believes (the last view it
        #: pushed was accepted and named one).
        self.shows_master = False

    def stream_opened(self) -> None:
        """A stream to another node opened: nothing is known yet of what that node shows."""
        self.probe_at = None
        self.shows_master = False

    def on_view(self, view: MasterView, source: str, now: float) -> bool:
        """A view pushed by the node at ``source``; answers whether to publish it. A view without
        a master, or one not believed, arms a probe one poll period later unless one is armed."""
        accepted = self.filter.accept(view, source)
        self.shows_master = accepted and view.master is not None
        if self.shows_master:
            self.probe_at = None
        elif self.probe_at is None:
            self.probe_at = now + self.poll_period
        return accepted

    def master_unreachable(self, now: float) -> None:
        """A call to the believed master found it unreachable (rule 5): the other members are
        asked one poll period from ``now``, unless a probe is due already. A node that cannot
        read the store keeps showing the master it last saw, so without this a crash of that
        master would go unnoticed by the node's watchers."""
        if self.probe_at is None:
            self.probe_at = now + self.poll_period

    def after_probe(self, current: str, answers: Iterable[ProbeAnswer], now: float) -> Optional[str]:
        """What a probe found while streaming from ``current``: the URI to move the stream to, or
        ``None`` to stay. Staying, it probes again one poll period from ``now`` while the node
        shows no believed master; while it shows one, only the next unreachable call (rule 5)
        makes it probe again."""
        target = self._choose_move(current, list(answers))
        if target is None and not self.shows_master:
            self.probe_at = now + self.poll_period
        else:
            self.probe_at = None
        return target

    def _choose_move(self, current: str, answers: list) -> Optional[str]:
        # A member reporting a master the filter would believe: open the stream on that master
        # (the master itself, not the node that answered), the newest epoch first.
        best: Optional[tuple] = None
        for answer in answers:
            if not self.filter.copy().accept(answer.view, answer.uri):
                continue
            master = answer.view.master
            if master is None:
                continue
            target = master.uri or answer.uri
            if same_uri(target, current):
                continue
            if best is None or answer.view.epoch > best[0]:
                best = (answer.view.epoch, target)
        if best is not None:
            return best[1]
        # No one reports a master, but the believed master answered: only it may say it let go,
        # so stream from it.
        master_id = self.filter.believed_master_id
        if master_id is None:
            return None
        for answer in answers:
            if answer.node_id == master_id and not same_uri(answer.uri, current):
                return answer.uri
        return None
