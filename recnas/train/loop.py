"""Pieces shared by the standalone trainer and the supernet warm-up: the step loop (resume position,
bad-loss handling, checkpoints), one step, evaluation, progress.

Both loops follow the same order per step, which the fused table optimizer dictates (it updates the
tables *during* ``backward()``, so a bad loss must be caught before backward)::

    set lr -> optimizer.zero_grad() (pushes lr into FBGEMM) -> forward -> loss
    -> every rank agrees the loss is finite and <= max_loss -> backward (tables updated)
    -> sync_dense_grads (supernet, world size > 1) -> optimizer.step() (dense)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchrec.datasets.utils import Batch

from recnas.train.distributed import DistEnv, all_gather_1d, all_ranks_true, sync_dense_grads

__all__ = [
    "NonFiniteLossError",
    "EvalResult",
    "train_step",
    "StepOutcome",
    "loss_ok",
    "describe_bad_loss",
    "evaluate",
    "set_lr",
    "lr_factor",
    "LR_SCHEDULES",
    "epoch_batches",
    "LoopPosition",
    "StepsRun",
    "run_steps",
    "Progress",
    "ON_NAN",
]

ON_NAN = ("raise", "skip")

# forward(model, batch) -> logits (B,)
Forward = Callable[[nn.Module, Batch], torch.Tensor]


class NonFiniteLossError(RuntimeError):
    """A step produced a NaN/inf loss, or one above ``max_loss`` (diverged). ``checkpoint`` holds
    the state from before that step."""

    def __init__(self, message: str, step: int, checkpoint: str | None) -> None:
        super().__init__(message)
        self.step = step
        self.checkpoint = checkpoint


@dataclass(frozen=True)
class EvalResult:
    """Metrics on one split, over the rows of every rank.

    Attributes:
        logloss: mean binary cross-entropy of ``sigmoid(logit)`` against the labels.
        auc: ROC AUC (``nan`` if the split has a single class).
        rows: number of rows scored (all ranks).
        label_rate: mean label; ``baseline_logloss`` is the log loss of always predicting it.
    """

    logloss: float
    auc: float
    rows: int
    label_rate: float

    @property
    def baseline_logloss(self) -> float:
        p = min(max(self.label_rate, 1e-12), 1 - 1e-12)
        return -(p * math.log(p) + (1 - p) * math.log(1 - p))


LR_SCHEDULES = ("constant", "cosine")


def lr_factor(step: int, total: int, warmup_fraction: float, schedule: str = "cosine") -> float:
    """Multiplier of the peak lr at 0-based ``step`` of ``total``: a linear ramp over the first
    ``warmup_fraction`` of the steps, then ``"cosine"`` decay to 0 at ``total`` or ``"constant"``."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr schedule: expected one of {LR_SCHEDULES}, got {schedule!r}")
    warm = max(1, round(warmup_fraction * total)) if warmup_fraction > 0 else 0
    if step < warm:
        return (step + 1) / warm
    if schedule == "constant":
        return 1.0
    span = max(1, total - warm)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / span)))


def set_lr(optimizer: Any, factor: float) -> None:
    """Sets every param group's ``lr`` to ``factor`` times its ``initial_lr`` (recorded on first call)."""
    for g in optimizer.param_groups:
        g.setdefault("initial_lr", g["lr"])
        g["lr"] = g["initial_lr"] * factor


class StepOutcome(NamedTuple):
    """What :func:`train_step` did: this rank's ``loss``, and whether the update was ``applied``."""

    loss: float
    applied: bool


def loss_ok(loss: float, max_loss: float) -> bool:
    """A loss the step may apply: finite and at most ``max_loss`` (the divergence guard)."""
    return math.isfinite(loss) and loss <= max_loss


def describe_bad_loss(loss: float, max_loss: float) -> str:
    """``"non-finite (nan)"`` or ``"diverged (3.2e+05 > max_loss 100)"``, for error messages; a
    loss that is fine here was bad on another rank (every rank stops or skips together)."""
    if not math.isfinite(loss):
        return f"non-finite ({loss})"
    if loss > max_loss:
        return f"diverged ({loss:.4g} > max_loss {max_loss:g})"
    return f"non-finite or above max_loss {max_loss:g} on another rank (here {loss:.4g})"


