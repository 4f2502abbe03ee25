"""Endpoint pools and the one-client HTTP path, against stub servers in their own processes.

    PYTHONPATH=src python benchmarks/bench_endpoints.py [--seconds 8 --outage 10] [--baseline main]

Three scenarios, each printed against its ideal and against today's baseline in the same run:

1. a pool of 3 endpoints at 50/100/200 ms, 4 slots each: throughput against the sum of their
   ideal rates (4/0.05 + 4/0.1 + 4/0.2 = 140 requests/s); baseline: the best single endpoint;
2. the same with the 50 ms endpoint down for ``--outage`` seconds (its process stopped, then
   started again on its port): throughput against the capacity available over the run;
3. one endpoint with 16 slots at 50 ms: wall time against N*L/C, through the ``openai`` client
   (today's path), the lean HTTP path with 32 and with 16 requests in flight, and a pool of that
   one endpoint (16 in flight). ``--baseline REF`` (a git ref, e.g. ``main``) also runs the two
   lean rows on REF's ``src`` (``git archive``), each row alternately on REF and on this tree, in
   child processes against the same stub, ``--repeat`` times: before and after in one run;
   beside them the same POSTs through the lean HTTP client alone (no engine, store or parsing),
   the floor the machine's load sets.

Each run is timed from its first request to its last answer (the runner alone: store, cache and
HTTP included; imports and process start not). Client CPU seconds per request say where the
time goes. The machine's load (``uptime``) is printed before and after: the stubs and the client
share its cores with whatever else runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

from bench_agents import start_stub

from modsab.agents.backends import OpenAIBackend
from modsab.agents.engine import AgentRunner, Limits, run_coroutine
from modsab.agents.inputs import Instance
from modsab.agents.pool import Endpoint, chat_backend
from modsab.agents.store import ResponseCache, RunStore
from modsab.contract.labels import LabelSet

LABELS = LabelSet.parse("meld")
LATENCIES = (0.05, 0.1, 0.2)
SLOTS = 4


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_of(process) -> float:
    """CPU seconds a (stub server) process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def instances(n: int, tag: str) -> list[Instance]:
    return [Instance(f"{tag}{i}", descriptors={"transcript": f"utterance number {i} of {tag}"}) for i in range(n)]


def drive(backend, items: list[Instance], concurrency: int) -> tuple[float, float, object]:
    """(wall s, client CPU s, stats) of answering ``items`` through the engine on ``backend``."""
    with tempfile.TemporaryDirectory() as tmp:
        store, cache = RunStore(Path(tmp) / "run"), ResponseCache(Path(tmp) / "cache")
        runner = AgentRunner(backend, store, labels=LABELS, cache=cache, limits=Limits(concurrency=concurrency))

        async def main():
            try:
                return await runner.run(items, ["text"])
            finally:
                await backend.aclose()

        started, cpu = time.perf_counter(), time.process_time()
        stats = run_coroutine(main())
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        store.close()
        cache.close()
    return wall, cpu, stats


def pool(urls: list[str], slots: int):
    return chat_backend(None, [Endpoint(url, slots) for url in urls], model="stub", api_key=None, timeout=60.0,
                        limits=Limits(concurrency=slots))


def line(what: str, n: int, wall: float, cpu: float, ideal_rate: float, stats) -> None:
    rate = n / wall
    print(f"  {what:44s} {n:5d} answers in {wall:6.2f} s = {rate:6.1f}/s = {rate / ideal_rate:.2f} of ideal "
          f"{ideal_rate:.0f}/s; client CPU {cpu / n * 1000:.2f} ms/request; {stats.retries} retries")


