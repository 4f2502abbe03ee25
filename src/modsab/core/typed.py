"""The base of the typed result models (:mod:`modsab.core.result`, the diagnostics' sections).

Each model describes one object of ``diagnosis.json`` exactly: the same keys in the same
order, ``None`` where the JSON has null, and no other key (``extra="forbid"``, so a key
added to the JSON without a model fails loudly in the tests). A key that the JSON leaves
out when it does not apply (rather than writing null), such as ``by_dataset`` or a
strategy's ``diff``, is declared with :func:`absent`: its default is None and it is left
out of the dump unless it was given.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

#: A percentile interval ``[low, high]``; ``[null, null]`` when it could not be computed.
Interval = Annotated[list[float | None], Field(min_length=2, max_length=2)]


def _drop_null(schema: dict[str, Any]) -> None:
    """JSON Schema of a key that is absent or not null: no null branch, no default."""
    schema.pop("default", None)
    if "anyOf" in schema:
        branches = [b for b in schema["anyOf"] if b != {"type": "null"}]
        if len(branches) == 1:
            del schema["anyOf"]
            schema.update(branches[0])
        else:
            schema["anyOf"] = branches


def _keep_null(schema: dict[str, Any]) -> None:
    """JSON Schema of a key that is absent, null or a value: no default."""
    schema.pop("default", None)


def absent(*, nullable: bool = False) -> Any:
    """A key the JSON leaves out when it does not apply. ``nullable``: when present it may be null."""
    return Field(default=None, json_schema_extra=_keep_null if nullable else _drop_null)


class Model(BaseModel):
    """A JSON object of the diagnosis, keys in JSON order; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    #: Fields declared with :func:`absent`, left out of the dump unless given.
    absent_keys: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.absent_keys = frozenset(
            name
            for name, info in cls.model_fields.items()
            if info.json_schema_extra is _drop_null or info.json_schema_extra is _keep_null
        )

    @model_serializer(mode="wrap")
    def _leave_out_absent(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if self.absent_keys and isinstance(data, dict):
            for key in self.absent_keys - self.model_fields_set:
                data.pop(key, None)
        return data
