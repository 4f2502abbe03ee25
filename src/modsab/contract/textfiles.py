"""Read the text files users hand to modsab: compressed or not, UTF-8 or a clear error.

Tables and configs come from other tools: a ``.jsonl.gz`` export, a CSV saved as latin-1,
an image renamed by mistake. :func:`read_bytes` undoes gzip, bz2 or zstd compression,
recognised by the content's first bytes whatever the file's name; :func:`decode` insists
on UTF-8 text, and its :class:`~modsab.contract.errors.InputError` names the file, the line and
what the content looks like instead.
"""

from __future__ import annotations

import bz2
import gzip
import zlib
from pathlib import Path

from modsab.contract.errors import InputError

#: Name endings of compressed files; the format is the ending before them (``.jsonl.gz``).
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst")

_NOT_TEXT = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (an Excel workbook?)"),
    (b"PAR1", "a Parquet file (name it .parquet)"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
_TEXT_HINT = "expected UTF-8 text, optionally compressed (.gz, .bz2, .zst)"


def data_suffix(path: str | Path) -> str:
    """The lower-case ending that names the format, compression aside: ``.csv`` for ``x.csv.gz``."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in COMPRESSION_SUFFIXES:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _compression(data: bytes) -> str | None:
    if data[:2] == b"\x1f\x8b":
        return "gzip"
    if data[:3] == b"BZh" and data[3:4].isdigit() and data[4:10] == b"1AY&SY":
        return "bz2"
    if data[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return None


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, decompressed when they are gzip, bz2 or zstd."""
    data = Path(path).read_bytes()
    codec = _compression(data)
    if codec is None:
        return data
    try:
        if codec == "gzip":
            return gzip.decompress(data)
        if codec == "bz2":
            return bz2.decompress(data)
        import pyarrow as pa

        return pa.input_stream(pa.py_buffer(data), compression="zstd").read()
    except (OSError, EOFError, ValueError, zlib.error) as error:  # pyarrow's errors subclass these
        raise InputError(
            f"cannot decompress ({codec}): {error}", path=path, hint="the file may be truncated or corrupt"
        ) from None


def check_text(path: str | Path, data: bytes) -> None:
    """An :class:`InputError` when ``data`` is clearly not text (a known binary format, or NUL bytes)."""
    for magic, what in _NOT_TEXT:
        if data.startswith(magic):
            raise InputError(f"not a text file: it looks like {what}", path=path, hint=_TEXT_HINT)
    nul = data.find(b"\x00")
    if nul >= 0:
        raise InputError(
            "not a text file: it holds NUL bytes", path=path, line=data.count(b"\n", 0, nul) + 1, hint=_TEXT_HINT
        )


def decode(path: str | Path, data: bytes) -> str:
    """``data`` as UTF-8 text (a leading byte-order mark dropped), else an :class:`InputError`
    naming the file and the line of the first byte that is not UTF-8."""
    check_text(path, data)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise InputError(
            f"not UTF-8 text: byte 0x{data[error.start]:02x} cannot be decoded",
            path=path,
            line=line,
            hint="save the file as UTF-8; this one may be latin-1 or cp1252",
        ) from None


def read_text(path: str | Path) -> str:
    """:func:`decode` of :func:`read_bytes`: a text file's content, decompressed."""
    return decode(path, read_bytes(path))
