"""Agent engine speed against a local stub server, and the local default agent's tokens/s.

    PYTHONPATH=src python benchmarks/bench_agents.py [--n 2000 --latency 0.05 --capacity 16]

Prints wall time of N calls against the ideal N*L/C (the stub answers after L seconds,
C at a time, in its own process), the same with 10% of answers being 429s (Retry-After
50 ms, answered at once), a fully cached rerun (must make zero requests), and tokens/s
of the offline default agent on this machine (skipped when xllamacpp or the
MELD descriptions are absent). The client keeps 2 x C requests in flight by default,
so the server's slots stay busy while the client does its own bookkeeping.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from modsab.agents.engine import Limits
from modsab.agents.inputs import Instance, load_descriptors
from modsab.agents.run import AgentRunConfig, run_agents
from modsab.contract.labels import LabelSet

LABELS = LabelSet.parse("meld")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_stub(
    latency: float, capacity: int, rate_429: float, *, port: int | None = None
) -> tuple[subprocess.Popen, str]:
    """A stub server in its own process (on ``port``, default a free one) and its URL."""
    port = port or free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modsab.agents.testing",
            "--port",
            str(port),
            "--latency",
            str(latency),
            "--capacity",
            str(capacity),
            "--rate-429",
            str(rate_429),
        ],
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")},
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    return process, f"http://127.0.0.1:{port}/v1"


def timed_run(instances, base_url, folder: Path, name: str, concurrency: int):
    config = AgentRunConfig(
        model="stub",
        labels=LABELS,
        agents=["text"],
        base_url=base_url,
        cache_dir=str(folder / "cache"),
        limits=Limits(concurrency=concurrency),
    )
    started = time.perf_counter()
    result = run_agents(instances, config, folder / name)
    return time.perf_counter() - started, result.stats


def bench_engine(n: int, latency: float, capacity: int, concurrency: int) -> None:
    instances = [Instance(f"u{i}", descriptors={"transcript": f"utterance number {i}"}) for i in range(n)]
    ideal = n * latency / capacity
    print(
        f"engine: N={n} calls, L={latency * 1000:.0f} ms, C={capacity}, concurrency={concurrency}, "
        f"ideal N*L/C = {ideal:.2f} s"
    )
    for rate in (0.0, 0.1):
        process, url = start_stub(latency, capacity, rate)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                wall, stats = timed_run(instances, url, folder, "run", concurrency)
                print(
                    f"  429 share {rate:>4.0%}: {wall:6.2f} s = {wall / ideal:.2f}x ideal, "
                    f"{stats.requests} requests, {stats.retries} retries, {stats.done} answers"
                )
                if rate == 0.0:
                    wall, stats = timed_run(instances, url, folder, "rerun", concurrency)
                    print(
                        f"  cached rerun (new run dir, shared cache): {wall:6.2f} s, "
                        f"{stats.requests} requests, {stats.cached} from cache"
                    )
        finally:
            process.terminate()
            process.wait()


def bench_local(data: Path, n: int) -> None:
    if n <= 0:
        return
    try:
        import xllamacpp  # noqa: F401
    except ImportError:
        print("local: skipped (xllamacpp not installed)")
        return
    if not data.exists():
        print(f"local: skipped ({data} not found)")
        return
    instances = load_descriptors(data)[:n]
    from modsab.cli.agents import DEFAULT_MODEL

    for model in (DEFAULT_MODEL,):
        for agent in ("text", "tav"):
            with tempfile.TemporaryDirectory() as tmp:
                config = AgentRunConfig(
                    model=model, labels=LABELS, agents=[agent], limits=Limits(concurrency=1)
                )
                started = time.perf_counter()
                result = run_agents(instances, config, Path(tmp) / "run", use_cache=False)
                wall = time.perf_counter() - started
            stats = result.stats
            print(
                f"local {model:20s} {agent:5s}: {wall / n:5.2f} s/call, "
                f"{stats.prompt_tokens / wall:7.0f} prompt tok/s, "
                f"{stats.completion_tokens / wall:6.1f} output tok/s (n={n}, load included)"
            )


def default_data() -> Path:
    """``$MODSAB_DATA`` or the shared data folder beside the checkout (or a worktree)."""
    tail = Path("meld_descriptions") / "meld_annotation.json"
    if os.environ.get("MODSAB_DATA"):
        return Path(os.environ["MODSAB_DATA"]) / tail
    here = Path(__file__).resolve().parents[1]
    for root in (here.parent, here.parent.parent):
        if (root / "shared" / "data" / tail).exists():
            return root / "shared" / "data" / tail
    return here.parent / "shared" / "data" / tail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--capacity", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=None, help="default: 2 x capacity")
    parser.add_argument("--local-n", type=int, default=20)
    parser.add_argument("--data", type=Path, default=default_data())
    args = parser.parse_args()
    bench_engine(args.n, args.latency, args.capacity, args.concurrency or 2 * args.capacity)
    bench_local(args.data, args.local_n)


if __name__ == "__main__":
    main()
