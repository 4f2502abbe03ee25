"""Prompt templates, one per agent kind, stored as package data and versioned.

Templates use :class:`string.Template` placeholders (``$labels``, ``$descriptors``,
...). The ``$task_*`` ones are the task's wording (:meth:`modsab.contract.task.Task.wording`)
and are filled when the set is loaded for a task, so no template names what is judged.
The version of a prompt set is part of every cache key: the built-in set worded for the
emotion task is ``builtin-v{PROMPT_VERSION}`` (its texts are the ones modsab always sent),
for another task ``builtin-v{PROMPT_VERSION}-<task>-`` plus a hash of the worded texts; a
user directory given with ``--prompts`` overrides any of the files and its version is
``user-`` plus a hash of the effective (worded) texts. Bump :data:`PROMPT_VERSION`
whenever a built-in template changes what it says.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from string import Template

from modsab.contract.errors import InputError
from modsab.contract.task import EMOTION, Task

PROMPT_VERSION = "1"
TEMPLATE_NAMES = ("system", "text", "audio", "vision", "tav", "repair", "scorer")
#: Templates added later: part of a user set's version only when the folder overrides
#: them, so the versions (and cache keys) of existing user prompt sets stay as they were.
LATER_TEMPLATE_NAMES = ("media", "streams")
#: Prompts of the LLM descriptors (``[describe] scene`` / ``voice_llm``), versioned on
#: their own: a description is cached by its prompt's version, not the agents'.
DESCRIBER_VERSIONS = {"scene": "1", "voice_llm": "1"}

#: Human names of the modality an agent kind sees, used in the system prompt.
MODALITY_NAMES = {
    "text": "transcript",
    "audio": "voice (audio)",
    "vision": "face and scene (visual)",
    "tav": "transcript, voice and visual",
}

#: The template of an agent whose name is no template: it reads the streams it is given.
STREAMS_TEMPLATE = "streams"

_TASK_PLACEHOLDER = re.compile(r"(?<!\$)\$(?:\{(task_[a-z_]+)\}|(task_[a-z_]+)\b)")


def worded(text: str, values: dict[str, str]) -> str:
    """``text`` with its ``$task_*`` placeholders filled (others left for :meth:`PromptSet.render`;
    a ``$`` in the task's wording stays a ``$``)."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return values[name].replace("$", "$$") if name in values else match.group(0)

    return _TASK_PLACEHOLDER.sub(fill, text)


@dataclass(frozen=True)
class PromptSet:
    templates: dict[str, str]
    version: str

    @classmethod
    def load(cls, override_dir: str | Path | None = None, *, task: Task | None = None) -> PromptSet:
        """The built-in templates (or ``override_dir``'s) worded for ``task`` (default: emotion)."""
        task = task or EMOTION
        raw = {
            name: files(__name__).joinpath(f"{name}.txt").read_text("utf-8")
            for name in TEMPLATE_NAMES + LATER_TEMPLATE_NAMES
        }
        texts = _worded(raw, task)
        builtin = dict(texts)
        if override_dir is None:
            if task is EMOTION or texts == _worded(raw, EMOTION):
                return cls(texts, f"builtin-v{PROMPT_VERSION}")
            digest = hashlib.sha256("\0".join(texts[n] for n in TEMPLATE_NAMES + LATER_TEMPLATE_NAMES).encode())
            return cls(texts, f"builtin-v{PROMPT_VERSION}-{task.name}-{digest.hexdigest()[:12]}")
        directory = Path(override_dir)
        if not directory.is_dir():
            raise InputError(
                "prompt directory not found",
                path=directory,
                hint=f"a folder with any of {', '.join(n + '.txt' for n in TEMPLATE_NAMES)}",
            )
        for path in directory.glob("*.txt"):
            if path.stem in texts:
                texts[path.stem] = worded(path.read_text("utf-8"), task.wording(path.stem))
        later = [texts[n] for n in LATER_TEMPLATE_NAMES if texts[n] != builtin[n]]
        digest = hashlib.sha256("\0".join([*(texts[n] for n in TEMPLATE_NAMES), *later]).encode()).hexdigest()
        return cls(texts, f"user-{digest[:12]}")

    def render(self, name: str, **values: object) -> str:
        if name not in self.templates:
            raise InputError(
                f"no prompt template for agent kind '{name}'",
                hint=f"agent kinds: {', '.join(MODALITY_NAMES)}; or add {name}.txt with --prompts",
            )
        return (
            Template(self.templates[name])
            .safe_substitute({key: str(value) for key, value in values.items()})
            .strip()
        )


def _worded(texts: dict[str, str], task: Task) -> dict[str, str]:
    return {name: worded(text, task.wording(name)) for name, text in texts.items()}


def describer_prompt(name: str, override_dir: str | Path | None = None) -> tuple[str, str]:
    """The prompt of an LLM descriptor (``scene``, ``voice_llm``) and its version:
    ``{name}-v{N}`` built in, ``{name}-user-<hash>`` from ``override_dir/{name}.txt``."""
    if override_dir is not None and (Path(override_dir) / f"{name}.txt").is_file():
        text = (Path(override_dir) / f"{name}.txt").read_text("utf-8").strip()
        return text, f"{name}-user-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    text = files(__name__).joinpath(f"{name}.txt").read_text("utf-8").strip()
    return text, f"{name}-v{DESCRIBER_VERSIONS[name]}"


def delimit(fields: dict[str, str]) -> str:
    """Wrap each descriptor in tags so that its text stays data; tags inside are defused."""
    blocks = []
    for name, text in fields.items():
        safe = text.replace("<descriptor", "&lt;descriptor").replace(
            "</descriptor", "&lt;/descriptor"
        )
        blocks.append(f'<descriptor name="{name}">\n{safe}\n</descriptor>')
    return "\n".join(blocks)
