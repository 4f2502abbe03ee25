"""The run configuration: one TOML file, validated with pydantic; errors name the key.

A minimal config::

    task = "emotion"              # optional: a built-in task, or a [task] table (modsab.contract.task)

    [dataset]
    loader = "ravdess"            # manifest | meld | descriptions | ravdess | iemocap
    path = "clips"                # relative to this file

    [[agents]]
    name = "audio"
    kind = "probe"                # llm | scorer | probe | precomputed
    features = "audio"

Every section and key is documented on its field below and in the README
("Run configuration"). Relative paths are resolved against the config file's folder.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from modsab import registry
from modsab.contract.errors import InputError
from modsab.contract.task import EMOTION, Task, builtin_name
from modsab.contract.textfiles import decode
from modsab.core.options import registered_name, section_model


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunSection(_Section):
    dir: Path = Field(Path("runs/run"), description="run directory (store, predictions, diagnosis, report)")
    cache_dir: Path | None = Field(None, description="shared cache of model calls and descriptors")
    executor: Annotated[str, AfterValidator(lambda name: registered_name(registry.executors, name))] = Field(
        "local", description="where describe runs: local (processes) or ray (actors; modsab.registry.executors)"
    )
    ray_address: str | None = Field(None, min_length=1, description="an existing Ray cluster (\"auto\", "
                                    "\"ray://host:10001\"); default: start a local Ray")

    @model_validator(mode="after")
    def _address_needs_ray(self) -> RunSection:
        if self.ray_address is not None and self.executor != "ray":
            raise ValueError("'ray_address' applies to executor = \"ray\" only")
        return self


class DatasetSection(_Section):
    loader: Annotated[str, AfterValidator(lambda name: registered_name(registry.loaders, name))] = Field(
        "manifest", description="a registered dataset loader (modsab.registry.loaders)"
    )
    path: Path
    #: the dataset tag of every instance (per-dataset tables); default: the loader's
    #: (meld, ravdess, iemocap; manifest: its ``dataset`` column; descriptions: the file's stem)
    name: str | None = Field(None, min_length=1, description="dataset name; a manifest's own column wins")
    labels: str | None = Field(None, description="label set or preset; default: the loader's")
    split: str | None = None
    limit: int | None = Field(None, ge=1)
    options: dict[str, Any] = Field(default_factory=dict, description="loader-specific options")


class EndpointSection(_Section):
    """One server of an endpoint pool: ``endpoints = [{url = "...", concurrency = 4, weight = 1}]``
    (routing and health: :mod:`modsab.agents.pool`)."""

    url: str = Field(..., min_length=1, description="OpenAI-compatible endpoint, e.g. http://host:8080/v1")
    concurrency: int | None = Field(None, ge=1, description="requests in flight on it (default: the agent's)")
    weight: float = Field(1.0, gt=0, description="between equally busy endpoints, the higher is asked first")


def _pool_check(base_url: str | list[str] | None, endpoints: list[EndpointSection] | None) -> bool:
    """Whether an agent or describer names an endpoint; a ValueError naming the key when its
    ``base_url`` list or ``endpoints`` is wrong."""
    from modsab.agents.pool import pool_problem

    if base_url is not None and endpoints is not None:
        raise ValueError("give either 'base_url' or 'endpoints', not both")
    if base_url == "":
        raise ValueError("'base_url' is empty: give the endpoint's URL")
    if isinstance(base_url, list) or endpoints is not None:
        problem = pool_problem(base_url if isinstance(base_url, list) else [e.url for e in endpoints or []])
        if problem is not None:
            raise ValueError(f"'{'base_url' if isinstance(base_url, list) else 'endpoints'}' {problem}")
    return bool(base_url or endpoints)


class DescriberSection(_Section):
    """``[describe] voice_llm = {...}`` (and the base of ``scene``): an LLM descriptor on an
    OpenAI-compatible endpoint, with the engine's limits as an agent has them."""

    base_url: str | list[str] | None = Field(
        ..., description="OpenAI-compatible endpoint that takes the media (a list: a pool)")
    endpoints: list[EndpointSection] | None = Field(None, description="a pool with per-server settings")
    model: str = Field(..., min_length=1)
    api_key_env: str | None = None
    allow_leaking: bool = Field(False, description="send descriptions that name a label or mental state to agents")
    max_output_tokens: int = Field(300, ge=1, description="max_tokens of each description")
    timeout: float | None = Field(None, gt=0, description="seconds per request (default 120)")
    max_retries: int | None = Field(None, ge=0)
    concurrency: int | None = Field(None, ge=1)
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)
    max_cost: float | None = Field(None, gt=0)
    max_tokens: int | None = Field(None, ge=1, description="token budget of this descriptor")
    price_in: float | None = Field(None, ge=0)
    price_out: float | None = Field(None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _endpoints_instead(cls, data: Any) -> Any:
        """``endpoints`` stands for ``base_url`` (which is otherwise a missing key)."""
        if isinstance(data, dict) and "endpoints" in data and "base_url" not in data:
            return {**data, "base_url": None}
        return data

    @model_validator(mode="after")
    def _prices(self) -> DescriberSection:
        if not _pool_check(self.base_url, self.endpoints):
            raise ValueError("'base_url' is empty: give the endpoint that takes the media")
        if (self.price_in is None) != (self.price_out is None):
            raise ValueError("give both price_in and price_out")
        return self


class SceneSection(DescriberSection):
    """``[describe] scene = {...}``: the AU-peak frame(s) described by a vision LLM."""

    frames: int = Field(1, ge=1, le=4, description="the AU-peak frame and up to three neighbours")


class DescribeSection(_Section):
    enabled: bool = True
    asr: bool = True
    voice: bool = True
    face: bool = True
    workers: int = Field(1, ge=1)
    fps: float = Field(5.0, gt=0)
    asr_window: Literal["fit", "full"] = Field("fit", description="Whisper's encoder window: 'fit' (clip + 2 s, "
                                                "at least 10 s; faster) or 'full' (30 s, the asr-1 transcripts)")
    scene: SceneSection | None = Field(None, description="vision-LLM description -> visual_objective_description")
    voice_llm: DescriberSection | None = Field(None, description="audio-LLM description -> audio_llm_description")


#: Limits of an llm / scorer agent: the agent's own keys (``modsab agents run`` options).
LIMIT_KEYS = (
    "timeout", "max_retries", "concurrency", "requests_per_minute", "tokens_per_minute",
    "max_cost", "max_tokens", "price_in", "price_out",
)


class AgentSection(_Section):
    name: str = Field(..., min_length=1)
    kind: Annotated[str, AfterValidator(lambda kind: registered_name(registry.agent_kinds, kind))] = Field(
        ..., description="a registered agent kind (modsab.registry.agent_kinds: llm, scorer, probe, precomputed)"
    )
    reads: list[str] | None = Field(None, description="streams of the task and/or descriptor fields the agent "
                                    "reads (llm, scorer); [] for none")
    media: list[Literal["peak_frame", "frames", "audio"]] = Field(
        default_factory=list, description="media sent beside the text (llm agents on an endpoint)")
    prompt: str | None = Field(None, min_length=1, description="prompt template (text, audio, vision, tav, "
                               "streams); default: the agent's name when it is one, else streams")
    features: str | list[str] | None = Field(None, description="probe features: text, audio, vision, or "
                                             "columns by name or shell-style glob (egemaps_*)")
    model: str | None = None
    base_url: str | list[str] | None = Field(None, description="OpenAI-compatible endpoint; a list: a pool")
    endpoints: list[EndpointSection] | None = Field(None, description="a pool with per-server settings "
                                                    "[{url, concurrency, weight}] (instead of base_url)")
    api_key_env: str | None = None
    path: Path | None = Field(None, description="precomputed predictions (contract format)")
    options: dict[str, Any] = Field(default_factory=dict, description="probe: C, n_splits, calibration, "
                                    "random_state; precomputed: source_agent")
    # -- limits (llm, scorer); unset = the engine's default, as for ``modsab agents run`` --
    timeout: float | None = Field(None, gt=0, description="seconds per request (default 120)")
    max_retries: int | None = Field(None, ge=0, description="retries of a transient failure (default 6)")
    concurrency: int | None = Field(None, ge=1, description="requests in flight at once (default 4)")
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)
    max_cost: float | None = Field(None, gt=0, description="USD: this agent stops cleanly before spending more")
    max_tokens: int | None = Field(None, ge=1, description="this agent stops cleanly before using more tokens")
    price_in: float | None = Field(None, ge=0, description="USD per million prompt tokens (for max_cost)")
    price_out: float | None = Field(None, ge=0, description="USD per million completion tokens")
    #: position in the config file's agent list (kept by ``narrowed``), for error messages
    _index: int = PrivateAttr(0)

    @field_validator("options")
    @classmethod
    def _known_options(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        kind = info.data.get("kind")
        if kind not in registry.agent_kinds:
            return options
        allowed = registry.agent_kinds.get(kind).options
        for key in options:
            if key not in allowed:
                if key in LIMIT_KEYS:
                    raise ValueError(f"unknown key '{key}': a limit is a key of the agent itself "
                                     f"({key} = ... in its [[agents]] table)")
                known = f"known: {', '.join(allowed)}" if allowed else f"{kind} agents take no options"
                raise ValueError(f"unknown key '{key}' ({known})")
        return options

    @model_validator(mode="after")
    def _kind_needs(self) -> AgentSection:
        if self.kind == "precomputed" and self.path is None:
            raise ValueError("a precomputed agent needs 'path'")
        if self.kind == "probe" and not self.features:
            raise ValueError("a probe agent needs 'features' (text, audio, vision or a list of columns)")
        if not registry.agent_kinds.get(self.kind).calls_a_model:
            given = [key for key in LIMIT_KEYS if getattr(self, key) is not None]
            if given:
                raise ValueError(f"'{given[0]}' applies to llm and scorer agents only")
        if (self.price_in is None) != (self.price_out is None):
            raise ValueError("give both price_in and price_out")
        if self.media and not registry.agent_kinds.get(self.kind).media:
            raise ValueError(f"'media' applies to llm agents only (a {self.kind} agent reads no media)")
        names_endpoint = _pool_check(self.base_url, self.endpoints)
        if self.endpoints is not None and not registry.agent_kinds.get(self.kind).calls_a_model:
            raise ValueError("'endpoints' applies to llm and scorer agents only")
        if self.media and not names_endpoint:
            raise ValueError("an agent with 'media' needs 'base_url': an endpoint whose model takes them "
                             "(the offline models read text only)")
        if self.reads == [] and not self.media:
            raise ValueError("'reads = []' leaves the agent no input: give fields, or 'media'")
        return self

    @property
    def key(self) -> str:
        """``agents[i]``: where this agent is in the config file."""
        return f"agents[{self._index}]"


#: ``[fusion]``: the fields of :class:`~modsab.core.options.AuditOptions` of that name.
FusionSection = section_model("FusionSection", ("weights", "fuse", "baseline"), _Section)


class AuditSection(section_model("AuditFields", ("tau", "k", "bootstrap", "seed", "diagnostics", "folds"), _Section)):
    """``[audit]``: the fields of :class:`~modsab.core.options.AuditOptions` of that name
    (``diagnostics`` a list of registered names, or "all")."""

    def wanted(self) -> dict[str, bool]:
        """``diagnose()`` keyword flags, one per registered diagnostic."""
        return {name: name in self.diagnostics for name in registry.diagnostics.names()}


class OutputsSection(_Section):
    json_file: str = Field("diagnosis.json", alias="json")
    instances: str = "instances.parquet"
    report: str | None = "report.html"


def _task(value: Any) -> Any:
    """``task = "sentiment"``: the built-in task of that name; a table is validated as a Task."""
    if isinstance(value, str):
        try:
            return registry.tasks.get(registered_name(registry.tasks, value))
        except ValueError as error:
            raise ValueError(f"{error}; or define one in a [task] table") from None
    return value


class RunConfig(_Section):
    task: Annotated[Task | None, BeforeValidator(_task)] = Field(
        None, description="a built-in task (emotion, sentiment, sentiment2) or a [task] table; default emotion")
    run: RunSection = Field(default_factory=RunSection)
    dataset: DatasetSection
    describe: DescribeSection = Field(default_factory=DescribeSection)
    agents: list[AgentSection] = Field(..., min_length=1)
    fusion: FusionSection = Field(default_factory=FusionSection)
    audit: AuditSection = Field(default_factory=AuditSection)
    outputs: OutputsSection = Field(default_factory=OutputsSection)
    source: Path | None = Field(None, exclude=True)

    @field_validator("agents")
    @classmethod
    def _unique_names(cls, agents: list[AgentSection]) -> list[AgentSection]:
        names = [a.name for a in agents]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"agent name '{dupes[0]}' is used twice")
        for index, agent in enumerate(agents):
            agent._index = index
        return agents

    @field_serializer("task")
    def _task_as_written(self, task: Task | None) -> Any:
        """A built-in task is written back by name (``task = "sentiment"``), a table as a table."""
        if task is None:
            return None
        return builtin_name(task) or task.model_dump(mode="json", exclude_none=True)

    @property
    def task_definition(self) -> Task:
        """The run's task: ``[task]``, or the built-in emotion task."""
        return self.task or EMOTION

    @field_validator("dataset")
    @classmethod
    def _labels_once(cls, dataset: DatasetSection, info: ValidationInfo) -> DatasetSection:
        task = info.data.get("task")
        if task is not None and task.labels is not None and dataset.labels is not None:
            raise ValueError(f"'labels' gives the labels, and so does the task '{task.name}' (keep one)")
        return dataset

    @model_validator(mode="after")
    def _known_agents(self) -> RunConfig:
        names = {a.name for a in self.agents}
        for key, value in (("fusion.fuse", self.fusion.fuse or []), ("fusion.baseline", [self.fusion.baseline])):
            unknown = [v for v in value if v is not None and v not in names]
            if unknown:
                raise ValueError(f"{key} names unknown agent '{unknown[0]}' (agents: {', '.join(sorted(names))})")
        return self

    def resolve(self, base: Path) -> RunConfig:
        """Make relative paths relative to ``base`` (the config file's folder)."""

        def fix(path: Path | None) -> Path | None:
            if path is None or path.is_absolute():
                return path
            return Path(os.path.normpath(base / path))

        data = self.model_copy(deep=True)
        data.run.dir = fix(data.run.dir)
        data.run.cache_dir = fix(data.run.cache_dir)
        data.dataset.path = fix(data.dataset.path)
        for agent in data.agents:
            agent.path = fix(agent.path)
        return data

    def narrowed(
        self, *, limit: int | None = None, split: str | None = None, agents: list[str] | None = None
    ) -> RunConfig:
        """The config with ``--limit``, ``--split`` and ``--agents`` applied."""
        data = self.model_copy(deep=True)
        if limit is not None:
            data.dataset.limit = limit
        if split is not None:
            data.dataset.split = split
        if agents:
            known = {a.name for a in data.agents}
            unknown = [a for a in agents if a not in known]
            if unknown:
                raise InputError(f"--agents names unknown agent '{unknown[0]}'", hint=f"agents: {', '.join(known)}")
            data.agents = [a for a in data.agents if a.name in agents]
            if data.fusion.fuse:
                data.fusion.fuse = [a for a in data.fusion.fuse if a in agents] or None
            if data.fusion.baseline not in agents:
                data.fusion.baseline = None
        return data

    def to_toml(self) -> str:
        """The resolved config as TOML (what ``--print-config`` shows and the run keeps)."""
        return dump_toml(self.model_dump(mode="json", by_alias=True, exclude_none=True))


