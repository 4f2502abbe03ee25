"""Diagnostics beyond the paper vs the foundation pipeline, on the same 1M x 4 x 7 data.

    PYTHONPATH=src python benchmarks/bench_diagnostics.py [--n 1000000] [--bootstrap 1000]

The data come from the synthetic generator (``modsab.synth.generate``, arrays, no file
I/O). "foundation" is ``diagnose(pset)`` with default options; "diagnostics" is each
section of ``Diagnosis.extend`` on that result, timed one by one; the ratio is
(foundation + all diagnostics) / foundation. The goal of issue 7 is <= 10x.
"""

from __future__ import annotations

import argparse
import time

from modsab.beyond import DIAGNOSTICS
from modsab.diagnosis import diagnose
from modsab.synth import SynthConfig, generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import sklearn.isotonic  # noqa: F401  (import once, outside the timings)
    import sklearn.linear_model  # noqa: F401

    start = time.perf_counter()
    pset, _ = generate(SynthConfig(n_instances=args.n, scenario="mixed", n_datasets=3, seed=args.seed))
    print(
        f"generated {pset.n_instances} instances x {len(pset.agents)} agents x {len(pset.labels)} labels "
        f"in {time.perf_counter() - start:.1f}s"
    )

    start = time.perf_counter()
    result = diagnose(pset, bootstrap=args.bootstrap, seed=args.seed)
    foundation = time.perf_counter() - start
    print(f"foundation diagnose (defaults): {foundation:.2f}s")

    total = 0.0
    for name in DIAGNOSTICS:
        start = time.perf_counter()
        result.extend(name)
        spent = time.perf_counter() - start
        total += spent
        print(f"  {name:15s} {spent:7.2f}s")
    print(f"all diagnostics: {total:.2f}s")
    print(f"ratio (foundation + diagnostics) / foundation: {(foundation + total) / foundation:.1f}x")
    print(f"ratio diagnostics / foundation: {total / foundation:.1f}x")


if __name__ == "__main__":
    main()
