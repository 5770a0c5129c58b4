"""Train an architecture from scratch: the one path the ground truth and the search's oracle share.

:func:`train_from_scratch` trains ``CTRModel(spec)`` on a prepared dataset with a
:class:`TrainRecipe` and one seed (model init and shuffle order), resumable from its checkpoints in
``run_dir``, and returns the validation / test metrics with the model's size. ``recnas bench build``
(each ground-truth row) and the search's train-from-scratch evaluator
(:class:`recnas.study.evaluators.TrainEvaluator`) both call it, so a ground-truth row and an oracle
query of the same recipe and seed are the same number.

Example::

    >>> recipe = TrainRecipe(epochs=1, batch_size=256)                        # doctest: +SKIP
    >>> r = train_from_scratch(spec, 0, recipe, data_dir, fm, splits, "runs/x")  # doctest: +SKIP
    >>> r["test_logloss"], r["val_auc"]                                       # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recnas.train.trainer import DENSE_LR

__all__ = ["TrainRecipe", "train_from_scratch"]


@dataclass(frozen=True)
class TrainRecipe:
    """How an architecture is trained from scratch (the bench's ``train:`` section has the same fields).

    Attributes:
        epochs: passes over the training rows (ignored when ``max_steps > 0``).
        max_steps: stop after this many steps (0: ``epochs`` passes).
        batch_size: training batch size.
        fraction: fraction of the training split used (1 = all of it): with ``epochs``, the fidelity.
        dense_lr, table_lr: Adagrad lr of the dense weights / row-wise Adagrad lr of the tables.
        lr_schedule, lr_warmup: ``constant`` or ``cosine``, and the fraction of steps with a linear ramp.
        eval_batch_size: batch size of the validation/test evaluation.
        validate: evaluate on the validation split too (NaN metrics otherwise).
        checkpoint_every: checkpoint every K steps so a killed run resumes inside it (0: at the end).
    """

    epochs: int = 1
    max_steps: int = 0
    batch_size: int = 256
    fraction: float = 1.0
    dense_lr: float = DENSE_LR
    table_lr: float = 0.12
    lr_schedule: str = "constant"
    lr_warmup: float = 0.0
    eval_batch_size: int = 4096
    validate: bool = True
    checkpoint_every: int = 50

    def __post_init__(self) -> None:
        if self.epochs < 1 and self.max_steps < 1:
            raise ValueError("train: epochs or max_steps must be positive")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("train: batch_size and eval_batch_size must be >= 1")
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"train: fraction must be in (0, 1], got {self.fraction}")
        if self.checkpoint_every < 0:
            raise ValueError("train: checkpoint_every must be >= 0")


RECIPE_FIELDS = tuple(TrainRecipe.__dataclass_fields__)
#: Fields that do not change a run's result (when to save).
RECIPE_FREE = ("checkpoint_every",)


def recipe_identity(recipe: Any) -> dict[str, Any]:
    """The fields of a recipe (or of any object with the same attributes) that decide the result."""
    return {k: getattr(recipe, k) for k in RECIPE_FIELDS if k not in RECIPE_FREE}


def train_from_scratch(spec: Any, seed: int, recipe: Any, data_dir: Path, feature_map: Any,
                       splits: dict[str, Path], run_dir: Path, env: Any = None) -> dict[str, Any]:
    """Trains ``spec`` with ``recipe`` and ``seed`` into ``run_dir`` (resuming its checkpoints);
    returns val/test log loss and AUC, parameter counts, FLOPs, steps and timing."""
    import torch

    from recnas.data.loader import ParquetBatchLoader
    from recnas.models import CTRModel
    from recnas.train.trainer import TrainConfig, train

    t = recipe
    fm = feature_map
    train_loader = ParquetBatchLoader(
        splits["train"], fm, batch_size=t.batch_size, shuffle=True, seed=seed, drop_last=True,
        fraction=t.fraction if t.fraction < 1.0 else None,
    )
    val_loader = ParquetBatchLoader(splits["valid"], fm, batch_size=t.eval_batch_size) if t.validate else None
    test_loader = ParquetBatchLoader(splits["test"], fm, batch_size=t.eval_batch_size)
    config = TrainConfig(
        epochs=t.epochs, max_steps=t.max_steps, dense_lr=t.dense_lr, table_lr=t.table_lr, seed=seed,
        lr_schedule=t.lr_schedule, lr_warmup=t.lr_warmup,
        checkpoint_every=t.checkpoint_every, keep_checkpoints=1, progress=False,
    )
    describe = {"spec": spec.to_dict(), "spec_key": spec.key(), "data": str(data_dir), "seed": seed}
    r = train(
        lambda device: CTRModel(fm, spec, device=device), train_loader, config=config, out_dir=run_dir,
        val_loader=val_loader, test_loader=test_loader, describe=describe, resume=True, env=env,
    )
    meta = CTRModel(fm, spec, device=torch.device("meta"))
    return {
        "val_logloss": r.val.logloss if r.val is not None else math.nan,
        "val_auc": r.val.auc if r.val is not None else math.nan,
        "test_logloss": r.test.logloss, "test_auc": r.test.auc,
        "params": int(meta.num_params(include_embeddings=False)),
        "params_total": int(meta.num_params(include_embeddings=True)),
        "flops": int(meta.flops_per_example()),
        "steps": int(r.steps), "train_seconds": float(r.seconds), "samples_per_s": float(r.samples_per_s),
    }