def pool_scenarios(seconds: float, outage: float) -> None:
    ideal = sum(SLOTS / latency for latency in LATENCIES)
    print(f"pool: 3 endpoints at {', '.join(f'{x * 1000:.0f}' for x in LATENCIES)} ms, {SLOTS} slots each, "
          f"ideal {ideal:.0f} requests/s")
    stubs = [start_stub(latency, SLOTS, 0.0) for latency in LATENCIES]
    try:
        urls = [url for _, url in stubs]
        n = int(ideal * seconds)
        wall, cpu, stats = drive(pool(urls, SLOTS), instances(n, "p"), SLOTS)
        line("pool of 3", n, wall, cpu, ideal, stats)
        best = SLOTS / LATENCIES[0]
        m = int(best * seconds)
        wall, cpu, stats = drive(OpenAIBackend(base_url=urls[0], model="stub", api_key=None), instances(m, "b"),
                                 SLOTS)
        line("baseline: one URL (the 50 ms one), C=4", m, wall, cpu, ideal, stats)
        print(f"  {'':44s} -> {m / wall / best:.2f} of that one endpoint's own ideal {best:.0f}/s (the machine's "
              "share of loss, pool or not)")

        # the 50 ms endpoint down from 2 s into the run for `outage` s
        down_rate = ideal - SLOTS / LATENCIES[0]
        n = int(ideal * (seconds + outage) + 0)
        port = int(urls[0].rsplit(":", 1)[1].split("/")[0])
        events: dict[str, float] = {}

        def outage_plan() -> None:
            time.sleep(2.0)
            stubs[0][0].terminate()
            stubs[0][0].wait()
            events["down"] = time.perf_counter()
            time.sleep(outage)
            stubs[0] = start_stub(LATENCIES[0], SLOTS, 0.0, port=port)
            events["up"] = time.perf_counter()

        timer = threading.Thread(target=outage_plan)
        started = time.perf_counter()
        timer.start()
        wall, cpu, stats = drive(pool(urls, SLOTS), instances(n, "o"), SLOTS)
        timer.join()
        end = started + wall
        lost = max(0.0, min(end, events.get("up", end)) - events.get("down", end))
        available = ideal * wall - (ideal - down_rate) * lost  # requests the live capacity could serve
        print(f"  pool of 3, 50 ms endpoint down {lost:.1f} s of the run: {n} answers in {wall:.2f} s; capacity "
              f"available {available:.0f} requests -> {n / available:.2f} of ideal; client CPU "
              f"{cpu / n * 1000:.2f} ms/request; {stats.retries} retries")
    finally:
        for process, _ in stubs:
            process.terminate()
            process.wait()


def single_scenario(seconds: float, latency: float, slots: int) -> None:
    ideal = slots / latency
    print(f"one endpoint: {slots} slots at {latency * 1000:.0f} ms, ideal {ideal:.0f} requests/s")
    process, url = start_stub(latency, slots, 0.0)
    try:
        n = int(ideal * seconds)
        for what, make, concurrency in (
            (f"baseline: openai client, concurrency {2 * slots}",
             lambda: OpenAIBackend(base_url=url, model="stub", api_key=None, lean=False), 2 * slots),
            (f"lean HTTP path, concurrency {2 * slots}",
             lambda: OpenAIBackend(base_url=url, model="stub", api_key=None), 2 * slots),
            (f"lean HTTP path, concurrency {slots}",
             lambda: OpenAIBackend(base_url=url, model="stub", api_key=None), slots),
            (f"pool of this one endpoint ({slots} in flight)", lambda: pool([url], slots), slots),
        ):
            server = cpu_of(process)
            wall, cpu, stats = drive(make(), instances(n, what[:4]), concurrency)
            line(what, n, wall, cpu, ideal, stats)
            print(f"  {'':44s} -> {wall / (n / ideal):.2f}x ideal wall time; the stub server's CPU "
                  f"{(cpu_of(process) - server) / n * 1000:.2f} ms/request")
    finally:
        process.terminate()
        process.wait()


def source_tree(ref: str, folder: Path) -> Path:
    """REF's ``src`` folder, unpacked from git into ``folder`` (the baseline's code path)."""
    repo = Path(__file__).resolve().parents[1]
    archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", ref, "src"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder / "src"


