"""The run configuration: one TOML file, validated with pydantic; errors name the key.

A minimal config::

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
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modsab.errors import InputError
from modsab.textfiles import decode


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunSection(_Section):
    dir: Path = Field(Path("runs/run"), description="run directory (store, predictions, diagnosis, report)")
    cache_dir: Path | None = Field(None, description="shared cache of model calls and descriptors")


class DatasetSection(_Section):
    loader: Literal["manifest", "meld", "descriptions", "ravdess", "iemocap"] = "manifest"
    path: Path
    labels: str | None = Field(None, description="label set or preset; default: the loader's")
    split: str | None = None
    limit: int | None = Field(None, ge=1)
    options: dict[str, Any] = Field(default_factory=dict, description="loader-specific options")


class DescribeSection(_Section):
    enabled: bool = True
    asr: bool = True
    voice: bool = True
    face: bool = True
    workers: int = Field(1, ge=1)
    fps: float = Field(5.0, gt=0)


class AgentSection(_Section):
    name: str = Field(..., min_length=1)
    kind: Literal["llm", "scorer", "probe", "precomputed"]
    reads: list[str] | None = Field(None, description="descriptor fields the agent reads (llm, scorer)")
    features: str | list[str] | None = Field(None, description="probe features: text, audio, vision or columns")
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    path: Path | None = Field(None, description="precomputed predictions (contract format)")
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _kind_needs(self) -> AgentSection:
        if self.kind == "precomputed" and self.path is None:
            raise ValueError("a precomputed agent needs 'path'")
        if self.kind == "probe" and not self.features:
            raise ValueError("a probe agent needs 'features' (text, audio, vision or a list of columns)")
        return self


class FusionSection(_Section):
    weights: Literal["uniform", "quality"] = "uniform"
    fuse: list[str] | None = None
    baseline: str | None = None


Diagnostic = Literal["causal", "shapley", "calibration", "fusion_compare", "tau_sweep"]


class AuditSection(_Section):
    tau: float = Field(0.70, ge=0, le=1)
    k: int = Field(5, ge=1)
    bootstrap: int = Field(1000, ge=0)
    seed: int = Field(0, ge=0)
    #: Diagnostics beyond the paper to add to the run's JSON and report ("all" for the five).
    diagnostics: list[Diagnostic] = Field(default_factory=list)
    #: Seeded instance folds for what the diagnostics cross-fit (recalibration, learned weights).
    folds: int = Field(5, ge=2)

    @field_validator("diagnostics", mode="before")
    @classmethod
    def _all(cls, value: Any) -> Any:
        if value == "all":
            return list(typing.get_args(Diagnostic))
        if isinstance(value, str):
            raise ValueError(f"give a list of {', '.join(typing.get_args(Diagnostic))}, or \"all\"")
        return value

    def wanted(self) -> dict[str, bool]:
        """``diagnose()`` keyword flags, one per diagnostic."""
        return {name: name in self.diagnostics for name in typing.get_args(Diagnostic)}


class OutputsSection(_Section):
    json_file: str = Field("diagnosis.json", alias="json")
    instances: str = "instances.parquet"
    report: str | None = "report.html"


class RunConfig(_Section):
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
        return agents

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
