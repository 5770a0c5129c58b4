"""What a proxy evaluator scores with, made one way for the search and the bench: the scoring
batches and the warmed-up supernet.

``recnas search`` (:mod:`recnas.search.runner`) and ``recnas bench compare``
(:mod:`recnas.bench.compare`) both call these two functions; neither has code of its own for them.

- :func:`first_batches` (and :func:`scoring_batches`, the training and validation pair): the first
  ``n`` full batches of ``batch_size`` rows of a split, in file order (rows ``[0, n x batch_size)``,
  no shuffle), the same in every process and every rank. Too few rows is an error naming the
  split folder, the full batches it has and the pipeline keys to change.
- :class:`FreshBatches`: the training rows *after* the scoring batches, as full batches of the same
  size in file order, cycled when the split runs out: the fresh rows of the one-shot score's
  ``finetune_rows: fresh`` (NASRec's subnet fitness fine-tunes on new training batches). Read lazily
  and cached once per stream; the bench shares one stream between its warm-ups, the search has one.
- :func:`warm_supernet`: the supernet warmed up (NASRec's recipe, :func:`recnas.train.warmup.warmup`)
  on ``fraction`` of a training split, into a folder: a finished warm-up found there
  (``supernet.json``) is checked against what is asked and reused, not redone; an interrupted one
  resumes from its checkpoints; ``reuse`` copies another folder's finished warm-up in instead;
  fraction 0 is the seeded initial supernet (no warm-up, no folder). Under torchrun every rank calls
  it: the warm-up loader gives each rank its own rows (``rank``, ``world_size``) and the tables are
  sharded; rank 0 writes the card.

Folders (unchanged from before this module): the search warms up into its run folder
(``RUN_DIR/supernet.json``, ``RUN_DIR/supernet/``, ``RUN_DIR/checkpoints/``), the bench into
``OUTPUT/warmup/frac_<f>/`` (plus its own ``warmup_info.json``).

Example::

    >>> fm, splits = load_prepared(data_dir)                                            # doctest: +SKIP
    >>> train, valid = scoring_batches(splits, fm, batches=4, val_batches=2, batch_size=512,
    ...                                section="scoring")                               # doctest: +SKIP
    >>> w = warm_supernet("runs/x/warmup/frac_0.01", fm, space, splits["train"], data_dir=data_dir,
    ...                   fraction=0.01, batch_size=64, config=WarmupConfig(progress=False),
    ...                   section="warmup")                                             # doctest: +SKIP
    >>> ctx = ScoringContext(fm, train, valid, supernet=w.supernet, init="inherit")     # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["first_batches", "scoring_batches", "FreshBatches", "warm_supernet", "WarmedSupernet", "check_card"]


# -- scoring batches ------------------------------------------------------------------------------


def first_batches(split_dir: str | os.PathLike, fm: Any, n: int, batch_size: int, *, key: str,
                  size_key: str, what: str | None = None) -> list[Any]:
    """The first ``n`` full batches of ``batch_size`` rows of the split folder ``split_dir``.

    Args:
        split_dir: a prepared split folder (``DATA/train``, ``DATA/valid``).
        fm: the dataset's feature map.
        n: how many batches (0 gives ``[]``).
        batch_size: rows per batch.
        key, size_key: the pipeline keys that set ``n`` and ``batch_size`` (e.g.
            ``estimator.batches``, ``estimator.batch_size``), named in the error.
        what: the error's prefix (default: ``key``'s section).

    Raises:
        ValueError: the split has fewer than ``n x batch_size`` rows; the message names the folder,
            the full batches it has and the keys to lower.
    """
    from recnas.data.loader import ParquetBatchLoader

    if n <= 0:
        return []
    loader = ParquetBatchLoader(Path(split_dir), fm, batch_size=batch_size, limit=n * batch_size)
    batches = [b for b in loader if b.labels.numel() == batch_size][:n]
    if len(batches) < n:
        raise ValueError(
            f"{what or key.split('.')[0]}: {split_dir} has rows for {len(batches)} full batches of {batch_size}, "
            f"but {key}={n}; lower {key} or {size_key}"
        )
    return batches


def scoring_batches(splits: Mapping[str, Path], fm: Any, *, batches: int, val_batches: int, batch_size: int,
                    section: str) -> tuple[list[Any], list[Any]]:
    """The scoring batches of a pipeline section (``estimator`` of a search, ``scoring`` of a bench):
    the first ``batches`` full batches of the training split and the first ``val_batches`` of the
    validation split (none when 0), each of ``batch_size`` rows (:func:`first_batches`; errors name
    ``SECTION.batches`` / ``SECTION.val_batches`` and ``SECTION.batch_size``)."""
    size_key = f"{section}.batch_size"
    train = first_batches(splits["train"], fm, batches, batch_size, key=f"{section}.batches", size_key=size_key)
    valid = first_batches(splits["valid"], fm, val_batches, batch_size, key=f"{section}.val_batches",
                          size_key=size_key) if val_batches else []
    return train, valid


class FreshBatches:
    """The training rows after the scoring batches: full batches of ``batch_size`` rows in file order.

    Batch ``j`` holds the split's rows ``[(skip + j) x batch_size, (skip + j + 1) x batch_size)``: the
    first ``skip`` batches are the scoring batches (:func:`scoring_batches` takes rows
    ``[0, skip x batch_size)``), so fresh batch 0 starts at the first row they did not use. No shuffle:
    every reader (every candidate, rank and run) gets the same rows in the same order. There are
    :attr:`available` distinct batches (the split's full batches after the scoring ones, a final
    partial batch left out); a reader that needs more cycles over them (:meth:`index`).

    Lazy and bounded: nothing is read until :meth:`get` asks; then the split is streamed from the
    parquet files (:class:`recnas.data.loader.ParquetBatchLoader`, one row group at a time) only as
    far as the batches asked for, and those batches are kept, so each row is read once per stream
    whatever the number of candidates. What is kept is at most ``min(asked, available)`` batches
    (for Criteo-format rows about 0.3 kB per row: 500 batches of 512 rows ~ 80 MB).

    Args:
        split_dir: the training split folder.
        fm: the dataset's feature map.
        batch_size: rows per batch (the scoring batches' size).
        skip: how many batches of ``batch_size`` rows to skip (the scoring batches).
        section: the pipeline section named in errors (``scoring`` of a bench, ``estimator`` of a search).

    Raises:
        ValueError: from :meth:`get`, when the split has no full batch after the skipped ones (naming
            the folder and the keys); making the stream reads only the files' metadata.
    """

    def __init__(self, split_dir: str | os.PathLike, fm: Any, batch_size: int, skip: int, *,
                 section: str = "scoring") -> None:
        import pyarrow.parquet as pq

        self.split_dir, self.fm, self.batch_size, self.skip = Path(split_dir), fm, int(batch_size), int(skip)
        self.section = section
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(self.split_dir.glob("part-*.parquet")))
        self.split_rows = rows
        self.available = max(0, rows // self.batch_size - self.skip)
        self._batches: list[Any] = []
        self._iter: Any = None

    def index(self, step: int) -> int:
        """The fresh batch that step ``step`` (0-based) reads: ``step mod available``."""
        return step % self.available

    def get(self, n: int) -> list[Any]:
        """The first ``min(n, available)`` fresh batches (read on first use, then kept)."""
        if self.available == 0:
            raise ValueError(
                f"{self.section}: {self.split_dir} has {self.split_rows} rows, no full batch of "
                f"{self.section}.batch_size={self.batch_size} after the {self.skip} scoring batches "
                f"({self.section}.batches) for oneshot finetune_rows: fresh"
            )
        want = min(int(n), self.available)
        if len(self._batches) < want:
            if self._iter is None:
                from recnas.data.loader import ParquetBatchLoader

                loader = ParquetBatchLoader(self.split_dir, self.fm, batch_size=self.batch_size, drop_last=True)
                self._iter = iter(loader)
                for _ in range(self.skip):
                    next(self._iter)
            while len(self._batches) < want:
                self._batches.append(next(self._iter))
            if len(self._batches) == self.available:
                self._iter = None
        return self._batches[:want]

    def __repr__(self) -> str:
        return (f"FreshBatches({str(self.split_dir)!r}, batch_size={self.batch_size}, skip={self.skip}, "
                f"available={self.available}, read={len(self._batches)})")


# -- the warmed-up supernet -----------------------------------------------------------------------


@dataclass
class WarmedSupernet:
    """What :func:`warm_supernet` returns.

    Attributes:
        path: the folder holding ``supernet.json`` (``None`` for fraction 0: no warm-up).
        how: ``warmed`` (warmed up, or finished an interrupted warm-up, in this call), ``found``
            (a finished warm-up was already there), ``reused`` (copied from ``reuse``) or
            ``initial`` (fraction 0: the seeded initial weights).
        steps: the warm-up's steps (0 for ``initial``; from the card when found or reused).
        seconds: this call's warm-up seconds (0 unless ``warmed``).
        samples_per_s: this call's warm-up rate (0 unless ``warmed``).
        rows: the warm-up rows per rank (``warmed`` only; else -1).
        supernet: the unsharded supernet in eval mode on CPU (``load=True``), else ``None``.
    """

    path: Path | None
    how: str
    steps: int
    seconds: float = 0.0
    samples_per_s: float = 0.0
    rows: int = -1
    supernet: Any = field(default=None, repr=False)


_HINT = "warm up anew (a new output folder) or use a supernet of this space and data"


def check_card(card_path: str | os.PathLike, space: Any, fm: Any, what: str = "supernet", *,
               config: Any = None, describe: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Raises unless the supernet card ``card_path`` was warmed up on ``space`` and ``fm``; with
    ``config`` (a ``WarmupConfig``), also with that recipe (progress, checkpoint and divergence-guard
    settings may differ) and ``describe``'s values (e.g. fraction and batch size). Returns the card.

    Every refusal (:func:`recnas.identity.check_identity`) names the card, each differing key with
    both values, and what to do.
    """
    from recnas.identity import check_identity
    from recnas.train.warmup import _RESUME_FREE

    card = json.loads(Path(card_path).read_text())
    where = f"{what}: {card_path}"
    check_identity(card.get("space"), space.to_dict(), where,
                   what="was warmed up on a different search space than this pipeline's", hint=_HINT)
    check_identity(card.get("feature_map"), fm.to_dict(), where,
                   what="was warmed up on data with a different feature map", hint=_HINT)
    if config is not None:
        saved = card.get("describe") or {}
        keys = list(describe or {})
        free = set(_RESUME_FREE)
        check_identity(
            {"config": {k: v for k, v in (card.get("config") or {}).items() if k not in free},
             **{k: saved.get(k) for k in keys}},
            {"config": {k: v for k, v in asdict(config).items() if k not in free}, **dict(describe or {})},
            where, what="was warmed up with other warm-up settings than asked now",
            hint=f"warm up into another folder (or delete {Path(card_path).parent}), or ask for the settings it was made with",
        )
    return card


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _barrier(env: Any) -> None:
    if env is not None and env.world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def warm_supernet(
    out_dir: str | os.PathLike,
    fm: Any,
    space: Any,
    train_split: str | os.PathLike,
    *,
    data_dir: str | os.PathLike,
    fraction: float,
    batch_size: int,
    config: Any,
    section: str,
    fraction_key: str | None = None,
    describe: Mapping[str, Any] | None = None,
    reuse: str | os.PathLike | None = None,
    env: Any = None,
    load: bool = True,
) -> WarmedSupernet:
    """The supernet of ``space`` on ``fm`` warmed up on ``fraction`` of ``train_split``, in ``out_dir``.

    In order:

    - ``fraction == 0``: no warm-up and no folder: ``Supernet(fm, space)`` initialised under
      ``torch.manual_seed(config.seed)`` (``how="initial"``).
    - ``out_dir/supernet.json`` exists: that finished warm-up is used (``found``), after checking
      that it was made on this space and feature map and -- unless it was copied from another
      folder (``reused_from`` in its card) -- with this recipe, fraction and batch size.
    - ``reuse`` names another folder (or its ``supernet.json``): its card is checked against the
      space and feature map, its weights are copied to ``out_dir/supernet/`` and its card written
      to ``out_dir/supernet.json`` with ``reused_from`` (``reused``; rank 0 copies).
    - else the warm-up runs (``warmed``), resuming from ``out_dir/checkpoints/`` if a killed run
      left any: :func:`recnas.train.warmup.warmup` over ``ParquetBatchLoader(train_split, fm,
      batch_size, shuffle=True, seed=config.seed, drop_last=True, fraction, rank, world_size)``.

    Args:
        out_dir: the warm-up folder.
        fm, space: define the supernet.
        train_split: the training split folder.
        data_dir: the prepared data folder (recorded in the card's ``describe.data``).
        fraction: share of the training rows (the first ``round(fraction x rows)``, split over ranks).
        batch_size: rows per warm-up batch (per rank).
        config: the ``WarmupConfig`` (its ``seed`` also shuffles the loader).
        section, fraction_key: the pipeline section and the key of the fraction, named in errors
            (``fraction_key`` defaults to ``SECTION.fraction``).
        describe: extras recorded in the card's ``describe`` beside data, fraction and batch size
            (the search adds ``world_size``); not checked on a found warm-up.
        reuse: a finished warm-up to copy in instead of warming up.
        env: the ``DistEnv`` (``None``: one process; the warm-up initialises it).
        load: also load the supernet (unsharded, CPU, eval mode) into the result.

    Collective under torchrun: every rank calls it; the folder is complete on every rank when it
    returns.
    """
    import torch

    from recnas.train.warmup import SUPERNET_DIR, SUPERNET_FILE, load_supernet, warmup

    out = Path(out_dir)
    card_path = out / SUPERNET_FILE
    if fraction == 0.0:
        from recnas.models import Supernet

        torch.manual_seed(config.seed)
        net = Supernet(fm, space, device=torch.device("cpu"))
        return WarmedSupernet(None, "initial", 0, supernet=net.eval() if load else None)
    recipe = {"fraction": fraction, "batch_size": batch_size}

    def result(how: str, steps: int | None = None, **kw: Any) -> WarmedSupernet:
        if steps is None:
            steps = int(json.loads(card_path.read_text()).get("steps", -1))
        return WarmedSupernet(out, how, steps, supernet=load_supernet(out) if load else None, **kw)

    if card_path.exists():
        card = json.loads(card_path.read_text())
        if "reused_from" in card:
            check_card(card_path, space, fm, section)
        else:
            check_card(card_path, space, fm, section, config=config, describe=recipe)
        return result("found")

    if reuse is not None:
        src = Path(os.path.expanduser(reuse))
        src_card = src / SUPERNET_FILE if src.is_dir() else src
        if not src_card.exists():
            raise FileNotFoundError(f"{section}.reuse: no warmed-up supernet at {src} (no {SUPERNET_FILE})")
        check_card(src_card, space, fm, f"{section}.reuse")
        if env is None or env.is_main:
            card = json.loads(src_card.read_text())
            weights = src_card.parent / card["weights"]
            tmp = out / (SUPERNET_DIR + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(weights, tmp)
            shutil.rmtree(out / SUPERNET_DIR, ignore_errors=True)
            os.replace(tmp, out / SUPERNET_DIR)
            card = {**card, "weights": SUPERNET_DIR, "reused_from": str(src_card.resolve())}
            _write_atomic(card_path, json.dumps(card, indent=2, sort_keys=True) + "\n")
        _barrier(env)
        return result("reused")

    from recnas.data.loader import ParquetBatchLoader

    rank, world_size = (env.rank, env.world_size) if env is not None else (0, 1)
    loader = ParquetBatchLoader(
        Path(train_split), fm, batch_size=batch_size, shuffle=True, seed=config.seed, drop_last=True,
        fraction=fraction, rank=rank, world_size=world_size,
    )
    if len(loader) == 0:
        per_rank = f" per rank ({world_size} ranks)" if world_size > 1 else ""
        raise ValueError(
            f"{section}: the warm-up fraction {fraction:g} of {train_split} is {loader.num_rows} rows{per_rank}, "
            f"less than one batch of {section}.batch_size={batch_size}; raise {fraction_key or section + '.fraction'} "
            f"or lower {section}.batch_size"
        )
    r = warmup(fm, space, loader, config=config, out_dir=out,
               describe={"data": str(data_dir), **recipe, **dict(describe or {})}, resume=True, env=env)
    _barrier(env)
    return result("warmed", r.steps, seconds=r.seconds, samples_per_s=r.samples_per_s, rows=loader.num_rows)
