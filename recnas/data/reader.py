"""Streaming, vectorised reading of raw CTR files into decoded numpy chunks.

A file is read in byte chunks cut at line ends (bounded memory: one chunk being parsed, one being
encoded). Each chunk is parsed by ``pyarrow.csv.read_csv`` with every column as a string -- so the
parse is multi-threaded and a bad value never aborts the stream -- and then decoded column by column
with vectorised numpy/pyarrow compute: integers cast, 8-hex-digit categoricals turned into their
32-bit value through a lookup table, labels and Avazu's ``hour`` checked. Every data line ends up
either in a :class:`Decoded` chunk as a good row or counted as a bad row with one reason; the first bad
rows keep their file and line for error messages.

Example::

    >>> from recnas.data.formats import detect_layout
    >>> lay = detect_layout("criteo", path)                                    # doctest: +SKIP
    >>> for d in read_decoded(path, lay):                                      # doctest: +SKIP
    ...     d.codes.shape, d.dense.shape, int(d.bad.sum())
"""

from __future__ import annotations

import concurrent.futures
import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recnas.data.formats import DATE_HOUR, BadInputError, Layout, open_binary

__all__ = ["MISSING", "REASONS", "BadRow", "Decoded", "read_decoded", "CHUNK_BYTES"]

MISSING = np.int64(np.iinfo(np.int64).min)  # categorical code of an empty field
REASONS = ("field_count", "bad_label", "bad_integer", "bad_categorical", "bad_hour")
REASON_TEXT = {
    "field_count": "wrong number of fields",
    "bad_label": "label is not 0 or 1",
    "bad_integer": "not an integer",
    "bad_categorical": "categorical value not in the dataset's form",
    "bad_hour": "hour is not YYMMDDHH",
}
CHUNK_BYTES = 32 << 20
EXAMPLES = 5  # bad rows kept per chunk for messages and stats.json's skipped_examples
READ_BLOCK = 1 << 20  # bytes per read of a raw file (a read error is placed to within one)
_INT_RE = r"^[+-]?[0-9]{1,18}$"



@dataclass(frozen=True)
class BadRow:
    """One bad data line: where it is and why it was rejected."""

    path: str
    line: int
    reason: str
    detail: str

    def message(self) -> str:
        return f"{self.path}:{self.line}: {REASON_TEXT[self.reason]}: {self.detail}"


@dataclass
class Decoded:
    """The decoded rows of one chunk; row ``i`` is physical line ``lines_of(i)`` of ``path``.

    Attributes:
        label: ``(n,)`` float32 in {0, 1}; NaN for unlabelled files.
        dense: ``(num_dense, n)`` float64 raw integers, NaN where the field was empty (column-major:
            one contiguous row per feature, as the encoders and the parquet writer use them).
        codes: ``(num_sparse, n)`` int64 categorical codes (hex value or integer), ``MISSING`` where
            the field was empty. Avazu's ``hour`` appears as its two derived features.
        bad: ``(n,)`` int8, 0 for a good row, else ``1 + REASONS.index(reason)``.
        dropped: lines the CSV parser rejected (wrong field count), already absent from the arrays.
        first_bad: the first bad row of the chunk (in file order), if any.
        rows_read: data lines in the chunk, good and bad: ``n + dropped``.
        bad_counts: bad rows of the chunk by reason (the dropped lines included).
        examples: the first ``EXAMPLES`` bad rows of the chunk, in file order.
        positions: ``(n,)`` int64, the index of row ``i`` among the chunk's ``rows_read`` data
            lines (``i`` plus the dropped lines before it), so that a row's place in the file does
            not depend on whether the lines before it could be parsed.
    """

    label: np.ndarray
    dense: np.ndarray
    codes: np.ndarray
    bad: np.ndarray
    dropped: int
    first_bad: BadRow | None
    rows_read: int
    bad_counts: dict[str, int] = field(default_factory=dict)
    examples: list[BadRow] = field(default_factory=list)
    positions: np.ndarray | None = None


