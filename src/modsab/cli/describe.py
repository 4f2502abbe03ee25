"""``modsab describe``: media files to the descriptions the modality agents read."""

from __future__ import annotations

from pathlib import Path

import typer

from modsab.contract.errors import InputError

_WRITERS = (".parquet", ".csv", ".jsonl")


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
    cache: Path = typer.Option(
        None, "--cache", help="SQLite cache of extracted features. Default: <out>.cache.sqlite beside --out."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Extract everything again and keep nothing."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Describe each instance's audio and video: transcript, voice, face, with quality signals.

    A re-run skips cached items (same file contents and options); failures never stop the run.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from modsab.descriptors import DescribeConfig, describe, failures

    if out.suffix.lower() not in _WRITERS:
        raise InputError(f"unknown output format '{out.suffix}'", path=out,
                         hint="use .parquet, .csv or .jsonl")
    err = Console(stderr=True, highlight=False)
    config = DescribeConfig(fps=fps, max_side=max_side, asr=asr, face=face, beam_size=beam_size)
    cache_path = None if no_cache else (cache or out.with_name(out.stem + ".cache.sqlite"))
    counts = {"cached": 0, "extracted": 0}

    def count(_item, _record, from_cache: bool) -> None:
        counts["cached" if from_cache else "extracted"] += 1

    table = describe(manifest, config=config, workers=workers, cache=cache_path,
                     progress=not quiet, on_record=count)
    write_table(table, out)
    failed = failures(table)
    err.print(f"{len(table)} instances -> {out} ({counts['extracted']} extracted, "
              f"{counts['cached']} from cache, {len(failed)} with errors)")
    if len(failed):
        listing = Table("instance_id", "error", title="items with errors", title_justify="left")
        for row in failed.itertuples():
            listing.add_row(escape(row.instance_id), escape(row.error))
        err.print(listing)


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
