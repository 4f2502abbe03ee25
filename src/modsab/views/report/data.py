"""What the page and the figures read: the typed diagnosis, validated once here.

The diagnosis is a :class:`~modsab.core.diagnosis.Diagnosis`, its typed result or its JSON
(``to_dict()``); a run directory's ``diagnosis.json`` adds the diagnostics sections the
diagnosis lacks. A section under a diagnostic's key whose shape is not modsab's (another
tool's, or an older modsab's) does not validate: it is kept apart, as :attr:`ReportData.foreign`,
and shown as a plain table instead of breaking the report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from modsab import registry
from modsab.core.diagnosis import Diagnosis
from modsab.core.result import DiagnosisFields, DiagnosisResult
from modsab.core.typed import Model

#: The diagnostics' top-level keys and the model of each section.
SECTION_MODELS: dict[str, type[Model]] = {
    name: entry.section for name, entry in registry.diagnostics.items() if entry.section is not None
}


@dataclass
class ReportData:
    """The typed diagnosis, and the sections of another shape, by key."""

    result: DiagnosisResult
    foreign: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(
        cls,
        diagnosis: Diagnosis | DiagnosisResult | Mapping[str, Any] | ReportData,
        sections: Mapping[str, Any] | None = None,
    ) -> ReportData:
        """From a ``Diagnosis``, a ``DiagnosisResult``, its JSON or a :class:`ReportData`;
        ``sections`` (a run's ``diagnosis.json``) adds the diagnostics sections it lacks."""
        if isinstance(diagnosis, ReportData):
            data = cls(diagnosis.result, dict(diagnosis.foreign))
        elif isinstance(diagnosis, Diagnosis):
            data = cls(diagnosis.result())
        elif isinstance(diagnosis, DiagnosisFields):
            data = cls(diagnosis)
        else:
            typed, foreign = _sections(diagnosis)
            base = {key: value for key, value in diagnosis.items() if key not in SECTION_MODELS}
            data = cls(DiagnosisResult.model_validate({**base, **typed}), foreign)
        if sections:
            missing = {key: value for key, value in sections.items() if data.section(key) is None}
            typed, foreign = _sections(missing)
            if typed:
                data.result = data.result.model_copy(update=typed)
                # the findings read every section: read them again with the ones added
                from modsab.diagnostics.findings import findings

                diagnosis_arrays = diagnosis if isinstance(diagnosis, Diagnosis) else None
                data.result = data.result.model_copy(update={"findings": findings(data.result, diagnosis_arrays)})
            data.foreign.update(foreign)
        return data

    def section(self, key: str) -> Any:
        """The section under a diagnostic's key: its model, the JSON of another shape, or None."""
        typed = getattr(self.result, key)
        return typed if typed is not None else self.foreign.get(key)


def _sections(payload: Mapping[str, Any]) -> tuple[dict[str, Model], dict[str, Any]]:
    """``(typed, foreign)``: the diagnostics sections of ``payload`` that validate, and the others."""
    typed, foreign = {}, {}
    for key, model in SECTION_MODELS.items():
        if payload.get(key) is None:
            continue
        try:
            typed[key] = model.model_validate(payload[key])
        except ValidationError:
            foreign[key] = payload[key]
    return typed, foreign