def child_run(src: Path, url: str, concurrency: int, n: int, tag: str) -> tuple[float, float, int]:
    """(wall s, client CPU s, retries) of one lean run on the code in ``src``, in its own process."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", url, str(concurrency), str(n), tag],
        env={**os.environ, "PYTHONPATH": str(src)}, check=True, capture_output=True, text=True,
    ).stdout
    found = json.loads(out.strip().splitlines()[-1])
    return found["wall"], found["cpu"], found["retries"]


def before_after(ref: str, seconds: float, latency: float, slots: int, repeat: int) -> None:
    ideal = slots / latency
    n = int(ideal * seconds)
    print(f"before/after: one endpoint, {slots} slots at {latency * 1000:.0f} ms, ideal {ideal:.0f}/s; "
          f"{ref} against this tree, alternately, {repeat} time(s)")
    here = Path(__file__).resolve().parents[1] / "src"
    with tempfile.TemporaryDirectory() as tmp:
        trees = {f"{ref}": source_tree(ref, Path(tmp)), "this tree": here, "bare HTTP": here}
        process, url = start_stub(latency, slots, 0.0)
        try:
            results: dict[tuple[str, int], list[tuple[float, float, int]]] = {}
            for round_ in range(repeat):
                for concurrency in (2 * slots, slots):
                    for name, src in trees.items():
                        tag = "bare" if name == "bare HTTP" else f"{name[:4]}{round_}c{concurrency}"
                        found = child_run(src, url, concurrency, n, tag)
                        results.setdefault((name, concurrency), []).append(found)
                        wall, cpu, retries = found
                        print(f"  {name:12s} {concurrency:2d} in flight: {n} answers in {wall:6.2f} s -> "
                              f"{wall / (n / ideal):.2f}x ideal wall time; client CPU {cpu / n * 1000:.2f} "
                              f"ms/request; {retries} retries")
            print("  median over the rounds:")
            for (name, concurrency), runs in results.items():
                wall, cpu = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
                print(f"  {name:12s} {concurrency:2d} in flight: {wall / (n / ideal):.2f}x ideal; "
                      f"client CPU {cpu / n * 1000:.2f} ms/request")
        finally:
            process.terminate()
            process.wait()


def bare(url: str, concurrency: int, n: int) -> tuple[float, float]:
    """(wall s, CPU s) of ``n`` POSTs of one request body through the lean HTTP client alone, no
    engine (no store, cache, parsing): the floor this machine sets for the wall time."""
    import asyncio

    from modsab.agents.http import LeanClient

    body = json.dumps({"model": "stub", "messages": [
        {"role": "system", "content": "Choose from these labels only: neutral, joy."},
        {"role": "user", "content": "words"}]}).encode()

    async def main() -> tuple[float, float]:
        client = LeanClient(url, timeout=60.0, headers={})
        slots = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with slots:
                await client.post("/chat/completions", body)

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one() for _ in range(n)))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        await client.aclose()
        return wall, cpu

    return asyncio.run(main())


def child(url: str, concurrency: int, n: int, tag: str) -> None:
    if tag == "bare":
        wall, cpu = bare(url, concurrency, n)
        print(json.dumps({"wall": wall, "cpu": cpu, "retries": 0}))
        return
    wall, cpu, stats = drive(OpenAIBackend(base_url=url, model="stub", api_key=None), instances(n, tag), concurrency)
    print(json.dumps({"wall": wall, "cpu": cpu, "retries": stats.retries}))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        url, concurrency, n, tag = sys.argv[2:6]
        child(url, int(concurrency), int(n), tag)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="ideal seconds of each run")
    parser.add_argument("--outage", type=float, default=10.0)
    parser.add_argument("--latency", type=float, default=0.05, help="scenario 3")
    parser.add_argument("--slots", type=int, default=16, help="scenario 3")
    parser.add_argument("--baseline", metavar="REF", help="git ref whose code the lean rows are compared with")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of the before/after rows")
    parser.add_argument("--only", choices=("pool", "single", "before-after"), help="run one scenario")
    args = parser.parse_args()
    print(f"before: {load()} ({os.cpu_count()} CPUs)")
    if args.only in (None, "pool"):
        pool_scenarios(args.seconds, args.outage)
    if args.only in (None, "single"):
        single_scenario(args.seconds, args.latency, args.slots)
    if args.baseline and args.only in (None, "before-after"):
        before_after(args.baseline, args.seconds, args.latency, args.slots, args.repeat)
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
