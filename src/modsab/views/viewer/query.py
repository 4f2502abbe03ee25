"""The viewer's filter language, sort keys and paging, compiled to parameterised SQL.

No text from a request ever becomes SQL: column names are looked up in the table's own
schema and written as quoted identifiers from that schema, values are bound as
parameters, and anything else (a ``;``, a quote out of place, an unknown word) is a
:class:`QueryError` (HTTP 400) before DuckDB sees a thing.

The language (keywords in any case)::

    expr       := term ("or" term)*
    term       := factor ("and" factor)*
    factor     := "not" factor | "(" expr ")" | test
    test       := column op value
                | column ["not"] "in" "(" value ("," value)* ")"
                | column ["not"] "contains" value
                | column "is" ["not"] "null"
    column     := name | `quoted name`      name: letters, digits, _ . - (e.g. audio.role)
    op         := = | != | < | <= | > | >=
    value      := number | "text" | 'text' | true | false | bare word

``any.<suffix>`` means "any agent's ``<agent>.<suffix>``" (``any.role = successful_sabotage``).
``contains`` is a case-insensitive substring test on a text column and membership on a
list column (``fused_ranking contains joy``). A number column takes numbers, a yes/no
column ``true``/``false``; NaN reads as null (no comparison matches it; it sorts last).

    gold = joy and any.role = successful_sabotage
    audio.role in (potential_sabotage, successful_sabotage) and audio.confidence >= 0.9
    not (hit_at_1 = true) or instance_id contains "dia1_"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: Longest filter text accepted, most tokens, deepest nesting, most values in one ``in``.
MAX_FILTER_CHARS = 4000
MAX_TOKENS = 400
MAX_DEPTH = 16
MAX_IN_VALUES = 500
#: Most sort keys in one request.
MAX_SORT_KEYS = 4


class QueryError(ValueError):
    """A filter, sort or page the viewer cannot run; the message says why (HTTP 400)."""


# -- columns -----------------------------------------------------------------------------------

KINDS = ("text", "number", "bool", "list")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # one of KINDS
    floating: bool = False  # a floating-point column: NaN is read as null

    @property
    def sql(self) -> str:
        return quote(self.name)


def quote(name: str) -> str:
    """A SQL identifier for a name taken from the table's schema (never from a request)."""
    return '"' + name.replace('"', '""') + '"'


def column_kind(arrow_type: Any) -> tuple[str, bool] | None:
    """``(kind, is_float)`` of a pyarrow type, None for a type the viewer leaves out."""
    import pyarrow as pa

    t = arrow_type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "text", False
    if pa.types.is_boolean(t):
        return "bool", False
    if pa.types.is_integer(t):
        return "number", False
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number", True
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return "list", False
    return None


class Schema:
    """The columns of ``instances.parquet`` the viewer can filter, sort and show."""

    def __init__(self, columns: list[Column]):
        self.columns = columns
        self.by_name = {c.name: c for c in columns}
        self.agents = [c.name[: -len(".role")] for c in columns if c.name.endswith(".role")]

    @classmethod
    def from_arrow(cls, schema: Any) -> Schema:
        columns = []
        for field in schema:
            kind = column_kind(field.type)
            if kind is not None:
                columns.append(Column(field.name, kind[0], kind[1]))
        return cls(columns)

    def column(self, name: str) -> Column:
        try:
            return self.by_name[name]
        except KeyError:
            raise QueryError(f"unknown column {name!r}") from None

    def expand(self, name: str) -> list[Column]:
        """The columns a name stands for: itself, or every agent's for ``any.<suffix>``."""
        if name in self.by_name:
            return [self.by_name[name]]
        if name.startswith("any."):
            suffix = name[len("any.") :]
            found = [self.by_name[f"{a}.{suffix}"] for a in self.agents if f"{a}.{suffix}" in self.by_name]
            if found:
                return found
            raise QueryError(f"no agent has a column '<agent>.{suffix}' (any.{suffix})")
        raise QueryError(f"unknown column {name!r}")


