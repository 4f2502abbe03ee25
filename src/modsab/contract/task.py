"""A task: what the agents judge, in which labels, from which streams (``[task]``).

A task is configuration, not code: its name and description word the prompts, its labels
(in tie-break order) are the label set, and its streams say which descriptor fields belong
to which input (``text``, ``audio``, ``vision``, ``image``, ``question``, ...). An agent
``reads`` streams or fields; the joint agent reads every stream.

Built-in tasks live in :data:`modsab.registry.tasks`: ``emotion`` (the default; its labels
are the dataset's and its prompts are today's, word for word, so caches stay valid),
``sentiment`` (negative / neutral / positive) and ``sentiment2`` (negative / positive).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modsab.contract.labels import LABEL_FIELDS, LabelSet, LeakageChecker, clean
from modsab.registry import tasks

#: Names under which an agent that reads every stream is known (``tav`` of the emotion task).
JOINT_NAMES = ("tav", "joint")


class TaskLabel(BaseModel):
    """One label; its optional description is read by the agents."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., min_length=1)
    description: str | None = Field(None, min_length=1, description="one line the agents read")


class Task(BaseModel):
    """``[task]`` of a run config (or a built-in one, ``task = "sentiment"``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., min_length=1, description="what is judged, one word (sentiment, digit, ...)")
    description: str = Field(..., min_length=1, description="one or two sentences the agents read")
    labels: list[TaskLabel] | None = Field(
        None, description="label names in tie-break order (strings or {name, description}); "
                          "default: the dataset's labels")
    streams: dict[str, list[str]] = Field(..., min_length=1, description="stream -> its descriptor fields")
    question: str | None = Field(None, min_length=1, description="what every agent is asked; "
                                 "default: which label fits best")
    leak_words: list[str] = Field(default_factory=list, description="words that give the answer away "
                                  "besides the labels and their synonyms (the leakage check)")

    @field_validator("labels", mode="before")
    @classmethod
    def _plain_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("labels")
    @classmethod
    def _distinct_labels(cls, labels: list[TaskLabel] | None) -> list[TaskLabel] | None:
        if labels is None:
            return None
        names = [clean(label.name) for label in labels]
        if len(names) < 2:
            raise ValueError("a task needs at least two labels")
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"label '{twice[0]}' is given twice (each once; the order is the tie-break order)")
        return labels

    @field_validator("streams")
    @classmethod
    def _stream_fields(cls, streams: dict[str, list[str]]) -> dict[str, list[str]]:
        for stream, names in streams.items():
            if not stream.strip():
                raise ValueError("a stream needs a name")
            if not names:
                raise ValueError(f"stream '{stream}' lists no descriptor field")
            answer = [name for name in names if name in LABEL_FIELDS]
            if answer:
                raise ValueError(f"stream '{stream}': field '{answer[0]}' holds the answer and is never sent")
        return streams

    @model_validator(mode="after")
    def _no_stream_named_joint(self) -> Task:
        joint = [name for name in self.streams if name in JOINT_NAMES]
        if joint:
            raise ValueError(f"'{joint[0]}' names the agent that reads every stream; call the stream otherwise")
        return self

    # -- what the run reads of it ------------------------------------------------------

    def label_set(self) -> LabelSet | None:
        """The task's labels as the run's label set, or ``None``: the dataset's."""
        if self.labels is None:
            return None
        return LabelSet(tuple(label.name for label in self.labels), source=f"task {self.name}")

    def leakage_checker(self, labels: Iterable[str]) -> LeakageChecker:
        """What the leakage check looks for in this task's descriptors: the labels, their
        synonyms and ``leak_words``; an emotion task also every emotion word modsab knows."""
        return LeakageChecker(labels, extra=self.leak_words, emotion_words=self.name == "emotion")

    def every_field(self) -> tuple[str, ...]:
        """The fields of every stream, in stream order: what the joint agent reads."""
        return tuple(dict.fromkeys(name for names in self.streams.values() for name in names))

    def default_fields(self) -> dict[str, tuple[str, ...]]:
        """Fields an agent reads when it names none, by agent (or prompt) name: a stream's
        own, and every stream's for the joint agent."""
        fields = {stream: tuple(names) for stream, names in self.streams.items()}
        return {**fields, **dict.fromkeys(JOINT_NAMES, self.every_field())}

    def expand(self, reads: Iterable[str]) -> tuple[str, ...]:
        """``reads`` with each stream name replaced by its fields (field names kept), once each."""
        out: list[str] = []
        for name in reads:
            out += self.streams.get(name, [name])
        return tuple(dict.fromkeys(out))

    def streams_read(self, reads: Sequence[str]) -> list[str]:
        """The streams behind ``reads`` (a field counts for the stream that lists it), in task order."""
        wanted = set(reads)
        return [stream for stream, names in self.streams.items() if stream in wanted or wanted & set(names)]

    def wording(self, template: str) -> dict[str, str]:
        """The ``$task_*`` values of one prompt template: how this task words it."""
        item = "instance"
        brief = [f"The task ({self.name}): {self.description.strip()}"]
        if self.labels:
            named = [f"{clean(label.name)} ({label.description})" if label.description else clean(label.name)
                     for label in self.labels]  # as the label set spells them
            brief.append(f"The labels: {', '.join(named)}.")
        return {
            "task_audit": f"a multimodal {self.name} audit",
            "task_item": item,
            "task_brief": "\n".join(brief) + "\n",
            "task_question": self.question or f"Which label fits this {item} best?",
            "task_stem": f"The {self.name} label of this {item} is",
        }


