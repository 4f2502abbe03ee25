"""Load the predictions contract into dense arrays.

Files (JSON Lines, CSV, Parquet, or a run directory holding ``predictions.*``) are
read at the edge and validated once; everything downstream works on
:class:`PredictionSet`, whose arrays follow STYLE.md::

    scores[n_instances, n_agents, n_labels]   confidence in [0, 1], 0 where absent
                                              (held as one-byte codes when the file's
                                              confidences are on the percent grid, and
                                              made float64 the first time it is read;
                                              ``block_scores`` decodes some rows only)
    candidate[n, m, k]                        the agent named that label (valid)
    quality[n, m]                             self-reported quality in [0, 1], NaN if absent
    gold[n]                                   label index
    present[n, m]                             a record exists for (instance, agent)
    invalid[n, m]                             candidates left out as invalid (or repeated)

Nothing depends on the order of the lines (network agents write them in completion
order): instances come sorted by id, agents in one order (``agents_order``, else the order
a run directory recorded, else sorted names), and every list derived from the records is
sorted too.

Two readers produce the same flat columns. The fast one hands the whole file to
pyarrow and checks it with vectorised operations; it gives up on the first thing it
cannot vouch for. The exact one then reads record by record with pydantic, so every
error names its file, line and field (and ``skip_invalid`` can skip just that record).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modsab.contract import ablation as _ablation
from modsab.contract import batches, compact, grid
from modsab.contract.errors import InputError
from modsab.contract.labels import LabelSet, clean
from modsab.contract.records import REQUIRED_FIELDS, SCALE_MAX, PredictionRecord, Scale
from modsab.contract.textfiles import data_suffix, decode, read_bytes

#: File names looked for when a run directory is given instead of a file.
RUN_DIR_FILES = (
    "predictions.jsonl",
    "predictions.parquet",
    "predictions.csv",
    "predictions.jsonl.gz",
    "predictions.csv.gz",
)

_CANDIDATES_TYPE = pa.list_(pa.struct([("label", pa.string()), ("confidence", pa.float64())]))
_SCHEMA = pa.schema(
    [
        ("instance_id", pa.string()),
        ("agent", pa.string()),
        ("gold", pa.string()),
        ("dataset", pa.string()),
        ("quality", pa.float64()),
        ("candidates", _CANDIDATES_TYPE),
        ("condition", pa.string()),
    ]
)
_MAX_EXAMPLES = 5
_BLOCK = 1 << 16  # records per block when scattering candidates


@dataclass(frozen=True)
class SkippedRecord:
    """A record left out under ``skip_invalid``, with where and why (and the line or row
    number, when there is one, which orders the list)."""

    where: str
    reason: str
    line: int | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, str]:
        return {"where": self.where, "reason": self.reason}


@dataclass
class PredictionSet:
    """Validated predictions as dense arrays (see module docstring)."""

    instance_ids: np.ndarray
    agents: tuple[str, ...]
    labels: LabelSet
    scores: np.ndarray
    candidate: np.ndarray
    quality: np.ndarray
    gold: np.ndarray
    present: np.ndarray
    dataset: np.ndarray | None = None
    line: np.ndarray | None = None
    #: ``[n, m]`` candidates of each answer left out as invalid (outside the label set, or a
    #: label the answer named before); any group's count is a sum over its rows.
    invalid: np.ndarray | None = None
    #: Per agent, over every record read (instances left out for want of gold included).
    invalid_labels: dict[str, int] = field(default_factory=dict)
    invalid_examples: dict[str, list[str]] = field(default_factory=dict)
    skipped: list[SkippedRecord] = field(default_factory=list)
    n_without_gold: int = 0
    source: str = "<memory>"
    scale: Scale = "percent"
    #: Models' answers under conditions (``without:<stream>``, ...), audited by ablation and
    #: never fused (:mod:`modsab.contract.ablation`); ``None`` when no record has a condition.
    ablation: _ablation.AblationSet | None = None

    @classmethod
    def from_arrays(
        cls,
        scores: np.ndarray,
        gold: np.ndarray,
        *,
        labels: LabelSet | Sequence[str],
        agents: Sequence[str],
        candidate: np.ndarray | None = None,
        quality: np.ndarray | None = None,
        instance_ids: Sequence[str] | None = None,
        dataset: Sequence[str] | None = None,
    ) -> PredictionSet:
        """Build a set from arrays already in memory (confidences and quality in [0, 1]).

        ``candidate`` defaults to ``scores > 0`` (an agent named every label it scored).
        """
        scores = np.asarray(scores, dtype=np.float64)
        n, m, k = scores.shape
        labels = labels if isinstance(labels, LabelSet) else LabelSet(tuple(labels))
        if len(labels) != k or len(agents) != m:
            raise InputError(f"scores has shape {scores.shape}, but {len(agents)} agents and {len(labels)} labels")
        if np.any((scores < 0) | (scores > 1)):
            raise InputError("scores must be in [0, 1]")
        return cls(
            instance_ids=np.asarray(instance_ids if instance_ids is not None else [str(i) for i in range(n)], object),
            agents=tuple(agents),
            labels=labels,
            scores=scores,
            candidate=scores > 0 if candidate is None else np.asarray(candidate, dtype=bool),
            quality=np.full((n, m), np.nan) if quality is None else np.asarray(quality, dtype=np.float64),
            gold=np.asarray(gold, dtype=np.int64),
            present=np.ones((n, m), dtype=bool),
            dataset=None if dataset is None else np.asarray(dataset, dtype=object),
            invalid=np.zeros((n, m), dtype=np.int64),
            invalid_labels=dict.fromkeys(agents, 0),
        )

    @property
    def n_instances(self) -> int:
        return int(self.gold.shape[0])

    @property
    def invalid_counts(self) -> np.ndarray:
        """``[n, m]`` :attr:`invalid`, zeros when the set was built without it."""
        return np.zeros(self.present.shape, dtype=np.int64) if self.invalid is None else self.invalid

    @property
    def answered(self) -> np.ndarray:
        """``[n, m]``: the agent gave at least one valid candidate."""
        return self.candidate.any(axis=2)

    def with_agent_order(self, order: Sequence[str] | str) -> PredictionSet:
        """The same set with its agents in ``order`` (a list or comma list naming each once)."""
        names = agent_order(self.agents, agent_names(order), path=None if self.source == "<memory>" else self.source)
        if tuple(names) == self.agents:
            return self
        take = [self.agents.index(name) for name in names]

        def agents_axis(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else array[:, take]

        return replace(
            self,
            instance_ids=self.id_store,
            agents=tuple(names),
            scores=self.score_store[:, take],
            candidate=agents_axis(self.candidate),
            quality=self.quality_store[:, take],
            present=agents_axis(self.present),
            line=agents_axis(self.line),
            invalid=agents_axis(self.invalid),
            invalid_labels={name: self.invalid_labels[name] for name in names if name in self.invalid_labels},
            invalid_examples={name: self.invalid_examples[name] for name in names if name in self.invalid_examples},
        )

    @property
    def id_store(self) -> np.ndarray | pa.Array:
        """The instance ids as held: an object array, or the reader's Arrow string array
        (made an object array of Python strings the first time :attr:`instance_ids` is read)."""
        return self._instance_ids

    @property
    def quality_store(self) -> np.ndarray | compact.CompactScores:
        """The quality as held: the float64 array, or its one-byte codes (not decoded)."""
        return self._quality

    @property
    def score_store(self) -> np.ndarray | compact.CompactScores:
        """The scores as held: the float64 array, or its one-byte codes (not decoded)."""
        return self._scores

    @property
    def scores_shape(self) -> tuple[int, ...]:
        """``(n, m, k)`` of :attr:`scores`, without decoding it."""
        return tuple(self._scores.shape)

    def block_scores(self, rows: slice | np.ndarray) -> np.ndarray:
        """``scores[rows]`` (a slice, indices or a mask) as float64, decoding only those rows
        when the set holds codes: what the foundation audit walks, so the dense array is never
        made whole."""
        store = self._scores
        return store[rows].decode() if isinstance(store, compact.CompactScores) else store[rows]

    def agent_index(self, name: str) -> int:
        try:
            return self.agents.index(name)
        except ValueError:
            if self.ablation is not None and name in self.ablation.models:
                raise InputError(
                    f"'{name}' is a model (its records carry conditions): it is audited by ablation, not fused",
                    hint=f"agents in {self.source}: {', '.join(self.agents) or 'none'}",
                ) from None
            raise InputError(
                f"unknown agent '{name}'", hint=f"agents in {self.source}: {', '.join(self.agents)}"
            ) from None

    def where(self, instance: int, agent: int | None = None) -> str:
        """Human location of an (instance, agent) pair, for error messages."""
        text = f"instance '{self.instance_ids[instance]}'"
        if agent is not None:
            text += f", agent '{self.agents[agent]}'"
            if self.line is not None and self.line[instance, agent] > 0:
                text = f"{self.source}:{self.line[instance, agent]} " + text
        return text

    def subset(self, rows: np.ndarray) -> PredictionSet:
        """The same set restricted to some instances (by index or boolean mask)."""
        return PredictionSet(
            instance_ids=_take_ids(self.id_store, rows),
            agents=self.agents,
            labels=self.labels,
            scores=self.score_store[rows],
            candidate=self.candidate[rows],
            quality=self.quality_store[rows],
            gold=self.gold[rows],
            present=self.present[rows],
            dataset=None if self.dataset is None else self.dataset[rows],
            line=None if self.line is None else self.line[rows],
            invalid=None if self.invalid is None else self.invalid[rows],
            invalid_labels=self.invalid_labels,
            invalid_examples=self.invalid_examples,
            skipped=self.skipped,
            n_without_gold=self.n_without_gold,
            source=self.source,
            scale=self.scale,
            ablation=None
            if self.ablation is None
            else self.ablation.subset(np.isin(self.ablation.instance_ids, self.instance_ids[rows])),
        )


def _decoded_on_first_read(held: str, doc: str) -> property:
    """A float64 array attribute held in ``held`` as given, or as one-byte codes
    (:class:`~modsab.contract.compact.CompactScores`) decoded once, on the first read, and kept."""

    def get(self: PredictionSet) -> np.ndarray:
        store = getattr(self, held)
        if isinstance(store, compact.CompactScores):  # first read: decode once, keep the floats
            store = store.decode()
            setattr(self, held, store)
        return store

    def set_(self: PredictionSet, value: np.ndarray | compact.CompactScores) -> None:
        setattr(self, held, value if isinstance(value, compact.CompactScores) else np.asarray(value))

    return property(get, set_, doc=doc)


#: ``scores[n, m, k]`` float64 (see the module docstring); a set built from one-byte codes
#: decodes them on the first read, so code that reads it whole works unchanged.
PredictionSet.scores = _decoded_on_first_read("_scores", "scores[n, m, k] float64")  # type: ignore[assignment]
#: ``quality[n, m]`` float64; held as one-byte codes (as the scores are) when the file's
#: qualities are on the percent grid, decoded on the first read. The foundation audit never
#: reads it.
PredictionSet.quality = _decoded_on_first_read("_quality", "quality[n, m] float64")  # type: ignore[assignment]


def _get_ids(self: PredictionSet) -> np.ndarray:
    store = self._instance_ids
    if isinstance(store, pa.Array | pa.ChunkedArray):  # first read: Python strings, once
        store = self._instance_ids = store.to_numpy(zero_copy_only=False).astype(object, copy=False)
    return store


def _set_ids(self: PredictionSet, value: np.ndarray | pa.Array) -> None:
    self._instance_ids = value


#: ``instance_ids[n]`` an object array of strings. The reader keeps them as one Arrow string
#: array (a few bytes an id, where a Python string costs some sixty) until the first read:
#: the foundation audit names no instance, so ten million ids never become Python objects.
PredictionSet.instance_ids = property(_get_ids, _set_ids)  # type: ignore[assignment]


def _take_ids(ids: np.ndarray | pa.Array, rows) -> np.ndarray | pa.Array:
    """``ids[rows]`` (a boolean mask or indices) as held."""
    if not isinstance(ids, pa.Array | pa.ChunkedArray):
        return ids[rows]
    rows = np.asarray(rows)
    return ids.filter(pa.array(rows)) if rows.dtype == bool else ids.take(pa.array(rows, pa.int64()))


# -- flat columns: what both readers produce ------------------------------------------------


@dataclass
class _Flat:
    """One entry per record (R) and per candidate (C). The string columns are plain
    strings (exact reader) or dictionary arrays with distinct, non-null values (fast
    reader, :func:`_canonical`); :func:`_sorted_codes` reads both."""

    instance_id: pa.Array  # string[R]
    agent: pa.Array  # string[R]
    gold: pa.Array  # string[R], null when absent
    dataset: pa.Array  # string[R]
    quality: np.ndarray  # float64[R], NaN when absent
    line: np.ndarray  # int64[R]
    cand_count: np.ndarray  # int[R], candidates per record (a record's candidates are contiguous)
    cand_label: pa.Array  # string[C], null when the label was not a string
    cand_confidence: np.ndarray  # float64[C]
    skipped: list[SkippedRecord]
    line_kind: str = "line"
    condition: pa.Array | None = None  # string[R], null when absent (the full input)


class _GiveUp(Exception):
    """The fast reader cannot vouch for the file; the exact reader takes over."""


def _resolve_path(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        for name in RUN_DIR_FILES:
            if (path / name).is_file():
                return path / name
        if batches.parquet_files(path):
            return path  # a directory of Parquet files (a Spark or Ray job's output): read as one
        raise InputError(
            "directory has no predictions file",
            path=path,
            hint=f"expected one of {', '.join(RUN_DIR_FILES)}, or Parquet files (part-*.parquet)",
        )
    if not path.exists():
        raise InputError("file not found", path=path, hint="check the path")
    if path.stat().st_size == 0:
        raise InputError("file is empty", path=path, hint="expected one prediction record per line")
    return path


def _format(path: Path) -> str:
    if path.is_dir():
        return "parquet"  # _resolve_path returns a directory only when it holds Parquet files
    ext = data_suffix(path)
    if ext in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if ext in (".csv", ".tsv"):
        return "csv"
    if ext in (".parquet", ".pq"):
        return "parquet"
    raise InputError(
        f"unknown file type '{ext or path.name}'",
        path=path,
        hint="use .jsonl, .csv or .parquet (.jsonl.gz and .csv.gz are read too)",
    )


def _delimiter(path: Path) -> str:
    return "\t" if data_suffix(path) == ".tsv" else ","


# -- fast reader -------------------------------------------------------------------------


def _line_count(data: bytes) -> int:
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


def _candidates_from_json_strings(column: pa.Array) -> pa.Array:
    """Parse a column of JSON strings (CSV's candidates) with pyarrow's JSON reader."""
    import pyarrow.json as pj

    if column.null_count:
        raise _GiveUp
    if pc.any(pc.match_substring(column, "\n")).as_py():
        raise _GiveUp  # a newline inside would break one-row-per-line
    large = pa.large_string()
    joined = pc.binary_join_element_wise(
        pa.scalar('{"c":', large), column.cast(large), pa.scalar("}\n", large), pa.scalar("", large)
    )
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int64)[joined.offset : joined.offset + len(joined) + 1]
    payload = joined.buffers()[2].to_pybytes()[offsets[0] : offsets[-1]]
    schema = pa.schema([("c", _CANDIDATES_TYPE)])
    try:
        table = pj.read_json(io.BytesIO(payload), parse_options=pj.ParseOptions(explicit_schema=schema))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise _GiveUp from error
    if table.num_rows != len(column):
        raise _GiveUp
    return table.column("c").combine_chunks()


def _plain_utf8(data: bytes) -> bool:
    """UTF-8 without NUL bytes (pyarrow's readers do not check either); validated in place."""
    if b"\x00" in data:
        return False
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
    text = pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, pa.py_buffer(data)])
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _read_table_fast(path: Path, fmt: str) -> tuple[pa.Table, int]:
    """Read the whole file with pyarrow; return the table and the line number of row 0."""
    if fmt == "jsonl":
        return _jsonl_table(read_bytes(path)), 1
    if fmt == "csv":
        return _csv_table(read_bytes(path), _delimiter(path)), 2
    import pyarrow.parquet as pq

    files = batches.parquet_files(path) if path.is_dir() else [path]
    try:
        tables = [pq.read_table(file, read_dictionary=_dictionary_columns(file)) for file in files]
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as error:
        raise InputError(f"cannot read Parquet: {error}", path=path) from error
    return _parquet_candidates(table), 1


