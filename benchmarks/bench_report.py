"""Build time and page size of ``modsab report`` for 1k, 20k and 100k instances.

A synthetic run with five agents, raw answers in a SQLite store and descriptors
(tests/synthetic.py) is written once per size; the report is built from the run
directory as ``modsab report`` does. With ``--browser`` (Debian chromium and
playwright installed) it also times opening the page and one filter change.

    python benchmarks/bench_report.py                 # 1k, 20k, 100k
    python benchmarks/bench_report.py --sizes 20000 --browser
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

import synthetic  # noqa: E402

from modsab.core.diagnosis import diagnose  # noqa: E402
from modsab.views.report import read_extras, write_report  # noqa: E402


def _block(html: str, name: str) -> int:
    match = re.search(rf'id="{name}"[^>]*>(.*?)</script>', html, re.S)
    return len(match.group(1)) if match else 0


def browser_timing(path: Path) -> tuple[float, float]:
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import CHROMIUM, LAUNCH_ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page()
        start = time.perf_counter()
        page.goto(path.as_uri())
        page.wait_for_selector("#ib-count[data-count]:not([data-count=''])")
        opened = time.perf_counter() - start
        # one filter change, timed inside the page (filter + render of one page of rows)
        filtered = page.evaluate(
            """() => { const s = document.getElementById('f-role'); s.value = 'successful_sabotage';
                const t = performance.now(); s.dispatchEvent(new Event('change'));
                return (performance.now() - t) / 1000; }"""
        )
        browser.close()
    return opened, filtered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,20000,100000")
    parser.add_argument("--browser", action="store_true", help="also time opening and filtering in Chromium")
    args = parser.parse_args()
    header = f"{'instances':>9} {'diagnose s':>10} {'report s':>8} {'page MB':>7} {'data MB':>7} {'text MB':>7}"
    print(header + ("  open s  filter s" if args.browser else ""))
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            run = synthetic.write_run(Path(tmp) / f"run{n}", n, diagnostics="modsab")
            start = time.perf_counter()
            result = diagnose(run, labels="meld", baseline="base")  # 1,000 bootstrap resamples
            diagnosed = time.perf_counter() - start
            start = time.perf_counter()
            out = write_report(result, Path(tmp) / f"report{n}.html", extras=read_extras(run))
            built = time.perf_counter() - start
            html = out.read_text(encoding="utf-8")
            line = (
                f"{n:>9} {diagnosed:>10.2f} {built:>8.2f} {out.stat().st_size / 1e6:>7.1f} "
                f"{_block(html, 'instance-data') / 1e6:>7.1f} {_block(html, 'text-data') / 1e6:>7.1f}"
            )
            if args.browser:
                opened, filtered = browser_timing(out)
                line += f"  {opened:>6.2f}  {filtered:>8.3f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
