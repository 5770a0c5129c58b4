"""Standalone training of one model from scratch: the ground truth the estimators are judged against.

Works for any module with ``forward(dense (B, num_dense), kjt) -> logits (B,)`` whose tables are an
``EmbeddingBagCollection`` (``recnas.models.CTRModel``, ``recnas.train.baselines.DLRMBaseline``).
Every run goes through ``DistributedModelParallel`` (one process or torchrun), the tables use the
fused row-wise Adagrad, the dense part Adagrad (NASRec: eps 1e-2).

Example::

    result = train(
        lambda device: CTRModel(fm, spec, device=device),
        train_loader, val_loader=val_loader, test_loader=test_loader,
        config=TrainConfig(epochs=1), out_dir="runs/arch0",
    )
    print(result.val.logloss, result.val.auc)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchrec.datasets.utils import Batch

from recnas.train.checkpoint import (
    capture_rng,
    latest_checkpoint,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from recnas.train.defaults import DENSE_EPS, LEGACY_DENSE_EPS, TABLE_LR
from recnas.train.distributed import DistEnv, init_distributed, make_optimizer, shard
from recnas.train.loop import (
    LR_SCHEDULES,
    ON_NAN,
    EvalResult,
    Forward,
    LoopPosition,
    NonFiniteLossError,
    evaluate,
    lr_factor,
    run_steps,
    set_lr,
)

__all__ = ["TrainConfig", "TrainResult", "train", "DENSE_LR", "TABLE_LR", "MAX_LOSS", "RESULT_FILE", "check_resume_config"]

# Dense Adagrad lr. Measured three times:
# - a 2-block CTRModel, 1 epoch at batch 128 on the 8k training rows of the shared Criteo sample
#   (`benchmarks/bench_train.py --lr-sweep DIR`, table lr 0.12, dense eps 1e-2): validation log loss
#   .4832 / .4668 / .4648 / .4667 at dense lr 0.005 / 0.02 / 0.05 / 0.12;
# - 60 sampled NASRec-Small architectures x 2 seeds (the ground-truth benchmark, `recnas bench
#   build`), before the ops had LayerNorms: at 0.05, 72 of 120 runs diverged; at 0.005 none did;
# - with the dense epsilon at 1e-8 (DENSE_EPS; it was the tables' 1e-2 until then, which scaled most
#   dense steps down ~100x), `benchmarks/recipe_study.py` on the validation split (reports/recipe):
#   0.005 against 0.01 over the baselines and sampled NASRec-Small architectures x 3 seeds.
DENSE_LR = 0.005
# TABLE_LR (NASRec's 0.12, the tables' row-wise Adagrad lr): recnas.train.defaults, re-exported here.
# Divergence guard (TrainConfig.max_loss, WarmupConfig.max_loss): a batch log loss above this is
# treated like a NaN. Label-rate prediction scores ~0.5 on Criteo and a fresh model ~0.7.
MAX_LOSS = 10.0
RESULT_FILE = "result.json"

# Config fields that may differ between a run and its resumption (they do not change the math).
_RESUME_FREE = frozenset({"progress", "checkpoint_every", "keep_checkpoints", "on_nan", "max_loss"})


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Attributes:
        epochs: passes over the training loader (ignored when ``max_steps > 0``).
        max_steps: stop after this many optimizer steps (0: ``epochs * len(train_loader)``).
        dense_lr: Adagrad lr of the dense parameters (see ``DENSE_LR``).
        table_lr: fused row-wise Adagrad lr of the embedding tables (NASRec: 0.12).
        eps: row-wise Adagrad epsilon of the tables (NASRec: 1e-2).
        dense_eps: Adagrad epsilon of the dense weights (``recnas.train.defaults.DENSE_EPS``; runs
            made before this field existed used 1e-2, ``LEGACY_DENSE_EPS``).
        lr_schedule: ``"constant"`` or ``"cosine"`` (decay to 0 at the last step; NASRec's), after
            the ramp. A decaying lr makes the final weights less dependent on the last batches.
        lr_warmup: fraction of the steps with a linear lr ramp from ``lr / n`` to ``lr`` (0: none).
            Adagrad's first steps move every weight by about the lr whatever its gradient's size,
            which a ramp tames.
        seed: seeds the model initialisation (torch) on every rank.
        checkpoint_every: save every K steps (0: only at the end and on a bad loss).
        keep_checkpoints: complete checkpoints kept on disk.
        max_loss: divergence guard: a step whose batch log loss exceeds it is treated like a NaN
            loss (``on_nan``). A CTR model's batch log loss is below ~1 (0.69 for a coin flip); a
            diverged one climbs to 1e3-1e28 without ever producing a NaN. ``inf`` turns it off.
        on_nan: ``"raise"`` stops at a NaN/inf loss (or one above ``max_loss``) with a resumable
            checkpoint from before the step; ``"skip"`` drops the step (no update) and counts it.
        progress: tqdm bar with samples/s on rank 0.
    """

    epochs: int = 1
    max_steps: int = 0
    dense_lr: float = DENSE_LR
    table_lr: float = TABLE_LR
    eps: float = 1e-2
    dense_eps: float = DENSE_EPS
    lr_schedule: str = "constant"
    lr_warmup: float = 0.0
    seed: int = 0
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    max_loss: float = MAX_LOSS
    on_nan: str = "raise"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.on_nan not in ON_NAN:
            raise ValueError(f"on_nan: expected one of {ON_NAN}, got {self.on_nan!r}")
        if self.epochs < 1 and self.max_steps < 1:
            raise ValueError("epochs or max_steps must be positive")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule: expected one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0.0 <= self.lr_warmup < 1.0:
            raise ValueError(f"lr_warmup must be in [0, 1), got {self.lr_warmup}")
        for name in ("dense_lr", "table_lr", "eps", "dense_eps", "max_loss"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


@dataclass(frozen=True)
class TrainResult:
    """What a finished run reports (also written to ``OUT_DIR/result.json`` by rank 0).

    Attributes:
        steps: optimizer steps done in total (over resumptions), skipped steps included.
        skipped_steps: steps dropped for a NaN/inf loss or one above ``max_loss`` (``on_nan="skip"``).
        val, test: metrics on the validation / test loaders (``None`` if not given).
        seconds: wall time of this process's training segment (excluding evaluation).
        samples_per_s: training samples per second over all ranks in this segment.
        losses: per-step training loss on this rank in this segment (a skipped step keeps the loss it computed).
        checkpoint: the final checkpoint directory.
    """

    steps: int
    skipped_steps: int
    val: EvalResult | None
    test: EvalResult | None
    seconds: float
    samples_per_s: float
    losses: tuple[float, ...] = field(repr=False)
    checkpoint: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("losses")
        return d


def _forward(model: nn.Module, batch: Batch) -> torch.Tensor:
    return model(batch.dense_features, batch.sparse_features)


def check_resume_config(saved: dict[str, Any], current: dict[str, Any], where: str, free: frozenset[str] = _RESUME_FREE) -> None:
    """Raises if a resumed run's config differs from the saved one in a field that changes the math
    (:func:`recnas.identity.check_identity`; ``free`` fields may differ)."""
    from recnas.identity import check_identity

    check_identity(saved, current, where, what="this run directory holds a run with a different configuration",
                   hint="use a new output directory or the same settings", ignore=free)


def train(
    build_model: Callable[[torch.device], nn.Module],
    train_loader: Any,
    *,
    config: TrainConfig,
    out_dir: str | os.PathLike,
    val_loader: Any = None,
    test_loader: Any = None,
    describe: dict[str, Any] | None = None,
    resume: bool = True,
    stop_at_step: int | None = None,
    env: DistEnv | None = None,
) -> TrainResult:
    """Trains ``build_model(torch.device("meta"))`` from scratch (collective: every rank calls it).

    Args:
        build_model: ``device -> model``; called once with ``meta`` (tables and dense layers are
            allocated by sharding; dense modules need ``reset_parameters``).
        train_loader: iterable of ``Batch`` for this rank with ``len()`` (and ``set_epoch(e)``, which
            makes the order a function of (seed, epoch)); equal batch counts on every rank.
        config: the hyper-parameters; a resumed run must use the same (see ``_RESUME_FREE``).
        out_dir: run directory: checkpoints and ``result.json``.
        val_loader, test_loader: evaluated after training (log loss, AUC, all ranks' rows).
        describe: JSON-able description saved in every checkpoint (spec, feature map, data dir).
        resume: continue from ``out_dir``'s latest checkpoint if it has one.
        stop_at_step: save a checkpoint and return after this many steps without evaluating (a
            deliberate interruption, e.g. to fit a time slot; the next call resumes).
        env: from ``init_distributed()`` (called if ``None``).

    Returns:
        A :class:`TrainResult`. Raises :class:`NonFiniteLossError` on a NaN/inf loss when
        ``config.on_nan == "raise"`` (after saving a checkpoint from before the bad step).
    """
    env = env or init_distributed()
    out = Path(out_dir)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError("train: the training loader yields no batches (too few rows for the batch size?)")
    total = config.max_steps if config.max_steps > 0 else config.epochs * steps_per_epoch

    torch.manual_seed(config.seed)
    model = shard(build_model(torch.device("meta")), env, table_lr=config.table_lr, table_eps=config.eps)
    optimizer = make_optimizer(model, dense_lr=config.dense_lr, eps=config.dense_eps)

    pos = LoopPosition()
    ckpt = latest_checkpoint(out) if resume else None
    if ckpt is not None:
        meta, rng = load_checkpoint(ckpt, model=model, optimizer=optimizer)
        if meta.get("kind") != "train":
            raise ValueError(f"{ckpt}: a {meta.get('kind')!r} checkpoint, not a standalone training run")
        check_resume_config({"dense_eps": LEGACY_DENSE_EPS, **meta["config"]}, asdict(config), str(ckpt))
        check_resume_config(meta["describe"], describe or {}, str(ckpt), frozenset())
        restore_rng(rng)
        pos = LoopPosition.from_meta(meta)

    def save() -> Path:
        meta = {"kind": "train", "config": asdict(config), **pos.meta(), "total_steps": total, "describe": describe or {}}
        return save_checkpoint(
            out, step=pos.step, model=model, optimizer=optimizer, meta=meta, rng=capture_rng(),
            keep=config.keep_checkpoints,
        )

    scheduled = config.lr_schedule != "constant" or config.lr_warmup > 0

    def begin_step(step: int) -> Forward:
        if scheduled:
            set_lr(optimizer, lr_factor(step, total, config.lr_warmup, config.lr_schedule))
        return _forward

    start_step = pos.step
    losses, seconds, rate = run_steps(
        model, optimizer, train_loader, env, pos, total=total, stop_at_step=stop_at_step,
        begin_step=begin_step, max_loss=config.max_loss, on_nan=config.on_nan,
        checkpoint_every=config.checkpoint_every, save=save, show_progress=config.progress and env.is_main,
        desc="train", what="training",
    )
    step, skipped = pos.step, pos.skipped
    path = save() if (step != start_step or ckpt is None) else ckpt
    if step < total:  # stopped early on purpose
        return TrainResult(step, skipped, None, None, seconds, rate, tuple(losses), str(path))

    val = evaluate(model, val_loader, env, _forward) if val_loader is not None else None
    test = evaluate(model, test_loader, env, _forward) if test_loader is not None else None
    result = TrainResult(step, skipped, val, test, seconds, rate, tuple(losses), str(path))
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / (RESULT_FILE + ".tmp")
        tmp.write_text(json.dumps({**result.to_dict(), "describe": describe or {}}, indent=2) + "\n")
        os.replace(tmp, out / RESULT_FILE)
    return result