class LegacyEmotionTask(Task):
    """The emotion task as modsab always worded it: no brief, and a question per prompt
    (templates rendered with it are today's texts to the byte, pinned by a test)."""

    def wording(self, template: str) -> dict[str, str]:
        questions = {"audio": "What emotion does the speaker's voice express?",
                     "vision": "What emotion does the person show?"}
        return {
            "task_audit": "a multimodal emotion audit",
            "task_item": "clip",
            "task_brief": "",
            "task_question": questions.get(template, "What emotion does the speaker express?"),
            "task_stem": "The emotion expressed in this clip is",
        }


#: The streams of the built-in tasks: the descriptors modsab extracts from speech video.
SPEECH_STREAMS: dict[str, list[str]] = {
    "text": ["transcript"],
    "audio": ["audio_description", "audio_llm_description"],
    "vision": ["visual_expression_description", "face_units", "visual_objective_description", "face_description"],
}

EMOTION = tasks.register("emotion", order=0)(LegacyEmotionTask(
    name="emotion",
    description="Which emotion does the person in the clip express?",
    streams=SPEECH_STREAMS,
))
SENTIMENT = tasks.register("sentiment", order=1)(Task(
    name="sentiment",
    description="Which sentiment does the speaker express in the clip: negative, neutral or positive?",
    labels=[TaskLabel(name="negative", description="unfavourable, critical or unhappy about the topic"),
            TaskLabel(name="neutral", description="neither favourable nor unfavourable"),
            TaskLabel(name="positive", description="favourable, approving or happy about the topic")],
    streams=SPEECH_STREAMS,
))
SENTIMENT2 = tasks.register("sentiment2", order=2)(Task(
    name="sentiment",
    description="Is the sentiment the speaker expresses in the clip negative or positive?",
    labels=[TaskLabel(name="negative", description="unfavourable, critical or unhappy about the topic"),
            TaskLabel(name="positive", description="favourable, approving or happy about the topic")],
    streams=SPEECH_STREAMS,
))


def builtin_name(task: Task) -> str | None:
    """The registered name of a built-in task (equal to it: a config's copy counts), else ``None``."""
    return next((name for name, entry in tasks.items() if entry == task), None)
