"""Real haplane nodes for the end-to-end tests: each started with `haplane launch` on
127.0.0.1:0 (the node picks a free port and prints it), a temporary directory store and fast
timings (poll 100 ms, heartbeat timeout 1 s). Every process started here is killed at the end of
its test (addCleanup), at interpreter exit (atexit), and, where `setpriv` exists, when this
process dies (PR_SET_PDEATHSIG).

The binary is $HAPLANE_BIN, default <repo>/target/debug/haplane. A plane made with
``per_node_faults=True`` gives each node its own store-fault control file (the environment
variable HAPLANE_TEST_STORE_FAULTS, read only by a binary built with the `test-support` feature,
as the workspace's debug build is; see server/src/store/faulty.rs and tests/src/lib.rs).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import grpc

from haplane_client import pb

REPO = Path(__file__).resolve().parents[3]
BIN = Path(os.environ.get("HAPLANE_BIN") or REPO / "target" / "debug" / "haplane")
POLL = 0.1
TIMEOUT = 1.0
#: Generous bound for anything the plane does (a busy two-core machine).
DEADLINE = 30.0

_LIVE: Dict[int, subprocess.Popen] = {}


def _kill_leftovers() -> None:
    for proc in list(_LIVE.values()):
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGCONT)
            except OSError:
                pass
            proc.kill()
            proc.wait()
    _LIVE.clear()


atexit.register(_kill_leftovers)


#: Where available (util-linux), nodes are started through `setpriv --pdeathsig KILL`, so that
#: they die with this process even if it is killed before its clean-ups run.
_SETPRIV = shutil.which("setpriv")


class Node:
    def __init__(self, plane: "Plane", node_id: str, proc: subprocess.Popen, out: Path, log: Path, pid_file: Path):
        self.plane = plane
        self.id = node_id
        self.proc = proc
        self.out = out
        self.log = log
        self.pid_file = pid_file
        self.address = ""
        #: The URI the node advertises (its own, or a proxy's).
        self.uri = ""
        #: The node's own port, whatever it advertises.
        self.direct_uri = ""

    async def wait_listening(self) -> None:
        deadline = time.monotonic() + 60
        pattern = re.compile(r"listening on (\S+) \(advertised as ([^)\s]+)\)")
        while True:
            text = self.out.read_text() if self.out.exists() else ""
            found = pattern.search(text)
            if found:
                self.address = found.group(1)
                self.uri = found.group(2)
                self.direct_uri = f"http://{self.address}"
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"node {self.id} did not start (exit {self.proc.poll()}):\n{self.log.read_text()}"
                )
            await asyncio.sleep(0.02)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    async def kill9(self) -> None:
        """A crash: SIGKILL, then reap (off the event loop: the client keeps running)."""
        self.proc.kill()
        await asyncio.to_thread(self.proc.wait, 30)
        _LIVE.pop(self.proc.pid, None)

    def sigstop(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def sigcont(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    async def stop(self) -> None:
        """A graceful stop, as an operator does it: `haplane stop --pid-file`."""
        done = await asyncio.to_thread(
            subprocess.run,
            [str(BIN), "stop", "--pid-file", str(self.pid_file), "--wait", "30s"],
            cwd=self.plane.dir,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"haplane stop failed ({done.returncode}): {done.stdout}{done.stderr}")
        await asyncio.to_thread(self.proc.wait, 30)
        _LIVE.pop(self.proc.pid, None)

    async def state(self, timeout: float = 1.0) -> Optional[pb.ha_pb2.GetStateResponse]:
        """The node's GetState on its own port, or None when it does not answer."""
        if not self.running:
            return None
        async with grpc.aio.insecure_channel(self.address) as channel:
            try:
                return await pb.ha_pb2_grpc.HaServiceStub(channel).GetState(
                    pb.ha_pb2.GetStateRequest(), timeout=timeout, metadata=self.plane.metadata
                )
            except grpc.RpcError:
                return None


