"""A real two-node Ray cluster on 127.0.0.1 for the tests: a head and a worker node, each
started with ``ray start --block`` in a session of its own (unique ports, its own temp dir),
so a test can kill one node's whole process tree, and the teardown ends exactly the
processes started here (never ``ray stop``, which would end every Ray on the machine)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

TREE = Path(__file__).resolve().parents[1]
#: A node is declared dead after this many missed health checks of this period (ms).
HEALTH = {"RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "4",
          "RAY_health_check_initial_delay_ms": "1000"}
#: No token authentication on this loopback-only test cluster (the driver sets the same).
AUTH = {"RAY_AUTH_MODE": "disabled"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), deepest last."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a ``ray start --block`` process, its session and everything below it."""
    pids = [process.pid, *descendants(process.pid)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


class Cluster:
    """``address`` of the head; :meth:`kill_worker` ends the worker node at once."""

    def __init__(self, cpus_per_node: int = 1) -> None:
        self.temp = Path(tempfile.mkdtemp(prefix="mray", dir="/tmp"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, **HEALTH, "PYTHONPATH": str(TREE / "src"), "RAY_USAGE_STATS_ENABLED": "0",
                    **AUTH}
        common = ["--block", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus_per_node}",
                  "--object-store-memory=200000000", "--disable-usage-stats"]
        self.head = self._start("head", ["--head", f"--port={self.port}", f"--temp-dir={self.temp}",
                                         "--include-dashboard=false",
                                         f"--dashboard-agent-listen-port={free_port()}", *common])
        self._wait_for_port()
        self.worker = self._start("worker", [f"--address={self.address}",
                                             f"--dashboard-agent-listen-port={free_port()}", *common])

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = (self.temp / f"{name}.log").open("w")
        return subprocess.Popen(["ray", "start", *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def _wait_for_port(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.head.poll() is not None:
                raise RuntimeError(f"the head node exited: {(self.temp / 'head.log').read_text()[-2000:]}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        raise RuntimeError("the head node did not open its port")

    def wait_for_nodes(self, n: int = 2, timeout: float = 90) -> None:
        """Block until ``n`` nodes are alive (needs this process connected: ``ray.init``)."""
        import ray

        deadline = time.time() + timeout
        while time.time() < deadline:
            if sum(1 for node in ray.nodes() if node["Alive"]) >= n:
                return
            time.sleep(0.3)
        raise RuntimeError(f"fewer than {n} Ray nodes came up: {(self.temp / 'worker.log').read_text()[-2000:]}")

    def kill_worker(self) -> None:
        kill_tree(self.worker)

    def close(self) -> None:
        for process in (self.worker, self.head):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
            kill_tree(process)
        shutil.rmtree(self.temp, ignore_errors=True)
