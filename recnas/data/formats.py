"""Raw CTR file layouts and their recognition from the first line of a file.

A *format* is what the user names (``criteo``, ``criteo-1tb``, ``avazu``); a :class:`Layout` is one
concrete way a file of that format is written (Kaggle ``train.txt`` TSV, the Kaggle CSV with header,
``test.txt`` without labels, Avazu ``train.csv`` ...). :func:`detect_layout` reads the first line of a
file and returns its layout or raises a :class:`BadInputError` that names the file and line.

Example::

    >>> lay = layout_from_first_line("criteo", "x.txt", "0\\t" + "1\\t" * 13 + "\\t".join(["68fd1e64"] * 26))
    >>> lay.name, lay.labelled, len(lay.columns)
    ('criteo-tsv', True, 40)
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FORMATS",
    "BadInputError",
    "Layout",
    "CRITEO_DENSE",
    "CRITEO_SPARSE",
    "AVAZU_COLUMNS",
    "AVAZU_HEX",
    "AVAZU_HOUR",
    "AVAZU_DERIVED",
    "SPARSE_FORMS",
    "DATE_HOUR",
    "DATE_HOUR_DERIVED",
    "open_binary",
    "read_first_line",
    "layout_from_first_line",
    "detect_layout",
    "output_features",
]

FORMATS = ("criteo", "criteo-1tb", "avazu")

CRITEO_DENSE = tuple(f"I{i}" for i in range(1, 14))
CRITEO_SPARSE = tuple(f"C{i}" for i in range(1, 27))

AVAZU_COLUMNS = (
    "id", "click", "hour", "C1", "banner_pos",
    "site_id", "site_domain", "site_category", "app_id", "app_domain", "app_category",
    "device_id", "device_ip", "device_model", "device_type", "device_conn_type",
    "C14", "C15", "C16", "C17", "C18", "C19", "C20", "C21",
)  # fmt: skip
AVAZU_HEX = (
    "site_id", "site_domain", "site_category", "app_id", "app_domain", "app_category",
    "device_id", "device_ip", "device_model",
)  # fmt: skip

# How the raw field of a sparse column becomes integer codes (``Layout.sparse``): ``hex`` (8 hex
# digits), ``int`` (an integer), or ``yymmddhh`` (a date and hour, YYMMDDHH: decoded into the
# derived features of DATE_HOUR_DERIVED instead of a code of its own).
SPARSE_FORMS = ("hex", "int", "yymmddhh")
DATE_HOUR = "yymmddhh"
#: The features a date-hour column is decoded into, in model order: (name, code form, meaning).
DATE_HOUR_DERIVED = (
    ("hour_of_day", "int", "HH of {column} (YYMMDDHH)"),
    ("weekday", "int", "Monday=0 .. Sunday=6"),
)
# Avazu's ``hour`` column is its date-hour: replaced by hour_of_day and weekday.
AVAZU_HOUR = "hour"
AVAZU_DERIVED = tuple(name for name, _, _ in DATE_HOUR_DERIVED)


class BadInputError(ValueError):
    """Input that is not what its format promises; the message names the file (and line)."""


@dataclass(frozen=True)
class Layout:
    """One concrete way a raw file is written.

    Attributes:
        name: e.g. ``criteo-tsv``, ``criteo-tsv-test``, ``criteo-kaggle-csv``, ``avazu-csv``.
        fmt: the user-facing format (``criteo``, ``criteo-1tb``, ``avazu``).
        delimiter: field separator.
        header: whether line 1 is a header (data then starts at line 2).
        columns: every field of a data line, in file order.
        label: the label column, or ``None`` for unlabelled files (Criteo ``test.txt``).
        dense: integer columns that become dense features.
        sparse: ``(column, form)`` pairs, form one of :data:`SPARSE_FORMS`.
        ignored: columns read but not used (``Id``, Avazu's ``id``).
    """

    name: str
    fmt: str
    delimiter: str
    header: bool
    columns: tuple[str, ...]
    label: str | None
    dense: tuple[str, ...]
    sparse: tuple[tuple[str, str], ...]
    ignored: tuple[str, ...] = ()

    @property
    def labelled(self) -> bool:
        return self.label is not None

    @property
    def num_fields(self) -> int:
        return len(self.columns)

    @property
    def first_data_line(self) -> int:
        return 2 if self.header else 1

    def describe(self) -> str:
        sep = "tab" if self.delimiter == "\t" else "comma"
        return f"{self.num_fields} {sep}-separated fields ({self.name})"

    @property
    def output_sparse(self) -> tuple[tuple[str, str], ...]:
        """``(feature, code form)`` of every sparse feature a file of this layout yields, in model
        order: a column keeps its name and form, a date-hour column yields its derived features."""
        out: list[tuple[str, str]] = []
        for c, form in self.sparse:
            out.extend(((n, f) for n, f, _ in DATE_HOUR_DERIVED) if form == DATE_HOUR else ((c, form),))
        return tuple(out)

    @property
    def derived(self) -> dict[str, str]:
        """``{derived feature: meaning}`` of the layout's date-hour columns (empty if it has none)."""
        return {n: text.format(column=c) for c, form in self.sparse if form == DATE_HOUR
                for n, _, text in DATE_HOUR_DERIVED}


def _criteo_tsv(fmt: str, labelled: bool) -> Layout:
    label = ("label",) if labelled else ()
    return Layout(
        name="criteo-tsv" if labelled else "criteo-tsv-test",
        fmt=fmt,
        delimiter="\t",
        header=False,
        columns=label + CRITEO_DENSE + CRITEO_SPARSE,
        label="label" if labelled else None,
        dense=CRITEO_DENSE,
        sparse=tuple((c, "hex") for c in CRITEO_SPARSE),
    )


def _criteo_csv(labelled: bool) -> Layout:
    label = ("Label",) if labelled else ()
    return Layout(
        name="criteo-kaggle-csv" if labelled else "criteo-kaggle-csv-test",
        fmt="criteo",
        delimiter=",",
        header=True,
        columns=("Id",) + label + CRITEO_DENSE + CRITEO_SPARSE,
        label="Label" if labelled else None,
        dense=CRITEO_DENSE,
        sparse=tuple((c, "hex") for c in CRITEO_SPARSE),
        ignored=("Id",),
    )


def _avazu(labelled: bool) -> Layout:
    cols = AVAZU_COLUMNS if labelled else tuple(c for c in AVAZU_COLUMNS if c != "click")
    sparse = tuple(
        (c, "hex" if c in AVAZU_HEX else DATE_HOUR if c == AVAZU_HOUR else "int")
        for c in cols if c not in ("id", "click")
    )
    return Layout(
        name="avazu-csv" if labelled else "avazu-csv-test",
        fmt="avazu",
        delimiter=",",
        header=True,
        columns=cols,
        label="click" if labelled else None,
        dense=(),
        sparse=sparse,
        ignored=("id",),
    )


def output_features(fmt: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(dense names, sparse names)`` of a prepared dataset of format ``fmt``, in model order."""
    check_format(fmt)
    if fmt in ("criteo", "criteo-1tb"):
        return CRITEO_DENSE, CRITEO_SPARSE
    return (), tuple(name for name, _ in _avazu(True).output_sparse)


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise BadInputError(f"unknown --format {fmt!r}; expected one of {', '.join(FORMATS)}")


def open_binary(path: Path):
    """Opens ``path`` for binary reading, gunzipping transparently (by magic bytes, not name)."""
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def read_first_line(path: Path) -> str:
    """The first line of ``path`` (decompressed), without its line ending; ``""`` if empty."""
    try:
        with open_binary(path) as f:
            line = f.readline(1 << 20)
    except (OSError, EOFError, zlib.error) as e:
        raise BadInputError(f"{path}: cannot read: {e}") from None
    return line.decode("utf-8", errors="replace").rstrip("\r\n")


def layout_from_first_line(fmt: str, path: str | Path, line: str) -> Layout:
    """Recognises the layout of a file of format ``fmt`` from its first line.

    Raises:
        BadInputError: naming ``path`` line 1 when the line fits no layout of ``fmt`` (and naming
            the right ``--format`` when it is recognisably another dataset).
    """
    check_format(fmt)
    low = line.lower()
    looks_avazu = low.startswith("id,click,hour") or low.startswith("id,hour,c1")
    looks_criteo_csv = low.startswith("id,label,i1") or low.startswith("id,i1,i2")
    if fmt == "avazu":
        for lay in (_avazu(True), _avazu(False)):
            if line.split(",") == list(lay.columns):
                return lay
        hint = ""
        if looks_criteo_csv or line.count("\t") in (38, 39):
            hint = " (this looks like a Criteo file: use --format criteo)"
        raise BadInputError(
            f"{path}:1: not an Avazu CSV header{hint}; expected "
            f"{','.join(AVAZU_COLUMNS)!r} (or the same without 'click' for test.csv), got {line[:120]!r}"
        )
    # criteo / criteo-1tb
    if looks_avazu:
        raise BadInputError(f"{path}:1: this is an Avazu CSV header; use --format avazu")
    if looks_criteo_csv:
        if fmt == "criteo-1tb":
            raise BadInputError(
                f"{path}:1: the Kaggle CSV layout (header 'Id,Label,...') is Criteo Kaggle data; "
                "use --format criteo"
            )
        for lay in (_criteo_csv(True), _criteo_csv(False)):
            if line.split(",") == list(lay.columns):
                return lay
        raise BadInputError(
            f"{path}:1: header looks like the Criteo Kaggle CSV but is not "
            f"'Id,Label,I1..I13,C1..C26' (or without Label); got {line[:120]!r}"
        )
    n = line.count("\t") + 1
    if n == 40:
        return _criteo_tsv(fmt, labelled=True)
    if n == 39:
        return _criteo_tsv(fmt, labelled=False)
    raise BadInputError(
        f"{path}:1: not a Criteo file: expected 40 tab-separated fields (label, I1-I13, C1-C26), "
        f"39 for test.txt, or the Kaggle CSV header 'Id,Label,...'; got {n} tab-separated field(s) "
        f"in {line[:80]!r}"
    )


def detect_layout(fmt: str, path: str | Path) -> Layout:
    """Checks that ``path`` exists and is not empty, and recognises its layout.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        BadInputError: empty file, or a first line that fits no layout of ``fmt``.
    """
    check_format(fmt)
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"input file not found: {p}")
    if p.is_dir():
        raise BadInputError(f"{p}: is a directory, expected a {fmt} data file")
    line = read_first_line(p)
    if not line.strip():
        raise BadInputError(f"{p}: file is empty (no data rows)" if _is_empty(p) else f"{p}:1: empty line")
    lay = layout_from_first_line(fmt, p, line)
    if lay.header and _is_header_only(p):
        raise BadInputError(f"{p}: file is empty (a header and no data rows)")
    return lay


def _is_empty(p: Path) -> bool:
    with open_binary(p) as f:
        return not f.read(4096).strip()


def _is_header_only(p: Path) -> bool:
    with open_binary(p) as f:
        f.readline(1 << 20)
        return not f.read(4096).strip()
