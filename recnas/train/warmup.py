"""Supernet warm-up (NASRec's recipe) on a fraction of the training data, and loading the result.

Each step trains one subnet: ``space.sample(rng)`` (single-operator, any-connection sampling), or --
with probability ``p(step)`` -- ``space.largest(rng)`` (the "full path"), where ``p`` falls linearly
from 1 to 0 over the first ``full_path_steps`` steps (NASRec: 15k of ~70k; here 20 % of the run by
default). Every rank draws the same specs from the same seeded generator. Adagrad (eps 1e-2), lr 0.12
for dense weights and tables, cosine schedule with a 10 % linear warm-up (NASRec).

The warmed-up supernet is saved to ``RUN_DIR/supernet/`` (weights, DCP) with ``RUN_DIR/supernet.json``
(space, feature map, warm-up config) so that :func:`load_supernet` rebuilds it in any single process.
``recnas search`` and ``recnas bench compare`` do not call :func:`warmup` themselves: both go through
:func:`recnas.study.context.warm_supernet` (the loader, the folder, finding and checking a finished
warm-up, ``supernet.reuse``), which calls it.

Example::

    fm, splits = load_prepared("data/criteo")
    loader = ParquetBatchLoader(splits["train"], fm, batch_size=512, fraction=0.01, shuffle=True)
    warmup(fm, SearchSpace.load("nasrec_small"), loader, config=WarmupConfig(), out_dir="runs/sn")
    net = load_supernet("runs/sn")          # unsharded Supernet on CPU
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torchrec.datasets.utils import Batch

from recnas.data.feature_map import FeatureMap
from recnas.space.space import SearchSpace
from recnas.space.spec import ArchSpec
from recnas.train.checkpoint import (
    capture_rng,
    latest_checkpoint,
    load_checkpoint,
    load_model_weights,
    restore_rng,
    save_checkpoint,
    save_weights,
)
from recnas.train.distributed import DistEnv, init_distributed, make_optimizer, shard
from recnas.train.loop import (
    ON_NAN,
    Forward,
    LoopPosition,
    lr_factor,
    run_steps,
    set_lr,
)
from recnas.train.sliced import SlicedOptimizer
from recnas.train.trainer import MAX_LOSS, TABLE_LR, check_resume_config

if TYPE_CHECKING:
    from recnas.models import Supernet

__all__ = [
    "WarmupConfig",
    "WarmupResult",
    "warmup",
    "load_supernet",
    "lr_factor",
    "full_path_probability",
    "SUPERNET_DIR",
    "SUPERNET_FILE",
]

SUPERNET_DIR = "supernet"
SUPERNET_FILE = "supernet.json"
_RESUME_FREE = frozenset({"progress", "checkpoint_every", "keep_checkpoints", "on_nan", "max_loss"})


@dataclass(frozen=True)
class WarmupConfig:
    """NASRec's supernet training recipe (defaults), scaled to a short run.

    Attributes:
        epochs: passes over the (fractional) training loader; ignored when ``max_steps > 0``.
        max_steps: stop after this many steps (0: ``epochs * len(loader)``).
        lr: peak Adagrad lr of the dense weights (NASRec: 0.12, tuned for ~70k steps with a 7k-step
            ramp). Short warm-ups need less: Adagrad's early steps move every weight by about the
            lr, and in 60-step NASRec-Small warm-ups (batch 256) the median training loss was
            1.9-2.2 at 0.12, 0.94-0.97 at 0.04 and 0.59 at 0.01; the shipped pipelines use 0.01.
        table_lr: peak fused row-wise Adagrad lr of the tables (NASRec: 0.12).
        eps: Adagrad epsilon (NASRec: 1e-2).
        lr_warmup: fraction of the steps with a linear lr ramp before the cosine decay.
        full_path_steps: steps over which the full-path probability falls 1 -> 0; ``-1`` means
            ``full_path_fraction`` of the run.
        full_path_fraction: used when ``full_path_steps == -1`` (NASRec: 15k / ~70k; here 0.2).
        seed: seeds the model init (torch) and the spec sampler (numpy) -- the same on every rank.
        checkpoint_every, keep_checkpoints, max_loss, on_nan, progress: as in ``TrainConfig``.
    """

    epochs: int = 1
    max_steps: int = 0
    lr: float = TABLE_LR  # NASRec uses 0.12 for both
    table_lr: float = TABLE_LR
    eps: float = 1e-2
    lr_warmup: float = 0.1
    full_path_steps: int = -1
    full_path_fraction: float = 0.2
    seed: int = 0
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    max_loss: float = MAX_LOSS
    on_nan: str = "raise"
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.max_loss > 0:
            raise ValueError(f"max_loss must be positive, got {self.max_loss}")
        if self.on_nan not in ON_NAN:
            raise ValueError(f"on_nan: expected one of {ON_NAN}, got {self.on_nan!r}")
        if self.epochs < 1 and self.max_steps < 1:
            raise ValueError("epochs or max_steps must be positive")
        if not 0.0 <= self.lr_warmup < 1.0:
            raise ValueError(f"lr_warmup must be in [0, 1), got {self.lr_warmup}")
        if not 0.0 <= self.full_path_fraction <= 1.0:
            raise ValueError(f"full_path_fraction must be in [0, 1], got {self.full_path_fraction}")
        for name in ("lr", "table_lr", "eps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def full_path_steps_for(self, total: int) -> int:
        return self.full_path_steps if self.full_path_steps >= 0 else round(self.full_path_fraction * total)


@dataclass(frozen=True)
class WarmupResult:
    """Summary of a warm-up run.

    Attributes:
        steps: steps done in total (over resumptions), skipped ones included.
        skipped_steps: steps dropped for a NaN/inf loss or one above ``max_loss`` (``on_nan="skip"``).
        full_path_steps: steps (this segment) that trained the full path.
        seconds, samples_per_s: wall time and training samples/s (all ranks) of this segment.
        losses: per-step loss on this rank in this segment.
        supernet_dir: where the weights were saved (``None`` if stopped early).
    """

    steps: int
    skipped_steps: int
    full_path_steps: int
    seconds: float
    samples_per_s: float
    losses: tuple[float, ...] = field(repr=False)
    supernet_dir: str | None


def full_path_probability(step: int, full_path_steps: int) -> float:
    """NASRec's full-path probability: ``1 - step / full_path_steps`` (0-based), 0 after."""
    if full_path_steps <= 0:
        return 0.0
    return max(0.0, 1.0 - step / full_path_steps)