def _chunks(path: Path, size: int, skip_header: bool) -> Iterator[tuple[int, bytes]]:
    """Yields ``(first physical line number, bytes)`` pieces of ``path`` cut after a newline.

    The file is read in blocks of at most 1 MiB, so that a read error is placed to within a block.

    Raises:
        BadInputError: a truncated or corrupt ``.gz`` file (or an unreadable one), naming the file,
            the last complete line read and the compressed byte offset where reading stopped.
    """
    line = 1
    with open_binary(path) as f:
        done = 0  # complete lines read so far, header included

        def read(n: int) -> bytes:
            try:
                return f.read(n)
            except (EOFError, OSError, zlib.error) as e:
                raise _read_error(path, f, done, e) from None

        if skip_header:
            try:
                f.readline(1 << 20)
            except (EOFError, OSError, zlib.error) as e:
                raise _read_error(path, f, 0, e) from None
            done = 1
            line = 2
        rest = b""
        parts: list[bytes] = []
        have = 0
        while True:
            buf = read(min(size, READ_BLOCK))
            if buf:
                parts.append(buf)
                have += len(buf)
                done += buf.count(b"\n")
                if have < size:
                    continue
            data = rest + b"".join(parts)
            parts, have = [], 0
            cut = data.rfind(b"\n")
            if cut >= 0:
                piece, rest = data[: cut + 1], data[cut + 1 :]
                yield line, piece
                line += piece.count(b"\n")
            else:
                rest = data
            if not buf:
                if rest.strip():
                    yield line, rest + b"\n"
                return


def _read_error(path: Path, f, lines_done: int, e: BaseException) -> BadInputError:
    """One line for a file that cannot be read to its end: which file, how far, and why."""
    raw = getattr(f, "fileobj", None)  # a gzip.GzipFile's compressed stream
    where = f"after line {lines_done:,}"
    if raw is not None:
        try:
            where += f", at compressed byte {raw.tell():,} of {path.stat().st_size:,}"
        except (OSError, ValueError):
            pass
    if isinstance(e, EOFError):
        what = "truncated gzip file (it ends before the end-of-stream marker; an incomplete download?)"
    elif isinstance(e, (gzip.BadGzipFile, zlib.error)):
        what = f"corrupt gzip data ({e})"
    else:
        what = f"cannot read ({e})"
    return BadInputError(f"{path}: {what} {where}")


def _parse(piece: bytes, layout: Layout, typed: bool = True) -> tuple[pa.Table, list[str]]:
    """Parses one piece. Integer columns are parsed as int64 directly (fast); if any of their values
    is not an integer the piece is parsed again with every column as a string, so that the bad
    values can be located and reported (or skipped) by :func:`decode`."""
    rejected: list[str] = []

    def handler(row) -> str:  # called for lines with the wrong number of fields
        rejected.append(row.text)
        return "skip"

    ints = set(layout.dense) | ({layout.label} if layout.label else set())
    ints |= {c for c, form in layout.sparse if form in ("int", DATE_HOUR)}
    types = {c: (pa.int64() if typed and c in ints else pa.string()) for c in layout.columns}
    try:
        table = pacsv.read_csv(
            pa.py_buffer(piece),
            read_options=pacsv.ReadOptions(column_names=list(layout.columns), block_size=4 << 20),
            parse_options=pacsv.ParseOptions(
                delimiter=layout.delimiter,
                quote_char=False,
                ignore_empty_lines=False,
                invalid_row_handler=handler,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                strings_can_be_null=True,
                include_columns=[c for c in layout.columns if c not in layout.ignored],
            ),
        )
    except pa.ArrowInvalid:
        if not typed:
            raise
        return _parse(piece, layout, typed=False)
    return table, rejected