def train_step(
    model: nn.Module,
    optimizer: Any,
    batch: Batch,
    env: DistEnv,
    forward: Forward,
    max_loss: float = math.inf,
) -> StepOutcome:
    """One optimisation step. If the loss is not finite or above ``max_loss`` on some rank (a
    diverged run: a well-behaved CTR model's batch log loss is below ~1), nothing is updated on any
    rank and ``applied`` is ``False``; the caller decides whether to stop or skip."""
    optimizer.zero_grad(set_to_none=True)
    logits = forward(model, batch)
    loss = F.binary_cross_entropy_with_logits(logits, batch.labels)
    value = float(loss.detach())
    if not all_ranks_true(loss_ok(value, max_loss), env):
        return StepOutcome(value, False)
    loss.backward()
    sync_dense_grads(model, env)
    optimizer.step()
    return StepOutcome(value, True)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[Batch], env: DistEnv, forward: Forward) -> EvalResult:
    """Log loss and AUC of ``model`` on ``loader``, predictions gathered from every rank."""
    from sklearn.metrics import roc_auc_score

    was_training = model.training
    model.eval()
    logits, labels = [], []
    for batch in loader:
        batch = batch.to(env.device)
        logits.append(forward(model, batch).float().reshape(-1))
        labels.append(batch.labels.float().reshape(-1))
    model.train(was_training)
    z = all_gather_1d(torch.cat(logits) if logits else torch.zeros(0), env).cpu()
    y = all_gather_1d(torch.cat(labels) if labels else torch.zeros(0), env).cpu()
    if z.numel() == 0:
        raise ValueError("evaluate: the split has no rows")
    if not torch.isfinite(z).all():
        raise NonFiniteLossError(
            f"evaluate: {int((~torch.isfinite(z)).sum())} of {z.numel()} predictions are NaN/inf",
            step=-1,
            checkpoint=None,
        )
    logloss = float(F.binary_cross_entropy_with_logits(z.double(), y.double()))
    yn = y.numpy()
    auc = float(roc_auc_score(yn, z.numpy())) if 0 < yn.sum() < len(yn) else math.nan
    return EvalResult(logloss=logloss, auc=auc, rows=int(z.numel()), label_rate=float(np.mean(yn)))


def epoch_batches(loader: Any, epoch: int, skip: int) -> Iterator[tuple[int, Batch]]:
    """``(index in epoch, batch)`` of ``loader`` for ``epoch``, starting after ``skip`` batches
    (resume). Calls ``loader.set_epoch(epoch)`` where the loader has it, so the order is a function of
    (seed, epoch) and a resumed run sees the same batches as an uninterrupted one."""
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
    return islice(enumerate(loader), skip, None)


class Progress:
    """tqdm bar on rank 0 with loss and samples/s (global, all ranks); silent elsewhere or if off."""

    def __init__(self, total: int, initial: int, samples_per_step: int, enabled: bool, desc: str) -> None:
        self._bar = None
        self.samples_per_step = samples_per_step
        self._t0 = time.perf_counter()
        self._n0 = initial
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)

    def update(self, step: int, loss: float) -> None:
        if self._bar is None:
            return
        self._bar.update(1)
        if step % 10 == 0:
            dt = max(time.perf_counter() - self._t0, 1e-9)
            rate = (step - self._n0) * self.samples_per_step / dt
            self._bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{rate:,.0f}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@dataclass