def draw_spec(space: SearchSpace, rng: np.random.Generator, p_full: float) -> tuple[ArchSpec, bool]:
    """One warm-up subnet: the full path with probability ``p_full``, else a random one."""
    if rng.random() < p_full:
        return space.largest(rng), True
    return space.sample(rng), False


def warmup(
    feature_map: FeatureMap,
    space: SearchSpace,
    train_loader: Any,
    *,
    config: WarmupConfig,
    out_dir: str | os.PathLike,
    describe: dict[str, Any] | None = None,
    resume: bool = True,
    stop_at_step: int | None = None,
    env: DistEnv | None = None,
    sliced_updates: bool = True,
) -> WarmupResult:
    """Warms up a ``Supernet(feature_map, space)`` on ``train_loader`` (collective).

    Args:
        feature_map, space: define the supernet.
        train_loader: this rank's batches (already cut to the warm-up fraction), with ``len()`` and
            ``set_epoch``; equal batch counts on every rank.
        config: the recipe; a resumed run must use the same (except progress/checkpoint settings).
        out_dir: run directory: ``checkpoints/``, ``supernet/`` and ``supernet.json``.
        describe: JSON-able extras saved with the run (data dir, fraction, batch size).
        resume: continue from the latest checkpoint in ``out_dir`` if there is one.
        stop_at_step: save a checkpoint and return after this many steps (deliberate interruption).
        env: from ``init_distributed()`` (called if ``None``).
        sliced_updates: update only the slices of the shared dense tensors that each step's subnet
            read (:mod:`recnas.train.sliced`; the same weights and optimizer state bit for bit, at a
            fraction of the cost); ``False`` runs the full-tensor update (the reference path).
    """
    from recnas.models import Supernet

    env = env or init_distributed()
    out = Path(out_dir)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError("warmup: the training loader yields no batches (fraction too small for the batch size?)")
    total = config.max_steps if config.max_steps > 0 else config.epochs * steps_per_epoch
    n_full = config.full_path_steps_for(total)
    describe = {**(describe or {}), "space": space.to_dict(), "feature_map": feature_map.to_dict()}

    torch.manual_seed(config.seed)
    model = shard(
        Supernet(feature_map, space, device=torch.device("meta")),
        env,
        table_lr=config.table_lr,
        table_eps=config.eps,
        supernet=True,
    )
    optimizer = make_optimizer(model, dense_lr=config.lr, eps=config.eps)
    step_optimizer = SlicedOptimizer(optimizer, env) if sliced_updates else optimizer
    rng = np.random.default_rng(config.seed)

    pos = LoopPosition()
    ckpt = latest_checkpoint(out) if resume else None
    if ckpt is not None:
        meta, rng_state = load_checkpoint(ckpt, model=model, optimizer=optimizer)
        if meta.get("kind") != "warmup":
            raise ValueError(f"{ckpt}: a {meta.get('kind')!r} checkpoint, not a supernet warm-up")
        check_resume_config(meta["config"], asdict(config), str(ckpt), _RESUME_FREE)
        check_resume_config(meta["describe"], describe, str(ckpt), frozenset())
        restore_rng(rng_state, {"spec_sampler": rng})
        pos = LoopPosition.from_meta(meta)

    def save() -> Path:
        meta = {"kind": "warmup", "config": asdict(config), **pos.meta(), "total_steps": total, "describe": describe}
        return save_checkpoint(
            out, step=pos.step, model=model, optimizer=optimizer, meta=meta,
            rng=capture_rng({"spec_sampler": rng}), keep=config.keep_checkpoints,
        )

    spec: ArchSpec | None = None
    rng_before: dict[str, Any] = {}
    full_count = 0

    def forward(m: nn.Module, batch: Batch) -> torch.Tensor:
        if sliced_updates:
            with step_optimizer.recording():
                return m(batch.dense_features, batch.sparse_features, spec)
        return m(batch.dense_features, batch.sparse_features, spec)

    def begin_step(step: int) -> Forward:
        nonlocal spec, rng_before, full_count
        rng_before = rng.bit_generator.state
        spec, is_full = draw_spec(space, rng, full_path_probability(step, n_full))
        full_count += int(is_full)
        set_lr(optimizer, lr_factor(step, total, config.lr_warmup))
        return forward

    def on_bad_step() -> str:
        rng.bit_generator.state = rng_before  # resume redraws this step's spec
        return f", subnet {spec.key()}"

    start_step = pos.step
    losses, seconds, rate = run_steps(
        model, step_optimizer, train_loader, env, pos, total=total, stop_at_step=stop_at_step,
        begin_step=begin_step, max_loss=config.max_loss, on_nan=config.on_nan,
        checkpoint_every=config.checkpoint_every, save=save, show_progress=config.progress and env.is_main,
        desc="warm-up", what="warm-up",
        on_bad_step=on_bad_step,
    )
    step, skipped = pos.step, pos.skipped
    if step != start_step or ckpt is None:
        save()
    if step < total:
        return WarmupResult(step, skipped, full_count, seconds, rate, tuple(losses), None)

    weights = save_weights(
        out / SUPERNET_DIR, model, {"kind": "supernet", "step": step, "config": asdict(config), "describe": describe}
    )
    if env.is_main:
        card = {
            "format": "recnas-supernet",
            "weights": SUPERNET_DIR,
            "steps": step,
            "skipped_steps": skipped,
            "config": asdict(config),
            "space": space.to_dict(),
            "feature_map": feature_map.to_dict(),
            "describe": describe,
        }
        tmp = out / (SUPERNET_FILE + ".tmp")
        tmp.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, out / SUPERNET_FILE)
    return WarmupResult(step, skipped, full_count, seconds, rate, tuple(losses), str(weights))