def _key(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1] = f"{parts[-1]}[{item}]" if parts else f"[{item}]"
        else:
            parts.append(str(item))
    return ".".join(parts)


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a run config; an error names the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise InputError("config file not found", path=path)
    try:
        raw = tomllib.loads(decode(path, path.read_bytes()))
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"invalid TOML: {error}", path=path) from None
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        key = _key(first["loc"]) or "(top level)"
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        elif first["type"] == "missing":
            message = "missing key"
        raise InputError(
            f"{message}", path=path, item=f"key '{key}'", hint="see the README section 'Run configuration'"
        ) from None
    resolved = config.resolve(path.resolve().parent)
    resolved.source = path
    return resolved


def dump_toml(data: dict[str, Any]) -> str:
    """A small TOML writer for the config's shapes (tables, arrays of tables, scalars, lists)."""
    lines: list[str] = []

    def scalar(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value)
        if isinstance(value, list):
            return "[" + ", ".join(scalar(v) for v in value) + "]"
        if isinstance(value, dict):
            return "{ " + ", ".join(f"{k} = {scalar(v)}" for k, v in value.items()) + " }"
        text = str(value).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{text}"'

    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{k} = {scalar(v)}" for k, v in value.items()]
            lines.append("")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                lines.append(f"[[{key}]]")
                lines += [f"{k} = {scalar(v)}" for k, v in item.items()]
                lines.append("")
        else:
            lines.insert(0, f"{key} = {scalar(value)}")
    return "\n".join(lines)
