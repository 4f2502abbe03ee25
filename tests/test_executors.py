"""``[run] executor``: the local executor and a pool of Ray actors give the same results,
each item exactly once, and a run's outputs do not depend on where describe ran."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from _cli import modsab
from test_batched_reader import assert_same_sets
from test_order_invariance import write

from modsab.contract.errors import InputError
from modsab.contract.predictions import load_predictions
from modsab.core.diagnosis import diagnose
from modsab.data import synth
from modsab.run.config import load_config
from modsab.run.executors import ExecutorSettings, make_executor
from modsab.run.executors._workload import SleepWork

TREE = Path(__file__).resolve().parents[1]
EXAMPLE = TREE / "examples" / "ravdess-mini" / "run.toml"
OUTPUTS = ("descriptors.parquet", "predictions.jsonl", "diagnosis.json")


@pytest.fixture(autouse=True)
def _no_ray_token(monkeypatch):
    """Ray keeps its authentication mode per process (a local ray.init turns tokens on, the
    test cluster runs without): every Ray of these tests runs without, so they can share one
    pytest process in any order."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")


def _failed(message: str) -> str:
    return f"failed: {message}"


def _config(tmp_path: Path, run: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(f"[run]\n{run}\n[dataset]\nloader = \"ravdess\"\npath = \"clips\"\n"
                    "[[agents]]\nname = \"a\"\nkind = \"probe\"\nfeatures = \"audio\"\n")
    return path


def test_an_unknown_executor_names_the_key_and_the_choices(tmp_path):
    with pytest.raises(InputError) as info:
        load_config(_config(tmp_path, 'executor = "dask"'))
    assert "run.executor" in str(info.value.item) and "'local' or 'ray'" in info.value.message


def test_ray_address_without_the_ray_executor_is_refused(tmp_path):
    with pytest.raises(InputError) as info:
        load_config(_config(tmp_path, 'ray_address = "auto"'))
    assert "ray_address" in info.value.message
    config = load_config(_config(tmp_path, 'executor = "ray"\nray_address = "auto"'))
    assert (config.run.executor, config.run.ray_address) == ("ray", "auto")


@pytest.mark.parametrize("workers", [1, 2])
def test_the_local_executor_gives_each_item_one_result(workers):
    items = list(range(7))
    with make_executor("local", ExecutorSettings(workers=workers)) as executor:
        got = list(executor.map(SleepWork(0.01), items, failed=_failed))
    positions = Counter(position for position, _ in got)
    assert positions == Counter(range(7))
    assert all(result[0] == items[position] for position, result in got)
    pids = {pid for _, (_, pid) in got}
    assert (pids == {os.getpid()}) if workers == 1 else (os.getpid() not in pids)  # here, or in pool processes


def _needs_ray():
    pytest.importorskip("ray", reason="ray is not installed (pip install 'modsab[ray]')")


@pytest.mark.slow
def test_a_ray_pool_gives_each_item_one_result_and_keeps_a_failing_item_to_itself():
    _needs_ray()
    items = list(range(23))
    settings = ExecutorSettings(workers=2, batch_size=3, cpus_per_worker=0.5)
    with make_executor("ray", settings) as executor:
        got = dict(executor.map(SleepWork(0.01, fail_on=5), items, failed=_failed))
        again = dict(executor.map(SleepWork(0.01, fail_on=5), items[:4], failed=_failed))  # the same actors
        one = dict(executor.map(SleepWork(0.01), items[:1], failed=_failed))  # another factory, one item:
        alone = executor.nodes_of_actors()                                      # one actor, not an idle second
        dict(executor.map(SleepWork(0.01), items[:5], failed=_failed))  # more items: topped up to two
        topped = executor.nodes_of_actors()
    assert len(alone) == 1 and one[0][0] == 0 and len(topped) == 2
    assert sorted(got) == items
    assert got[5] == "failed: ValueError: item 5 fails on purpose"
    assert all(got[i][0] == i for i in items if i != 5)
    pids = {got[i][1] for i in items if i != 5}
    assert len(pids) == 2 and os.getpid() not in pids  # two actors, neither of them this process
    assert {again[i][1] for i in range(4)} <= pids


def _run(config: Path, *extra: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(TREE / "src")}
    done = subprocess.run([sys.executable, "-m", "modsab", "run", str(config), *extra], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


def assert_same_outputs_under_both_executors(tmp_path: Path, text: str, *extra: str, described: bool = True) -> pd.DataFrame:
    """Run ``text`` (a config without [run]) locally, then on Ray, from the same config path
    into the same run directory, each with a cache of its own (so Ray describes everything
    itself, and fits every probe itself): the three output files must be byte-identical.
    ``described``: the dataset has media, every item of which must be described."""
    config, run_dir = tmp_path / "run.toml", tmp_path / "run"
    copies = {}
    for executor in ("local", "ray"):
        config.write_text(f'[run]\ndir = "{run_dir}"\ncache_dir = "{tmp_path / f"cache-{executor}"}"\n'
                          f'executor = "{executor}"\n' + text)
        _run(config, *extra)
        copies[executor] = run_dir.rename(tmp_path / f"run-{executor}")
    for name in OUTPUTS:
        local, ray = (copies["local"] / name).read_bytes(), (copies["ray"] / name).read_bytes()
        assert local == ray, f"{name} differs between the local and the Ray executor"
    descriptors = pd.read_parquet(copies["ray"] / "descriptors.parquet")
    if described:
        assert descriptors["error"].isna().all()  # the same because it worked, not because both failed
    return descriptors


@pytest.mark.slow
def test_the_example_gives_the_same_outputs_on_ray(tmp_path):
    """Ten clips of the example (the audio-visual one among them: Whisper, openSMILE and
    MediaPipe all run on the actors), a scorer on the transcript, one on the face, the audio probe."""
    _needs_ray()
    for name in ("xllamacpp", "opensmile", "faster_whisper", "mediapipe"):
        pytest.importorskip(name)
    clips = EXAMPLE.parent / "clips"
    text = EXAMPLE.read_text().split("[dataset]", 1)[1].replace('path = "clips"', f'path = "{clips}"')
    descriptors = assert_same_outputs_under_both_executors(tmp_path, "[dataset]" + text, "--limit", "10",
                                                     "--agents", "text,vision,audio_probe")
    assert len(descriptors) == 10 and descriptors["transcript"].notna().all()
    assert descriptors["face_quality"].notna().sum() == 1  # the audio-visual clip


@pytest.mark.slow
def test_200_ravdess_clips_give_the_same_outputs_on_ray(tmp_path, data_dir):
    """200 RAVDESS speech clips, voice features (the ASR and the face are covered by the
    example's test above; here the number of items and batches is what grows)."""
    _needs_ray()
    pytest.importorskip("opensmile")
    descriptors = assert_same_outputs_under_both_executors(tmp_path, f"""
[dataset]
loader = "ravdess"
path = "{data_dir / 'ravdess' / 'speech_16k'}"
limit = 200
[describe]
asr = false
face = false
workers = 2
[[agents]]
name = "audio_probe"
kind = "probe"
features = "audio"
[audit]
bootstrap = 200
[outputs]
report = ""
""")
    assert len(descriptors) == 200 and descriptors["audio_quality"].notna().all()


@pytest.mark.slow
def test_killing_a_worker_node_mid_describe_still_describes_every_item_once(tmp_path, request):
    """A head and a worker node (``ray start`` on 127.0.0.1, one CPU each, one actor each);
    the worker node's whole process tree is SIGKILLed while it holds batches: they go to
    the head's actor, and every clip is described exactly once (callbacks and store rows)."""
    _needs_ray()
    for name in ("opensmile", "faster_whisper"):
        pytest.importorskip(name)
    from ray_cluster import Cluster

    from modsab.descriptors import DescribeConfig, MediaItem, describe
    from modsab.descriptors.describe import extractor_factory, item_key

    clips = sorted((EXAMPLE.parent / "clips").glob("*.flac"))[:16]
    items = [MediaItem(p.stem, audio_path=p, speaker=p.stem.rsplit("-", 1)[1]) for p in clips]
    config = DescribeConfig(face=False)
    cluster = Cluster(cpus_per_node=1)
    request.addfinalizer(cluster.close)
    executor = make_executor("ray", ExecutorSettings(workers=2, ray_address=cluster.address, batch_size=2))
    seen: Counter[str] = Counter()

    def on_record(item, record, cached):
        seen[item.instance_id] += 1
        if sum(seen.values()) == 3:  # both actors hold two batches now
            cluster.kill_worker()

    try:
        executor.warm(extractor_factory(config, max(1, (os.cpu_count() or 1) // 2)))  # what describe will use
        assert len(set(executor.nodes_of_actors())) == 2  # one actor on each node
        table = describe(items, config=config, executor=executor, cache=tmp_path / "d.sqlite", on_record=on_record)
    finally:
        executor.close()
    assert cluster.worker.poll() is not None and executor.deaths == 1
    assert seen == Counter({item.instance_id: 1 for item in items})
    assert table["error"].isna().all() and table["transcript"].notna().all()
    with sqlite3.connect(tmp_path / "d.sqlite") as db:
        keys = [key for (key,) in db.execute("select key from records")]
    assert sorted(keys) == sorted(item_key(item, config) for item in items)


@pytest.mark.slow
def test_the_offline_scorer_on_ray_actors_answers_as_it_does_in_process():
    """``[run] executor = "ray"`` puts the offline models on actors (``ray`` backend): the same
    model name and base URL (so the same cache keys) and the same answers, calls in parallel."""
    _needs_ray()
    pytest.importorskip("xllamacpp")
    import asyncio

    from modsab.agents.local import local_backend
    from modsab.agents.ray_local import RayLocalBackend
    from modsab.agents.run import AgentRunConfig, make_backend
    from modsab.contract.labels import LabelSet

    labels = LabelSet.parse("meld")
    backend = make_backend(AgentRunConfig(model="local:smollm2-scorer", labels=labels, executor="ray", workers=2))
    here = local_backend("local:smollm2-scorer")
    assert isinstance(backend, RayLocalBackend)
    assert (backend.model, backend.base_url, backend.kind) == (here.model, here.base_url, here.kind)
    prompts = [[{"role": "user", "content": f"Transcript: {text}\nEmotion:"}]
               for text in ("I am so happy for you!", "Leave me alone.", "What? No way!", "It is fine.")]
    params = {"labels": list(labels), "content_free": "Transcript: N/A\nEmotion:"}

    async def ask_all():
        try:
            return await asyncio.gather(*(backend.complete(p, params, None) for p in prompts))
        finally:
            await backend.aclose()

    answers = asyncio.run(ask_all())
    assert answers == [here._complete(p, params, None) for p in prompts]
    assert len({answer.text for answer in answers}) > 1  # not one answer for every prompt


@pytest.mark.slow
def test_a_describe_resumed_on_the_other_executor_repeats_no_finished_item(tmp_path):
    """The driver writes the cache under the same keys on either executor: six clips done
    locally, then ten on Ray with the same cache, only the four new ones are described."""
    _needs_ray()
    pytest.importorskip("opensmile")
    from modsab.descriptors import DescribeConfig, MediaItem, describe

    clips = sorted((EXAMPLE.parent / "clips").glob("*.flac"))[:10]
    items = [MediaItem(p.stem, audio_path=p, speaker="s") for p in clips]
    config, cache = DescribeConfig(asr=False, face=False), tmp_path / "d.sqlite"
    fresh: list[str] = []
    first = describe(items[:6], config=config, cache=cache)
    with make_executor("ray", ExecutorSettings(workers=2)) as executor:
        again = describe(items, config=config, cache=cache, executor=executor,
                         on_record=lambda item, record, cached: cached or fresh.append(item.instance_id))
    assert sorted(fresh) == sorted(item.instance_id for item in items[6:])
    assert len(first) == 6 and len(again) == 10 and again["error"].isna().all()


# -- after describe: a Parquet directory reduced file by file, the probes' folds fitted ------


def _parquet_directory(folder: Path, files: int = 16, n: int = 400) -> Path:
    """A ``modsab synth`` set (two datasets, records shuffled so instances span files) as
    ``files`` Parquet part files and a ``_SUCCESS`` marker, as a Spark or Ray job writes them."""
    config = synth.SynthConfig(n_instances=n, n_datasets=2, scenario="mixed", seed=4)
    pset, planted = synth.generate(config)
    synth.write(pset, planted, folder, config)
    lines = (folder / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(lines[i]) for i in np.random.default_rng(0).permutation(len(lines))]
    single = write(records, folder, "parquet")
    table = pq.read_table(single)
    single.unlink()
    out = folder / "parts"
    out.mkdir()
    bounds = np.linspace(0, table.num_rows, files + 1).astype(int)
    for i, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        pq.write_table(table.slice(start, stop - start), out / f"part-{i:05d}.parquet")
    (out / "_SUCCESS").write_text("")
    return out


def _out_of_range_in(parts: Path, name: str = "part-00011.parquet") -> Path:
    """A copy of ``parts`` whose file ``name`` holds a confidence of 140."""
    import shutil

    import pyarrow as pa

    bad = shutil.copytree(parts, parts.with_name(parts.name + "-bad"))
    rows = pq.read_table(bad / name).to_pylist()
    rows[3]["candidates"][0]["confidence"] = 140
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(bad / name)), bad / name)
    return bad


EVERYTHING = ("--json", "--all", "--bootstrap", "30", "--folds", "3")


def test_a_parquet_directory_reduced_on_an_executor_is_the_set_read_here(tmp_path):
    """The seam, on the local executor: each file reduced by a worker (its partial pickled
    back), merged here: the same set, the same diagnosis and the same error."""
    parts = _parquet_directory(tmp_path, files=6, n=150)
    with make_executor("local", ExecutorSettings(workers=1)) as executor:
        assert_same_sets(load_predictions(parts, executor=executor), load_predictions(parts))
        here = diagnose(parts, bootstrap=30, diagnostics="all", n_folds=3).to_dict()
        assert diagnose(parts, bootstrap=30, diagnostics="all", n_folds=3, executor=executor).to_dict() == here
        bad = _out_of_range_in(parts, "part-00004.parquet")
        with pytest.raises(InputError) as on_it:
            load_predictions(bad, executor=executor)
    with pytest.raises(InputError) as without:
        load_predictions(bad)
    assert on_it.value.render() == without.value.render() and "confidence 140 is outside" in on_it.value.render()


def test_diagnose_executor_options_are_checked_and_local_is_the_default(tmp_path, capsys):
    parts = _parquet_directory(tmp_path, files=3, n=60)
    code, out, err = modsab(capsys, "diagnose", parts, "--executor", "dask")
    assert code == 2 and "'local' or 'ray'" in err and "unknown executor 'dask'" in err
    code, out, err = modsab(capsys, "diagnose", parts, "--ray-address", "auto")
    assert code == 2 and "--ray-address applies to --executor ray only" in err
    code, plain, err = modsab(capsys, "diagnose", parts, *EVERYTHING)
    assert code == 0, err
    code, local, err = modsab(capsys, "diagnose", parts, *EVERYTHING, "--executor", "local", "--workers", "1")
    assert code == 0 and local == plain


@pytest.mark.slow
def test_a_parquet_directory_is_reduced_on_ray_to_the_local_json(tmp_path, capsys, caplog):
    """``modsab diagnose DIR --executor ray``: 16 files, one task each on the actors, merged
    here: stdout byte-identical to the local run; an error in one file is the local error."""
    _needs_ray()
    from modsab.run.executors.ray import ray_session

    parts = _parquet_directory(tmp_path)
    bad = _out_of_range_in(parts)
    local = [modsab(capsys, "diagnose", path, *EVERYTHING) for path in (parts, bad)]
    assert local[0][0] == 0 and local[1][0] == 2 and "row " in local[1][2]
    with ray_session(ExecutorSettings(workers=2)):  # one local Ray for both commands
        on_ray = [modsab(capsys, "diagnose", path, *EVERYTHING, "--executor", "ray") for path in (parts, bad)]
    assert on_ray == local
    assert not [r for r in caplog.records if r.name == "modsab.spread"]  # no file fell back to the driver


@pytest.mark.slow
def test_a_parquet_directory_is_reduced_on_both_nodes_of_a_real_cluster(tmp_path, request, caplog):
    """A head and a worker node (``ray start`` on 127.0.0.1): one actor on each, each reading
    the files of its tasks from the (shared) disk; the driver's merge is the local set."""
    _needs_ray()
    from ray_cluster import Cluster

    from modsab.contract.batches import DEFAULT_BATCH_ROWS
    from modsab.contract.spread import ReduceFiles

    parts = _parquet_directory(tmp_path)
    here = diagnose(parts, bootstrap=30, diagnostics="all", n_folds=3).to_dict()
    cluster = Cluster(cpus_per_node=1)
    request.addfinalizer(cluster.close)
    executor = make_executor("ray", ExecutorSettings(workers=2, ray_address=cluster.address, batch_size=1))
    try:
        executor.warm(ReduceFiles("percent", DEFAULT_BATCH_ROWS))  # the factory diagnose's reader uses
        assert len(set(executor.nodes_of_actors())) == 2
        there = diagnose(parts, bootstrap=30, diagnostics="all", n_folds=3, executor=executor).to_dict()
        assert len(executor.nodes_of_actors()) == 2 and executor.deaths == 0  # the same actors did the work
    finally:
        executor.close()
    assert json.dumps(there) == json.dumps(here)
    assert not [r for r in caplog.records if r.name == "modsab.spread"]  # every file was reduced on the cluster


@pytest.mark.slow
def test_probe_folds_fitted_on_ray_actors_are_the_folds_fitted_here():
    _needs_ray()
    from modsab.agents.probes import ProbeAgent

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 240)
    features = rng.normal(size=(240, 12)) + 0.4 * y[:, None]
    groups = [f"s{i % 9}" for i in range(240)]
    here = ProbeAgent().cross_fit_predict(features, y, groups, n_labels=4)
    with make_executor("ray", ExecutorSettings(workers=2, batch_size=1, cpus_per_worker=0.5)) as executor:
        there = ProbeAgent().cross_fit_predict(features, y, groups, n_labels=4, executor=executor)
        assert len(executor.nodes_of_actors()) == 2  # the folds went to the actors
    assert there.tobytes() == here.tobytes()


@pytest.mark.slow
def test_a_run_of_probe_agents_gives_the_same_outputs_on_ray(tmp_path):
    """Two probes on a manifest's feature columns (10 speakers, 5 folds each): with
    ``executor = "ray"`` their folds are fitted on actors, and predictions.jsonl and
    diagnosis.json are byte-identical to the local run's."""
    _needs_ray()
    rng = np.random.default_rng(1)
    rows = [{"instance_id": f"r{k:03d}", "gold": ("neg", "neu", "pos")[k % 3], "speaker": f"p{k % 10}",
             **{f"egemaps_f{j}": round(float(rng.normal((k % 3) * 0.4, 1)), 4) for j in range(6)},
             **{f"au_{j:02d}": round(float(rng.normal((k % 3) * 0.3, 1)), 4) for j in range(4)}} for k in range(150)]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert_same_outputs_under_both_executors(tmp_path, f"""
[dataset]
loader = "manifest"
path = "{manifest}"
labels = "neg,neu,pos"
[[agents]]
name = "voice"
kind = "probe"
features = "audio"
[[agents]]
name = "face"
kind = "probe"
features = ["au_*"]
[audit]
bootstrap = 100
[outputs]
report = ""
""", described=False)


# -- modsab describe --executor ray: the CLI's way to [run] executor = "ray" ----------------


def _clip_manifest(folder: Path, n: int) -> Path:
    clips = sorted((EXAMPLE.parent / "clips").glob("*.flac"))[:n]
    manifest = folder / "m.csv"
    manifest.write_text("instance_id,audio_path\n" + "".join(f"{clip.stem},{clip}\n" for clip in clips))
    return manifest


def test_describe_ray_address_needs_the_ray_executor(tmp_path, capsys):
    code, _, err = modsab(capsys, "describe", _clip_manifest(tmp_path, 1), "-o", tmp_path / "d.parquet",
                          "--ray-address", "auto")
    assert code == 2 and "--ray-address applies to --executor ray only" in err
    code, _, err = modsab(capsys, "describe", _clip_manifest(tmp_path, 1), "-o", tmp_path / "d.parquet",
                          "--executor", "dask")
    assert code == 2 and "unknown executor 'dask'" in err


@pytest.mark.slow
def test_describe_on_ray_actors_writes_the_local_table(tmp_path, capsys):
    _needs_ray()
    pytest.importorskip("opensmile")
    manifest = _clip_manifest(tmp_path, 4)
    for executor in ("local", "ray"):
        code, _, err = modsab(capsys, "describe", manifest, "-o", tmp_path / f"{executor}.parquet", "--no-asr",
                              "--no-face", "--no-cache", "-q", "--executor", executor, "--workers", "2")
        assert code == 0 and "4 extracted" in " ".join(err.split()), err
    local, ray = (pd.read_parquet(tmp_path / f"{name}.parquet") for name in ("local", "ray"))
    assert local.equals(ray) and local["error"].isna().all()
