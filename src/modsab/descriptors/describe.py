"""Orchestration: items in, one row of features and descriptions per item out.

Work per item (in a worker process when ``workers > 1``): decode, transcribe (unless the
manifest gives a transcript), voice features, face summary. That raw record is cached in
SQLite under a key made of the media files' SHA-256, the given transcript, the extractor
versions and the options, so a re-run (or a resumed run) only does what is new. Errors are
per item and per modality; they are recorded in the ``error`` column and never stop the
batch (errored items are not cached, so a re-run tries them again).

Descriptions are written afterwards over the whole table, because the audio description
compares each clip with its speaker's (or the run's) other clips.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import sqlite3
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from modsab.contract.instance import Instance
from modsab.descriptors import asr, face, media, voice
from modsab.descriptors.manifest import MANIFEST_COLUMNS, items_from_records, read_manifest

if TYPE_CHECKING:
    from modsab.run.executors import Executor


def extractor_version(asr_window: str = "fit") -> str:
    """Versions of the extractors that made a record (the ASR one depends on its window)."""
    return "|".join(("media-2", asr.asr_version(asr_window), voice.VOICE_VERSION, face.FACE_VERSION))



@dataclass(frozen=True)
class DescribeConfig:
    """Options that change what is extracted (and so are part of the cache key)."""

    fps: float = 5.0  # video frames analysed per second
    max_side: int = 640  # frames are scaled so their longer side is at most this
    asr: bool = True  # transcribe when the manifest gives no transcript
    face: bool = True  # analyse video frames
    beam_size: int = 1  # Whisper beam; 1 is greedy and fastest
    asr_window: str = "fit"  # Whisper's encoder window, "fit" or "full" (asr.ASR_WINDOWS)

    def __post_init__(self) -> None:
        asr.asr_version(self.asr_window)  # an unknown window fails here, not in a worker

    def fingerprint(self) -> str:
        """The options part of the cache key. With ``asr_window="full"`` (or no ASR) it is the
        key records had before the window option existed, so those caches still serve."""
        fields = asdict(self)
        window = fields.pop("asr_window")
        if not self.asr:
            window = "full"  # nothing transcribed: the window changes nothing
        elif window != "full":
            fields["asr_window"] = window
        return json.dumps({"version": extractor_version(window), **fields}, sort_keys=True)


# -- per-item extraction (runs in workers) ---------------------------------------------


class Extractor:
    """Holds the models of one process and turns a :class:`~modsab.contract.instance.Instance` into a raw record."""

    def __init__(self, config: DescribeConfig, *, threads: int = 0) -> None:
        self.config = config
        self.transcriber = asr.Transcriber(threads=threads, beam_size=config.beam_size, window=config.asr_window)
        self.face = face.FaceAnalyzer()

    def __call__(self, item: Instance) -> dict[str, Any]:
        record: dict[str, Any] = {"errors": {}, "seconds": {}}
        self._audio(item, record)
        if item.video_path is not None and self.config.face:
            self._timed(record, "video", self._video, item.video_path)
        return record

    def _timed(self, record: dict[str, Any], modality: str, step: Callable, *args) -> Any:
        start = time.perf_counter()
        try:
            return step(record, *args)
        except media.MediaError as error:
            record["errors"][modality] = str(error)
        except Exception as error:  # an extractor bug must not stop the batch
            where = traceback.extract_tb(error.__traceback__)[-1]
            record["errors"][modality] = (f"{type(error).__name__}: {error} "
                                          f"({Path(where.filename).name}:{where.lineno})")
        finally:
            seconds = record["seconds"]
            seconds[modality] = seconds.get(modality, 0.0) + time.perf_counter() - start
        return None

    def _audio(self, item: Instance, record: dict[str, Any]) -> None:
        source = item.audio_path or item.video_path
        audio = self._timed(record, "audio", lambda _r, p: media.load_audio(p), source)
        if audio is None:
            if "audio" not in record["errors"]:
                record["audio_missing"] = f"no audio track in {Path(source).name}"
            if item.transcript is not None:
                record["transcript"] = asr.Transcript(item.transcript).to_dict()
            return
        record["audio_duration_s"] = audio.size / media.SAMPLE_RATE
        words: list[asr.Word] = []
        if item.transcript is not None:
            record["transcript"] = asr.Transcript(item.transcript).to_dict()
        elif self.config.asr:
            start = time.perf_counter()
            transcript = self.transcriber(audio)
            record["seconds"]["asr"] = time.perf_counter() - start
            record["transcript"] = transcript.to_dict()
            words = transcript.words
        start = time.perf_counter()
        record["voice"] = voice.voice_features(audio, words)
        record["seconds"]["voice"] = time.perf_counter() - start

    def _video(self, record: dict[str, Any], path: Path) -> None:
        frames = media.load_frames(path, fps=self.config.fps, max_side=self.config.max_side)
        start = time.perf_counter()
        record["face"] = self.face(frames)
        record["seconds"]["face"] = time.perf_counter() - start


# -- cache -------------------------------------------------------------------------------


class Cache:
    """Raw records in one SQLite file, keyed by :func:`item_key`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.execute("CREATE TABLE IF NOT EXISTS records "
                         "(key TEXT PRIMARY KEY, record TEXT NOT NULL, created REAL NOT NULL)")

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT record FROM records WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, record: dict[str, Any]) -> None:
        self._db.execute("INSERT OR REPLACE INTO records VALUES (?, ?, ?)",
                         (key, json.dumps(record), time.time()))
        self._db.commit()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0]

    def close(self) -> None:
        self._db.close()