def _line_offsets_of_texts(piece: bytes, texts: list[str]) -> list[int]:
    """Sorted 0-based line offsets inside ``piece`` of the lines the parser rejected."""
    out: list[int] = []
    for t, count in {t: texts.count(t) for t in texts}.items():
        raw = t.encode("utf-8", errors="replace").rstrip(b"\r")
        start, found = 0, 0
        while found < count:
            pos = piece.find(raw, start)
            if pos < 0:
                break
            end = pos + len(raw)
            at_start = pos == 0 or piece[pos - 1] == 10
            at_end = end >= len(piece) or piece[end] in (10, 13)
            if at_start and at_end:
                out.append(piece.count(b"\n", 0, pos))
                found += 1
            start = pos + 1
    return sorted(out)


def _nth_line(piece: bytes, k: int) -> bytes:
    pos = 0
    for _ in range(k):
        pos = piece.index(b"\n", pos) + 1
    end = piece.find(b"\n", pos)
    return piece[pos : end if end >= 0 else len(piece)].rstrip(b"\r")


def _row_to_line(i: int, first_line: int, dropped_offsets: list[int]) -> int:
    off = i
    for s in dropped_offsets:
        if s <= off:
            off += 1
        else:
            break
    return first_line + off


def _string_array(col: pa.ChunkedArray) -> pa.Array:
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return arr


def _nulls(arr: pa.Array) -> np.ndarray:
    if arr.null_count == 0:
        return np.zeros(len(arr), dtype=bool)
    return arr.is_null().to_numpy(zero_copy_only=False)