def read_card(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """The ``supernet.json`` card of a warm-up (``path``: its run directory or the file), checked:
    a missing file or another format is a one-line error naming the path."""
    p = Path(path)
    card_path = p / SUPERNET_FILE if p.is_dir() else p
    if not card_path.exists():
        raise FileNotFoundError(f"no warmed-up supernet at {p} (expected {card_path}; run `recnas supernet warmup`)")
    card = json.loads(card_path.read_text())
    if card.get("format") != "recnas-supernet":
        raise ValueError(f"{card_path}: not a recnas supernet card (format={card.get('format')!r})")
    return card_path, card


def load_supernet(path: str | os.PathLike, device: torch.device | None = None) -> Supernet:
    """The warmed-up supernet of a warm-up run directory, unsharded, in this process alone.

    Args:
        path: the run directory (holding ``supernet.json``) or the ``supernet.json`` file itself.
        device: where to put it (default CPU).

    Returns:
        ``recnas.models.Supernet`` with the warmed-up weights (full tables, reassembled from the
        shards of any world size), in eval mode.
    """
    from recnas.models import Supernet

    card_path, card = read_card(path)
    fm = FeatureMap.from_dict(card["feature_map"], source=str(card_path))
    space = SearchSpace.from_dict(card["space"], source=str(card_path))
    net = Supernet(fm, space, device=device or torch.device("cpu"))
    load_model_weights(card_path.parent / card["weights"], net)
    net.eval()
    return net