def item_key(item: Instance, config: DescribeConfig) -> str:
    """Content hash of the item's media + transcript + extractor versions and options."""
    parts = [config.fingerprint(), item.transcript or ""]
    for path in (item.audio_path, item.video_path):
        parts.append("" if path is None else media.file_digest(path))
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


# -- the batch ---------------------------------------------------------------------------


def _as_items(items: str | Path | Iterable[Instance | Mapping[str, Any]]) -> list[Instance]:
    if isinstance(items, str | Path):
        return read_manifest(items)
    # instances go through the same checks as manifest rows (ids unique, a path each)
    return items_from_records([i.model_dump(include=set(MANIFEST_COLUMNS)) if isinstance(i, Instance) else i
                               for i in items])


def describe(
    items: str | Path | Iterable[Instance | Mapping[str, Any]],
    *,
    config: DescribeConfig | None = None,
    workers: int = 1,
    cache: str | Path | None = None,
    progress: bool = False,
    on_record: Callable[[Instance, dict[str, Any], bool], None] | None = None,
    keyframes: int = 0,
    frames_dir: str | Path | None = None,
    describers: Sequence[Any] = (),
    llm_dir: str | Path | None = None,
    llm_cache_dir: str | Path | None = None,
    labels: Sequence[str] | None = None,
    on_describer: Callable[[Any, Any], None] | None = None,
    executor: Executor | None = None,
) -> pd.DataFrame:
    """Describe every item; one row per item (columns: see :func:`build_table`).

    ``items`` is a manifest path or instances / manifest-like mappings. ``cache`` is a
    SQLite file reused across runs. ``on_record(item, record, from_cache)`` is called as
    each item finishes (the CLI and the benchmark use it). With ``workers > 1`` the
    workers are spawned processes: call it under ``if __name__ == "__main__":`` in a script.
    ``executor`` (:mod:`modsab.run.executors`, e.g. a Ray actor pool) replaces ``workers``;
    records come back to this process, which alone writes the cache.

    ``keyframes`` (0-4) saves that many key frames of each video as JPEG files in
    ``frames_dir`` (columns ``peak_frame_path``, ``frame_paths``; see
    :mod:`~modsab.descriptors.keyframes`). ``describers`` are LLM descriptors
    (:class:`~modsab.descriptors.llm.LLMDescriber`: ``scene``, ``voice_llm``), run after the
    extraction through the agents' engine with their run stores under ``llm_dir`` and the
    response cache in ``llm_cache_dir``; ``labels`` are the label words their leakage check
    looks for (default: every preset's). ``on_describer(describer, stats)`` follows each.
    """
    config = config or DescribeConfig()
    item_list = _as_items(items)
    store = Cache(cache) if cache is not None else None
    records: dict[str, dict[str, Any]] = {}
    todo: list[tuple[Instance, str]] = []
    bar = _progress(progress)
    try:
        task = bar.add_task("describing", total=len(item_list)) if bar is not None else None
        for item in item_list:
            try:
                key = item_key(item, config)
            except OSError as error:
                where = f": {error.filename}" if error.filename else ""
                records[item.instance_id] = {"errors": {"file": f"{error.strerror or error}{where}"}}
                _advance(bar, task)
                continue
            cached = store.get(key) if store is not None else None
            if cached is not None:
                records[item.instance_id] = cached
                if on_record:
                    on_record(item, cached, True)
                _advance(bar, task)
            else:
                todo.append((item, key))
        keys = {item.instance_id: key for item, key in todo}
        for item, record in _run(todo, config, workers, executor):
            records[item.instance_id] = record
            if store is not None and not record.get("errors"):
                store.put(keys[item.instance_id], record)
            if on_record:
                on_record(item, record, False)
            _advance(bar, task)
    finally:
        if bar is not None:
            bar.stop()
        if store is not None:
            store.close()
    table = build_table(item_list, records)
    scene = [d for d in describers if d.kind == "scene"]
    wanted = max([keyframes, *(d.frames for d in scene)])
    if wanted:
        if frames_dir is None and cache is None:
            raise ValueError("key frames need frames_dir (or a cache, beside which they go)")
        table = add_keyframes(table, item_list, records, wanted,
                              Path(frames_dir) if frames_dir is not None else Path(cache).parent / "frames")
    for describer in describers:
        if llm_dir is None and cache is None:
            raise ValueError("LLM descriptors need llm_dir (or a cache, beside which their stores go)")
        root = Path(llm_dir) if llm_dir is not None else Path(cache).parent / "describe"
        table = add_description(table, describer, store_dir=root / describer.kind, cache_dir=llm_cache_dir,
                                labels=labels, on_describer=on_describer)
    return table


