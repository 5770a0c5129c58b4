"""``recnas data prepare``: raw Criteo / Criteo 1TB / Avazu files -> parquet splits + feature map.

Pipeline (streaming; memory is bounded by one raw chunk in flight plus, for ``min_count``, the
distinct values of the training split)::

    raw file --(32 MB chunks, pyarrow.csv, all columns as strings)--> decode (vectorised checks)
      --> split by a seeded hash of the row index --> dense transform
      --> hash mode:  hash ids                         --> STAGE/{train,valid,test}/part-*.parquet
      --> vocab mode: raw codes to STAGE/.prepare-tmp/ and count train values;
                      then fit vocabularies, re-read the codes, map to ids --> STAGE/{split}/part-*.parquet
      --> STAGE/feature_map.json, STAGE/stats.json --> published into DIR (feature_map.json last)

Every data line is either written to exactly one split or counted as skipped under one reason, so
``rows_read == sum(rows_written) + rows_skipped_total`` always holds (checked before finishing).
A row's split is a seeded hash of its data-line number (bad lines counted too), so it does not
depend on whether other rows were good.

The dataset is written into the staging folder ``STAGE = DIR/.prepare-partial`` and moved into
``DIR`` only when complete, ``feature_map.json`` (which marks a prepared dataset) last. A kill, a
bad row, a corrupt input or a full disk before that leaves ``DIR``'s previous dataset (if any)
untouched; a failed run removes its staging folder (and ``DIR`` if the run created it); a rerun
replaces a killed run's leftovers without ``--overwrite``. Fault points: ``prepare.chunk`` (a chunk
written to the staging folder), ``prepare.publish`` (one item moved into ``DIR``).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from recnas.data.encode import (
    ValueCounter,
    Vocabulary,
    hash_ids,
    load_vocabularies,
    save_vocabularies,
    transform_dense,
    unit_uniform,
)
from recnas.data.feature_map import DENSE_TRANSFORMS, FEATURE_MAP_FILE, DenseFeature, FeatureMap, SparseFeature
from recnas.data.formats import BadInputError, Layout, check_format, detect_layout, output_features
from recnas.data.reader import CHUNK_BYTES, REASONS, Decoded, read_decoded
from recnas.faults import fault_point

__all__ = ["prepare", "PrepareOptions", "SPLITS", "STATS_FILE", "VOCAB_FILE"]

SPLITS = ("train", "valid", "test")
PREDICT = "predict"  # rows of unlabelled inputs (Criteo test.txt, Avazu test.csv)
STATS_FILE = "stats.json"
VOCAB_FILE = "vocab.npz"
TMP_DIR = ".prepare-tmp"  # vocabulary mode: raw codes before the vocabularies are fitted (in STAGE_DIR)
STAGE_DIR = ".prepare-partial"  # the dataset being written; published into the output folder on success
DEFAULT_MIN_COUNT = 10
MAX_EXAMPLES = 5
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@dataclass(frozen=True)
class PrepareOptions:
    """Validated options of one ``prepare`` run (see :func:`prepare`)."""

    fmt: str
    min_count: int | None
    hash_size: int | None
    dense_transform: str
    split: tuple[float, float, float]
    seed: int
    on_bad_row: str
    split_by: str
    row_group_rows: int
    rows_per_file: int
    chunk_bytes: int

    @property
    def encoding(self) -> str:
        return "hash" if self.hash_size is not None else "vocab"


class _SplitWriter:
    """Appends column arrays to ``folder/part-NNNNN.parquet``, in row groups of ``row_group_rows``."""

    def __init__(self, folder: Path, schema: pa.Schema, row_group_rows: int, rows_per_file: int):
        self.folder, self.schema = folder, schema
        self.row_group_rows, self.rows_per_file = row_group_rows, rows_per_file
        self.rows = 0
        self.label_sum = 0.0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._file_rows = 0
        self._parts = 0
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, columns: dict[str, np.ndarray]) -> None:
        t = pa.Table.from_arrays([pa.array(columns[f.name]) for f in self.schema], schema=self.schema)
        if t.num_rows == 0:
            return
        self.rows += t.num_rows
        self.label_sum += float(np.nansum(columns["label"], dtype=np.float64))
        self._pending.append(t)
        self._pending_rows += t.num_rows
        while self._pending_rows >= self.row_group_rows:
            self._flush(self.row_group_rows)

    def _flush(self, n: int) -> None:
        t = pa.concat_tables(self._pending).combine_chunks()
        head, rest = t.slice(0, n), t.slice(n)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows
        if self._writer is None or self._file_rows >= self.rows_per_file:
            self._close_file()
            path = self.folder / f"part-{self._parts:05d}.parquet"
            self._writer = pq.ParquetWriter(path, self.schema, compression="zstd", compression_level=1)
            self._parts += 1
        self._writer.write_table(head, row_group_size=n)
        self._file_rows += head.num_rows

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer, self._file_rows = None, 0

    def close(self) -> None:
        if self._pending_rows:
            self._flush(self._pending_rows)
        self._close_file()


def _check_options(
    fmt: str,
    inputs: Sequence[str | Path],
    min_count: int | None,
    hash_size: int | None,
    dense_transform: str,
    split: Sequence[float],
    seed: int,
    on_bad_row: str,
    split_by: str,
    row_group_rows: int,
    rows_per_file: int,
    chunk_bytes: int,
) -> PrepareOptions:
    check_format(fmt)
    if isinstance(inputs, (str, Path)) or not inputs:
        raise ValueError("inputs: give a non-empty list of raw data files")
    if min_count is not None and hash_size is not None:
        raise ValueError("give either --min-count (vocabulary) or --hash-size (hashing), not both")
    if min_count is None and hash_size is None:
        min_count = DEFAULT_MIN_COUNT
    if min_count is not None and min_count < 1:
        raise ValueError(f"--min-count must be >= 1, got {min_count}")
    if hash_size is not None and hash_size < 2:
        raise ValueError(f"--hash-size must be >= 2 (id 0 is reserved for missing), got {hash_size}")
    if dense_transform not in DENSE_TRANSFORMS:
        raise ValueError(f"unknown dense transform {dense_transform!r}; expected one of {DENSE_TRANSFORMS}")
    fr = tuple(float(x) for x in split)
    if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"split must be three non-negative fractions summing to 1, got {tuple(split)}")
    if on_bad_row not in ("error", "skip"):
        raise ValueError(f"on_bad_row must be 'error' or 'skip', got {on_bad_row!r}")
    if split_by not in ("row", "day"):
        raise ValueError(f"split_by must be 'row' or 'day', got {split_by!r}")
    if split_by == "day" and len(inputs) < 2:
        raise ValueError("a day-based split needs at least two day files (the last one is held out)")
    return PrepareOptions(
        fmt, min_count, hash_size, dense_transform, fr, int(seed), on_bad_row, split_by,
        row_group_rows, rows_per_file, chunk_bytes,
    )  # fmt: skip


def _schema(dense: Sequence[str], sparse: Sequence[str], codes: bool) -> pa.Schema:
    fields = [pa.field("label", pa.float32())]
    fields += [pa.field(n, pa.float32()) for n in dense]
    fields += [pa.field(n, pa.int64()) for n in sparse]
    return pa.schema(fields)


def _start_out_dir(out: Path, overwrite: bool) -> tuple[Path, bool]:
    """Checks ``out`` and makes an empty staging folder in it; returns ``(staging, out was created)``.

    Nothing of ``out`` is changed here: a prepared dataset in it stays usable until the new one is
    complete and published (:func:`_publish`). A folder holding a complete dataset (one with
    ``feature_map.json``, which is published last) is refused unless ``overwrite``; the leftovers of
    an interrupted run (splits without ``feature_map.json``) are replaced."""
    if (out / FEATURE_MAP_FILE).exists() and not overwrite:
        existing = [p for p in (*SPLITS, PREDICT, FEATURE_MAP_FILE, STATS_FILE, VOCAB_FILE) if (out / p).exists()]
        raise ValueError(f"{out} already holds a prepared dataset ({', '.join(existing)}); pass --overwrite")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    stage = out / STAGE_DIR
    if stage.exists():
        shutil.rmtree(stage)  # an interrupted run's partial output
    stage.mkdir()
    return stage, created


def _publish(stage: Path, out: Path) -> None:
    """Moves the complete dataset from ``stage`` into ``out``, ``feature_map.json`` last.

    ``out`` holds no ``feature_map.json`` from the first change to the last, so a kill in between
    leaves a folder that loaders refuse and that a rerun replaces without ``--overwrite``."""
    (out / FEATURE_MAP_FILE).unlink(missing_ok=True)
    for name in (*SPLITS, PREDICT, VOCAB_FILE, STATS_FILE, TMP_DIR):
        old = out / name
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
    for name in (*SPLITS, PREDICT, VOCAB_FILE, STATS_FILE):
        if (stage / name).exists():
            os.replace(stage / name, out / name)
            fault_point("prepare.publish")
    os.replace(stage / FEATURE_MAP_FILE, out / FEATURE_MAP_FILE)
    shutil.rmtree(stage)


def _assign_splits(rows: np.ndarray, opts: PrepareOptions, held_out_day: bool) -> np.ndarray:
    """``(n,)`` int8 split index (0 train, 1 valid, 2 test) of the data lines numbered ``rows``.

    ``rows`` counts every data line read, good or bad, so a good row's split never depends on
    whether the rows before it were good."""
    n = len(rows)
    u = unit_uniform(np.asarray(rows, dtype=np.int64), opts.seed)
    train, valid, _ = opts.split
    if opts.split_by == "day":
        if not held_out_day:
            return np.zeros(n, dtype=np.int8)
        rest = valid + opts.split[2]
        cut = valid / rest if rest > 0 else 0.5
        return np.where(u < cut, 1, 2).astype(np.int8)
    return np.where(u < train, 0, np.where(u < train + valid, 1, 2)).astype(np.int8)


def prepare(
    fmt: str,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    min_count: int | None = None,
    hash_size: int | None = None,
    dense_transform: str = "log1p",
    split: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 2018,
    on_bad_row: str = "error",
    progress: bool = True,
    split_by: str = "row",
    encode_like: str | Path | None = None,
    overwrite: bool = False,
    row_group_rows: int = 1 << 17,
    rows_per_file: int = 1 << 22,
    chunk_bytes: int = CHUNK_BYTES,
) -> dict[str, Any]:
    """Prepares raw CTR files into ``out_dir``; returns the statistics also saved as ``stats.json``.

    Args:
        fmt: ``criteo`` (Kaggle ``train.txt``/``test.txt`` TSV or the Kaggle CSV with header),
            ``criteo-1tb`` (``day_N`` TSV files, usually ``.gz``) or ``avazu`` (``train.csv``).
        inputs: raw files, read in order; ``.gz`` is detected by its magic bytes.
        out_dir: the dataset folder to write (refuses to overwrite one unless ``overwrite``).
        min_count: frequency threshold of the vocabulary, fitted on the training split only (BARS);
            rarer values share one OOV id. The default when ``hash_size`` is also None: 10.
        hash_size: hash every categorical value into ``hash_size`` ids (NASRec).
        dense_transform: ``log1p`` (NASRec), ``log2sq_bucket`` (BARS) or ``none``.
        split: train/valid/test fractions; each row's split is a seeded hash of its row index.
        seed: split seed (NASRec: 2018).
        on_bad_row: ``error`` (stop, naming file and line) or ``skip`` (count by reason).
        progress: show a tqdm progress bar (rows, rows/s) on stderr.
        split_by: ``row`` (seeded random rows) or ``day``: every input but the last is training
            data and the last input (day) is cut into valid/test by ``split``'s last two fractions.
        encode_like: a prepared dataset whose encoding (hash size or vocabularies, dense transform)
            is reused instead of fitting one, e.g. to encode Criteo ``test.txt`` for prediction.
        overwrite: replace an existing prepared dataset in ``out_dir``.

    Returns:
        The statistics: ``rows_read``, ``rows_skipped`` (by reason), ``rows_skipped_total``,
        ``rows_written`` and ``label_rate`` per split, ``num_embeddings`` per feature, inputs, timing.

    Raises:
        FileNotFoundError: an input is missing.
        ValueError: bad options, an input of the wrong format, or (``on_bad_row="error"``) a bad row;
            the message names the file and line.
    """
    t0 = time.perf_counter()
    opts = _check_options(
        fmt, inputs, min_count, hash_size, dense_transform, split, seed, on_bad_row, split_by,
        row_group_rows, rows_per_file, chunk_bytes,
    )  # fmt: skip
    like_fm, like_vocab = None, None
    if encode_like is not None:
        like_fm, like_vocab, opts = _load_encoding(Path(encode_like), opts)
    paths = [Path(p) for p in inputs]
    layouts: list[Layout | None] = []
    files_skipped = []
    for p in paths:
        try:
            layouts.append(detect_layout(fmt, p))
        except BadInputError as e:
            if opts.on_bad_row == "skip" and "file is empty" in str(e):
                layouts.append(None)
                files_skipped.append({"path": str(p), "reason": "empty file"})
                print(f"recnas data prepare: skipping {p}: empty file", file=sys.stderr)
                continue
            raise
    if all(lay is None for lay in layouts):
        raise BadInputError("no input file has any data rows")
    labelled = [i for i, lay in enumerate(layouts) if lay is not None and lay.labelled]
    if opts.split_by == "day" and len(labelled) < 2:
        raise ValueError("a day-based split needs at least two labelled day files")
    if opts.encoding == "vocab" and like_vocab is None and not labelled:
        raise ValueError(
            "--min-count fits the vocabulary on labelled training rows, but no input has labels; "
            "use --hash-size, or --encode-like a prepared dataset"
        )

    out = Path(out_dir)
    stage, created = _start_out_dir(out, overwrite)
    dense_names, sparse_names = output_features(fmt)
    try:
        stats = _run(opts, paths, layouts, labelled, stage, dense_names, sparse_names, like_vocab, progress)
        num_emb = stats.pop("_num_embeddings")
        if like_fm is not None:
            num_emb = like_fm.num_embeddings
        fm = FeatureMap(
            dataset=fmt,
            dense=tuple(DenseFeature(n, transform=opts.dense_transform) for n in dense_names),
            sparse=tuple(SparseFeature(n, num_embeddings=num_emb[n], encoding=opts.encoding) for n in sparse_names),
            meta=_meta(opts, paths, layouts, fmt, encode_like),
        )
        fm.save(stage)
        stats["files_skipped"] = files_skipped
        stats["num_embeddings"] = num_emb
        stats["seconds"] = round(time.perf_counter() - t0, 3)
        stats["rows_per_s"] = round(stats["rows_read"] / max(stats["seconds"], 1e-9), 1)
        written = sum(stats["rows_written"].values())
        if written + stats["rows_skipped_total"] != stats["rows_read"]:  # an internal invariant
            raise RuntimeError(f"row accounting mismatch: {stats}")
        (stage / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n")
    except BaseException as e:
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            try:
                out.rmdir()  # no empty output folder left behind
            except OSError:
                pass
        if isinstance(e, OSError) and e.errno in _DISK_FULL:  # pyarrow's message names no file
            raise OSError(e.errno, f"{os.strerror(e.errno)} while writing the dataset into {out}; nothing was "
                          "published (its previous content is unchanged)", str(stage)) from None
        raise
    _publish(stage, out)
    if stats["rows_skipped_total"]:
        by = ", ".join(f"{k}: {v}" for k, v in stats["rows_skipped"].items() if v)
        print(
            f"recnas data prepare: skipped {stats['rows_skipped_total']} bad row(s) ({by}); "
            f"see {out / STATS_FILE}",
            file=sys.stderr,
        )
    return stats


def _load_encoding(d: Path, opts: PrepareOptions):
    fm = FeatureMap.load(d)
    if fm.dataset != opts.fmt:
        raise ValueError(f"--encode-like {d} is a {fm.dataset!r} dataset, not {opts.fmt!r}")
    enc = fm.meta.get("encoding")
    vocab = None
    if enc == "hash":
        opts = _replace(opts, hash_size=int(fm.meta["hash_size"]), min_count=None)
    elif enc == "vocab":
        vocab = load_vocabularies(d / fm.meta.get("vocab_file", VOCAB_FILE))
        opts = _replace(opts, hash_size=None, min_count=int(fm.meta["min_count"]))
    else:
        raise ValueError(f"{d}/feature_map.json: meta.encoding must be 'hash' or 'vocab', got {enc!r}")
    transforms = {f.transform for f in fm.dense}
    if transforms:
        opts = _replace(opts, dense_transform=transforms.pop())
    return fm, vocab, opts


def _replace(opts: PrepareOptions, **changes: Any) -> PrepareOptions:
    from dataclasses import replace

    return replace(opts, **changes)


def _meta(opts: PrepareOptions, paths, layouts, fmt: str, encode_like) -> dict[str, Any]:
    dense_names, sparse_names = output_features(fmt)
    lay = next(lay for lay in layouts if lay is not None)
    forms = dict(lay.output_sparse)
    meta: dict[str, Any] = {
        "encoding": opts.encoding,
        "categorical_codes": {n: forms[n] for n in sparse_names},
        "code_rule": "hex: int(value, 16); int: the integer; empty field: id 0",
        "split": {"by": opts.split_by, "fractions": list(opts.split), "seed": opts.seed},
        "sources": [str(p) for p in paths],
        "layouts": [lay.name if lay else None for lay in layouts],
    }
    if opts.encoding == "hash":
        meta["hash_size"] = opts.hash_size
        meta["hash_rule"] = (
            "id = 1 + splitmix64(code XOR crc32(name) * 0x9E3779B97F4A7C15) mod (hash_size - 1)"
        )
    else:
        meta["min_count"] = opts.min_count
        meta["vocab_file"] = VOCAB_FILE
        meta["vocab_rule"] = "0 missing, 1 out of vocabulary, 2 + k for vocab_file[name][k]"
    if encode_like is not None:
        meta["encoded_like"] = str(encode_like)
    if lay.derived:
        meta["derived"] = lay.derived
    return meta


def _run(opts, paths, layouts, labelled, out, dense_names, sparse_names, like_vocab, progress):
    stats: dict[str, Any] = {
        "format": opts.fmt,
        "rows_read": 0,
        "rows_skipped": {r: 0 for r in REASONS},
        "rows_skipped_total": 0,
        "skipped_examples": [],
        "inputs": [],
    }
    vocab_mode = opts.encoding == "vocab"
    fit_vocab = vocab_mode and like_vocab is None
    final_schema = _schema(dense_names, sparse_names, codes=False)
    tmp = out / TMP_DIR
    target = tmp if fit_vocab else out
    writers: dict[str, _SplitWriter] = {}

    def writer(name: str) -> _SplitWriter:
        if name not in writers:
            writers[name] = _SplitWriter(target / name, final_schema, opts.row_group_rows, opts.rows_per_file)
        return writers[name]

    for s in SPLITS:
        writer(s)  # empty splits still get a folder
    counters = {n: ValueCounter() for n in sparse_names} if fit_vocab else {}
    held_out = labelled[-1] if labelled else -1
    ordinal = 0
    bar = tqdm(
        desc=f"prepare {opts.fmt}", unit=" rows", unit_scale=True, disable=not progress,
        file=sys.stderr, dynamic_ncols=True, mininterval=0.5,
    )  # fmt: skip
    with bar:
        for i, (path, lay) in enumerate(zip(paths, layouts)):
            if lay is None:
                continue
            file_stats = {"path": str(path), "layout": lay.name, "rows_read": 0, "rows_skipped": 0}
            bar.set_postfix_str(path.name)
            for d in read_decoded(path, lay, chunk_bytes=opts.chunk_bytes):
                _account(d, opts, stats, file_stats)
                good = d.bad == 0
                n = good.size
                if lay.labelled:
                    split_idx = _assign_splits(ordinal + d.positions, opts, held_out_day=(i == held_out))
                else:
                    split_idx = np.full(n, 3, dtype=np.int8)
                ordinal += d.rows_read
                dense = {name: transform_dense(d.dense[j], opts.dense_transform) for j, name in enumerate(dense_names)}
                for k, name in enumerate((*SPLITS, PREDICT)):
                    sel = np.flatnonzero(good & (split_idx == k))
                    if sel.size == 0:
                        continue
                    cols: dict[str, np.ndarray] = {"label": d.label[sel]}
                    for name_d in dense_names:
                        cols[name_d] = dense[name_d][sel]
                    for j, name_s in enumerate(sparse_names):
                        codes = d.codes[j][sel]
                        if fit_vocab:
                            if k == 0:
                                counters[name_s].update(codes)
                            cols[name_s] = codes
                        elif vocab_mode:
                            cols[name_s] = like_vocab[name_s].encode(codes)
                        else:
                            cols[name_s] = hash_ids(codes, name_s, opts.hash_size)
                    writer(name).write(cols)
                bar.update(d.rows_read)
                fault_point("prepare.chunk")
            stats["inputs"].append(file_stats)
    for w in writers.values():
        w.close()

    if fit_vocab:
        vocabs = {}
        for name in sparse_names:
            values, counts = counters[name].result()
            vocabs[name] = Vocabulary.fit(values, counts, opts.min_count)
        save_vocabularies(out / VOCAB_FILE, vocabs)
        _encode_codes(tmp, out, writers, vocabs, final_schema, opts, progress)
        shutil.rmtree(tmp)
        num_emb = {n: v.num_embeddings for n, v in vocabs.items()}
    elif vocab_mode:
        save_vocabularies(out / VOCAB_FILE, like_vocab)
        num_emb = {n: like_vocab[n].num_embeddings for n in sparse_names}
    else:
        num_emb = {n: int(opts.hash_size) for n in sparse_names}

    stats["rows_skipped_total"] = int(sum(stats["rows_skipped"].values()))
    stats["rows_written"] = {name: w.rows for name, w in writers.items()}
    stats["label_rate"] = {
        name: (round(w.label_sum / w.rows, 6) if w.rows and name != PREDICT else None)
        for name, w in writers.items()
    }
    stats["_num_embeddings"] = num_emb
    return stats


def _account(d: Decoded, opts: PrepareOptions, stats: dict, file_stats: dict) -> None:
    """Adds a chunk's row counts to the statistics; stops at the first bad row in ``error`` mode."""
    if d.first_bad is not None and opts.on_bad_row == "error":
        raise BadInputError(f"{d.first_bad.message()} (pass --on-bad-row skip to skip such rows)")
    stats["rows_read"] += d.rows_read
    file_stats["rows_read"] += d.rows_read
    for reason, c in d.bad_counts.items():
        stats["rows_skipped"][reason] += c
        file_stats["rows_skipped"] += c
    room = MAX_EXAMPLES - len(stats["skipped_examples"])
    stats["skipped_examples"].extend(b.message() for b in d.examples[: max(room, 0)])


def _encode_codes(tmp: Path, out: Path, writers, vocabs, schema, opts, progress) -> None:
    """Second pass of the vocabulary mode: raw codes in ``tmp`` -> ids in ``out``."""
    total = sum(w.rows for w in writers.values())
    bar = tqdm(desc="encode", total=total, unit=" rows", unit_scale=True, disable=not progress,
               file=sys.stderr, dynamic_ncols=True, mininterval=0.5)  # fmt: skip
    with bar:
        for name, w in writers.items():
            final = _SplitWriter(out / name, schema, opts.row_group_rows, opts.rows_per_file)
            for part in sorted((tmp / name).glob("part-*.parquet")):
                pf = pq.ParquetFile(part)
                for rg in range(pf.num_row_groups):
                    t = pf.read_row_group(rg)
                    cols = {f.name: t.column(f.name).to_numpy() for f in schema}
                    for n, v in vocabs.items():
                        cols[n] = v.encode(cols[n])
                    final.write(cols)
                    bar.update(t.num_rows)
            final.close()
            final.label_sum = w.label_sum
            writers[name] = final
