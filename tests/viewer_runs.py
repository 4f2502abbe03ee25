"""Runs for the viewer tests: a small one full of XSS probes, a cached 1M-instance one, and
a ``modsab view`` server started as a subprocess on a free loopback port."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import synthetic

ROOT = Path(__file__).resolve().parents[1]
BAD_LABEL = '<img src=x onerror="window.__xss=3">'
BAD_AGENT = "</script><script>window.__xss=4</script>"
BAD_FIELD = "<svg onload=window.__xss=5>"
#: Instances of the large run and its dataset names.
MILLION = 1_000_000


def env() -> dict[str, str]:
    """The environment for ``python -m modsab`` subprocesses (this checkout's sources first)."""
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    return out


def xss_run(directory: Path, n: int = 600) -> Path:
    """A run directory whose ids, labels, agent names, raw answers, descriptors (values and a
    field name) and config carry payloads; with instances.parquet and diagnosis.json as
    ``modsab run`` leaves them, plus an agent run store under ``agents/``."""
    import pandas as pd

    from modsab.agents.store import RunStore
    from modsab.core.diagnosis import diagnose

    agents = {"text": (0.6, 75), "audio": (0.35, 85), BAD_AGENT: (0.4, 80), "base": (0.45, 70)}
    run = synthetic.write_run(
        directory, n, xss=True, diagnostics="modsab", labels=(*synthetic.MELD, BAD_LABEL), prior=None, agents=agents
    )
    frame = pd.read_parquet(run / "descriptors.parquet")
    frame[BAD_FIELD] = "face: " + synthetic.XSS[1]
    frame.to_parquet(run / "descriptors.parquet", index=False)
    store = RunStore(run / "agents" / "text")
    try:
        for i, instance in enumerate(frame["instance_id"].tolist()[:50]):
            store.record_answer(
                instance, "text", status="ok", answer=None, raw=f"agent store {i} {synthetic.XSS[i % 3]}", call_key=None
            )
    finally:
        store.close()
    result = diagnose(run, baseline="base", bootstrap=0, causal=True, shapley=True)
    result.write_instances(run / "instances.parquet")
    sections = json.loads((run / "diagnosis.json").read_text(encoding="utf-8"))
    (run / "diagnosis.json").write_text(
        json.dumps({**sections, **result.to_dict()}, ensure_ascii=False, allow_nan=False), encoding="utf-8"
    )
    return run


#: What :func:`million_run` makes; change it when the recipe changes (the cache key has it).
RECIPE = "modsab synth --n 1000000 --datasets 2; modsab diagnose --instances --bootstrap 100; descriptors v1"


def _cache_key() -> str:
    digest = hashlib.sha256(RECIPE.encode())
    sources = [ROOT / "src/modsab/data/synth.py"]
    for folder in ("core", "contract", "diagnostics"):
        sources += sorted((ROOT / "src/modsab" / folder).rglob("*.py"))
    for path in sources:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def million_run() -> Path:
    """A 1M-instance run made by ``modsab synth`` and ``modsab diagnose --instances``, with
    descriptors; cached under the temp dir (``$MODSAB_TEST_CACHE``) by a hash of the code
    that makes it. The 760 MB predictions file is deleted once diagnosed."""
    base = Path(os.environ.get("MODSAB_TEST_CACHE") or Path(tempfile.gettempdir()) / "modsab-test-cache")
    run = base / f"view-1m-{_cache_key()}"
    if (run / "instances.parquet").is_file() and (run / "diagnosis.json").is_file():
        return run
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="view-1m-", dir=base))
    try:
        modsab = [sys.executable, "-m", "modsab"]
        synth = [*modsab, "synth", str(work), "--n", str(MILLION), "--datasets", "2", "--no-evaluate"]
        subprocess.run(synth, check=True, env=env(), timeout=900, capture_output=True)
        with (work / "diagnosis.json").open("w", encoding="utf-8") as out:
            subprocess.run(
                [*modsab, "diagnose", str(work), "--instances", str(work / "instances.parquet"), "--json"]
                + ["--bootstrap", "100"],
                check=True,
                env=env(),
                timeout=900,
                stdout=out,
                stderr=subprocess.DEVNULL,
            )
        (work / "predictions.jsonl").unlink()
        _million_descriptors(work / "descriptors.parquet")
        if run.exists():
            shutil.rmtree(run)
        os.replace(work, run)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return run


def _million_descriptors(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ids = pc.binary_join_element_wise("i", pc.cast(pa.array(range(MILLION)), pa.string()), "")
    transcript = pc.binary_join_element_wise("utterance number ", pc.cast(pa.array(range(MILLION)), pa.string()), "")
    pq.write_table(pa.table({"instance_id": ids, "transcript": transcript}), path, row_group_size=100_000)


class ServerURL(str):
    """The server's URL, with the process id of the server."""

    pid: int


@contextmanager
def view_server(run: Path, *extra: str, timeout: float = 120):
    """``python -m modsab view RUN --port 0`` as a subprocess: yields its URL (a
    :class:`ServerURL`), stops that process after."""
    process = subprocess.Popen(
        [sys.executable, "-m", "modsab", "view", str(run), "--port", "0", *extra],
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    try:
        deadline = time.monotonic() + timeout
        url = None
        seen = []
        while url is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                if process.poll() is not None:
                    break
                continue
            seen.append(line)
            if "http://127.0.0.1:" in line:
                url = line.split("modsab view: ", 1)[1].split(" ", 1)[0]
        if url is None:
            raise RuntimeError(f"modsab view did not start: {''.join(seen)[-2000:]}")
        url = ServerURL(url)
        url.pid = process.pid
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