class Plane:
    """Nodes on one temporary directory store."""

    def __init__(self, metadata=(), per_node_faults: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="haplane-pyclient-"))
        self.store = self.dir / "store"
        self.nodes: Dict[str, Node] = {}
        #: gRPC metadata for the harness' own calls (credentials).
        self.metadata = tuple(metadata)
        #: Whether each node gets its own store-fault control file (``fault_file``).
        self.per_node_faults = per_node_faults

    def fault_file(self, node_id: str) -> Path:
        """Node ``node_id``'s store-fault control file (with ``per_node_faults``): the lines of
        server/src/store/faulty.rs written into it inject faults into that node's store alone
        (``outage = true`` cuts it); the node re-reads it at most every 100 ms."""
        return self.dir / f"{node_id}.faults"

    def set_faults(self, node_id: str, lines: str) -> None:
        """Replaces node ``node_id``'s store faults with ``lines`` ("" clears them)."""
        self.fault_file(node_id).write_text(lines)

    def spawn(self, node_id: str, priority: int = 0, extra: List[str] = (), env: Optional[dict] = None) -> Node:
        if not BIN.exists():
            raise RuntimeError(f"no haplane binary at {BIN}: build it (cargo build -p haplane-server --bin haplane) or set HAPLANE_BIN")
        out = self.dir / f"{node_id}.out"
        log = self.dir / f"{node_id}.log"
        pid_file = self.dir / f"{node_id}.pid"
        args = [
            *([_SETPRIV, "--pdeathsig", "KILL"] if _SETPRIV else []),
            str(BIN), "launch",
            "--node-id", node_id,
            "--bind", "127.0.0.1:0",
            "--pid-file", str(pid_file),
            "--persistence-dir", str(self.store),
            "--poll-period", f"{int(POLL * 1000)}ms",
            "--heartbeat-timeout", f"{int(TIMEOUT * 1000)}ms",
            "--priority", str(priority),
            *extra,
        ]
        full_env = dict(os.environ)
        full_env.pop("HAPLANE_TEST_STORE_FAULTS", None)
        if self.per_node_faults:
            full_env["HAPLANE_TEST_STORE_FAULTS"] = str(self.fault_file(node_id))
        full_env.update(env or {})
        with open(out, "wb") as stdout, open(log, "wb") as stderr:
            proc = subprocess.Popen(
                args, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                env=full_env,
            )
        _LIVE[proc.pid] = proc
        node = Node(self, node_id, proc, out, log, pid_file)
        self.nodes[node_id] = node
        return node

    async def start(self, specs) -> List[Node]:
        """Starts nodes together (``specs``: ids, or (id, priority, extra) tuples); waits until
        each listens."""
        nodes = []
        for spec in specs:
            if isinstance(spec, str):
                spec = (spec,)
            nodes.append(self.spawn(*spec))
        await asyncio.gather(*(node.wait_listening() for node in nodes))
        return nodes

    async def agreed_master(self) -> Optional[Node]:
        """The one running node that answers MASTER, if every answering node names it."""
        running = [node for node in self.nodes.values() if node.running]
        states = await asyncio.gather(*(node.state() for node in running))
        answered = [(node, state) for node, state in zip(running, states) if state is not None]
        masters = [node for node, state in answered if state.state == pb.ha_pb2.NODE_STATE_MASTER]
        if len(masters) != 1 or not answered:
            return None
        master = masters[0]
        if all(state.master_id == master.id for _, state in answered):
            return master
        return None

    async def wait_for_master(self, other_than: Optional[str] = None, deadline: float = DEADLINE) -> Node:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            master = await self.agreed_master()
            if master is not None and master.id != other_than:
                return master
            await asyncio.sleep(0.05)
        raise AssertionError(f"no agreed master (other than {other_than}) within {deadline}s; logs in {self.dir}")

    def close(self, keep: bool = False) -> None:
        for node in self.nodes.values():
            if node.proc.poll() is None:
                try:
                    os.kill(node.proc.pid, signal.SIGCONT)
                except OSError:
                    pass
                node.proc.kill()
                node.proc.wait()
            _LIVE.pop(node.proc.pid, None)
        if keep or os.environ.get("HAPLANE_KEEP_TEST_DIRS"):
            print(f"\nkept {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


async def eventually(what: str, check, deadline: float = DEADLINE, every: float = 0.02):
    """Calls async ``check()`` until it returns something not None; fails after ``deadline``."""
    end = time.monotonic() + deadline
    while True:
        found = await check()
        if found is not None:
            return found
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline}s waiting for {what}")
        await asyncio.sleep(every)


class HoldingProxy:
    """A TCP proxy in front of one node, for losing an acknowledgement on purpose: it forwards
    both ways until ``holding`` is set; from then on it drops what the node sends (the client
    never hears the answer). ``cut()`` closes every connection and refuses new ones, as a dead
    host would."""

    def __init__(self) -> None:
        self.upstream: Optional[tuple] = None
        self.holding = False
        self.down = False
        self.dropped_bytes = 0
        self._writers: List[asyncio.StreamWriter] = []
        self._server: Optional[asyncio.base_events.Server] = None
        self.port = 0

    async def start(self) -> "HoldingProxy":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down or self.upstream is None:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self._writers += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, from_node: bool) -> None:
            try:
                while True:
                    data = await src.read(65536)
                    if not data:
                        break
                    if from_node and self.holding:
                        self.dropped_bytes += len(data)
                        continue
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer, False), pump(up_reader, writer, True))

    def cut(self) -> None:
        self.down = True
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
