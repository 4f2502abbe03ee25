"""The answer an agent must give, its JSON schema, and extraction from raw text.

A raw model answer goes through :func:`parse_answer`: pull the JSON object out of
the text (code fences, prose around it, trailing commas), validate it with
:class:`AgentAnswer`, resolve every label through the shared :class:`LabelSet`
(synonyms included), unwrap a whole JSON answer found inside a label field, and
sort candidates by confidence. Labels still outside the set are kept as written,
so ``modsab diagnose`` counts them as invalid labels instead of hiding them.
An answer with no usable in-set candidate fails, which triggers the repair round.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modsab.contract.labels import LabelSet

MAX_CANDIDATES = 7


class AnswerCandidate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    label: str = Field(min_length=1)
    confidence: int = Field(ge=0, le=100)


class AgentAnswer(BaseModel):
    """One agent's validated answer (confidences and quality on the 0-100 scale)."""

    model_config = ConfigDict(extra="ignore")

    candidates: list[AnswerCandidate] = Field(min_length=1)
    primary_label: str | None = None
    #: the agent's self-reported input quality; ``None`` when it gives none (scorer agents)
    quality: int | None = Field(default=None, ge=0, le=100)
    issues: list[str] = Field(default_factory=list)
    reason: str = ""


def answer_schema(labels: LabelSet, *, max_candidates: int = MAX_CANDIDATES) -> dict[str, Any]:
    """JSON schema sent as ``response_format``; servers that enforce it get in-set labels."""
    label = {"type": "string", "enum": list(labels.labels)}
    return {
        "type": "object",
        "properties": {
            "candidates": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_candidates,
                "items": {
                    "type": "object",
                    "properties": {
                        "label": label,
                        "confidence": {"type": "integer", "minimum": 1, "maximum": 100},
                    },
                    "required": ["label", "confidence"],
                    "additionalProperties": False,
                },
            },
            "primary_label": label,
            "quality": {"type": "integer", "minimum": 1, "maximum": 100},
            "issues": {
                "type": "array",
                "maxItems": 5,
                "items": {"type": "string", "maxLength": 80},
            },
            "reason": {"type": "string", "maxLength": 200},
        },
        "required": ["candidates", "primary_label", "quality", "issues", "reason"],
        "additionalProperties": False,
    }


class AnswerError(ValueError):
    """Why a raw answer could not be used; sent back to the model in the repair round."""


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def _balanced_object(text: str) -> str | None:
    """The first balanced ``{...}`` in text, string-aware; ``None`` if it never closes."""
    start = text.find("{")
    while start != -1:
        depth, in_string, escaped = 0, False, False
        for index in range(start, len(text)):
            char = text[index]
            if in_string:
                if escaped:
                    escaped = False
                elif char == "\\":
                    escaped = True
                elif char == '"':
                    in_string = False
            elif char == '"':
                in_string = True
            elif char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    return text[start : index + 1]
        start = text.find("{", start + 1)
    return None


def extract_json(text: str) -> dict[str, Any]:
    """The JSON object in a raw answer, or :class:`AnswerError` saying what is wrong.

    An answer that is one JSON object and nothing else (what structured output gives) is read
    at once: no fence can be in it, and the first balanced object of such a text is the whole
    text, so :func:`extract_json_reference` would read the same (a property test holds them
    equal). Anything else goes through the reference."""
    stripped = text.strip() if text else ""
    if stripped[:1] == "{" and stripped[-1:] == "}" and "```" not in stripped:
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError:
            pass
        else:
            if isinstance(value, dict):
                return value
    return extract_json_reference(text)


def extract_json_reference(text: str) -> dict[str, Any]:
    """:func:`extract_json` step by step: the fenced block or the text, its first balanced
    object, that parsed (again without trailing commas if it does not)."""
    if not text or not text.strip():
        raise AnswerError("the answer was empty")
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced else text
    candidate = _balanced_object(body)
    if candidate is None:
        raise AnswerError("no complete JSON object found (the answer may be truncated)")
    for attempt in (candidate, _TRAILING_COMMA.sub(r"\1", candidate)):
        try:
            value = json.loads(attempt)
        except json.JSONDecodeError as error:
            message = f"invalid JSON: {error.msg} at character {error.pos}"
            continue
        if isinstance(value, dict):
            return value
        message = "the JSON value is not an object"
    raise AnswerError(message)


def _unwrap_labels(data: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    """A label field that holds a whole JSON answer (seen after failed parses): use that answer."""
    candidates = data.get("candidates")
    if depth < 2 and isinstance(candidates, list):
        for item in candidates:
            label = item.get("label") if isinstance(item, dict) else None
            if isinstance(label, str) and label.lstrip().startswith("{"):
                try:
                    inner = extract_json(label)
                except AnswerError:
                    continue
                if isinstance(inner.get("candidates"), list):
                    return _unwrap_labels(inner, depth + 1)
    return data


def parse_answer(text: str, labels: LabelSet) -> AgentAnswer:
    """Raw text -> normalised :class:`AgentAnswer`; raises :class:`AnswerError`."""
    data = _unwrap_labels(extract_json(text))
    try:
        answer = AgentAnswer.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise AnswerError(f"{where}: {first['msg']}") from None
    kept: dict[str, AnswerCandidate] = {}
    for candidate in answer.candidates:
        resolved = labels.resolve(candidate.label)
        label = resolved if resolved is not None else candidate.label.strip()
        if label.lower() not in {key.lower() for key in kept}:
            kept[label] = AnswerCandidate(label=label, confidence=candidate.confidence)
    if not any(labels.resolve(label) for label in kept):
        outside = ", ".join(sorted(kept))
        raise AnswerError(
            f"no candidate label is in the label set (got {outside}); "
            f"use only: {', '.join(labels.labels)}"
        )
    ranked = sorted(kept.values(), key=lambda c: -c.confidence)[:MAX_CANDIDATES]
    primary = labels.resolve(answer.primary_label) or ranked[0].label
    return answer.model_copy(update={"candidates": ranked, "primary_label": primary})