def add_keyframes(table: pd.DataFrame, items: list[Instance], records: Mapping[str, Mapping[str, Any]], n: int,
                  folder: Path) -> pd.DataFrame:
    """Columns ``peak_frame_path`` and ``frame_paths`` (JSON list, the peak first) for the
    items with a video; a video that cannot be decoded again adds to ``error``."""
    from modsab.descriptors.keyframes import save_keyframes

    peak_paths, lists, errors = [], [], list(table["error"])
    for row, item in enumerate(items):
        record = records.get(item.instance_id) or {}
        summary = record.get("face") or {}
        if item.video_path is None or (not summary and "video" in (record.get("errors") or {})):
            peak_paths.append(None)
            lists.append(None)
            continue
        try:
            paths = save_keyframes(item.video_path, peak=summary.get("peak_time_s"),
                                   duration=summary.get("duration_s") or record.get("audio_duration_s") or 0.0,
                                   n=n, folder=folder)
        except (media.MediaError, OSError) as error:
            errors[row] = "; ".join(filter(None, [errors[row], f"keyframes: {error}"]))
            peak_paths.append(None)
            lists.append(None)
            continue
        peak_paths.append(str(paths[0]))
        lists.append(json.dumps([str(p) for p in paths]))
    table = table.copy()
    table["error"] = errors
    table["peak_frame_path"] = peak_paths
    table["frame_paths"] = lists
    return table


def add_description(table: pd.DataFrame, describer, *, store_dir: Path, cache_dir: str | Path | None,
                    labels: Sequence[str] | None = None, on_describer=None) -> pd.DataFrame:
    """The describer's column and status column (see :mod:`modsab.descriptors.llm`)."""
    from modsab.descriptors.llm import run_describer

    media_of: dict[str, list[str]] = {}
    for row in table.to_dict("records"):
        if describer.kind == "scene":
            listed = row.get("frame_paths")
            media_of[row["instance_id"]] = json.loads(listed) if isinstance(listed, str) else []
        else:
            clip = row.get("audio_path") or row.get("video_path")
            decoded = not pd.isna(row.get("audio_quality", math.nan))  # the audio decoded (voice features)
            media_of[row["instance_id"]] = [clip] if isinstance(clip, str) and decoded else []
    results, stats = run_describer(describer, media_of, store_dir=store_dir, cache_dir=cache_dir, labels=labels)
    if on_describer is not None:
        on_describer(describer, stats)
    table = table.copy()
    table[describer.column] = [results[iid].text for iid in table["instance_id"]]
    table[describer.status_column] = [results[iid].status for iid in table["instance_id"]]
    return table


