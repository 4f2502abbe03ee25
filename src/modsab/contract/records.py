"""Records that cross a boundary: the predictions contract.

One :class:`PredictionRecord` per (instance, agent). This is what every agent
produces (LLM, scorer, probe) and what ``modsab diagnose`` reads, from JSON Lines,
CSV (candidates as a JSON string) or Parquet::

    {"instance_id": "dia233_utt4", "agent": "audio", "gold": "sadness",
     "candidates": [{"label": "sadness", "confidence": 80}, {"label": "anger", "confidence": 65}],
     "quality": 85, "dataset": "meld"}

Confidence and quality are on the paper's 0-100 scale (``scale="unit"`` reads 0-1).
An optional ``condition`` (``"full"``, the default, ``"without:<stream>"``, ``"only:<stream>"``,
``"shuffled:<stream>"``) marks one model's answer with an input stream removed or permuted
(:mod:`modsab.contract.ablation`): such records are audited by ablation, never fused.
Labels are kept raw here (a label must be a string); :class:`modsab.contract.labels.LabelSet` resolves them later, so
an answer outside the label set is counted, never silently dropped at parse time.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

Scale = Literal["percent", "unit"]

#: Upper bound of confidence and quality per scale.
SCALE_MAX: dict[str, float] = {"percent": 100.0, "unit": 1.0}

REQUIRED_FIELDS = ("instance_id", "agent", "candidates")


def _check_number(value: Any, what: str, info: ValidationInfo) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    value = float(value)
    top = SCALE_MAX[(info.context or {}).get("scale", "percent")]
    if math.isnan(value) or value < 0 or value > top:
        hint = " (use --scale unit for 0-1 values)" if top == 100.0 else " (--scale unit reads 0-1)"
        raise ValueError(f"{what} {value:g} is outside 0-{top:g}{hint}")
    return value


class Candidate(BaseModel):
    """One ranked label with the agent's confidence."""

    model_config = ConfigDict(extra="allow")

    label: str = Field(description="label as the agent wrote it; resolved against the label set later")
    confidence: float

    @field_validator("label", mode="before")
    @classmethod
    def _label(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {value!r}")
        return value

    @field_validator("confidence", mode="before")
    @classmethod
    def _confidence(cls, value: Any, info: ValidationInfo) -> float:
        return _check_number(value, "confidence", info)


class PredictionRecord(BaseModel):
    """One agent's answer for one instance (the public predictions contract)."""

    model_config = ConfigDict(extra="allow")

    instance_id: str
    agent: str
    gold: str | None = None
    candidates: list[Candidate]
    quality: float | None = None
    dataset: str | None = None
    condition: str | None = None

    @field_validator("instance_id", "agent", mode="before")
    @classmethod
    def _identifier(cls, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError(f"must be a string, got {value!r}")
        text = str(value).strip()
        if not text:
            raise ValueError("must not be empty")
        return text

    @field_validator("gold", "dataset", mode="before")
    @classmethod
    def _optional_text(cls, value: Any) -> str | None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise ValueError(f"must be a string, got {value!r}")
        text = str(value).strip()
        return text or None

    @field_validator("quality", mode="before")
    @classmethod
    def _quality(cls, value: Any, info: ValidationInfo) -> float | None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return _check_number(value, "quality", info)

    @field_validator("condition", mode="before")
    @classmethod
    def _condition(cls, value: Any) -> str | None:
        from modsab.contract.ablation import parse_condition

        return parse_condition(value)

    @field_validator("candidates", mode="before")
    @classmethod
    def _candidates(cls, value: Any) -> Any:
        if value is None:
            return []
        if not isinstance(value, list):
            raise ValueError(f"must be a list of {{label, confidence}} objects, got {type(value).__name__}")
        return value