class LoopPosition:
    """Where a run stands: steps taken, the epoch, batches done in it, steps skipped on a bad loss.
    Saved with every checkpoint (:meth:`meta`) so a resumed run continues at the same batch."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    skipped: int = 0

    def meta(self) -> dict[str, int]:
        """The checkpoint fields (``step`` is saved by the checkpoint itself)."""
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "skipped_steps": self.skipped}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> LoopPosition:
        return cls(meta["step"], meta["epoch"], meta["batch_in_epoch"], meta["skipped_steps"])


class StepsRun(NamedTuple):
    """What :func:`run_steps` did: the loss of every step taken, their wall time, and the global
    training throughput (samples/s over all ranks; 0 when no step was taken)."""

    losses: list[float]
    seconds: float
    samples_per_s: float


def run_steps(
    model: nn.Module,
    optimizer: Any,
    loader: Any,
    env: DistEnv,
    pos: LoopPosition,
    *,
    total: int,
    stop_at_step: int | None,
    begin_step: Callable[[int], Forward],
    max_loss: float,
    on_nan: str,
    checkpoint_every: int,
    save: Callable[[], Path],
    show_progress: bool,
    desc: str,
    what: str,
    on_bad_step: Callable[[], str] | None = None,
) -> StepsRun:
    """The step loop of both the trainer and the warm-up: epochs of ``loader`` from ``pos`` (updated
    in place) until ``total`` steps, or ``stop_at_step``, with a progress bar ``desc`` if
    ``show_progress``.

    ``begin_step(step)`` runs before each step (learning rate, the warm-up's subnet draw) and returns
    the forward for it. A bad loss (:func:`train_step`) is counted in ``pos.skipped`` under
    ``on_nan="skip"``; under ``"raise"`` the run saves a checkpoint from before the step and raises
    :class:`NonFiniteLossError` naming ``what`` ("training" / "warm-up"), the step, epoch and batch.
    ``on_bad_step()`` runs first: it undoes per-step state a resume must redo and returns extra
    context for the message (", subnet <key>"). ``save()`` checkpoints ``pos`` every
    ``checkpoint_every`` steps (0: never) before the last."""
    losses: list[float] = []
    steps_per_epoch = len(loader)
    batch_size, start_step = 0, pos.step
    progress = Progress(total, start_step, 0, show_progress, desc=desc)
    t0 = time.perf_counter()
    model.train()
    while pos.step < total and (stop_at_step is None or pos.step < stop_at_step):
        for i, batch in epoch_batches(loader, pos.epoch, pos.batch_in_epoch):
            batch = batch.to(env.device)
            batch_size = batch_size or batch.labels.numel()
            forward = begin_step(pos.step)
            loss, applied = train_step(model, optimizer, batch, env, forward, max_loss)
            if not applied:
                if on_nan == "raise":
                    context = on_bad_step() if on_bad_step is not None else ""
                    pos.batch_in_epoch = i  # resume retries this batch
                    path = save()
                    progress.close()
                    raise NonFiniteLossError(
                        f"{what} loss {describe_bad_loss(loss, max_loss)} at step {pos.step + 1} "
                        f"(epoch {pos.epoch}, batch {i}{context}); nothing was updated. A resumable "
                        f"checkpoint from before this step is at {path}. Lower the learning rates, "
                        "check the input rows, or use on_nan='skip'.",
                        step=pos.step + 1,
                        checkpoint=str(path),
                    )
                pos.skipped += 1
            losses.append(loss)
            pos.step += 1
            pos.batch_in_epoch = i + 1
            progress.samples_per_step = batch_size * env.world_size
            progress.update(pos.step, loss)
            if checkpoint_every and pos.step % checkpoint_every == 0 and pos.step < total:
                save()
            if pos.step >= total or (stop_at_step is not None and pos.step >= stop_at_step):
                break
        else:
            if pos.batch_in_epoch < steps_per_epoch:
                raise RuntimeError(
                    f"the training loader yielded {pos.batch_in_epoch} batches in epoch {pos.epoch} but "
                    f"its len() is {steps_per_epoch}; it must yield len() batches every epoch"
                )
        if pos.batch_in_epoch >= steps_per_epoch:  # the epoch is done (also when we stopped at its end)
            pos.epoch, pos.batch_in_epoch = pos.epoch + 1, 0
    if env.device.type == "cuda":  # the last step's backward and update are still queued on the GPU
        torch.cuda.synchronize(env.device)
    seconds = time.perf_counter() - t0
    progress.close()
    rate = (pos.step - start_step) * batch_size * env.world_size / seconds if seconds > 0 else 0.0
    return StepsRun(losses, seconds, rate)