def _progress(enabled: bool):
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True))
    bar.start()
    return bar


def _advance(bar, task) -> None:
    if bar is not None:
        bar.advance(task)


def _run(todo: list[tuple[Instance, str]], config: DescribeConfig, workers: int, executor: Executor | None = None):
    """Yield ``(item, record)`` as items finish, on ``executor`` (default: the local one with
    ``workers`` processes; in this process for one)."""
    if not todo:
        return
    from modsab.run.executors import ExecutorSettings
    from modsab.run.executors.local import LocalExecutor

    workers = executor.settings.workers if executor is not None else workers
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    runner = executor if executor is not None else LocalExecutor(ExecutorSettings(workers=workers))
    make_worker = extractor_factory(config, threads)
    items = [item for item, _key in todo]
    for position, record in runner.map(make_worker, items, failed=_worker_failed):
        yield items[position], record


def _worker_failed(message: str) -> dict[str, Any]:
    """The record of an item whose worker died (e.g. a decoder crash, a lost node)."""
    return {"errors": {"worker": message}}


def extractor_factory(config: DescribeConfig, threads: int) -> Callable[[], Extractor]:
    """A picklable factory of this process's :class:`Extractor` (models load once per
    process or actor). The same object for the same options, so a Ray pool is reused."""
    key = (config.fingerprint(), threads)
    if key not in _FACTORIES:
        _FACTORIES[key] = functools.partial(_shared_extractor, config, threads)
    return _FACTORIES[key]


_FACTORIES: dict[tuple[str, int], Callable[[], Extractor]] = {}
_EXTRACTORS: dict[tuple[str, int], Extractor] = {}


def _shared_extractor(config: DescribeConfig, threads: int) -> Extractor:
    """In-process extractors are kept, so models load once per process."""
    key = (config.fingerprint(), threads)
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = Extractor(config, threads=threads)
    return _EXTRACTORS[key]


# -- the table ---------------------------------------------------------------------------


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def _base_row(item: Instance, record: Mapping[str, Any]) -> dict[str, Any]:
    """Identity, error and text columns (text quality follows in :func:`build_table`)."""
    errors = record.get("errors") or {}
    transcript = record.get("transcript")
    row: dict[str, Any] = {
        "instance_id": item.instance_id,
        "speaker": item.speaker,
        "audio_path": None if item.audio_path is None else str(item.audio_path),
        "video_path": None if item.video_path is None else str(item.video_path),
        "error": "; ".join(f"{k}: {v}" for k, v in errors.items()) or None,
        "transcript": None,
        "transcript_source": None,
        "asr_logprob": math.nan,
        "asr_no_speech": math.nan,
        "asr_words": None,
    }
    if transcript is not None:
        parsed = asr.Transcript.from_dict(transcript)
        given = item.transcript is not None
        row.update(
            transcript=parsed.text,
            transcript_source="manifest" if given else "asr",
            asr_logprob=parsed.logprob,
            asr_no_speech=parsed.no_speech,
            asr_words=None if given else json.dumps(transcript["words"]),
        )
    return row


def _face_columns(record: Mapping[str, Any], has_video: bool) -> dict[str, Any]:
    summary = record.get("face")
    if summary is None:
        reason = (record.get("errors") or {}).get("video") if has_video else "no video"
        return {"face_description": None, "face_units": None, "face_quality": math.nan,
                "face_issues": reason}
    quality, issues = face.face_quality(summary)
    return {
        "face_description": face.describe_face(summary),
        "face_units": face.face_units_json(summary),
        "face_quality": quality,
        "face_issues": issues,
        "face_frames": summary["frames"],
        "face_frames_with_face": summary["frames_with_face"],
        "face_fraction": summary["face_fraction"],
        "face_size": _nan(summary.get("face_size")),
        "face_blur_laplacian_var": _nan(summary.get("blur_laplacian_var")),
        "face_peak_time_s": _nan(summary.get("peak_time_s")),
        "face_peak_activation": _nan(summary.get("peak_activation")),
        "head_yaw_deg": _nan(summary.get("head_yaw_deg")),
        "head_pitch_deg": _nan(summary.get("head_pitch_deg")),
        "head_roll_deg": _nan(summary.get("head_roll_deg")),
        "gaze_side": _nan(summary.get("gaze_side")),
        "gaze_vertical": _nan(summary.get("gaze_vertical")),
    }


