"""Pipeline building blocks shared by ``recnas search`` and ``recnas bench``: the data stage.

A pipeline names its data in one of three ways (the ``data:`` section, :class:`DataConfig`):

- ``prepared: DIR`` -- a folder written by ``recnas data prepare`` (used as it is);
- ``raw: [FILES]`` + ``format`` -- raw Criteo / Criteo 1TB / Avazu files, prepared on first use;
- ``synth_rows: N`` -- synthetic Criteo- or Avazu-format rows (the built-in default data).

Raw and synthetic data are prepared once into ``cache/<name>-<hash>/`` where the hash covers every
option and the raw files' sizes and modification times, so a rerun reuses the prepared parquet and a
changed option or file prepares afresh. A half-written cache entry is never reused: preparation
writes to a temporary folder and renames it into place when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["DataConfig", "resolve_data"]

FORMATS = ("criteo", "criteo-1tb", "avazu")


@dataclass(frozen=True)
class DataConfig:
    """The ``data:`` section of a pipeline file.

    Attributes:
        format: raw format, ``criteo`` (Kaggle train.txt / CSV layout), ``criteo-1tb`` or ``avazu``.
        raw: raw input files (``.gz`` fine; ``~`` and ``$VARS`` expanded; relative to the working
            directory).
        prepared: a prepared folder to use as it is (then the options below are ignored).
        synth_rows: if > 0 (and no ``raw``/``prepared``), synthesise this many rows.
        synth_seed: seed of the synthetic data's hidden teacher and rows.
        synth_like: a raw sample whose missing rates / skew / label rate the synthesiser fits.
        synth_interaction_rows: the synthetic teacher's interaction vocabulary per field
            (``recnas.data.synth.Teacher``; default 1,000).
        synth_teacher: the synthetic teacher's version, ``v1`` (default) or ``v2`` (adds dense x
            categorical, cross-product and deep terms; ``data/README.md``).
        hash_size: hash categories into this many ids per feature (NASRec protocol) ...
        min_count: ... or keep values seen at least this often in train (BARS protocol).
        dense_transform: ``log1p`` (NASRec) or ``log2sq_bucket`` (BARS).
        split_seed: seed of the 8:1:1 split.
        on_bad_row: ``error`` or ``skip`` (counted in stats.json).
        cache: folder of prepared datasets.
        name: prefix of the cache entry.
    """

    format: str = "criteo"
    raw: tuple[str, ...] = ()
    prepared: str | None = None
    synth_rows: int = 0
    synth_seed: int = 0
    synth_like: str | None = None
    synth_interaction_rows: int = 1000
    synth_teacher: str = "v1"
    hash_size: int | None = 100_000
    min_count: int | None = None
    dense_transform: str = "log1p"
    split_seed: int = 2018
    on_bad_row: str = "error"
    cache: str = "data/cache"
    name: str = "data"

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"data.format: {self.format!r} is not one of {list(FORMATS)}")
        sources = [bool(self.raw), self.prepared is not None, self.synth_rows > 0]
        if sum(sources) != 1:
            raise ValueError(
                "data: give exactly one of 'raw' (files to prepare), 'prepared' (a prepared folder) "
                f"or 'synth_rows' (> 0, synthetic rows); got raw={list(self.raw)}, "
                f"prepared={self.prepared!r}, synth_rows={self.synth_rows}"
            )
        if (self.hash_size is None) == (self.min_count is None):
            raise ValueError("data: set exactly one of 'hash_size' and 'min_count' (the other to null)")
        if self.on_bad_row not in ("error", "skip"):
            raise ValueError(f"data.on_bad_row: expected 'error' or 'skip', got {self.on_bad_row!r}")
        if self.synth_interaction_rows < 1:
            raise ValueError(f"data.synth_interaction_rows must be >= 1, got {self.synth_interaction_rows}")
        if self.synth_teacher not in ("v1", "v2"):
            raise ValueError(f"data.synth_teacher: expected 'v1' or 'v2', got {self.synth_teacher!r}")

    def identity(self) -> dict[str, Any]:
        """The fields that decide the prepared data, as a dict: what cache keys, search journals and
        benchmark signatures pin. ``cache`` (where, not what) is left out, and so is a field added
        after data was first cached while it holds its default, so that data, journals and ground
        truths made before the field existed stay valid."""
        from recnas.identity import without_earlier

        d = asdict(self)
        d.pop("cache")
        return without_earlier(d, _LATER_FIELDS)


# Fields added after the first release, with the default that reproduces the earlier behaviour.
_LATER_FIELDS = {"synth_interaction_rows": 1000, "synth_teacher": "v1"}


def _expand(p: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(p)))


def _cache_key(cfg: DataConfig, raw: list[Path]) -> str:
    d = cfg.identity()
    d["raw_files"] = [[str(p.resolve()), p.stat().st_size, int(p.stat().st_mtime)] for p in raw]
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def resolve_data(cfg: DataConfig, progress: bool = True) -> Path:
    """Returns a prepared data folder for ``cfg``, preparing (and caching) it when needed."""
    from recnas.data import prepare, synth

    if cfg.prepared is not None:
        p = _expand(cfg.prepared)
        if not (p / "feature_map.json").exists():
            raise FileNotFoundError(f"data.prepared: {p} is not a prepared folder (no feature_map.json)")
        return p
    raw = [_expand(r) for r in cfg.raw]
    for r in raw:
        if not r.exists():
            raise FileNotFoundError(f"data.raw: no such file: {r}")
    key = _cache_key(cfg, raw)
    out = _expand(cfg.cache) / f"{cfg.name}-{key}"
    if (out / "feature_map.json").exists() and (out / "stats.json").exists():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if cfg.synth_rows > 0:
        ext = "csv" if cfg.format == "avazu" else "txt"
        raw_file = tmp / "raw" / f"synth.{ext}"
        raw_file.parent.mkdir()
        if progress:
            print(f"recnas: synthesising {cfg.synth_rows:,} {cfg.format} rows", file=sys.stderr)
        synth(cfg.format, cfg.synth_rows, raw_file, like=cfg.synth_like, seed=cfg.synth_seed,
              interaction_rows=cfg.synth_interaction_rows, teacher=cfg.synth_teacher, progress=progress)
        raw = [raw_file]
    if progress:
        print(f"recnas: preparing {', '.join(map(str, raw))} -> {out}", file=sys.stderr)
    prepare(
        cfg.format,
        raw,
        tmp,
        min_count=cfg.min_count,
        hash_size=cfg.hash_size,
        dense_transform=cfg.dense_transform,
        seed=cfg.split_seed,
        on_bad_row=cfg.on_bad_row,
        progress=progress,
    )
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
