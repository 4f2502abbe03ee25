"""Read predictions files in batches of records, so memory does not grow with the file.

Pure I/O, no checking: :func:`line_blocks` cuts a text file (JSON Lines, or CSV after its
header) into blocks of whole lines, :func:`parquet_batches` reads a Parquet file a row
group's batch at a time, and :func:`parquet_files` lists a directory of Parquet files (as a
Spark or Ray job writes them: ``part-*.parquet``, markers such as ``_SUCCESS`` aside) in the
one order their rows are numbered in. :mod:`modsab.contract.predictions` checks and reduces
each batch (``reduce_file``) and merges the partial results.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

#: Records per batch by default: a batch's temporaries stay around a hundred megabytes.
DEFAULT_BATCH_ROWS = 1 << 20
_CHUNK_BYTES = 1 << 24
_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\x28\xb5\x2f\xfd")


def compressed(path: Path) -> bool:
    """The file starts like gzip, bz2 or zstd (they are read whole: see ``read_bytes``)."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    return any(head.startswith(magic) for magic in _COMPRESSED)


def line_blocks(path: Path, lines: int, *, skip: int = 0) -> Iterator[bytes]:
    """The file's bytes in blocks of ``lines`` whole lines (each ending with its newline; the
    last block may lack it), after the first ``skip`` lines (a CSV header). Joined block by
    block from chunks of 16 MiB, so no more than one block and one chunk are held."""
    if lines < 1:
        raise ValueError(f"lines per block must be at least 1, got {lines}")
    pieces: list[bytes] = []
    count = 0  # newlines in ``pieces``
    with open(path, "rb") as handle:
        for _ in range(skip):
            handle.readline()
        while chunk := handle.read(_CHUNK_BYTES):
            ends = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
            start, used = 0, 0
            while count + ends.size - used >= lines:
                cut = int(ends[used + lines - count - 1]) + 1
                used += lines - count
                yield b"".join([*pieces, chunk[start:cut]])
                pieces, count, start = [], 0, cut
            pieces.append(chunk[start:])
            count += ends.size - used
    rest = b"".join(pieces)
    if rest:
        yield rest


def header_line(path: Path) -> bytes:
    """The first line of a text file, with its newline."""
    with open(path, "rb") as handle:
        return handle.readline()


def parquet_files(directory: Path) -> list[Path]:
    """The Parquet files of a directory and its subdirectories, by path; names starting
    with ``.`` or ``_`` (``_SUCCESS``, ``.crc`` files, ``_temporary``) are skipped, as
    Spark, Ray and pyarrow skip them."""
    found = []
    for path in directory.rglob("*"):
        parts = path.relative_to(directory).parts
        hidden = any(p.startswith((".", "_")) for p in parts)
        if not hidden and path.suffix.lower() in (".parquet", ".pq") and path.is_file():
            found.append(path)
    return sorted(found)


def parquet_batches(path: Path, rows: int, *, read_dictionary: list[str]) -> Iterator[pa.Table]:
    """A Parquet file as tables of at most ``rows`` rows, in file order."""
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(path, read_dictionary=read_dictionary)
    for group in range(handle.num_row_groups):  # one row group a pass: a nested dictionary
        for batch in handle.iter_batches(batch_size=rows, row_groups=[group]):  # column cannot span two
            yield pa.Table.from_batches([batch])
