"""``modsab describe``: media files to the descriptions the modality agents read."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from modsab.cli import options
from modsab.contract.errors import InputError

_WRITERS = (".parquet", ".csv", ".jsonl")


class AsrWindow(StrEnum):
    """``--asr-window`` (modsab.descriptors.asr.ASR_WINDOWS)."""

    fit = "fit"
    full = "full"


def describe_command(
    manifest: Path = typer.Argument(
        ..., help="Manifest (.csv, .jsonl, .parquet): instance_id, audio_path and/or video_path, "
        "optional speaker, transcript. Relative paths are relative to the manifest."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output table: .parquet, .csv or .jsonl."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Worker processes (each loads the models)."),
    fps: float = typer.Option(5.0, "--fps", min=0.1, help="Video frames analysed per second."),
    max_side: int = typer.Option(640, "--max-side", min=64, help="Scale frames so the longer side is at most this."),
    asr: bool = typer.Option(True, "--asr/--no-asr", help="Transcribe audio that has no manifest transcript."),
    face: bool = typer.Option(True, "--face/--no-face", help="Analyse faces in video files."),
    beam_size: int = typer.Option(1, "--beam-size", min=1, help="Whisper beam size (1 = greedy, fastest)."),
    asr_window: AsrWindow = typer.Option(
        AsrWindow.fit, "--asr-window", help="Whisper's encoder window: fit (the clip + 2 s, at least 10 s; "
        "~3x less CPU on short clips) or full (30 s, as trained: the transcripts before the option)."
    ),
    cache: Path = typer.Option(
        None, "--cache", help="SQLite cache of extracted features. Default: <out>.cache.sqlite beside --out."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Extract everything again and keep nothing."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    keyframes: int = typer.Option(0, "--keyframes", min=0, max=4,
                                  help="Save the AU-peak frame and neighbours (0-4) as JPEG for media agents."),
    scene_url: str = typer.Option(None, "--scene-url", help="OpenAI-compatible endpoint of a vision model: "
                                  "describe the peak frame(s) into visual_objective_description."),
    scene_model: str = typer.Option(None, "--scene-model", help="Model name at --scene-url."),
    scene_key_env: str = typer.Option(None, "--scene-key-env", help="Variable holding --scene-url's API key."),
    scene_frames: int = typer.Option(1, "--scene-frames", min=1, max=4,
                                     help="Frames sent: the AU-peak frame and up to three neighbours."),
    voice_llm_url: str = typer.Option(None, "--voice-llm-url", help="OpenAI-compatible endpoint of a model that "
                                      "takes audio: describe the voice into audio_llm_description."),
    voice_llm_model: str = typer.Option(None, "--voice-llm-model", help="Model name at --voice-llm-url."),
    voice_llm_key_env: str = typer.Option(None, "--voice-llm-key-env", help="Variable holding its API key."),
    allow_leaking: bool = typer.Option(False, "--allow-leaking", help="Keep LLM descriptions that name a label "
                                       "or mental state in their column (they are withheld by default)."),
    labels: str = typer.Option(None, "--labels", help="Label set whose words the leakage check looks for "
                               "(a,b,c or a preset); default: every preset's."),
    llm_concurrency: int = typer.Option(4, "--llm-concurrency", min=1, help="Requests in flight per LLM descriptor."),
    executor: str = typer.Option("local", "--executor", help="local (--workers processes here) or ray (--workers "
                                 "Ray actors, as [run] executor = \"ray\"; the same table)."),
    ray_address: str = options.RAY_ADDRESS,
) -> None:
    """Describe each instance's audio and video: transcript, voice, face, with quality signals.

    A re-run skips cached items (same file contents and options); failures never stop the run.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from modsab.descriptors import DescribeConfig, describe, failures
    from modsab.run.executors import command_executor

    if out.suffix.lower() not in _WRITERS:
        raise InputError(f"unknown output format '{out.suffix}'", path=out,
                         hint="use .parquet, .csv or .jsonl")
    err = Console(stderr=True, highlight=False)
    config = DescribeConfig(fps=fps, max_side=max_side, asr=asr, face=face, beam_size=beam_size,
                            asr_window=AsrWindow(asr_window).value)
    cache_path = None if no_cache else (cache or out.with_name(out.stem + ".cache.sqlite"))
    counts = {"cached": 0, "extracted": 0}

    def count(_item, _record, from_cache: bool) -> None:
        counts["cached" if from_cache else "extracted"] += 1

    describers = _describers(scene=(scene_url, scene_model, scene_key_env), scene_frames=scene_frames,
                             voice=(voice_llm_url, voice_llm_model, voice_llm_key_env), allow_leaking=allow_leaking,
                             concurrency=llm_concurrency)
    label_words = None
    if labels:
        from modsab.contract.labels import LabelSet

        label_words = list(LabelSet.parse(labels).labels)
    side = out.with_name(out.stem)
    stats_of = {}
    # local: no executor here (None), describe's own --workers processes, as without the option
    with command_executor(executor, workers=None if executor == "local" else workers,
                          ray_address=ray_address) as pool:
        table = describe(manifest, config=config, workers=workers, executor=pool, cache=cache_path,
                         progress=not quiet, on_record=count, keyframes=keyframes,
                         frames_dir=side.with_name(side.name + ".frames"), describers=describers,
                         llm_dir=side.with_name(side.name + ".describe"),
                         llm_cache_dir=None if no_cache else side.with_name(side.name + ".describe") / "cache",
                         labels=label_words, on_describer=lambda d, stats: stats_of.__setitem__(d.kind, stats))
    write_table(table, out)
    failed = failures(table)
    err.print(f"{len(table)} instances -> {out} ({counts['extracted']} extracted, "
              f"{counts['cached']} from cache, {len(failed)} with errors)")
    for describer in describers:
        status = table[describer.status_column].fillna("")
        stats = stats_of.get(describer.kind)
        err.print(f"{describer.kind} ({describer.model}): {int((status == 'ok').sum())} described, "
                  f"{int(status.str.startswith('withheld').sum())} withheld (name a label or mental state), "
                  f"{int(status.str.startswith('failed').sum())} failed"
                  + (f", {stats.requests} requests, {stats.cached} from store or cache" if stats else ""))
    if len(failed):
        listing = Table("instance_id", "error", title="items with errors", title_justify="left")
        for row in failed.itertuples():
            listing.add_row(escape(row.instance_id), escape(row.error))
        err.print(listing)


