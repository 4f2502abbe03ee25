"""Where the foundation audit's memory goes: the peak RSS of each phase of one diagnosis.

A thread samples this process's RSS every 10 ms and charges it to the phase running then
(the reader, each step of the assembly, fusion, the agents' top labels, the summaries, the
JSON), so the phase that makes the peak shows; then the arrays of the set and their bytes.
Run it on a file ``bench_diagnose.py`` wrote (``/tmp/modsab-bench/bench_<records>.parquet``):

    python benchmarks/profile_memory.py /tmp/modsab-bench/bench_8000000.parquet [--all]
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

import modsab.contract.predictions as predictions
from modsab.core import diagnosis, fusion

_stack = ["start"]
_peaks: dict[str, int] = {}


def rss_mb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) // 1024
    return 0


def _sample() -> None:
    while True:
        phase = "/".join(_stack)
        _peaks[phase] = max(_peaks.get(phase, 0), rss_mb())
        time.sleep(0.01)


def _phase(owner, name: str) -> None:
    """Charge the RSS sampled while ``owner.name`` runs to a phase of that name."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def timed(*args, **kwargs):
        _stack.append(name)
        try:
            return original(*args, **kwargs)
        finally:
            _stack.pop()

    setattr(owner, name, timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--all", action="store_true", help="every diagnostic, not the foundation audit only")
    args = parser.parse_args()
    _phase(predictions, "_fast")
    for name in ("duplicates", "gold", "candidates", "left_out", "build"):
        _phase(predictions._Assembler, name)
    _phase(fusion.FusionRule, "fuse")
    _phase(diagnosis, "_summarise")
    threading.Thread(target=_sample, daemon=True).start()
    _stack[:] = ["load"]
    pset = predictions.load_predictions(args.file, labels="meld")
    _stack[:] = ["diagnose"]
    result = diagnosis.diagnose(pset, diagnostics="all" if args.all else None)
    _stack[:] = ["json"]
    json.dumps(result.to_dict(), ensure_ascii=False, allow_nan=False)
    time.sleep(0.05)
    for phase, peak in _peaks.items():
        print(f"{phase:40s} peak RSS {peak:8,d} MB")
    print(f"{'whole run':40s} peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024:8,d} MB")
    for name, value in vars(pset).items():
        array = getattr(value, "codes", value)  # the scores as held: float64, or their one-byte codes
        if isinstance(array, np.ndarray):
            print(f"set.{name.lstrip('_'):36s} {array.nbytes / 2**20:10,.0f} MB  {array.dtype}")
        elif isinstance(array, pa.Array):  # the instance ids as the reader keeps them
            print(f"set.{name.lstrip('_'):36s} {array.nbytes / 2**20:10,.0f} MB  {array.type} (Arrow)")

if __name__ == "__main__":
    main()