def _jsonl_table(data: bytes) -> pa.Table:
    """JSON Lines bytes (a whole file or a block of whole lines) as a table of the schema's
    columns, one row per line."""
    import pyarrow.json as pj

    if not _plain_utf8(data):
        raise _GiveUp
    options = pj.ParseOptions(explicit_schema=_SCHEMA, unexpected_field_behavior="ignore")
    try:
        table = pj.read_json(io.BytesIO(data), parse_options=options)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise _GiveUp from error
    if table.num_rows != _line_count(data):
        raise _GiveUp  # blank lines: row numbers would not be line numbers
    return table


def _csv_table(data: bytes, delimiter: str) -> pa.Table:
    """CSV bytes (a header line, then rows: a whole file or a block of them) as a table,
    candidates parsed from their JSON strings."""
    import pyarrow.csv as pcsv

    if not _plain_utf8(data):
        raise _GiveUp
    types = {name: _SCHEMA.field(name).type for name in ("instance_id", "agent", "gold", "dataset", "condition")}
    types |= {"quality": pa.float64(), "candidates": pa.string()}
    try:
        table = pcsv.read_csv(
            io.BytesIO(data),
            parse_options=pcsv.ParseOptions(delimiter=delimiter),
            convert_options=pcsv.ConvertOptions(
                column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise _GiveUp from error
    if table.num_rows + 1 != _line_count(data) or "candidates" not in table.column_names:
        raise _GiveUp
    candidates = _candidates_from_json_strings(table.column("candidates").combine_chunks())
    return table.set_column(table.column_names.index("candidates"), "candidates", candidates)


def _parquet_candidates(table: pa.Table) -> pa.Table:
    """A Parquet table with its candidates parsed, when they were written as JSON strings."""
    if "candidates" in table.column_names and pa.types.is_string(table.schema.field("candidates").type):
        parsed = _candidates_from_json_strings(table.column("candidates").combine_chunks())
        table = table.set_column(table.column_names.index("candidates"), "candidates", parsed)
    return table


def _labels_are_text(candidates: pa.DataType) -> bool:
    """The candidates' labels are strings (plain or dictionary-encoded), as the contract says."""
    if not (pa.types.is_list(candidates) or pa.types.is_large_list(candidates)):
        return True  # not a list at all: the cast gives up
    element = candidates.value_type
    if not pa.types.is_struct(element) or element.get_field_index("label") < 0:
        return True
    label = element.field("label").type
    if pa.types.is_dictionary(label):
        label = label.value_type
    return pa.types.is_string(label) or pa.types.is_large_string(label)


def _dictionary_columns(path: Path) -> list[str]:
    """Parquet columns of few distinct strings to read as dictionaries (agent, gold, dataset,
    candidate labels): no string is materialised per row, and their codes come for free."""
    import pyarrow.parquet as pq

    try:
        schema = pq.read_metadata(path).schema
    except (pa.ArrowInvalid, OSError):
        return []  # read_table reports it
    paths = [schema.column(i).path for i in range(len(schema))]
    label = [p for p in paths if p.startswith("candidates.") and p.endswith(".label")]
    return [p for p in paths if p in ("agent", "gold", "dataset", "condition")] + label


def _cast(column: pa.Array, target: pa.DataType) -> pa.Array:
    """Cast to the contract's type, keeping strings dictionary-encoded when they are."""
    kept = None
    if target == pa.string() and pa.types.is_dictionary(column.type):
        kept = pa.dictionary(column.type.index_type, pa.string())
    elif target == _CANDIDATES_TYPE and (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        element = column.type.value_type
        if pa.types.is_struct(element) and element.get_field_index("label") >= 0:
            label = element.field("label").type
            if pa.types.is_dictionary(label):
                kept = pa.list_(
                    pa.struct([("label", pa.dictionary(label.index_type, pa.string())), ("confidence", pa.float64())])
                )
    if kept is not None:
        try:
            return column.cast(kept)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
    try:
        return column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:
        raise _GiveUp from error


def _canonical(
    column: pa.Array | pa.ChunkedArray, *, trim: bool = True, empty_is_null: bool = False
) -> pa.DictionaryArray:
    """Dictionary-encode a string column (plain strings, chunked or not, or a dictionary
    array), trimming (and blank to null, or giving up on blank) on the distinct values
    only. The dictionary comes out distinct and without nulls; its order is first
    appearance when ``column`` was plain strings."""
    if pa.types.is_dictionary(column.type):
        encoded, distinct = column, False
    else:
        encoded, distinct = _encode(column), True
    values = encoded.dictionary
    if trim:
        values = pc.utf8_trim_whitespace(values)
        empty = pc.equal(pc.utf8_length(values), 0)
        if pc.any(empty).as_py():
            if not empty_is_null:
                raise _GiveUp
            values = pc.if_else(empty, pa.scalar(None, pa.string()), values)
            distinct = False
        elif distinct and not pc.all(pc.equal(values, encoded.dictionary)).as_py():
            distinct = False
    if not distinct:
        again = values.dictionary_encode()
        if again.null_count or len(again.dictionary) != len(values):  # merged or blanked values: recode rows
            remap = np.append(pc.fill_null(again.indices.cast(pa.int64()), -1).to_numpy(zero_copy_only=False), -1)
            codes = remap[_indices(encoded)]
            indices = pa.array(codes.astype(np.int32), mask=codes < 0)
            return pa.DictionaryArray.from_arrays(indices, again.dictionary)
        values = again.dictionary  # the same values, in the same order
    return pa.DictionaryArray.from_arrays(encoded.indices, values)


def _encode(column: pa.Array | pa.ChunkedArray) -> pa.DictionaryArray:
    """``dictionary_encode`` into one array; chunks are encoded where they lie (the
    chunks of the result share the final dictionary), so only the codes are copied."""
    if isinstance(column, pa.ChunkedArray):
        encoded = column.dictionary_encode()
        if encoded.num_chunks == 0:
            return column.combine_chunks().dictionary_encode()
        dictionary = encoded.chunk(0).dictionary
        if all(_same_values(c.dictionary, dictionary) for c in encoded.chunks):
            return pa.DictionaryArray.from_arrays(pa.concat_arrays([c.indices for c in encoded.chunks]), dictionary)
        column = column.combine_chunks()
    return column.dictionary_encode()


def _same_values(a: pa.Array, b: pa.Array) -> bool:
    """``a.equals(b)``, at once when both view the same memory."""
    if len(a) != len(b):
        return False
    pairs = zip(a.buffers(), b.buffers(), strict=True)
    if a.offset == b.offset and all(x is y or (x and y and x.address == y.address) for x, y in pairs):
        return True
    return a.equals(b)


def _indices(encoded: pa.DictionaryArray) -> np.ndarray:
    """Integer codes of a dictionary array, -1 for null, in its own (signed) index type: the
    nulls are marked in numpy, so no int64 copy is made in Arrow's memory (a file's gold,
    null on most records, made two of them: 640 MB at ten million instances)."""
    indices = encoded.indices
    if not indices.null_count:
        return indices.to_numpy(zero_copy_only=False)
    values = np.frombuffer(indices.buffers()[1], dtype=indices.type.to_pandas_dtype())
    codes = values[indices.offset : indices.offset + len(indices)]
    codes = codes.astype(np.int64) if codes.dtype.kind == "u" else codes.copy()
    codes[~pc.is_valid(indices).to_numpy(zero_copy_only=False)] = -1
    return codes


def _fast(
    path: Path, fmt: str, scale: Scale, batch_rows: int | None = batches.DEFAULT_BATCH_ROWS, executor: Any = None
) -> _Flat:
    """The fast reader: in batches of ``batch_rows`` records (:func:`reduce_file`), else the
    whole file at once (``batch_rows=None``, the plain reference; also for compressed files,
    and for any file the batched reader cannot vouch for, before the exact reader is asked).
    ``executor``: where a directory's files are reduced (:func:`_reduce_files`)."""
    if batch_rows is not None and (path.is_dir() or not batches.compressed(path)):
        try:
            return _batched(path, fmt, scale, batch_rows, executor)
        except _GiveUp:
            pass
    table, first_line = _read_table_fast(path, fmt)
    return _flat_of(table, first_line, fmt, scale)


def _batched(path: Path, fmt: str, scale: Scale, batch_rows: int, executor: Any = None) -> _Flat:
    """A file, or a directory's Parquet files, read in batches and merged."""
    if not path.is_dir():
        return reduce_file(path, fmt=fmt, scale=scale, batch_rows=batch_rows)
    import pyarrow.parquet as pq

    files, first_row = [], 1
    for file in batches.parquet_files(path):
        try:
            rows = pq.read_metadata(file).num_rows  # the footer only: where the file's rows are numbered from
        except (pa.ArrowInvalid, OSError) as error:
            raise _GiveUp from error  # the whole-file reader reports it
        if rows:
            files.append((file, first_row))
        first_row += rows
    return _merge_consuming(_reduce_files(files, scale, batch_rows, executor))


def _reduce_files(files: list[tuple[Path, int]], scale: Scale, batch_rows: int, executor: Any) -> list[_Flat]:
    """The seam between the reader and where it runs: each ``(file, first row)`` reduced by
    :func:`reduce_file`, the partials in file order. Here one after another; on an
    ``executor`` (:mod:`modsab.run.executors`, e.g. Ray) one task a file, read where the task
    runs (:mod:`modsab.contract.spread`)."""
    if executor is None:
        return [reduce_file(file, fmt="parquet", scale=scale, batch_rows=batch_rows, first_line=first)
                for file, first in files]
    from modsab.contract.spread import reduce_on

    return reduce_on(executor, files, scale=scale, batch_rows=batch_rows)


def reduce_file(
    path: Path, *, fmt: str, scale: Scale, batch_rows: int = batches.DEFAULT_BATCH_ROWS, first_line: int | None = None
) -> _Flat:
    """One file (not compressed) read ``batch_rows`` records at a time and checked per batch
    as the whole-file reader checks it, each batch's numbers held compactly
    (:mod:`modsab.contract.grid`): the file's partial result, which :func:`merge_partials`
    merges with others'. A plain function of the file, so a cluster task (the Ray executor)
    can reduce each file of a directory where it lies and the driver merge the results.
    ``first_line`` numbers the file's first record (a directory numbers its files' rows on
    from one file to the next). A :class:`_GiveUp` when any batch cannot be vouched for."""
    parts = []
    line = (2 if fmt == "csv" else 1) if first_line is None else first_line
    try:
        for table in _tables(path, fmt, batch_rows):
            parts.append(_compact(_flat_of(table, line, fmt, scale), scale))
            line += table.num_rows
            del table
            _release_arrow_memory()
    except (pa.ArrowException, OSError) as error:
        raise _GiveUp from error  # the whole-file reader reports what it is
    return _merge_consuming(parts)


def _release_arrow_memory() -> None:
    """Hand the memory of freed Arrow buffers (a batch's tables) back to the system: Arrow's
    allocator keeps it for Arrow alone, where numpy's arrays of the set cannot reuse it, and
    on a large file that is most of the reader's peak."""
    pa.default_memory_pool().release_unused()


def _tables(path: Path, fmt: str, batch_rows: int) -> Iterator[pa.Table]:
    """The file's batches as the fast reader's tables (a CSV block after its header)."""
    if fmt == "parquet":
        for table in batches.parquet_batches(path, batch_rows, read_dictionary=_dictionary_columns(path)):
            yield _parquet_candidates(table)
    elif fmt == "csv":
        header = batches.header_line(path)
        for block in batches.line_blocks(path, batch_rows, skip=1):
            yield _csv_table(header + block, _delimiter(path))
    else:
        for block in batches.line_blocks(path, batch_rows):
            yield _jsonl_table(block)


def _compact(flat: _Flat, scale: Scale) -> _Flat:
    """A batch's columns held small: confidences and qualities as one-byte percents where
    they are on the grid, line numbers as int32, and the codes of the few-valued string
    columns (agent, gold, dataset, condition, candidate label) in the narrowest integer type."""
    divisor = 1.0 if scale == "percent" else 100.0
    return replace(
        flat,
        quality=grid.encode(flat.quality, divisor),
        cand_confidence=grid.encode(flat.cand_confidence, divisor),
        line=flat.line.astype(np.int32) if flat.line.size and flat.line[-1] < 2**31 else flat.line,
        agent=_narrow(flat.agent),
        gold=_narrow(flat.gold),
        dataset=_narrow(flat.dataset),
        cand_label=_narrow(flat.cand_label),
        condition=None if flat.condition is None else _narrow(flat.condition),
    )


def _index_type(size: int) -> pa.DataType:
    """The narrowest signed index type for a dictionary of ``size`` values."""
    return next(t for t, top in ((pa.int8(), 2**7), (pa.int16(), 2**15), (pa.int32(), 2**31)) if size < top)


def _narrow(column: pa.Array) -> pa.DictionaryArray:
    """A string column as a dictionary array with the narrowest index type."""
    encoded = column if pa.types.is_dictionary(column.type) else column.dictionary_encode()
    kind = _index_type(len(encoded.dictionary))
    if encoded.indices.type == kind:
        return encoded
    return pa.DictionaryArray.from_arrays(encoded.indices.cast(kind), encoded.dictionary)


def merge_partials(parts: Sequence[_Flat]) -> _Flat:
    """The flat columns of several batches or files, in order, as if read at once: string
    columns as dictionary arrays over one merged dictionary (the readers' contract, see
    :class:`_Flat`), numbers concatenated (one-byte codes while every part has them)."""
    return _merge_consuming(list(parts))


def _merge_consuming(parts: list[_Flat]) -> _Flat:
    """:func:`merge_partials` of a list this function owns: each column is merged, then let
    go in every part, so the parts and the merged set are never held whole side by side
    (a batched read's peak was both at once: twice its columns)."""
    if not parts:
        raise _GiveUp  # no record at all: the whole-file reader says so
    if len(parts) == 1:
        return parts[0]
    conditions = None
    if any(p.condition is not None for p in parts):
        conditions = [p.condition if p.condition is not None else pa.nulls(len(p.agent), pa.string()) for p in parts]
    merged: dict[str, Any] = {}
    for name, merge in _MERGES:
        merged[name] = merge([getattr(p, name) for p in parts])
        parts[:] = [replace(p, **{name: None}) for p in parts]
    return _Flat(
        **merged,
        skipped=[s for p in parts for s in p.skipped],
        line_kind=parts[0].line_kind,
        condition=None if conditions is None else _merge_strings(conditions),
    )


def _merge_strings(columns: Sequence[pa.Array]) -> pa.DictionaryArray:
    """Few-valued string columns (plain or dictionary arrays) as one dictionary array whose
    dictionary is distinct and has no nulls: the parts' dictionaries merged (in order of
    first appearance), each part's codes renumbered through a small table, in the narrowest
    index type."""
    encoded = [c if pa.types.is_dictionary(c.type) else c.dictionary_encode() for c in columns]
    position: dict[str, int] = {}
    renumber = [
        np.asarray([position.setdefault(v, len(position)) for v in c.dictionary.to_pylist()] + [-1], dtype=np.int64)
        for c in encoded
    ]
    dtype = np.dtype(_index_type(len(position)).to_pandas_dtype())
    codes = np.concatenate([table[_indices(c)].astype(dtype) for c, table in zip(encoded, renumber, strict=True)])
    absent = codes < 0
    indices = pa.array(codes, mask=absent) if absent.any() else pa.array(codes)
    return pa.DictionaryArray.from_arrays(indices, pa.array(list(position), pa.string()))


def _concat_dictionaries(columns: Sequence[pa.DictionaryArray]) -> pa.DictionaryArray:
    """Dictionary arrays as one whose dictionary is theirs put end to end (so a value may
    appear in it more than once: :func:`_sorted_codes`, the one reader of instance ids, gives
    such values one code). For the instance ids, where unifying millions of distinct strings
    would cost a hash table over them all."""
    total = sum(len(column.dictionary) for column in columns)
    indices = np.empty(sum(len(column) for column in columns), dtype=np.int32 if total < 2**31 else np.int64)
    start = offset = 0
    for column in columns:  # the readers' ids have no nulls (they give up on one)
        indices[start : start + len(column)] = column.indices.to_numpy(zero_copy_only=False)
        indices[start : start + len(column)] += offset
        start, offset = start + len(column), offset + len(column.dictionary)
    dictionary = pa.concat_arrays([column.dictionary.cast(pa.string()) for column in columns])
    return pa.DictionaryArray.from_arrays(pa.array(indices), dictionary)


#: How :func:`_merge_consuming` merges each column of the parts, in that order.
_MERGES = (
    ("cand_label", _merge_strings),
    ("cand_confidence", grid.concatenate),
    ("instance_id", _concat_dictionaries),
    ("cand_count", np.concatenate),
    ("line", np.concatenate),
    ("agent", _merge_strings),
    ("gold", _merge_strings),
    ("dataset", _merge_strings),
    ("quality", grid.concatenate),
)


def _flat_of(table: pa.Table, first_line: int, fmt: str, scale: Scale) -> _Flat:
    """The flat columns of a table the fast reader read (a whole file or one batch), its
    first row numbered ``first_line``; a :class:`_GiveUp` on the first thing it cannot vouch for."""
    if table.num_rows == 0:
        raise _GiveUp
    columns = {}
    for name in _SCHEMA.names:
        if name not in table.column_names:
            if name in REQUIRED_FIELDS:
                raise _GiveUp
            columns[name] = pa.nulls(table.num_rows, _SCHEMA.field(name).type)
            continue
        column = table.column(name)
        if name == "candidates" and not _labels_are_text(column.type):
            raise _GiveUp  # a number or bool label would be cast to a string: the exact reader reports it
        if name == "instance_id" and column.type == pa.string():
            columns[name] = column  # many distinct strings: _canonical encodes them chunk by chunk, uncopied
        else:
            columns[name] = _cast(column.combine_chunks(), _SCHEMA.field(name).type)
    for name in ("instance_id", "agent", "candidates"):
        if columns[name].null_count:
            raise _GiveUp
    ids = _canonical(columns["instance_id"])
    agents = _canonical(columns["agent"])
    if ids.null_count or agents.null_count:  # a null inside a dictionary
        raise _GiveUp
    top = SCALE_MAX[scale]
    quality = columns["quality"].to_numpy(zero_copy_only=False)
    quality = np.asarray(quality, dtype=np.float64)
    if np.any((quality < 0) | (quality > top)):
        raise _GiveUp
    lists = columns["candidates"]
    values = lists.flatten()
    confidence = values.field("confidence")
    if confidence.null_count or values.field("label").null_count:
        raise _GiveUp
    confidence = confidence.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    if np.any(~((confidence >= 0) & (confidence <= top))):
        raise _GiveUp
    lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
    condition = None
    if columns["condition"].null_count < table.num_rows:
        try:
            condition = _ablation.canonical_conditions(_canonical(columns["condition"], empty_is_null=True))
        except ValueError as error:
            raise _GiveUp from error  # the exact reader names the line
    return _Flat(
        instance_id=ids,
        agent=agents,
        gold=_canonical(columns["gold"], empty_is_null=True),
        dataset=_canonical(columns["dataset"], empty_is_null=True),
        quality=quality,
        line=np.arange(first_line, first_line + table.num_rows, dtype=np.int64),
        cand_count=lengths,
        cand_label=_canonical(values.field("label"), trim=False),
        cand_confidence=confidence,
        skipped=[],
        line_kind="row" if fmt == "parquet" else "line",
        condition=condition,
    )


# -- exact reader ------------------------------------------------------------------------


def resolve_path(path: str | Path) -> Path:
    """The predictions file that ``path`` names (a file, or a run directory holding one);
    an :class:`InputError` naming the path when there is none."""
    return _resolve_path(path)


def records(path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(line, raw record)`` of a predictions file (any supported format) before any
    checking; a record that could not be parsed is an :class:`InputError` instance, so the
    caller decides whether to stop or skip. For other tools that read the same files."""
    resolved = _resolve_path(path)
    yield from _records(resolved, _format(resolved))


def _records(path: Path, fmt: str) -> Iterator[tuple[int, Any]]:
    """Yield (line number, raw object) pairs; a raw object may be an exception."""
    if fmt == "jsonl":
        text = decode(path, read_bytes(path))
        for number, line in enumerate(io.StringIO(text, newline="\n"), start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                yield number, InputError(f"invalid JSON: {error.msg} (column {error.colno})")
    elif fmt == "csv":
        text = decode(path, read_bytes(path))
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=_delimiter(path))
        header = reader.fieldnames or []
        missing = [name for name in REQUIRED_FIELDS if name not in header]
        if missing:
            raise InputError(
                f"CSV header lacks column(s) {', '.join(missing)}",
                path=path,
                line=1,
                hint="columns: instance_id, agent, gold, candidates (JSON), quality, dataset",
            )
        for row in reader:
            extra = row.get(None) or []
            absent = sum(value is None for key, value in row.items() if key is not None)
            if extra or absent:  # a ragged row: csv fills missing fields with None, keeps extra ones under None
                fields = len(header) - absent + len(extra)
                yield reader.line_num, InputError(
                    f"this row has {fields} fields, the header has {len(header)}",
                    hint="quote fields holding commas (candidates is one quoted JSON field)",
                )
                continue
            yield reader.line_num, _csv_row(row)
    else:
        import pyarrow.parquet as pq

        number = 0
        for file in batches.parquet_files(path) if path.is_dir() else [path]:
            for row in pq.read_table(file).to_pylist():
                number += 1
                if isinstance(row.get("candidates"), str):
                    row = _csv_row(row)
                yield number, row


def _csv_row(row: Mapping[str, Any]) -> Any:
    out: dict[str, Any] = {k: (None if v == "" else v) for k, v in row.items() if k is not None}
    text = out.get("candidates")
    if isinstance(text, str):
        try:
            out["candidates"] = json.loads(text)
        except json.JSONDecodeError as error:
            return InputError(f"candidates is not valid JSON: {error.msg} (column {error.colno})")
    quality = out.get("quality")
    if isinstance(quality, str):
        try:
            out["quality"] = float(quality)
        except ValueError:
            return InputError(f"quality must be a number, got {quality!r}")
    return out


def _describe_validation(error: Any) -> str:
    parts = []
    for issue in error.errors()[:3]:
        loc = ".".join(str(p) for p in issue["loc"])
        if issue["type"] == "missing":
            parts.append(f"missing field '{loc}'")
        else:
            message = issue["msg"].removeprefix("Value error, ")
            parts.append(f"{loc}: {message}" if loc else message)
    return "; ".join(parts)


def _exact(path: Path, fmt: str, scale: Scale, skip_invalid: bool) -> _Flat:
    from pydantic import ValidationError

    line_kind = "row" if fmt == "parquet" else "line"
    ids, agents, golds, datasets, qualities, lines, conditions = [], [], [], [], [], [], []
    cand_count, cand_label, cand_conf = [], [], []
    skipped: list[SkippedRecord] = []
    context = {"scale": scale}
    for number, raw in _records(path, fmt):
        hint = "fix the record"
        if isinstance(raw, InputError):
            reason, hint = raw.message, raw.hint or hint
        elif not isinstance(raw, dict):
            reason = f"expected a JSON object, got {type(raw).__name__}"
        else:
            try:
                record = PredictionRecord.model_validate(raw, context=context)
                reason = None
            except ValidationError as error:
                reason = _describe_validation(error)
        if reason is not None:
            if not skip_invalid:
                raise InputError(
                    reason,
                    path=path,
                    line=number if line_kind == "line" else None,
                    item=None if line_kind == "line" else f"row {number}",
                    hint=f"{hint}, or pass --skip-invalid to skip bad records",
                )
            skipped.append(SkippedRecord(f"{path}:{number}", reason, number))
            continue
        ids.append(record.instance_id)
        agents.append(record.agent)
        golds.append(record.gold)
        datasets.append(record.dataset)
        conditions.append(record.condition)
        qualities.append(math.nan if record.quality is None else record.quality)
        lines.append(number)
        cand_count.append(len(record.candidates))
        for candidate in record.candidates:
            cand_label.append(candidate.label)
            cand_conf.append(candidate.confidence)
    if not ids:
        raise InputError(
            "no valid prediction record" + (f" ({len(skipped)} skipped)" if skipped else ""),
            path=path,
            hint="expected one JSON object per line with instance_id, agent, candidates",
        )
    return _Flat(
        instance_id=pa.array(ids, pa.string()),
        agent=pa.array(agents, pa.string()),
        gold=pa.array(golds, pa.string()),
        dataset=pa.array(datasets, pa.string()),
        quality=np.asarray(qualities, dtype=np.float64),
        line=np.asarray(lines, dtype=np.int64),
        cand_count=np.asarray(cand_count, dtype=np.int64),
        cand_label=pa.array(cand_label, pa.string()),
        cand_confidence=np.asarray(cand_conf, dtype=np.float64),
        skipped=skipped,
        line_kind=line_kind,
        condition=pa.array(conditions, pa.string()) if any(c is not None for c in conditions) else None,
    )


# -- assembly ----------------------------------------------------------------------------


def _sorted_codes(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Integer code per entry (-1 for null) and the distinct values in use, sorted (an object
    array): codes that do not depend on the order of the entries (see :func:`_sorted_codes_arrow`)."""
    codes, ordered = _sorted_codes_arrow(column)
    return codes.astype(np.int64, copy=False), ordered.to_numpy(zero_copy_only=False).astype(object, copy=False)


def _code_dtype(size: int) -> type[np.signedinteger]:
    """The narrowest signed integer type holding ``-1`` to ``size``."""
    return next(t for t in (np.int8, np.int16, np.int32, np.int64) if size < np.iinfo(t).max)


def _sorted_codes_arrow(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """:func:`_sorted_codes` with the codes in the narrowest integer type and the distinct
    values as an Arrow string array (for the instance ids: no Python string per id).

    Plain strings are dictionary-encoded; a dictionary array keeps its codes, renumbered by
    one sort of its dictionary (unused values dropped), so a million distinct ids cost one
    vectorised argsort. A value the dictionary holds twice (batches' dictionaries put end to
    end, :func:`_concat_dictionaries`) sorts next to itself and gets one code."""
    encoded = column if pa.types.is_dictionary(column.type) else _encode(column)
    indices = encoded.indices
    codes = _indices(encoded) if indices.null_count else indices.to_numpy(zero_copy_only=False)
    dictionary = encoded.dictionary
    used = np.zeros(len(dictionary) + 1, dtype=bool)
    used[codes] = True  # code -1 (null) marks the extra last entry
    kept = np.flatnonzero(used[:-1])
    values = dictionary if kept.size == len(dictionary) else dictionary.take(pa.array(kept))
    order = pc.array_sort_indices(values).to_numpy(zero_copy_only=False)
    ordered = values.take(pa.array(order))
    first = np.ones(order.size, dtype=bool)  # the first of each run of equal values
    if order.size > 1:
        first[1:] = pc.not_equal(ordered[1:], ordered[:-1]).to_numpy(zero_copy_only=False)
    remap = np.full(len(dictionary) + 1, -1, dtype=_code_dtype(len(dictionary)))
    remap[kept[order]] = np.cumsum(first) - 1
    if not first.all():
        ordered = ordered.filter(pa.array(first))
    return remap[codes], ordered


def _repeats(index: np.ndarray, trash: int) -> np.ndarray:
    """Positions of ``index`` whose slot an earlier position names too (``trash`` aside),
    in order: one stable sort of the block's slots, so no whole-set workspace is needed."""
    order = np.argsort(index, kind="stable")
    ordered = index[order]
    later = np.flatnonzero((ordered[1:] == ordered[:-1]) & (ordered[1:] != trash)) + 1
    return np.sort(order[later])


def _label_codes(column: pa.Array, labels: LabelSet) -> np.ndarray:
    """Resolve labels through the label set, once per unique raw value (label indices, -1
    for none, in the narrowest integer type)."""
    codes, lookup = _label_lookup(column, labels)
    return lookup.astype(_code_dtype(len(labels)))[codes]


def _label_lookup(column: pa.Array, labels: LabelSet) -> tuple[np.ndarray, np.ndarray]:
    """Per entry a code of its raw value, and per code the label index (-1 when invalid;
    code -1, null, picks the trailing -1): ``lookup[codes]`` resolves the column."""
    encoded = column if pa.types.is_dictionary(column.type) else column.dictionary_encode()
    lookup = np.asarray(labels.codes(encoded.dictionary.to_pylist()) + [-1], dtype=np.int64)
    codes = _indices(encoded) if encoded.indices.null_count else encoded.indices.to_numpy()
    return codes, lookup


class _Assembler:
    def __init__(
        self,
        flat: _Flat,
        path: Path,
        *,
        labels: LabelSet | None,
        synonyms,
        scale,
        strict,
        skip_invalid,
        agents_order: tuple[str, ...] | None = None,
        recorded_order: tuple[str, ...] | None = None,
    ) -> None:
        self.flat, self.path, self.scale = flat, path, scale
        self.labels_given, self.synonyms = labels, synonyms or {}
        self.strict, self.skip_invalid = strict, skip_invalid
        self.agents_order, self.recorded_order = agents_order, recorded_order
        self.skipped = list(flat.skipped)

    def place(self, record: int) -> str:
        number = int(self.flat.line[record])
        return f"{self.path}:{number}" if self.flat.line_kind == "line" else f"{self.path} row {number}"

    def skip(self, record: int, reason: str) -> None:
        self.skipped.append(SkippedRecord(self.place(record), reason, int(self.flat.line[record])))

    def fail(self, message: str, *, records: list[int], hint: str | None = None) -> None:
        where = " and ".join(self.place(r) for r in records[:2])
        raise InputError(message, item=where, hint=hint)

    def drop(self, keep: np.ndarray) -> None:
        """Remove records (and their candidates) where ``keep`` is False."""
        f = self.flat
        cand_keep = np.repeat(keep, f.cand_count)
        mask = pa.array(keep)
        cmask = pa.array(cand_keep)
        self.flat = _Flat(
            instance_id=f.instance_id.filter(mask),
            agent=f.agent.filter(mask),
            gold=f.gold.filter(mask),
            dataset=f.dataset.filter(mask),
            quality=f.quality[keep],
            line=f.line[keep],
            cand_count=f.cand_count[keep],
            cand_label=f.cand_label.filter(cmask),
            cand_confidence=f.cand_confidence[cand_keep],
            skipped=f.skipped,
            line_kind=f.line_kind,
        )

    def duplicates(self) -> None:
        self.encode()
        inst, agent, agent_names, instance_names = self.inst, self.agent, self.agent_names, self.instance_names
        key = _pairs(inst, agent, len(agent_names), len(instance_names))
        seen = np.zeros(len(instance_names) * len(agent_names), dtype=bool)
        seen[key] = True
        if int(np.count_nonzero(seen)) == len(key):  # every pair once (a bool per pair, no count array)
            return
        del seen
        counts = np.bincount(key, minlength=len(instance_names) * len(agent_names))
        order = np.flatnonzero(counts[key] > 1)  # the records of repeated pairs, by pair then position
        order = order[np.argsort(key[order], kind="stable")]
        repeated = np.flatnonzero(key[order][1:] == key[order][:-1])
        if not self.skip_invalid:
            first, second = int(order[repeated[0]]), int(order[repeated[0] + 1])
            self.fail(
                f"instance '{self.flat.instance_id[first]}' has two records for agent '{self.flat.agent[first]}'",
                records=[first, second],
                hint="keep one answer per (instance, agent), or pass --skip-invalid to keep the first",
            )
        later = order[repeated + 1]
        for record in later:
            self.skip(int(record), "duplicate (instance, agent)")
        keep = np.ones(len(key), dtype=bool)
        keep[later] = False
        self.drop(keep)
        self.encode()

    def encode(self) -> None:
        """Integer codes of instances (sorted by id) and agents (in :meth:`agent_order`), so
        the order the records come in shows nowhere downstream."""
        self.inst, self.instance_names = _sorted_codes_arrow(self.flat.instance_id)
        agent, found = _sorted_codes(self.flat.agent)
        order = agent_order(found.tolist(), self.agents_order, self.recorded_order, path=self.path)
        position = {name: i for i, name in enumerate(order)}
        self.agent = np.asarray([position[name] for name in found] + [-1], dtype=_code_dtype(len(order)))[agent]
        self.agent_names = order

    def label_set(self) -> LabelSet:
        if self.labels_given is not None:
            return self.labels_given
        golds = [g for g in pc.unique(self.flat.gold).to_pylist() if g is not None]
        return LabelSet.from_gold(golds, synonyms=self.synonyms)

    def gold(self, labels: LabelSet, inst: np.ndarray, n: int) -> np.ndarray:
        """Per-instance gold code: -1 without gold; errors on unknown or conflicting gold."""
        f = self.flat
        record_gold = _label_codes(f.gold, labels)
        has_gold = pc.is_valid(f.gold).to_numpy(zero_copy_only=False)
        bad_instances: set[int] = set()
        unknown = np.flatnonzero(has_gold & (record_gold < 0))
        if unknown.size:
            if not self.skip_invalid:
                record = int(unknown[0])
                self.fail(
                    f"gold '{f.gold[record]}' of instance '{f.instance_id[record]}' is not in the "
                    f"label set ({', '.join(labels)})",
                    records=[record],
                    hint="add it to --labels or map it with --synonyms",
                )
            for record in unknown:
                self.skip(int(record), f"unknown gold '{f.gold[record]}'")
                bad_instances.add(int(inst[record]))
        valid = has_gold & (record_gold >= 0)
        rows, codes = inst[valid], record_gold[valid]
        gold = np.full(n, -1, dtype=np.int64)
        gold[rows] = codes  # one record's gold per instance; where another differs, the records disagree
        conflict = np.unique(rows[codes != gold[rows]])
        if conflict.size:
            if not self.skip_invalid:
                target = int(conflict[0])
                records = np.flatnonzero((inst == target) & valid)
                values = sorted({str(f.gold[int(r)]) for r in records})
                self.fail(
                    f"records of instance '{f.instance_id[int(records[0])]}' disagree on gold ({' vs '.join(values)})",
                    records=[int(r) for r in records],
                    hint="give one gold label per instance, or pass --skip-invalid to skip it",
                )
            for target in conflict:
                first = int(np.flatnonzero(inst == target)[0])
                self.skipped.append(SkippedRecord(f"instance '{f.instance_id[first]}'", "records disagree on gold"))
            bad_instances.update(int(t) for t in conflict)
        if bad_instances:
            gold[np.fromiter(bad_instances, dtype=np.int64)] = -2
        return gold

    def candidates(self, pair: np.ndarray, labels: LabelSet, n_answers: int) -> tuple[Any, ...]:
        """Flat ``scores`` and ``candidate`` (``n * m * k`` slots; record r's labels from slot
        ``pair[r] * k``), the positions of the candidates left out (those whose label is
        invalid, then the repeats of a label the same answer named before: the first stays),
        the record of each, and per answer how many it left out.

        Records go in blocks, so every temporary stays small; a block's slots are its own, as
        no (instance, agent) pair has two records by now, so a slot named twice in a block is
        named twice in one answer (and an answer's count of left-out candidates is made in the
        one block that holds it). Left-out candidates go to one more slot, cut off at the end.
        Confidences on the percent grid stay one-byte codes (:mod:`modsab.contract.compact`);
        any others make the float64 array as before."""
        f, top = self.flat, SCALE_MAX[self.scale]
        k = len(labels)
        size = n_answers * k
        codes, lookup = _label_lookup(f.cand_label, labels)
        lookup = lookup.astype(pair.dtype)
        on_grid = isinstance(f.cand_confidence, grid.GridArray)
        scores = np.zeros(size + 1, dtype=np.uint8 if on_grid else np.float64)
        candidate = np.zeros(size + 1, dtype=bool)
        per_answer = np.zeros(n_answers, dtype=np.uint8)
        position = np.int32 if len(codes) < 2**31 else np.int64
        invalid_parts, repeat_parts, invalid_records, repeat_records = [], [], [], []
        start = 0
        for first in range(0, len(pair), _BLOCK):
            last = min(first + _BLOCK, len(pair))
            counts = f.cand_count[first:last]
            stop = start + int(counts.sum())
            label = lookup[codes[start:stop]]
            record = np.repeat(np.arange(first, last, dtype=pair.dtype), counts)  # of each candidate
            index = pair[record] * k
            index += label
            invalid = np.flatnonzero(label < 0)
            index[invalid] = size
            repeat = _repeats(index, size)
            index[repeat] = size
            values = f.cand_confidence[start:stop]  # one write per slot (and the trash slot)
            scores[index] = values.codes if on_grid else grid.decode(values) / top
            candidate[index] = True
            invalid_records.append(record[invalid])
            repeat_records.append(record[repeat])
            if invalid.size or repeat.size:  # each answer's count, made in its one block
                left = np.concatenate([invalid_records[-1], repeat_records[-1]])
                answers, count = np.unique(pair[left], return_counts=True)
                if count.max() > np.iinfo(per_answer.dtype).max:
                    per_answer = per_answer.astype(_count_dtype(int(count.max())))
                per_answer[answers] = count
            invalid_parts.append((invalid + start).astype(position))
            repeat_parts.append((repeat + start).astype(position))
            start = stop
        held = compact.CompactScores(scores[:size], f.cand_confidence.divisor, top) if on_grid else scores[:size]
        invalid, repeat = np.concatenate(invalid_parts), np.concatenate(repeat_parts)
        record = np.concatenate([*invalid_records, *repeat_records])  # of each of invalid, then repeat
        return held, candidate[:size], invalid, repeat, record, per_answer

    def left_out(
        self, invalid: np.ndarray, repeat: np.ndarray, record: np.ndarray, labels: LabelSet, agent: np.ndarray
    ) -> dict[str, list[str]]:
        """Per agent the most frequent of the left-out candidates (``invalid`` then ``repeat``
        positions; ``record`` the record of each) as examples (ties by name): ``joy
        (repeated)`` for a repeat. With ``strict``, the first of them (in the file) is an error."""
        f = self.flat
        if not record.size:
            return {}
        codes, lookup = _label_lookup(f.cand_label, labels)
        if self.strict:
            positions = np.concatenate([invalid, repeat])
            at = int(np.argmin(positions))
            position = int(positions[at])
            raw, owner = f.cand_label[position], f.agent[int(record[at])]
            if at < invalid.size:
                self.fail(
                    f"candidate label '{raw}' of agent '{owner}' is not in the label set ({', '.join(labels)})",
                    records=[int(record[at])],
                    hint="drop --strict to count and drop such labels, or map it with --synonyms",
                )
            name = labels.labels[int(lookup[codes[position]])]
            self.fail(
                f"agent '{owner}' names candidate label '{name}' twice ('{raw}' repeats it)",
                records=[int(record[at])],
                hint="drop --strict to count and drop repeats (the first mention is kept)",
            )
        raw_codes, raw_names = _sorted_codes(f.cand_label.take(pa.array(invalid, pa.int64())))
        names = [*raw_names.tolist(), *(f"{label} (repeated)" for label in labels)]
        small = _code_dtype(len(names))
        repeated = lookup.astype(small)[codes[repeat]]
        repeated += len(raw_names)
        name_codes = np.concatenate([raw_codes.astype(small), repeated])
        del repeated
        rank = np.empty(len(names), dtype=np.int64)
        rank[pc.array_sort_indices(pa.array(names, pa.string())).to_numpy()] = np.arange(len(names))
        owner = agent[record]
        examples: dict[str, list[str]] = {}
        for a, agent_name in enumerate(self.agent_names):
            counts = np.bincount(name_codes[owner == a], minlength=len(names))
            if counts.any():
                order = np.lexsort((rank, -counts))[:_MAX_EXAMPLES]  # most frequent first, ties by name
                examples[agent_name] = list(dict.fromkeys(names[i][:80] for i in order if counts[i]))
        return examples

    def build(self) -> PredictionSet:
        self.duplicates()
        labels = self.label_set()
        f = self.flat
        inst, instance_names, agent, agent_names = self.inst, self.instance_names, self.agent, self.agent_names
        n, m, k = len(instance_names), len(agent_names), len(labels)
        gold = self.gold(labels, inst, n)
        # the ids and gold are in instance_names and gold now (no later message names them)
        self.flat = f = replace(f, instance_id=pa.nulls(0, pa.string()), gold=pa.nulls(0, pa.string()))
        _release_arrow_memory()  # the sort of the ids, and the columns just let go

        dataset = None
        if f.dataset.null_count < len(f.dataset):
            ds_codes, ds_names = _sorted_codes(f.dataset)  # an instance's records that disagree: the last name
            per_instance = np.full(n, -1, dtype=np.int64)
            np.maximum.at(per_instance, inst, ds_codes)
            del ds_codes
            names = np.asarray([*ds_names.tolist(), "(none)"], dtype=object)
            dataset = names[per_instance]

        top = SCALE_MAX[self.scale]
        pair = _pairs(inst, agent, m, n, k)
        del inst
        self.inst = None  # the records' instances are in pair now
        scores, candidate, invalid, repeat, record, invalid_per_answer = self.candidates(pair, labels, n * m)
        examples = self.left_out(invalid, repeat, record, labels, agent)
        invalid_per_answer = invalid_per_answer.reshape(n, m)
        del invalid, repeat, record
        # the candidates are in scores and candidate now: free their columns before the
        # per-answer arrays are made (the peak of a large set's assembly)
        no_candidates = dict(cand_count=np.zeros(0, np.int64), cand_label=pa.nulls(0), cand_confidence=np.zeros(0))
        self.flat = f = replace(f, **no_candidates)

        present = np.zeros(n * m, dtype=bool)
        present[pair] = True
        if isinstance(f.quality, grid.GridArray):  # one-byte codes, decoded as the scores are
            codes = np.full(n * m, grid.ABSENT, dtype=np.uint8)
            codes[pair] = f.quality.codes
            quality = compact.CompactScores(codes.reshape(n, m), f.quality.divisor, top)
        else:
            quality = np.full(n * m, np.nan)
            quality[pair] = grid.decode(f.quality) / top
            quality = quality.reshape(n, m)
        numbered = f.line_kind == "line" and f.line.size
        line = np.zeros(n * m, dtype=np.int32 if not numbered or f.line.max() < 2**31 else np.int64)
        if numbered:
            line[pair] = f.line
        del pair

        keep = gold >= 0
        n_without_gold = int((gold == -1).sum())
        if not keep.any():
            raise InputError(
                "no instance has a gold label in the label set",
                path=self.path,
                hint="add a 'gold' field to at least one record of each instance",
            )
        result = PredictionSet(
            instance_ids=instance_names,
            agents=tuple(agent_names),
            labels=labels,
            scores=_reshaped(scores, (n, m, k)),
            candidate=candidate.reshape(n, m, k),
            quality=quality,
            gold=gold,
            present=present.reshape(n, m),
            dataset=dataset,
            line=line.reshape(n, m),
            invalid=invalid_per_answer,
            invalid_labels=dict(zip(agent_names, invalid_per_answer.sum(axis=0).tolist(), strict=True)),
            invalid_examples=examples,
            skipped=sorted(self.skipped, key=lambda s: (s.line is None, s.line or 0, s.where)),
            n_without_gold=n_without_gold,
            source=str(self.path),
            scale=self.scale,
        )
        return result if keep.all() else result.subset(keep)


def _pairs(inst: np.ndarray, agent: np.ndarray, m: int, n: int, k: int = 1) -> np.ndarray:
    """``inst * m + agent``, the (instance, agent) pair of each record, in int32 when every
    slot ``pair * k + label`` fits it (a record's four bytes, not eight), else int64."""
    dtype = np.int32 if n * m * k + 1 < 2**31 else np.int64
    pair = inst.astype(dtype)
    pair *= m
    pair += agent
    return pair


def _count_dtype(top: int) -> type[np.integer]:
    """The narrowest unsigned type holding counts up to ``top`` (int64 past uint32)."""
    return next(t for t in (np.uint8, np.uint16, np.uint32, np.int64) if top <= np.iinfo(t).max)


def _reshaped(scores: np.ndarray | compact.CompactScores, shape: tuple[int, ...]):
    if isinstance(scores, compact.CompactScores):
        return compact.CompactScores(scores.codes.reshape(shape), scores.divisor, scores.top)
    return scores.reshape(shape)


def load_predictions(
    path: str | Path,
    *,
    labels: LabelSet | str | Sequence[str] | None = None,
    synonyms: Mapping[str, str] | str | Path | None = None,
    scale: Scale = "percent",
    strict: bool = False,
    skip_invalid: bool = False,
    agents_order: Sequence[str] | str | None = None,
    batch_rows: int | None = batches.DEFAULT_BATCH_ROWS,
    executor: Any = None,
) -> PredictionSet:
    """Read a predictions file (or run directory, or directory of Parquet files) into a
    :class:`PredictionSet`.

    ``labels`` is a :class:`LabelSet`, a list or tuple of labels, a comma list or a preset
    name; when omitted the set is the sorted set of gold values. ``synonyms`` is a mapping
    or a JSON file of variant -> label. Invalid candidate labels (and repeats of a label
    within one answer) are dropped and counted per agent (``strict`` makes them an error).
    ``skip_invalid`` skips bad records instead of failing and lists them in
    ``PredictionSet.skipped``.

    The order of the lines never matters: instances come sorted by id, and agents in one
    order: ``agents_order`` (a list or comma list naming every agent once), else the order
    a run directory recorded (``"agents"`` in its ``run.json``), else sorted names.

    The file is read ``batch_rows`` records at a time, so the reader holds one batch and
    compact per-record columns, never the whole parsed file; ``batch_rows=None`` reads it
    whole (the plain reference: the same set, bit for bit).

    ``executor`` (a :class:`modsab.run.executors.Executor`, e.g. a Ray actor pool) reduces
    the files of a directory of Parquet files, one task a file, each read where its task
    runs; the driver merges the partial results: the same set, bit for bit, and the same
    errors (a file a task could not reduce is reduced here). Other inputs are read here.
    """
    if batch_rows is not None and (not isinstance(batch_rows, int) or batch_rows < 1):
        raise InputError(f"batch_rows must be a positive number of records, got {batch_rows!r}")
    if scale not in SCALE_MAX:
        raise InputError(f"unknown scale '{scale}'", hint="use 'percent' (0-100) or 'unit' (0-1)")
    synonym_map = load_synonyms(synonyms)
    labels = label_set(labels, synonyms=synonym_map)
    if labels is None:
        labels = run_labels(path, synonyms=synonym_map)
    order = agent_names(agents_order)
    resolved = _resolve_path(path)
    fmt = _format(resolved)
    try:
        flat = _fast(resolved, fmt, scale, batch_rows, executor)
    except _GiveUp:
        flat = _exact(resolved, fmt, scale, skip_invalid)
    options = dict(labels=labels, synonyms=synonym_map, scale=scale, strict=strict, skip_invalid=skip_invalid)
    ordering = {"agents_order": order, "recorded_order": run_agents(path)}
    tagged, models = _ablation.tag_models(flat.agent, flat.condition)  # models' records: one key per condition
    _release_arrow_memory()
    assembler = _Assembler(dataclasses.replace(flat, agent=tagged) if models else flat, resolved, **options, **ordering)
    del flat, tagged  # the assembler holds the columns, and frees them as it goes
    built = assembler.build()
    return _ablation.split(built, models) if models else built


def agent_order(
    found: Sequence[str],
    given: Sequence[str] | None,
    recorded: Sequence[str] | None = None,
    *,
    path: str | Path | None = None,
) -> list[str]:
    """The agents' one order: ``given`` (it must name each agent ``found`` once), else the
    ``recorded`` order of a run (agents it does not list follow, sorted), else sorted names.
    A model's per-condition keys (``"<model> [<condition>]"``, :mod:`modsab.contract.ablation`)
    are not agents: they follow, sorted, whatever the order."""
    models = sorted((name for name in found if _ablation.is_condition_key(name)), key=_ablation.condition_key_order)
    found = [name for name in found if not _ablation.is_condition_key(name)]
    if given is not None:  # a model named in the order (as a run's config names it) is not an agent: skip it
        given = [name for name in given if name in found or not any(m.startswith(f"{name} [") for m in models)]
    if given is None:
        listed = [name for name in recorded or () if name in found]
        return listed + sorted(set(found) - set(listed)) + models
    unknown = [name for name in given if name not in found]
    missing = [name for name in found if name not in given]
    if unknown or missing:
        parts = [f"names {', '.join(map(repr, unknown))}, not an agent of the predictions"] if unknown else []
        parts += [f"leaves out {', '.join(map(repr, missing))}"] if missing else []
        raise InputError(
            "--agents-order " + " and ".join(parts),
            path=path,
            hint=f"the agents are {', '.join(sorted(found))}; name each once",
        )
    return list(given) + models


def agent_names(names: Sequence[str] | str | None) -> tuple[str, ...] | None:
    """``"a, b"`` or ``["a", "b"]`` -> ``("a", "b")``, each name once; None (or empty) -> None."""
    if names is None:
        return None
    items = names.split(",") if isinstance(names, str) else list(names)
    if not all(isinstance(name, str) for name in items):
        raise InputError(f"agent names must be strings, got {names!r}", hint='e.g. agents_order=["text", "audio"]')
    cleaned = tuple(name.strip() for name in items if name.strip())
    twice = sorted({name for name in cleaned if cleaned.count(name) > 1})
    if twice:
        raise InputError(f"--agents-order names {', '.join(map(repr, twice))} twice", hint="name each agent once")
    return cleaned or None


def label_set(
    labels: LabelSet | str | Sequence[str] | None, *, synonyms: Mapping[str, str] | None = None
) -> LabelSet | None:
    """A :class:`LabelSet` from what callers write: a ``LabelSet``, a comma list or preset name,
    or a list / tuple of labels (in tie-break order); ``None`` stays ``None``. ``synonyms``
    are added to a set that has none."""
    if labels is None:
        return None
    if isinstance(labels, str):
        return LabelSet.parse(labels, synonyms=synonyms)
    if isinstance(labels, LabelSet):
        if synonyms and not labels.synonyms:
            return LabelSet(labels.labels, synonyms, source=labels.source)
        return labels
    if isinstance(labels, Sequence) and all(isinstance(label, str) for label in labels):
        return LabelSet(tuple(labels), synonyms or {})
    raise InputError(
        f"labels must be a list of strings, a comma list or a preset name, got {labels!r}",
        hint='e.g. labels=["neutral", "joy", "anger"] or labels="meld"',
    )


def _recorded(path: str | Path, key: str, names: tuple[str, ...]) -> tuple[Path, tuple[str, ...]] | None:
    """The first of a run directory's JSON files ``names`` holding a non-empty list of
    strings under ``key``: ``(file, values)``; else ``None``."""
    path = Path(path)
    if not path.is_dir():
        return None
    for name in names:
        try:
            values = json.loads((path / name).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(values, list) and values and all(isinstance(value, str) for value in values):
            return path / name, tuple(values)
    return None


def run_labels(path: str | Path, *, synonyms: Mapping[str, str] | None = None) -> LabelSet | None:
    """The label set a run directory recorded (``dataset.json`` of ``modsab run``, or
    ``run.json`` of ``modsab agents run``), so its label order is kept; else ``None``."""
    found = _recorded(path, "labels", ("dataset.json", "run.json"))
    return None if found is None else LabelSet(found[1], synonyms or {}, source=f"recorded in {found[0]}")


def run_agents(path: str | Path) -> tuple[str, ...] | None:
    """The agent order a run directory recorded (``"agents"`` in its ``run.json``: the
    config's order), or ``None``."""
    found = _recorded(path, "agents", ("run.json",))
    return None if found is None else tuple(name.strip() for name in found[1])


def load_synonyms(synonyms: Mapping[str, str] | str | Path | None) -> dict[str, str]:
    """A synonym map from a mapping or a JSON file ``{"variant": "label", ...}``."""
    if synonyms is None:
        return {}
    if isinstance(synonyms, Mapping):
        return {clean(str(k)): clean(str(v)) for k, v in synonyms.items()}
    path = Path(synonyms)
    if not path.is_file():
        raise InputError("synonym file not found", path=path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(f"invalid JSON: {error.msg}", path=path, line=error.lineno) from error
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise InputError("expected a JSON object of variant -> label strings", path=path, hint='e.g. {"glad": "joy"}')
    return {clean(k): clean(v) for k, v in data.items()}
