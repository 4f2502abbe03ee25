"""``modsab view`` on a 1M-instance run: time to the first page and per filter change,
against pandas reading instances.parquet and filtering it in the same run.

The run is made once by ``modsab synth`` + ``modsab diagnose --instances`` and cached
(tests/viewer_runs.py; ``--run DIR`` uses another). The server is the real command,
``python -m modsab view RUN --port 0``, started here and stopped at the end; requests go
to 127.0.0.1 only, a fixed number of them.

    python benchmarks/bench_view.py             # HTTP figures + the pandas baseline
    python benchmarks/bench_view.py --browser   # also page open and a filter change in Chromium

"started": process start to the printed address (Python imports, DuckDB view, uvicorn
startup); "first page": ``/`` then ``/api/instances`` right after; filter changes are each a new filter (no cached
count), timed as HTTP round trips, first on the Parquet file, then on the in-memory copy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

import viewer_runs  # noqa: E402

FILTERS = [
    "any.role = successful_sabotage",
    "audio.role = successful_sabotage and audio.confidence >= 0.95",
    "gold = joy and fused_top1 = anger",
    "dataset = synth1 and text.role = contributor and gold_rank > 1",
    "instance_id contains i99999",
    "not (hit_at_1 = true) and joint.quality < 40",
]
SORTS = [[], ["-audio.confidence"]]


def get(url: str) -> tuple[float, dict | str]:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:
        body = response.read()
        kind = response.headers.get("content-type", "")
    seconds = time.perf_counter() - start
    return seconds, json.loads(body) if "json" in kind else body.decode()


def instances_url(base: str, filter_text: str, sort: list[str], page: int = 1) -> str:
    query = [("filter", filter_text), ("page", str(page)), ("size", "50")] + [("sort", s) for s in sort]
    return base + "api/instances?" + urllib.parse.urlencode(query)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def filter_round(base: str, label: str, salt: str) -> list[float]:
    """Each filter x sort once; ``salt`` makes every filter new to the server's count cache."""
    times = []
    for sort in SORTS:
        for text in FILTERS:
            seconds, body = get(instances_url(base, f"({text}) and instance_id != {json.dumps(salt)}", sort))
            times.append(seconds)
            print(f"  {label:7} {seconds * 1000:7.0f} ms  {body['total']:>9,}  sort={sort or '-'}  {text}")
    return times


def baseline(run: Path) -> dict[str, float]:
    import pandas as pd

    start = time.perf_counter()
    frame = pd.read_parquet(run / "instances.parquet")
    read = time.perf_counter() - start
    times = []
    for sort in SORTS:
        start = time.perf_counter()
        keep = frame["audio.role"].eq("successful_sabotage") & frame["audio.confidence"].ge(0.95)
        hits = frame[keep]
        if sort:
            hits = hits.sort_values("audio.confidence", ascending=False, kind="stable")
        hits.head(50).to_dict(orient="records")
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    int(frame["instance_id"].str.lower().str.contains("i99999", regex=False).sum())
    contains = time.perf_counter() - start
    return {"read": read, "filter": statistics.median(times), "contains": contains}


def browser(base: str) -> tuple[float, float]:
    from conftest import CHROMIUM, LAUNCH_ARGS
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = chromium.new_page()
        start = time.perf_counter()
        page.goto(base)
        page.wait_for_selector("#ib-table[data-state=ready]")
        opened = time.perf_counter() - start
        changes = []
        for role in ("successful_sabotage", "contributor", "wrong", "abstained"):
            before = page.get_attribute("#ib-table", "data-seq")
            page.select_option("#f-role", role)
            while page.get_attribute("#ib-table", "data-seq") == before:
                page.wait_for_timeout(5)
            changes.append(int(page.get_attribute("#ib-table", "data-ms")) / 1000)  # measured in the page
        chromium.close()
    return opened, statistics.median(changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a run directory with instances.parquet (default: the cached 1M run)")
    parser.add_argument("--browser", action="store_true", help="also time the page in headless Chromium")
    args = parser.parse_args()
    run = args.run or viewer_runs.million_run()
    import pyarrow.parquet as pq

    n = pq.read_metadata(run / "instances.parquet").num_rows
    print(f"run: {run} ({n:,} instances, {(run / 'instances.parquet').stat().st_size / 1e6:.1f} MB instances.parquet)")

    started = time.perf_counter()
    with viewer_runs.view_server(run) as base:
        listening = time.perf_counter() - started
        rss_start = rss_mb(base.pid)
        page_s, html = get(base)
        first_s, body = get(instances_url(base, "", []))
        print(
            f"ready (process start to the printed address): {listening:.2f} s; "
            f"first page: / {page_s:.2f} s + /api/instances {first_s:.2f} s "
            f"= {page_s + first_s:.2f} s ({len(body['rows'])} rows of {body['total']:,}; engine {body['engine']})"
        )
        file_times = filter_round(base, "file", "a")
        deadline = time.monotonic() + 300
        while get(base + "api/summary")[1]["engine"] != "memory" and time.monotonic() < deadline:
            time.sleep(0.5)
        rss_loaded = rss_mb(base.pid)
        memory_times = filter_round(base, "memory", "b")
        opened = changed = None
        if args.browser:
            opened, changed = browser(base)
    print(f"server memory: {rss_start:.0f} MB when listening, {rss_loaded:.0f} MB with the in-memory copy")
    base_figures = baseline(run)
    print()
    print("| what | modsab view | pandas (same run) |")
    print("|---|---:|---:|")
    print(
        f"| open: process start to ready + first page | {listening:.2f} + {page_s + first_s:.2f} s | "
        f"read_parquet {base_figures['read']:.2f} s |"
    )
    print(
        f"| filter change, on the file (median / max of {len(file_times)}) | "
        f"{statistics.median(file_times):.3f} / {max(file_times):.3f} s | |"
    )
    print(
        f"| filter change, in memory (median / max of {len(memory_times)}) | "
        f"{statistics.median(memory_times):.3f} / {max(memory_times):.3f} s | "
        f"{base_figures['filter']:.3f} s after the read (id contains {base_figures['contains']:.3f} s) |"
    )
    if opened is not None:
        print(
            f"| Chromium: page open / filter change (in the page: request to rows drawn, median of 4) | "
            f"{opened:.2f} / {changed:.3f} s | |"
        )


if __name__ == "__main__":
    main()