def build_table(items: list[Instance], records: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Rows from raw records, then audio z-scores, descriptions and quality over the table.

    Columns: instance_id, speaker, audio_path, video_path, error; transcript,
    transcript_source, asr_logprob, asr_no_speech, asr_words, text_quality, text_issues;
    audio_description, audio_quality, audio_issues, audio_baseline, z_<cue>, the voice
    features (see :mod:`modsab.descriptors.voice`); face_description, face_units,
    face_quality, face_issues and the face numbers (see :mod:`modsab.descriptors.face`).
    """
    rows, voice_rows = [], []
    for item in items:
        record = records.get(item.instance_id, {"errors": {"item": "not processed"}})
        row = _base_row(item, record)
        row.update(_face_columns(record, item.video_path is not None))
        rows.append(row)
        voice_rows.append(record.get("voice") or {})
    table = pd.DataFrame(rows)
    features = pd.DataFrame(voice_rows, index=table.index)
    quality = [voice.audio_quality(f) if f else (math.nan, None) for f in voice_rows]
    table["audio_quality"] = [q for q, _ in quality]
    table["audio_issues"] = [
        issues if f else _audio_missing(records.get(item.instance_id, {}))
        for (_, issues), f, item in zip(quality, voice_rows, items, strict=True)
    ]
    usable = table["audio_quality"].fillna(0) >= 50
    z, baseline = voice.baseline_zscores(features, table["speaker"], usable=usable)
    features = pd.concat([z, features], axis=1)
    table["audio_baseline"] = baseline.where(features.notna().any(axis=1), None)
    table["audio_description"] = [
        voice.describe_voice(f, baseline=b) if voice_rows[i] else None
        for i, (f, b) in enumerate(zip(features.to_dict("records"), baseline, strict=True))
    ]
    text_q = [
        _text_quality(item, records.get(item.instance_id, {}), f.get("peak_dbfs", 0) < -50)
        for item, f in zip(items, voice_rows, strict=True)
    ]
    table["text_quality"] = [q for q, _ in text_q]
    table["text_issues"] = [i for _, i in text_q]
    table = pd.concat([table, features], axis=1)
    return table[_column_order(table.columns)]


def _audio_missing(record: Mapping[str, Any]) -> str | None:
    errors = record.get("errors") or {}
    return errors.get("audio") or record.get("audio_missing")


def _text_quality(item: Instance, record: Mapping[str, Any], silent: bool) -> tuple[float, str | None]:
    if record.get("transcript") is None:
        return math.nan, "no transcript"
    if item.transcript is not None:
        return 100.0, "given in the manifest"
    transcript = asr.Transcript.from_dict(record["transcript"])
    return asr.transcript_quality(transcript, audio_silent=silent)


_FIRST = ("instance_id", "speaker", "audio_path", "video_path", "error",
          "transcript", "transcript_source", "text_quality", "text_issues",
          "audio_description", "audio_quality", "audio_issues", "audio_baseline",
          "face_description", "face_units", "face_quality", "face_issues")


def _column_order(columns: Iterable[str]) -> list[str]:
    columns = list(columns)
    rest = [c for c in columns if c not in _FIRST]
    return [c for c in _FIRST if c in columns] + rest


def failures(table: pd.DataFrame) -> pd.DataFrame:
    """Rows with an error, for the end-of-run list."""
    return table.loc[table["error"].notna(), ["instance_id", "error"]]


__all__ = ["Cache", "DescribeConfig", "Extractor", "build_table", "describe", "failures",
           "item_key", "np"]
