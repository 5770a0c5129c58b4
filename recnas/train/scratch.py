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
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from recnas.train.defaults import DENSE_EPS, LEGACY_DENSE_EPS
from recnas.train.trainer import DENSE_LR, TABLE_LR

__all__ = ["TrainRecipe", "train_spec", "train_from_scratch", "recipe_identity", "trained_identity", "metrics"]


@dataclass(frozen=True)
class TrainRecipe:
    """How an architecture is trained from scratch (the bench's ``train:`` section has the same fields).

    Attributes:
        epochs: passes over the training rows (ignored when ``max_steps > 0``).
        max_steps: stop after this many steps (0: ``epochs`` passes).
        batch_size: training batch size.
        fraction: fraction of the training split used (1 = all of it): with ``epochs``, the fidelity.
        dense_lr, table_lr: Adagrad lr of the dense weights / row-wise Adagrad lr of the tables.
        dense_eps: Adagrad epsilon of the dense weights (the tables keep 1e-2). Ground truths made
            before this field existed used 1e-2 and keep their identity at that value.
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
    table_lr: float = TABLE_LR
    dense_eps: float = DENSE_EPS
    lr_schedule: str = "constant"
    lr_warmup: float = 0.0
    eval_batch_size: int = 4096
    validate: bool = True
    checkpoint_every: int = 50

    #: the config section's name, for error messages (``train``, ``retrain``, ``oracle``)
    section: ClassVar[str] = "train"

    def __post_init__(self) -> None:
        k = self.section
        if self.epochs < 1 and self.max_steps < 1:
            raise ValueError(f"{k}.epochs or {k}.max_steps must be positive")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError(f"{k}.batch_size and {k}.eval_batch_size must be >= 1")
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"{k}.fraction must be in (0, 1], got {self.fraction}")
        if self.checkpoint_every < 0:
            raise ValueError(f"{k}.checkpoint_every must be >= 0")
        if not self.dense_eps > 0:
            raise ValueError(f"{k}.dense_eps must be positive, got {self.dense_eps}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"{k}.lr_schedule: expected 'constant' or 'cosine', got {self.lr_schedule!r}")
        if not 0.0 <= self.lr_warmup < 1.0:
            raise ValueError(f"{k}.lr_warmup must be in [0, 1), got {self.lr_warmup}")


RECIPE_FIELDS = tuple(f.name for f in fields(TrainRecipe))
#: Fields that do not change what a run trains (when to save; whether the validation split is also
#: evaluated: a measurement made without it simply has no validation metrics).
RECIPE_FREE = ("checkpoint_every", "validate")


def recipe_identity(recipe: Any) -> dict[str, Any]:
    """The fields of a recipe (or of any object with the same attributes) that decide the result.

    ``dense_eps`` at its former fixed value (``LEGACY_DENSE_EPS``) is left out, so a recipe that pins
    it has the identity every run made before the field existed has, and their records stay valid."""
    from recnas.identity import without_earlier

    out = {k: getattr(recipe, k, DENSE_EPS) for k in RECIPE_FIELDS if k not in RECIPE_FREE}
    return without_earlier(out, {"dense_eps": LEGACY_DENSE_EPS})


def trained_identity(recipe: Any, data_identity: Any) -> dict[str, Any]:
    """What decides a ``trained`` measurement besides its seed (a key of its own in the store): the
    recipe, the data and the ops' version. The bench build, the search's oracle and its retraining
    all key their runs by it, so one can reuse another's."""
    from recnas.models.ops import OPS_VERSION

    return {"recipe": recipe_identity(recipe), "ops_version": OPS_VERSION, "data": data_identity}