def _parse_int(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(values int64 with 0 for empty, empty mask, bad mask)`` of a string column."""
    empty = _nulls(arr)
    if pa.types.is_integer(arr.type):
        return arr.cast(pa.int64()).fill_null(0).to_numpy().copy(), empty, np.zeros(len(arr), dtype=bool)
    try:
        ints = pc.cast(arr, pa.int64())
        bad = np.zeros(len(arr), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        ok = pc.match_substring_regex(arr, _INT_RE).to_numpy(zero_copy_only=False)
        bad = ~empty & ~np.asarray(ok, dtype=bool)
        ints = pc.cast(pc.if_else(pa.array(bad), pa.nulls(len(arr), pa.string()), arr), pa.int64())
    return ints.fill_null(0).to_numpy().copy(), empty, bad


_L = np.uint64(0x0101010101010101)
_H = np.uint64(0x8080808080808080)
_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)


def _hex8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eight ASCII characters per uint64 (first character in the low byte) -> ``(value, bad)``."""
    x7 = x & _LOW7
    y = x7 | _H
    digit = (y - np.uint64(0x30) * _L) & ~(y - np.uint64(0x3A) * _L)  # '0'..'9'
    y |= np.uint64(0x2020202020202020)  # 'A'..'F' -> 'a'..'f'; nothing else lands in 'a'..'f'
    digit |= (y - np.uint64(0x61) * _L) & ~(y - np.uint64(0x67) * _L)
    digit &= ~x  # bytes >= 0x80 are never hex digits
    bad = (digit & _H) != _H
    nib = (x & np.uint64(0x0F0F0F0F0F0F0F0F)) + np.uint64(9) * ((x >> np.uint64(6)) & _L)
    # pack the 8 nibbles (character k in byte k) into the 32-bit big-endian value
    nib = ((nib & np.uint64(0x00FF00FF00FF00FF)) << np.uint64(4)) | ((nib >> np.uint64(8)) & np.uint64(0x00FF00FF00FF00FF))
    nib = (nib & np.uint64(0x000000FF000000FF)) | ((nib >> np.uint64(8)) & np.uint64(0x0000FF000000FF00))
    nib = (nib & np.uint64(0xFFFF)) | ((nib >> np.uint64(16)) & np.uint64(0xFFFF0000))
    return nib.astype(np.uint32).byteswap().astype(np.int64), bad


def _parse_hex(arr: pa.Array, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(codes int64 with MISSING for empty, bad mask)`` of a column of 8-hex-digit strings."""
    n = len(arr)
    empty = _nulls(arr)
    codes = out if out is not None else np.empty(n, dtype=np.int64)
    bad = np.zeros(n, dtype=bool)
    if n == 0 or empty.all():
        codes.fill(MISSING)
        return codes, bad
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=n + 1, offset=arr.offset * 4)
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
    lengths = np.diff(offsets)
    valid = ~empty
    wrong_len = valid & (lengths != 8)
    good = valid & ~wrong_len
    if not wrong_len.any() and not lengths[empty].any():
        # Fast path: the values lie back to back, 8 bytes each.
        words = np.ascontiguousarray(data[offsets[0] : offsets[-1]]).view(np.uint64)
    else:
        idx = offsets[:-1][good][:, None] + np.arange(8, dtype=np.int32)
        words = np.ascontiguousarray(data[idx]).view(np.uint64).ravel()
    values, not_hex = _hex8(words)
    if good.all():
        codes[:] = values
        bad[:] = not_hex
    else:
        codes.fill(MISSING)
        where = np.flatnonzero(good)
        codes[where] = values
        bad[where[not_hex]] = True
    bad |= wrong_len
    codes[bad] = MISSING
    return codes, bad


def _weekday(yy: np.ndarray, mm: np.ndarray, dd: np.ndarray) -> np.ndarray:
    months = ((2000 + yy - 1970) * 12 + (mm - 1)).astype("datetime64[M]")
    days = months.astype("datetime64[D]") + (dd - 1).astype("timedelta64[D]")
    return (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0


def decode(table: pa.Table, layout: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list]:
    """Decodes one parsed chunk. Returns ``label, dense, codes, bad, first_bad_per_column``.

    ``first_bad_per_column`` lists ``(row, reason, column, raw value)`` of the first
    ``EXAMPLES`` bad rows of every column that has any (used for error messages and examples).
    """
    n = table.num_rows
    bad = np.zeros(n, dtype=np.int8)
    firsts: list[tuple[int, str, str, str]] = []

    def mark(mask: np.ndarray, reason: str, column: str, arr: pa.Array) -> None:
        if not mask.any():
            return
        rows = np.flatnonzero(mask & (bad == 0))
        bad[rows] = 1 + REASONS.index(reason)
        for i in np.flatnonzero(mask)[:EXAMPLES].tolist():
            firsts.append((i, reason, column, str(arr[i].as_py())))

    # Lines the parser accepted as empty (every field null) have the wrong number of fields.
    first = _string_array(table.column(0))
    if first.null_count:
        cand = _nulls(first)
        for c in table.column_names[1:]:
            cand &= _nulls(_string_array(table.column(c)))
        if cand.any():
            bad[cand] = 1 + REASONS.index("field_count")
            firsts.extend((i, "field_count", "", "an empty line") for i in np.flatnonzero(cand)[:EXAMPLES].tolist())

    if layout.label is not None:
        arr = _string_array(table.column(layout.label))
        vals, empty, badint = _parse_int(arr)
        mark(badint | empty | ((vals != 0) & (vals != 1)), "bad_label", layout.label, arr)
        label = vals.astype(np.float32)
    else:
        label = np.full(n, np.nan, dtype=np.float32)

    dense = np.empty((len(layout.dense), n), dtype=np.float64)
    for j, c in enumerate(layout.dense):
        arr = _string_array(table.column(c))
        vals, empty, badint = _parse_int(arr)
        mark(badint, "bad_integer", c, arr)
        col = vals.astype(np.float64)
        col[empty] = np.nan
        dense[j] = col

    num_out = len(layout.output_sparse)
    codes = np.empty((num_out, n), dtype=np.int64)
    k = 0
    for c, form in layout.sparse:
        arr = _string_array(table.column(c))
        if form == "hex":
            _, badhex = _parse_hex(arr, out=codes[k])
            mark(badhex, "bad_categorical", c, arr)
            k += 1
            continue
        vals, empty, badint = _parse_int(arr)
        if form == DATE_HOUR:  # -> the DATE_HOUR_DERIVED codes: hour of day, weekday
            yy, mm, dd, hh = vals // 1000000, vals // 10000 % 100, vals // 100 % 100, vals % 100
            wrong = badint | empty | (vals < 0) | (vals > 99999999)
            wrong |= (mm < 1) | (mm > 12) | (dd < 1) | (dd > 31) | (hh > 23)
            mark(wrong, "bad_hour", c, arr)
            ok = ~wrong
            wd = np.full(n, MISSING, dtype=np.int64)
            wd[ok] = _weekday(yy[ok], mm[ok], dd[ok])
            codes[k] = np.where(ok, hh, MISSING)
            codes[k + 1] = wd
            k += 2
            continue
        mark(badint, "bad_categorical", c, arr)
        vals[empty | badint] = MISSING
        codes[k] = vals
        k += 1
    return label, dense, codes, bad, firsts


def read_decoded(
    path: str | Path, layout: Layout, *, chunk_bytes: int = CHUNK_BYTES, prefetch: bool = True
) -> Iterator[Decoded]:
    """Streams ``path`` as :class:`Decoded` chunks (the next chunk parses while this one is used)."""
    path = Path(path)

    def work(item: tuple[int, bytes]) -> Decoded:
        first_line, piece = item
        try:
            table, rejected = _parse(piece, layout)
        except pa.ArrowInvalid as e:
            raise BadInputError(f"{path}: near line {first_line}: cannot parse: {e}") from None
        label, dense, codes, bad, firsts = decode(table, layout)
        dropped = _line_offsets_of_texts(piece, rejected) if rejected else []
        candidates = []
        delim = layout.delimiter.encode()
        for off in dropped[:EXAMPLES]:
            got = _nth_line(piece, off).count(delim) + 1
            detail = f"expected {layout.describe()}, got {got}"
            candidates.append(BadRow(str(path), first_line + off, "field_count", detail))
        if rejected and not dropped:  # not located in the chunk (should not happen): name the chunk start
            got = rejected[0].count(layout.delimiter) + 1
            detail = f"expected {layout.describe()}, got {got} (in the lines from here on)"
            candidates.append(BadRow(str(path), first_line, "field_count", detail))
        for row, reason, column, value in firsts:
            line = _row_to_line(row, first_line, dropped)
            if reason == "field_count":
                detail = f"expected {layout.describe()}, got {value}"
            else:
                detail = f"column {column}: {value!r}"
            candidates.append(BadRow(str(path), line, reason, detail))
        counts = {r: int((bad == 1 + k).sum()) for k, r in enumerate(REASONS)}
        counts["field_count"] += len(rejected)
        examples: list[BadRow] = []
        for b in sorted(candidates, key=lambda b: b.line):  # stable: a line's first reason wins
            if len(examples) == EXAMPLES:
                break
            if not examples or examples[-1].line != b.line:
                examples.append(b)
        rows_read = table.num_rows + len(rejected)
        positions = np.delete(np.arange(rows_read, dtype=np.int64), dropped)[: table.num_rows]
        return Decoded(
            label=label,
            dense=dense,
            codes=codes,
            bad=bad,
            dropped=len(rejected),
            first_bad=examples[0] if examples else None,
            rows_read=rows_read,
            bad_counts={k: v for k, v in counts.items() if v},
            examples=examples,
            positions=positions,
        )

    pieces = _chunks(path, chunk_bytes, skip_header=layout.header)
    if not prefetch:
        for item in pieces:
            yield work(item)
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for item in pieces:
            fut = pool.submit(work, item)
            if pending is not None:
                yield pending.result()
            pending = fut
        if pending is not None:
            yield pending.result()