# -- tokens ------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?:
      (?P<op><=|>=|!=|<>|==|=|<|>)
    | (?P<punct>[(),])
    | (?P<dq>"(?:[^"\\]|\\.)*")
    | (?P<sq>'(?:[^'\\]|\\.)*')
    | (?P<bq>`(?:[^`]|``)*`)
    | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.\-]))
    | (?P<word>[\w.\-]+)
    )""",
    re.VERBOSE | re.UNICODE,
)
_KEYWORDS = {"and", "or", "not", "in", "contains", "is", "null", "true", "false"}
_ESCAPE = re.compile(r"\\(.)", re.S)


@dataclass(frozen=True)
class Token:
    kind: str  # op punct str ident num word kw end
    text: str
    value: Any
    at: int


def tokenize(source: str) -> list[Token]:
    if len(source) > MAX_FILTER_CHARS:
        raise QueryError(f"filter longer than {MAX_FILTER_CHARS} characters")
    tokens: list[Token] = []
    at = 0
    while True:
        while at < len(source) and source[at].isspace():
            at += 1
        if at >= len(source):
            break
        match = _TOKEN.match(source, at)
        if match is None or match.end() == at:
            raise QueryError(f"unexpected {source[at : at + 12]!r} at character {at + 1}")
        start = at
        text = match.group(match.lastgroup)
        kind = match.lastgroup
        if kind == "op":
            tokens.append(Token("op", text, {"==": "=", "<>": "!="}.get(text, text), start))
        elif kind == "punct":
            tokens.append(Token("punct", text, text, start))
        elif kind in ("dq", "sq"):
            tokens.append(Token("str", text, _ESCAPE.sub(r"\1", text[1:-1]), start))
        elif kind == "bq":
            tokens.append(Token("ident", text, text[1:-1].replace("``", "`"), start))
        elif kind == "num":
            number = float(text)
            tokens.append(Token("num", text, int(number) if number.is_integer() and "." not in text else number, start))
        elif text.lower() in _KEYWORDS:
            tokens.append(Token("kw", text, text.lower(), start))
        else:
            tokens.append(Token("word", text, text, start))
        if len(tokens) > MAX_TOKENS:
            raise QueryError(f"filter has more than {MAX_TOKENS} parts")
        at = match.end()
    tokens.append(Token("end", "", None, len(source)))
    return tokens


# -- parsing and compiling ---------------------------------------------------------------------


@dataclass
class Compiled:
    """A ``WHERE`` fragment and its parameters (``"true"`` and none for an empty filter)."""

    sql: str
    params: list[Any]


class _Parser:
    def __init__(self, source: str, schema: Schema):
        self.tokens = tokenize(source)
        self.at = 0
        self.schema = schema
        self.params: list[Any] = []

    # token helpers
    def peek(self) -> Token:
        return self.tokens[self.at]

    def take(self) -> Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def keyword(self, *words: str) -> bool:
        token = self.peek()
        if token.kind == "kw" and token.value in words:
            self.at += 1
            return True
        return False

    def expect_punct(self, char: str) -> None:
        token = self.take()
        if token.kind != "punct" or token.value != char:
            raise QueryError(f"expected {char!r} at character {token.at + 1}, found {_shown(token)}")

    # grammar
    def parse(self) -> str:
        if self.peek().kind == "end":
            return "true"
        sql = self.expr(0)
        token = self.peek()
        if token.kind != "end":
            raise QueryError(f"unexpected {_shown(token)} at character {token.at + 1}")
        return sql

    def expr(self, depth: int) -> str:
        if depth > MAX_DEPTH:
            raise QueryError(f"filter nested deeper than {MAX_DEPTH}")
        parts = [self.term(depth)]
        while self.keyword("or"):
            parts.append(self.term(depth))
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def term(self, depth: int) -> str:
        parts = [self.factor(depth)]
        while self.keyword("and"):
            parts.append(self.factor(depth))
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def factor(self, depth: int) -> str:
        if depth > MAX_DEPTH:
            raise QueryError(f"filter nested deeper than {MAX_DEPTH}")
        if self.keyword("not"):
            return f"(NOT coalesce({self.factor(depth + 1)}, false))"
        token = self.peek()
        if token.kind == "punct" and token.value == "(":
            self.take()
            inner = self.expr(depth + 1)
            self.expect_punct(")")
            return inner
        return self.test()

    def test(self) -> str:
        token = self.take()
        if token.kind not in ("word", "ident"):
            raise QueryError(f"expected a column name at character {token.at + 1}, found {_shown(token)}")
        columns = self.schema.expand(token.value)
        negate = self.keyword("not")
        if self.keyword("in"):
            values = self.value_list()
            parts = [self.membership(c, values) for c in columns]
            sql = _any(parts)
            return f"(NOT coalesce({sql}, false))" if negate else sql
        if self.keyword("contains"):
            value = self.value()
            sql = _any([self.contains(c, value) for c in columns])
            return f"(NOT coalesce({sql}, false))" if negate else sql
        if negate:
            raise QueryError(f"expected 'in' or 'contains' after 'not' at character {self.peek().at + 1}")
        if self.keyword("is"):
            is_not = self.keyword("not")
            if not self.keyword("null"):
                raise QueryError(f"expected 'null' at character {self.peek().at + 1}")
            return _any([f"({c.sql} IS {'NOT ' if is_not else ''}NULL)" for c in columns])
        op = self.take()
        if op.kind != "op":
            raise QueryError(f"expected a comparison (=, !=, <, <=, >, >=, in, contains, is) after {token.text!r}")
        value = self.value()
        return _any([self.compare(c, op.value, value) for c in columns])

    def value(self) -> Token:
        token = self.take()
        if token.kind in ("str", "num", "word") or (token.kind == "kw" and token.value in ("true", "false")):
            return token
        raise QueryError(f"expected a value at character {token.at + 1}, found {_shown(token)}")

    def value_list(self) -> list[Token]:
        self.expect_punct("(")
        values = [self.value()]
        while self.peek().kind == "punct" and self.peek().value == ",":
            self.take()
            values.append(self.value())
        self.expect_punct(")")
        if len(values) > MAX_IN_VALUES:
            raise QueryError(f"more than {MAX_IN_VALUES} values in one 'in'")
        return values

    # typed pieces
    def bind(self, column: Column, token: Token) -> str:
        self.params.append(_typed(column, token))
        return "?"

    def compare(self, column: Column, op: str, token: Token) -> str:
        if column.kind == "list":
            raise QueryError(f"{column.name!r} is a list: use 'contains'")
        if column.kind == "bool" and op not in ("=", "!="):
            raise QueryError(f"{column.name!r} is yes/no: use = or !=")
        if op == "!=":  # "not joy" includes the rows with no value, as "not (x = joy)" does
            return f"({column.sql} IS DISTINCT FROM {self.bind(column, token)})"
        if column.kind == "text" and op != "=":  # order as text (a column may be an ENUM in memory)
            return f"(CAST({column.sql} AS VARCHAR) {op} {self.bind(column, token)})"
        return f"({column.sql} {op} {self.bind(column, token)})"

    def membership(self, column: Column, values: list[Token]) -> str:
        if column.kind == "list":
            raise QueryError(f"{column.name!r} is a list: use 'contains'")
        marks = ", ".join(self.bind(column, v) for v in values)
        return f"({column.sql} IN ({marks}))"

    def contains(self, column: Column, token: Token) -> str:
        if column.kind == "text":
            self.params.append(str(token.value).lower() if token.kind != "kw" else token.text.lower())
            return f"contains(lower(CAST({column.sql} AS VARCHAR)), ?)"
        if column.kind == "list":
            self.params.append(token.text if token.kind in ("num", "kw") else str(token.value))
            return f"list_contains({column.sql}, ?)"
        raise QueryError(f"'contains' needs a text or list column; {column.name!r} is a {column.kind} column")