def train_spec(spec: Any, seed: int, recipe: Any, data_dir: Path, feature_map: Any, splits: dict[str, Path],
               run_dir: Path, env: Any = None, *, resume: bool = True, stop_at_step: int | None = None,
               progress: bool = False, on_nan: str = "raise", max_loss: float | None = None,
               describe: dict[str, Any] | None = None) -> Any:
    """Trains ``spec`` with ``recipe`` and ``seed`` into ``run_dir``; returns the trainer's
    :class:`~recnas.train.trainer.TrainResult`. Under torchrun every rank calls it (the rows are
    sharded over the ranks, the tables over TorchRec's plan).

    Args:
        resume: continue a run found in ``run_dir`` (else it must hold none).
        stop_at_step: stop there with a resumable checkpoint (``None``: train to the end).
        progress, on_nan, max_loss: as :class:`~recnas.train.trainer.TrainConfig`.
        describe: more to pin in the run's checkpoints besides the spec, data and seed.
    """
    from recnas.data.loader import ParquetBatchLoader
    from recnas.models import CTRModel
    from recnas.train.trainer import MAX_LOSS, TrainConfig, train

    t = recipe
    fm = feature_map
    shard = {"rank": env.rank, "world_size": env.world_size} if env is not None and env.world_size > 1 else {}
    train_loader = ParquetBatchLoader(
        splits["train"], fm, batch_size=t.batch_size, shuffle=True, seed=seed, drop_last=True,
        fraction=t.fraction if t.fraction < 1.0 else None, **shard,
    )
    val_loader = (ParquetBatchLoader(splits["valid"], fm, batch_size=t.eval_batch_size, **shard)
                  if t.validate and "valid" in splits else None)
    test_loader = ParquetBatchLoader(splits["test"], fm, batch_size=t.eval_batch_size, **shard) if "test" in splits else None
    config = TrainConfig(
        epochs=t.epochs, max_steps=t.max_steps, dense_lr=t.dense_lr, table_lr=t.table_lr, seed=seed,
        dense_eps=getattr(t, "dense_eps", DENSE_EPS),
        lr_schedule=t.lr_schedule, lr_warmup=t.lr_warmup,
        checkpoint_every=t.checkpoint_every, keep_checkpoints=1, progress=progress,
        on_nan=on_nan, max_loss=MAX_LOSS if max_loss is None else max_loss,
    )
    describe = {"spec": spec.to_dict(), "spec_key": spec.key(), "data": str(data_dir), "seed": seed, **(describe or {})}
    return train(
        lambda device: CTRModel(fm, spec, device=device), train_loader, config=config, out_dir=run_dir,
        val_loader=val_loader, test_loader=test_loader, describe=describe, resume=resume,
        stop_at_step=stop_at_step, env=env,
    )


def metrics(spec: Any, feature_map: Any, r: Any) -> dict[str, Any]:
    """A finished run's row: val/test log loss and AUC (NaN where not evaluated), sizes, steps, timing."""
    import torch

    from recnas.models import CTRModel

    meta = CTRModel(feature_map, spec, device=torch.device("meta"))
    nan = math.nan
    return {
        "val_logloss": r.val.logloss if r.val is not None else nan,
        "val_auc": r.val.auc if r.val is not None else nan,
        "test_logloss": r.test.logloss if r.test is not None else nan,
        "test_auc": r.test.auc if r.test is not None else nan,
        "params": int(meta.num_params(include_embeddings=False)),
        "params_total": int(meta.num_params(include_embeddings=True)),
        "flops": int(meta.flops_per_example()),
        "steps": int(r.steps), "train_seconds": float(r.seconds), "samples_per_s": float(r.samples_per_s),
    }


def train_from_scratch(spec: Any, seed: int, recipe: Any, data_dir: Path, feature_map: Any,
                       splits: dict[str, Path], run_dir: Path, env: Any = None) -> dict[str, Any]:
    """Trains ``spec`` with ``recipe`` and ``seed`` into ``run_dir`` (resuming its checkpoints);
    returns :func:`metrics` of the finished run."""
    r = train_spec(spec, seed, recipe, data_dir, feature_map, splits, run_dir, env)
    return metrics(spec, feature_map, r)