def _describers(*, scene, scene_frames: int, voice, allow_leaking: bool, concurrency: int) -> list:
    """The LLM descriptors the options ask for; a URL without a model (or back) is an error."""
    from modsab.agents.engine import Limits
    from modsab.descriptors.llm import LLMDescriber

    out = []
    for kind, (url, model, key_env), option in (("scene", scene, "--scene"), ("voice_llm", voice, "--voice-llm")):
        if url is None and model is None:
            continue
        if not url or not model:
            raise InputError(f"{option}-url and {option}-model go together", item=f"{option}-url/{option}-model")
        out.append(LLMDescriber(kind, base_url=url, model=model, api_key_env=key_env,
                                frames=scene_frames if kind == "scene" else 1, allow_leaking=allow_leaking,
                                limits=Limits(concurrency=concurrency)))
    return out


def write_table(table, out: Path) -> Path:
    """Write .parquet / .csv / .jsonl through a temporary file, so a crash leaves no half file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    suffix = out.suffix.lower()
    if suffix == ".parquet":
        table.to_parquet(tmp, index=False)
    elif suffix == ".csv":
        table.to_csv(tmp, index=False)
    else:
        table.to_json(tmp, orient="records", lines=True, force_ascii=False)
    tmp.replace(out)
    return out


def register(app: typer.Typer) -> None:
    app.command("describe")(describe_command)