def _any(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


def _shown(token: Token) -> str:
    return "the end" if token.kind == "end" else repr(token.text)


def _typed(column: Column, token: Token) -> Any:
    """The parameter for ``token`` compared with ``column``: its type follows the column."""
    if column.kind == "number":
        if token.kind != "num":
            raise QueryError(f"{column.name!r} is a number column; {token.text!r} is not a number")
        return token.value
    if column.kind == "bool":
        if token.kind == "kw" and token.value in ("true", "false"):
            return token.value == "true"
        if token.kind == "num" and token.value in (0, 1):
            return bool(token.value)
        raise QueryError(f"{column.name!r} is a yes/no column; use true or false, not {token.text!r}")
    # text: numbers and keywords as written (instance_id = 123 means the text "123")
    return token.text if token.kind in ("num", "kw") else str(token.value)


def compile_filter(source: str | None, schema: Schema) -> Compiled:
    """The ``WHERE`` fragment of a filter (see the module docstring), values as parameters."""
    parser = _Parser(source or "", schema)
    sql = parser.parse()
    return Compiled(sql, parser.params)


# -- sorting and paging ------------------------------------------------------------------------


def compile_sort(keys: list[str], schema: Schema) -> str:
    """``ORDER BY`` items for ``["-audio.confidence", "gold"]`` (``-`` for descending); the
    row's place in the file breaks ties, so every page is stable."""
    if len(keys) > MAX_SORT_KEYS:
        raise QueryError(f"at most {MAX_SORT_KEYS} sort keys")
    items = []
    for key in keys:
        if not key:
            continue
        descending = False
        name = key
        if key not in schema.by_name and key[:1] in "-+":
            descending, name = key[0] == "-", key[1:]
        column = schema.column(name)
        if column.kind == "list":
            raise QueryError(f"cannot sort by the list column {name!r}")
        items.append(f"{column.sql} {'DESC' if descending else 'ASC'} NULLS LAST")
    items.append(f"{quote(ROW)} ASC")
    return ", ".join(items)


#: The column DuckDB adds with each row's place in ``instances.parquet`` (0-based).
ROW = "file_row_number"
#: Rows per page by default and at most.
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_window(page: Any, size: Any) -> tuple[int, int]:
    """``(page, size)`` as integers (page from 1, size 1..MAX_PAGE_SIZE)."""
    try:
        page_n = 1 if page in (None, "") else int(page)
        size_n = DEFAULT_PAGE_SIZE if size in (None, "") else int(size)
    except (TypeError, ValueError):
        raise QueryError("page and size must be whole numbers") from None
    if page_n < 1 or not 1 <= size_n <= MAX_PAGE_SIZE:
        raise QueryError(f"page starts at 1; size is 1 to {MAX_PAGE_SIZE}")
    if (page_n - 1) * size_n > 10**12:
        raise QueryError("page out of range")
    return page_n, size_n
