"""Which pushed master views the client believes: rules 1, 3 and 4 of docs/client-rules.md.

Pure and synchronous (no I/O, no clock), so that each rule is unit-tested with histories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from .models import MasterView


def same_uri(a: str, b: str) -> bool:
    """Whether two URIs name the same endpoint (a trailing ``/`` does not count)."""
    return a.rstrip("/") == b.rstrip("/")


@dataclass(frozen=True)
class _Believed:
    epoch: int
    id: str
    uri: str


class ViewFilter:
    """Decides which views replace the current one:

    - never a lower epoch of the same plane (a lagging node cannot move the client back; rule 4);
    - a view of another, non-empty plane id starts over (the store was replaced or reset), so the
      new plane's lower epochs are followed (rule 3);
    - a release (no master) in the believed master's epoch only from that master itself: a node
      that cannot see the master says "no master" too, and is not believed. A newer epoch, from
      any node, releases the old master (rule 1);
    - never, within an epoch, a master that released it (rules 1 and 4).
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.plane_id = ""
        self.highest_epoch = 0
        self._master: Optional[_Believed] = None
        #: (epoch, master id) of a master that gave up its claim.
        self.released: Optional[Tuple[int, str]] = None

    def copy(self) -> "ViewFilter":
        other = ViewFilter()
        other.plane_id = self.plane_id
        other.highest_epoch = self.highest_epoch
        other._master = self._master
        other.released = self.released
        return other

    @property
    def believed_master_id(self) -> Optional[str]:
        """The id of the master believed in now, if any."""
        return self._master.id if self._master else None

    def accept(self, view: MasterView, source: str) -> bool:
        """Whether ``view``, pushed by the node at ``source`` (the URI its stream was opened on),
        is believed; updates what the filter remembers."""
        if view.plane_id and view.plane_id != self.plane_id:
            if self.plane_id:
                # Another plane: its epochs have nothing to do with the ones seen so far.
                self._reset()
            self.plane_id = view.plane_id
        if view.epoch < self.highest_epoch:
            return False
        named = view.master
        if named is None:
            master = self._master
            if master is not None and master.epoch == view.epoch:
                if not self._from_master(master, view, source):
                    return False
                self.released = (master.epoch, master.id)
            self._master = None
            self.highest_epoch = view.epoch
            return True
        if self.released == (view.epoch, named.id):
            return False
        self._master = _Believed(view.epoch, named.id, named.uri)
        self.highest_epoch = view.epoch
        return True

    @staticmethod
    def _from_master(master: _Believed, view: MasterView, source: str) -> bool:
        """Whether ``view`` was pushed by ``master`` itself: the stream's URI is the master's, or
        the view's members give that URI the master's id."""
        return same_uri(master.uri, source) or any(
            member.node_id == master.id and same_uri(member.node_uri, source)
            for member in view.members
        )
