"""``modsab agents run``: per-modality LLM agents into a run directory."""

from __future__ import annotations

from pathlib import Path

import typer

from modsab.agents.local import DEFAULT_MODEL

agents_app = typer.Typer(
    help="Run per-modality LLM agents (any OpenAI-compatible server, or offline).",
    no_args_is_help=True,
)


@agents_app.command("run")
def run(
    descriptors: Path = typer.Argument(
        ..., help="Descriptor rows: JSONL, CSV, Parquet or a JSON list (e.g. meld_annotation.json)."
    ),
    labels: str = typer.Option(
        None, "--labels", help="Label set: a,b,c or a preset (meld, ravdess, ...); default: the task's, else meld."
    ),
    task: str = typer.Option(
        None, "--task", help="A built-in task whose wording the prompts take: emotion (default), sentiment, "
        "sentiment2 (a run config's [task] defines others)."
    ),
    model: str = typer.Option(
        DEFAULT_MODEL,
        "--model",
        "-m",
        help="Server model name with --base-url; without it a local model: "
        "local:smollm2-scorer (default), local:smollm2, local:gemma-scorer, "
        "local:qwen, local:qwen-scorer.",
    ),
    base_url: list[str] = typer.Option(
        None,
        "--base-url",
        help="OpenAI-compatible endpoint, e.g. "
        "http://localhost:8080/v1. Omitted: run offline in-process. Repeated: an endpoint pool "
        "(each request to the least busy server, --concurrency each).",
    ),
    agents: str = typer.Option(
        "text,audio,vision,tav", "--agents", help="Agents to run, comma-separated."
    ),
    run_dir: Path = typer.Option(..., "--run", help="Run directory (created; reused to resume)."),
    fields: list[str] = typer.Option(
        None,
        "--fields",
        help="AGENT=field1,field2 overrides the descriptor fields an agent reads (repeatable).",
    ),
    prompts: Path = typer.Option(
        None, "--prompts", help="Folder of prompt templates overriding the built-in ones."
    ),
    media: list[str] = typer.Option(
        None,
        "--media",
        help="AGENT=peak_frame,frames,audio sends that media beside the agent's text (repeatable); "
        "files come from the rows' peak_frame_path, frame_paths, audio_path / video_path.",
    ),
    prompt_of: list[str] = typer.Option(
        None,
        "--prompt",
        help="AGENT=TEMPLATE: the prompt an agent uses when it is not its name, e.g. vision_media=vision "
        "(its default fields are that prompt's).",
    ),
    api_key_env: str = typer.Option(
        None,
        "--api-key-env",
        help="Name of the environment variable holding "
        "the API key (the key itself is never stored).",
    ),
    concurrency: int = typer.Option(4, "--concurrency", min=1, help="Requests in flight at once."),
    rpm: float = typer.Option(None, "--rpm", help="Requests per minute limit."),
    tpm: float = typer.Option(None, "--tpm", help="Tokens per minute limit."),
    max_retries: int = typer.Option(
        6, "--max-retries", min=0, help="Retries on 429/5xx/time-outs."
    ),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds per request."),
    max_cost: float = typer.Option(
        None, "--max-cost", help="Stop cleanly before spending more (USD)."
    ),
    max_tokens_budget: int = typer.Option(
        None, "--max-tokens", help="Stop cleanly before using more tokens."
    ),
    price_in: float = typer.Option(None, "--price-in", help="USD per million prompt tokens."),
    price_out: float = typer.Option(None, "--price-out", help="USD per million completion tokens."),
    temperature: float = typer.Option(0.0, "--temperature"),
    max_output_tokens: int = typer.Option(
        400, "--max-output-tokens", help="max_tokens of each answer."
    ),
    seed: int = typer.Option(0, "--seed"),
    cache_dir: Path = typer.Option(
        None,
        "--cache-dir",
        help="Shared response cache (default $MODSAB_CACHE_DIR or ~/.cache/modsab).",
    ),
    no_cache: bool = typer.Option(
        False, "--no-cache", help="Do not read or write the shared cache."
    ),
    limit: int = typer.Option(None, "--limit", help="Only the first N instances."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    wait: bool = typer.Option(
        False, "--wait", help="If another run holds the run directory, wait for it to end."
    ),
) -> None:
    """Run every agent on every instance into RUN/predictions.jsonl; rerun to resume."""
    from rich.console import Console

    from modsab.agents.engine import GenerationParams, Limits
    from modsab.agents.inputs import FieldConfig, load_descriptors
    from modsab.agents.run import AgentRunConfig, run_agents
    from modsab.contract.errors import InputError
    from modsab.contract.labels import LabelSet

    console = Console(stderr=True, highlight=False)
    if (price_in is None) != (price_out is None):
        raise InputError("give both --price-in and --price-out", item="--price-in/--price-out")
    if not base_url and not model.startswith("local:"):
        raise InputError(
            f"model '{model}' needs --base-url",
            item="--model",
            hint="give --base-url URL, or a local model such as local:smollm2-scorer",
        )
    from modsab.contract.task import EMOTION
    from modsab.core.options import registered_name
    from modsab.registry import tasks

    try:
        chosen = EMOTION if task is None else tasks.get(registered_name(tasks, task))
    except ValueError as error:
        raise InputError(str(error), item="--task") from None
    label_set = LabelSet.parse(labels) if labels is not None else chosen.label_set() or LabelSet.parse("meld")
    media_of = _pairs(media or [], "--media")
    for agent, kinds in media_of.items():
        from modsab.agents.media import MEDIA_KINDS

        unknown = [k for k in kinds if k not in MEDIA_KINDS]
        if unknown:
            raise InputError(f"unknown media '{unknown[0]}'", item=f"--media {agent}=...",
                             hint=f"one of {', '.join(MEDIA_KINDS)}")
    templates = {agent: names[0] for agent, names in _pairs(prompt_of or [], "--prompt").items()}
    instances = load_descriptors(descriptors)
    if limit is not None:
        instances = instances[:limit]
    config = AgentRunConfig(
        model=model,
        labels=label_set,
        agents=[a.strip() for a in agents.split(",") if a.strip()],
        base_url=None if not base_url else base_url[0] if len(base_url) == 1 else list(base_url),
        api_key_env=api_key_env,
        fields=_fields(FieldConfig.parse(fields or []), templates, fields or []),
        media=media_of,
        templates=templates,
        prompts_dir=None if prompts is None else str(prompts),
        task=None if task is None else chosen,
        params=GenerationParams(temperature=temperature, max_tokens=max_output_tokens, seed=seed),
        limits=Limits(
            concurrency=concurrency,
            requests_per_minute=rpm,
            tokens_per_minute=tpm,
            max_retries=max_retries,
        ),
        max_tokens_budget=max_tokens_budget,
        max_cost=max_cost,
        price=None if price_in is None else (price_in, price_out),
        timeout=timeout,
        cache_dir=None if cache_dir is None else str(cache_dir),
    )
    with _progress(console, progress) as update:
        result = run_agents(
            instances,
            config,
            run_dir,
            on_update=update,
            use_cache=not no_cache,
            wait=wait,
            on_wait=lambda holder: console.print(f"waiting for {holder} to finish with {run_dir}"),
        )
    for name, count in result.leaks.items():
        console.print(
            f"[yellow]leakage warning:[/] field '{name}' names a label in {count} "
            f"of {len(instances)} instances; an agent reading it may see the answer"
        )
    stats = result.stats
    console.print(
        f"{stats.done} answered, {stats.invalid} invalid, {stats.failed} failed, "
        f"{stats.cached} from cache, {stats.requests} requests, {stats.tokens} tokens, "
        f"${stats.cost:.4f} -> {result.predictions}"
    )
    for endpoint in result.endpoints:
        console.print(
            f"  {endpoint['url']}: {endpoint['served']} answered, set aside {endpoint['set_aside']} times, "
            f"{endpoint['rate_limited']} 429s, {endpoint['failed_over']} sent on to another"
        )
    for error in stats.errors[:5]:
        console.print(f"[red]failed:[/] {error}")
    if stats.stopped:
        console.print(
            f"[yellow]stopped: {stats.stopped}[/]; "
            "run the same command with a larger budget to go on"
        )
        raise typer.Exit(3)
    if stats.failed:
        console.print("some calls failed; run the same command again to retry them")
        raise typer.Exit(1)


def _pairs(specs: list[str], option: str) -> dict[str, tuple[str, ...]]:
    """``["a=x,y", ...]`` -> ``{"a": ("x", "y")}``; a bad spec is an error naming the option."""
    from modsab.contract.errors import InputError

    out: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        agent, sep, names = spec.partition("=")
        values = tuple(v.strip() for v in names.split(",") if v.strip())
        if not sep or not agent.strip() or not values:
            raise InputError(f"bad {option} value '{spec}'", hint=f"use {option} AGENT=value1,value2")
        out[agent.strip()] = values
    return out


def _fields(fields, templates: dict[str, str], specs: list[str]):
    """A named agent on a built-in prompt reads that prompt's default fields unless --fields says."""
    from modsab.agents.inputs import DEFAULT_FIELDS, FieldConfig

    given = {spec.partition("=")[0].strip() for spec in specs}
    extra = {agent: DEFAULT_FIELDS[template] for agent, template in templates.items()
             if agent not in given and agent not in DEFAULT_FIELDS and template in DEFAULT_FIELDS}
    return FieldConfig({**fields.fields, **extra}) if extra else fields


class _progress:
    """A rich progress bar fed by the runner's stats (a no-op when disabled)."""

    def __init__(self, console, enabled: bool) -> None:
        self.console, self.enabled, self.bar, self.task = console, enabled, None, None

    def __enter__(self):
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.bar = Progress(
                TextColumn("agents"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self.bar.start()
            self.task = self.bar.add_task("", total=None)
        return self.update

    def update(self, stats) -> None:
        if self.bar is None:
            return
        finished = stats.done + stats.invalid + stats.failed
        self.bar.update(
            self.task,
            total=stats.total or None,
            completed=finished,
            description=f"done {stats.done} invalid {stats.invalid} failed {stats.failed} "
            f"cached {stats.cached} | {stats.tokens} tok ${stats.cost:.4f}",
        )

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def register(app: typer.Typer) -> None:
    app.add_typer(agents_app, name="agents")
