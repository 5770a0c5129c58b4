"""Production training of an exported architecture (or a baseline): ``recnas train``.

One code path for 1 process and ``torchrun``: the recnas trainer (``recnas.train.trainer.train``:
TorchRec ``DistributedModelParallel``, fused row-wise Adagrad tables, atomic DCP checkpoints) runs
one epoch per call (``stop_at_step`` = the epoch's last step; the next call resumes from the
checkpoint), and after each epoch every rank loads the checkpoint's weights into an unsharded model
and scores its share of the validation and test rows (log loss, AUC, gathered across ranks).
Optional early stopping on validation log loss; the trained model is written in the export format.

Run folder::

    OUT/run.json          what is trained: architecture, init, data, config (checked on --resume)
    OUT/train/            the trainer's run: checkpoints/ (resume), result.json
    OUT/history.json      one record per finished epoch (val/test log loss and AUC, steps, seconds)
    OUT/best.pt           state dict of the best epoch so far (by validation log loss)
    OUT/model/            the trained model as an export folder (rank 0): the best epoch's weights
                          with early stopping, else the last epoch's
    OUT/result.json       the summary (:class:`ProdTrainResult`)

Example::

    r = train_export(Path("exports/01-ab12"), Path("data/criteo"), out_dir=Path("runs/prod"),
                     config=ProdTrainConfig(epochs=2))
    print(r.best.test_logloss, r.best.test_auc, r.export_dir)
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from recnas.data.feature_map import FeatureMap
from recnas.export.architecture import (
    BASELINE_SPACE,
    Architecture,
    baseline_architecture,
    build_model,
)
from recnas.export.artifact import export_architecture, load_export
from recnas.train.scratch import TrainRecipe
from recnas.train.defaults import LEGACY_DENSE_EPS
from recnas.train.trainer import DENSE_LR, MAX_LOSS, TABLE_LR

__all__ = [
    "ProdTrainConfig",
    "EpochMetrics",
    "ProdTrainResult",
    "train_export",
    "train_baseline",
    "train_architecture",
    "format_results",
    "early_stop_epoch",
    "INIT_CHOICES",
]

INIT_CHOICES = ("scratch", "inherited")
RUN_FILE = "run.json"
HISTORY_FILE = "history.json"
BEST_FILE = "best.pt"
RESULT_FILE = "result.json"
MODEL_DIR = "model"
TRAIN_DIR = "train"

# Settings that may change between a run and its resumption: progress and checkpoint_every do not
# change the result; on_nan and max_loss are free as in the trainer (recnas.train.trainer._RESUME_FREE),
# so a run stopped by a NaN or by the divergence guard can be resumed with on_nan 'skip' or a higher
# max_loss (run.json files written before max_loss existed lack the field, which this also allows).
_RESUME_FREE = frozenset({"progress", "checkpoint_every", "on_nan", "max_loss"})
_ADDED_LATER = ("max_steps", "lr_schedule", "lr_warmup", "validate")


@dataclass(frozen=True)
class ProdTrainConfig(TrainRecipe):
    """How ``recnas train`` trains: a :class:`recnas.train.scratch.TrainRecipe` (the one training
    config: ``epochs``, ``batch_size``, ``fraction``, ``dense_lr``, ``table_lr``, ``lr_schedule``,
    ``lr_warmup``, ``eval_batch_size``, ``checkpoint_every``; production trains whole epochs and
    evaluates every one, so ``max_steps`` must be 0 and ``validate`` on), plus:

    Attributes:
        early_stopping_patience: stop after this many epochs without a lower validation log loss
            and export the best epoch (0: off, export the last epoch).
        seed: model initialisation and shuffling.
        eps: row-wise Adagrad epsilon of the tables (the dense weights' is ``dense_eps``).
        on_nan: ``"raise"`` (stop, resumable) or ``"skip"`` a step with a NaN/inf loss (or one
            above ``max_loss``).
        max_loss: divergence guard: a step whose batch log loss exceeds it is handled like a NaN
            loss (``on_nan``); see ``recnas.train.trainer.MAX_LOSS``. ``inf`` turns it off. May
            change on resume.
        flush_denormal: treat denormal floats as zero on CPU while training (restored afterwards).
            Measured on a searched NASRec-Small model on the Criteo rows: early training steps
            produce denormals that make CPU steps 0.2 -> 5 s; flushed, 0.12 s.
        progress: progress bar and per-epoch lines on rank 0 (stderr).

    ``checkpoint_every`` here means extra checkpoints every K steps within an epoch (0: at epoch
    ends only).
    """

    batch_size: int = 512
    checkpoint_every: int = 0
    early_stopping_patience: int = 0
    seed: int = 0
    eps: float = 1e-2
    on_nan: str = "raise"
    max_loss: float = MAX_LOSS
    flush_denormal: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.max_steps != 0:
            raise ValueError(f"production training trains whole epochs: max_steps must be 0 (set epochs), got {self.max_steps}")
        if not self.validate:
            raise ValueError("production training evaluates every epoch on the validation split: validate must be true")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError(f"batch sizes must be >= 1, got {self.batch_size} / {self.eval_batch_size}")
        if self.early_stopping_patience < 0:
            raise ValueError(f"early_stopping_patience must be >= 0, got {self.early_stopping_patience}")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")
        if not self.max_loss > 0:
            raise ValueError(f"max_loss must be positive, got {self.max_loss}")
        super().__post_init__()  # the recipe's checks (lr schedule, ramp)


@dataclass(frozen=True)
class EpochMetrics:
    """Metrics after one epoch (all ranks' rows).

    Attributes:
        epoch: 1-based epoch number.
        step: optimizer steps done at its end.
        val_logloss, val_auc, test_logloss, test_auc: on the validation / test split (``nan``
            where the split is absent or single-class).
        val_rows, test_rows: rows scored (all ranks).
        train_seconds: wall time of this epoch's training (excluding evaluation; ``nan`` when the
            run was killed between the epoch's checkpoint and its evaluation).
        samples_per_s: training samples per second over all ranks in this epoch.
    """

    epoch: int
    step: int
    val_logloss: float
    val_auc: float
    test_logloss: float
    test_auc: float
    val_rows: int
    test_rows: int
    train_seconds: float
    samples_per_s: float


@dataclass(frozen=True)
class ProdTrainResult:
    """What ``recnas train`` reports (``OUT/result.json``).

    Attributes:
        name: the export's key, or the baseline's name.
        history: one :class:`EpochMetrics` per finished epoch.
        best_epoch: 1-based epoch with the lowest validation log loss (whether or not it is the
            exported one).
        status: ``"completed"``, ``"early_stopped"`` or ``"interrupted"`` (``stop_at_step``).
        steps: optimizer steps done.
        start_step: steps already done when this invocation began (> 0: it resumed a run).
        export_dir: the trained model's export folder (``None`` until finished).
        model: the model description of the manifest (kind, key, params, FLOPs).
        exported_epoch: 1-based epoch whose weights are in ``export_dir`` (``None`` until
            finished): ``best_epoch`` with early stopping (``early_stopping_patience > 0``), else
            the last epoch. ``best`` and ``result.json``'s ``final`` are its metrics, and
            :func:`format_history` stars it.
    """

    name: str
    history: tuple[EpochMetrics, ...]
    best_epoch: int | None
    status: str
    steps: int
    start_step: int
    export_dir: str | None
    model: dict[str, Any] = field(default_factory=dict)
    exported_epoch: int | None = None

    @property
    def best(self) -> EpochMetrics | None:
        """The exported epoch's metrics (the last epoch's while nothing is exported)."""
        if not self.history:
            return None
        if self.exported_epoch is not None:
            return self.history[self.exported_epoch - 1]
        return self.history[-1]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["history"] = [asdict(h) for h in self.history]
        b = self.best
        d["final"] = asdict(b) if b is not None else None
        return d


def early_stop_epoch(val_loglosses: list[float], patience: int) -> bool:
    """True if training should stop: the last ``patience`` epochs did not lower the best validation
    log loss (``patience`` 0: never). NaN counts as no improvement."""
    if patience <= 0 or not val_loglosses:
        return False
    best_i = min(range(len(val_loglosses)), key=lambda i: (math.isnan(val_loglosses[i]), val_loglosses[i], i))
    return len(val_loglosses) - 1 - best_i >= patience


def _best_epoch(history: list[EpochMetrics]) -> int | None:
    if not history:
        return None
    i = min(range(len(history)), key=lambda i: (math.isnan(history[i].val_logloss), history[i].val_logloss, i))
    return i + 1


# -- public API -----------------------------------------------------------------------------------
def train_export(
    export_dir: Path,
    data_dir: Path,
    *,
    out_dir: Path,
    init: str = "scratch",
    config: ProdTrainConfig | None = None,
    resume: bool = True,
    stop_at_step: int | None = None,
) -> ProdTrainResult:
    """Trains an exported architecture on a prepared dataset (collective: every rank calls it).

    Args:
        export_dir: an export folder (verified; see :func:`~recnas.export.load_export`).
        data_dir: a prepared dataset with the export's feature map (train/valid/test splits).
        out_dir: the run folder (see the module doc); the trained model goes to ``out_dir/model``.
        init: ``"scratch"`` (fresh, seeded weights) or ``"inherited"`` (the export's weights, e.g.
            inherited from the supernet).
        config: how to train (``None``: ``ProdTrainConfig()``).
        resume: continue the run in ``out_dir`` if it has one (same settings); else it must be new.
        stop_at_step: checkpoint and return (status ``"interrupted"``) after this many steps.
    """
    if init not in INIT_CHOICES:
        raise ValueError(f"init: expected one of {list(INIT_CHOICES)}, got {init!r}")
    ex = load_export(Path(export_dir))
    config = config if config is not None else ProdTrainConfig()
    source = {
        "kind": "export",
        "export_dir": str(Path(export_dir).resolve()),
        "key": ex.key,
        "weights_sha256": ex.manifest["files"][ex.manifest["weights"]]["sha256"],
        "export_meta": ex.meta,
    }
    init_state = ex.model.state_dict() if init == "inherited" else None
    return train_architecture(
        ex.architecture, ex.feature_map, data_dir, out_dir=out_dir, config=config, name=ex.key,
        init=init, init_state=init_state, source=source, resume=resume, stop_at_step=stop_at_step,
    )


def train_baseline(
    name: str,
    data_dir: Path,
    *,
    out_dir: Path,
    space: str = BASELINE_SPACE,
    config: ProdTrainConfig | None = None,
    resume: bool = True,
    stop_at_step: int | None = None,
) -> ProdTrainResult:
    """Trains a baseline from scratch with the same trainer, data and settings as :func:`train_export`.

    ``name``: ``dlrm`` (TorchRec's DLRM, Criteo sizes), ``deepfm`` or ``dcnv2`` (the presets of
    ``space``, built as ``CTRModel``; see ``recnas.space.presets``), ``deepfm_lib`` or ``dcn_lib``
    (the library presets, no space). ``config``: how to train
    (``None``: ``ProdTrainConfig()``).
    """
    arch = baseline_architecture(name, space)
    from recnas.data.loader import load_prepared

    fm, _ = load_prepared(data_dir)
    config = config if config is not None else ProdTrainConfig()
    in_space = bool(getattr(arch, "space", ""))  # dlrm (a DLRMConfig) and the library presets have none
    source = {"kind": "baseline", "name": name, "space": space if in_space else None}
    return train_architecture(
        arch, fm, data_dir, out_dir=out_dir, config=config, name=name, init="scratch", init_state=None,
        source=source, resume=resume, stop_at_step=stop_at_step,
    )


# -- the loop -------------------------------------------------------------------------------------
def _forward(model: nn.Module, batch: Any) -> torch.Tensor:
    return model(batch.dense_features, batch.sparse_features)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _barrier(env: Any) -> None:
    if env.world_size > 1:
        dist.barrier()


def _say(env: Any, config: ProdTrainConfig, msg: str) -> None:
    if env.is_main and config.progress:
        print(msg, file=sys.stderr, flush=True)


def _check_run_file(out: Path, run: dict[str, Any], resume: bool) -> None:
    from recnas.train.trainer import check_resume_config

    p = out / RUN_FILE
    if not p.exists():
        return
    if not resume:
        raise ValueError(f"{out} already holds a training run ({RUN_FILE}); pass --resume to continue it or choose a new --out")
    saved = json.loads(p.read_text())
    # recipe fields added to ProdTrainConfig later: a run saved without them trained with their defaults
    added = {k: v for k, v in asdict(ProdTrainConfig()).items() if k in _ADDED_LATER}
    added["dense_eps"] = LEGACY_DENSE_EPS  # runs saved before the field trained with the tables' 1e-2
    check_resume_config({**added, **saved["config"]}, run["config"], str(p), free=_RESUME_FREE)
    from recnas.identity import check_identity

    for k in ("architecture", "init", "data", "name"):  # the first differences, not two whole dicts
        check_identity({k: saved.get(k)}, {k: run.get(k)}, str(p), what=f"this run trains a different {k}",
                       hint="use a new --out")


def _initial_checkpoint(
    train_dir: Path, arch: Architecture, fm: FeatureMap, state: dict[str, torch.Tensor], tc: Any,
    total: int, describe: dict[str, Any], env: Any,
) -> None:
    """A step-0 checkpoint of the trainer holding ``state`` (sharded like the trainer shards), so the
    first ``train()`` call resumes from the given weights instead of a fresh initialisation."""
    import torch.distributed.checkpoint as dcp

    from recnas.train.checkpoint import capture_rng, save_checkpoint
    from recnas.train.distributed import make_optimizer, shard

    init_dir = train_dir / "init_weights"
    if env.is_main:
        shutil.rmtree(init_dir, ignore_errors=True)
        dcp.save({"model": {k: v.detach().cpu() for k, v in state.items()}}, checkpoint_id=str(init_dir), no_dist=True)
    _barrier(env)
    torch.manual_seed(tc.seed)
    dmp = shard(build_model(arch, fm, torch.device("meta")), env, table_lr=tc.table_lr, table_eps=tc.eps)
    optimizer = make_optimizer(dmp, dense_lr=tc.dense_lr, eps=tc.dense_eps)
    target = {"model": dmp.state_dict()}
    dcp.load(target, checkpoint_id=str(init_dir))
    dmp.load_state_dict(target["model"])
    meta = {
        "kind": "train",
        "config": asdict(tc),
        "epoch": 0,
        "batch_in_epoch": 0,
        "skipped_steps": 0,
        "total_steps": total,
        "describe": describe,
    }
    save_checkpoint(train_dir, step=0, model=dmp, optimizer=optimizer, meta=meta, rng=capture_rng(),
                    keep=tc.keep_checkpoints)
    _barrier(env)
    if env.is_main:
        shutil.rmtree(init_dir, ignore_errors=True)


def _load_weights(path: Path, arch: Architecture, fm: FeatureMap, device: torch.device) -> nn.Module:
    """The model of a trainer checkpoint, unsharded, in this process (any saved world size)."""
    from recnas.train.checkpoint import load_model_weights

    model = build_model(arch, fm, torch.device("cpu"))
    load_model_weights(path, model)
    return model.to(device).eval()


def _denormals_flushed(fn: Callable[..., ProdTrainResult]) -> Callable[..., ProdTrainResult]:
    """Runs ``fn`` with denormal floats flushed on CPU when its ``config.flush_denormal`` says so,
    restoring torch's default afterwards."""

    @functools.wraps(fn)
    def wrapper(*args: Any, config: ProdTrainConfig, **kwargs: Any) -> ProdTrainResult:
        flushed = config.flush_denormal and torch.set_flush_denormal(True)
        try:
            return fn(*args, config=config, **kwargs)
        finally:
            if flushed:
                torch.set_flush_denormal(False)  # the default

    return wrapper


@_denormals_flushed
def train_architecture(
    arch: Architecture,
    feature_map: FeatureMap,
    data_dir: Path,
    *,
    out_dir: Path,
    config: ProdTrainConfig,
    name: str,
    init: str,
    init_state: dict[str, torch.Tensor] | None,
    source: dict[str, Any],
    resume: bool = True,
    stop_at_step: int | None = None,
) -> ProdTrainResult:
    """The loop behind :func:`train_export` and :func:`train_baseline` (collective)."""
    from recnas.data.loader import ParquetBatchLoader, load_prepared
    from recnas.train.checkpoint import latest_checkpoint, read_meta
    from recnas.train.distributed import init_distributed
    from recnas.train.loop import evaluate
    from recnas.train.trainer import TrainConfig, train

    data_dir, out = Path(data_dir), Path(out_dir)
    fm, splits = load_prepared(data_dir)
    if fm != feature_map:
        raise ValueError(
            f"{data_dir}: its feature map differs from the model's (features or vocabulary sizes); "
            "train on the dataset the architecture was exported for"
        )
    build_model(arch, fm, torch.device("meta"))  # a model that does not fit fails before any group starts
    run = {
        "name": name,
        "architecture": arch.to_dict(),
        "init": init,
        "data": str(data_dir.resolve()),
        "config": asdict(config),
        "source": source,
    }
    env = init_distributed()
    _check_run_file(out, run, resume)
    _barrier(env)  # every rank has looked at the folder before rank 0 writes into it
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / RUN_FILE, run)
    _barrier(env)

    part = {"feature_map": fm, "rank": env.rank, "world_size": env.world_size}
    train_loader = ParquetBatchLoader(splits["train"], batch_size=config.batch_size, shuffle=True, seed=config.seed,
                                      drop_last=True, fraction=config.fraction, **part)
    evals = {
        s: ParquetBatchLoader(splits[s], batch_size=config.eval_batch_size, shuffle=False, drop_last=False, **part)
        for s in ("valid", "test") if s in splits
    }
    spe = len(train_loader)
    if spe == 0:
        raise ValueError(f"{data_dir}: too few training rows for batch size {config.batch_size} x {env.world_size} process(es)")
    total = config.epochs * spe
    tc = TrainConfig(
        epochs=config.epochs, dense_lr=config.dense_lr, table_lr=config.table_lr, eps=config.eps,
        dense_eps=config.dense_eps, seed=config.seed,
        lr_schedule=config.lr_schedule, lr_warmup=config.lr_warmup,
        checkpoint_every=config.checkpoint_every, on_nan=config.on_nan, max_loss=config.max_loss,
        progress=config.progress,
    )
    train_dir = out / TRAIN_DIR
    describe = {"name": name, "data": run["data"], "batch_size": config.batch_size, "world_size": env.world_size,
                "init": init, "fraction": config.fraction}
    ckpt = latest_checkpoint(train_dir)
    if ckpt is None and init_state is not None:
        _initial_checkpoint(train_dir, arch, fm, init_state, tc, total, describe, env)
        ckpt = latest_checkpoint(train_dir)
    step = read_meta(ckpt)["step"] if ckpt is not None else 0
    start_step = step

    hist_path = out / HISTORY_FILE
    saved = json.loads(hist_path.read_text()) if hist_path.exists() else {"epochs": [], "status": "running"}
    history = [EpochMetrics(**h) for h in saved["epochs"]]
    if len(history) > step // spe:
        raise ValueError(f"{hist_path}: records {len(history)} epochs but the latest checkpoint is at step {step} "
                         f"({step // spe} epochs); the run folder is inconsistent")
    status = saved["status"] if saved["status"] == "early_stopped" else "running"

    def record_epoch(ckpt_dir: Path, seconds: float, rate: float) -> None:
        nonlocal status
        model = _load_weights(ckpt_dir, arch, fm, env.device)
        m = {s: evaluate(model, loader, env, _forward) for s, loader in evals.items()}
        nan = float("nan")
        e = EpochMetrics(
            epoch=len(history) + 1, step=step,
            val_logloss=m["valid"].logloss if "valid" in m else nan, val_auc=m["valid"].auc if "valid" in m else nan,
            test_logloss=m["test"].logloss if "test" in m else nan, test_auc=m["test"].auc if "test" in m else nan,
            val_rows=m["valid"].rows if "valid" in m else 0, test_rows=m["test"].rows if "test" in m else 0,
            train_seconds=seconds, samples_per_s=rate,
        )
        history.append(e)
        if env.is_main:
            if _best_epoch(history) == e.epoch:
                tmp = out / (BEST_FILE + ".tmp")
                torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
                os.replace(tmp, out / BEST_FILE)
            if early_stop_epoch([h.val_logloss for h in history], config.early_stopping_patience):
                status = "early_stopped"
            _write_json(hist_path, {"epochs": [asdict(h) for h in history], "status": status})
        _barrier(env)
        if not env.is_main:
            status = json.loads(hist_path.read_text())["status"]
        _say(env, config, f"epoch {e.epoch}/{config.epochs} (step {e.step}): val logloss {e.val_logloss:.5f} "
                          f"auc {e.val_auc:.4f} | test logloss {e.test_logloss:.5f} auc {e.test_auc:.4f}"
                          + (" | early stop" if status == "early_stopped" else ""))

    if ckpt is not None and step % spe == 0 and len(history) < step // spe and step > 0:
        record_epoch(ckpt, float("nan"), float("nan"))  # killed between the checkpoint and the evaluation
    while status == "running" and step < total:
        if stop_at_step is not None and step >= stop_at_step:
            break
        target = (step // spe + 1) * spe
        if stop_at_step is not None:
            target = min(target, stop_at_step)
        t0 = time.perf_counter()
        r = train(lambda device: build_model(arch, fm, device), train_loader, config=tc, out_dir=train_dir,
                  describe=describe, resume=True, stop_at_step=target, env=env)
        step = r.steps
        if step % spe == 0:
            record_epoch(Path(r.checkpoint), time.perf_counter() - t0, r.samples_per_s)
    if status == "running" and step >= total:
        status = "completed"
    if status != "running" and env.is_main:
        _write_json(hist_path, {"epochs": [asdict(h) for h in history], "status": status})

    export_dir = None
    exported: int | None = None
    model_desc: dict[str, Any] = {}
    if status in ("completed", "early_stopped"):
        export_dir = out / MODEL_DIR
        exported = _best_epoch(history) if config.early_stopping_patience > 0 else len(history)
        if env.is_main:
            if config.early_stopping_patience > 0:
                model = build_model(arch, fm, torch.device("cpu"))
                model.load_state_dict(torch.load(out / BEST_FILE, map_location="cpu", weights_only=True))
            else:
                model = _load_weights(latest_checkpoint(train_dir), arch, fm, torch.device("cpu"))
            meta = {
                "source": source,
                "training": {
                    "status": status, "exported_epoch": exported, "init": init, "data": run["data"],
                    "config": asdict(config), "world_size": env.world_size,
                    "history": [asdict(h) for h in history],
                },
            }
            export_architecture(model, arch, fm, export_dir, meta)
        _barrier(env)
        model_desc = json.loads((export_dir / "manifest.json").read_text())["model"]
    result = ProdTrainResult(
        name=name, history=tuple(history), best_epoch=_best_epoch(history),
        status="interrupted" if status == "running" else status, steps=step, start_step=start_step,
        export_dir=str(export_dir) if export_dir is not None else None, model=model_desc,
        exported_epoch=exported,
    )
    if env.is_main and export_dir is not None:
        _write_json(out / RESULT_FILE, result.to_dict())
    return result


# -- reporting ------------------------------------------------------------------------------------
def _f(x: float | None, nd: int) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def format_results(results: list[ProdTrainResult]) -> str:
    """A plain-text table of trained models: the exported epoch's validation and test metrics."""
    head = ("model", "status", "epoch", "steps", "val logloss", "val AUC", "test logloss", "test AUC", "params", "MFLOPs/ex")
    rows = []
    for r in results:
        b = r.best
        rows.append((
            r.name, r.status, f"{b.epoch}/{len(r.history)}" if b else "-", str(r.steps),
            _f(b.val_logloss if b else None, 5), _f(b.val_auc if b else None, 4),
            _f(b.test_logloss if b else None, 5), _f(b.test_auc if b else None, 4),
            f"{r.model['num_params']:,}" if r.model else "-",
            f"{r.model['flops_per_example'] / 1e6:.3f}" if r.model else "-",
        ))
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(head), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)])


def format_history(result: ProdTrainResult) -> str:
    """A plain-text table of a run's per-epoch metrics: ``*`` marks the exported epoch
    (``exported_epoch``), ``b`` the lowest validation log loss (``best_epoch``) where it is another
    epoch, and a last line says which is which, as ``result.json`` does."""
    ex, best = result.exported_epoch, result.best_epoch
    out = ["epoch   step  val logloss  val AUC  test logloss  test AUC  train s"]
    for h in result.history:
        mark = "*" if h.epoch == ex else "b" if h.epoch == best else " "
        out.append(f"{mark}{h.epoch:>4}  {h.step:>5}  {_f(h.val_logloss, 5):>11}  {_f(h.val_auc, 4):>7}  "
                   f"{_f(h.test_logloss, 5):>12}  {_f(h.test_auc, 4):>8}  {_f(h.train_seconds, 1):>7}")
    if ex is not None and ex == best:
        out.append(f"* exported: epoch {ex}, the lowest val logloss")
    elif ex is not None:  # without early stopping the last epoch is exported, not the best
        out.append(f"* exported: epoch {ex}, the last (--early-stopping exports the lowest val logloss); "
                   f"b lowest val logloss: epoch {best}")
    return "\n".join(out)
