"""The one-shot score: validation log loss of the candidate with weights inherited from the supernet.

``oneshot = -(sum over val_batches of BCE) / rows`` (negated: higher = better).

**Fine-tuning the head (NASRec's subnet fitness, issue 18).** ``finetune_steps = 0`` (the default)
scores the inherited weights as they are: the score of earlier releases, bit for bit, cached under
the same key. ``finetune_steps = k > 0`` first fine-tunes only the candidate's final linear layer
(the head: ``logit = W [last dense output, flat(last sparse output)] + b``) for ``k`` steps on the
scoring context's training batches (``ctx.batches``, the same rows the gradient proxies use), every
other weight inherited and frozen, then scores the validation log loss with the fine-tuned head.

How: the backbone is frozen, so the head's input features are computed once per batch (one
forward pass of the inherited candidate per training and per validation batch, under ``no_grad``)
and the head is trained on them as a logistic regression. The head's weight and bias are private
copies: the supernet and the candidate module are never modified. The steps run over the training
batches in their order, cycling (step ``i`` uses batch ``i mod len(ctx.batches)``) when there are
more steps than batches. Nothing is drawn at random (no shuffling, no dropout), so the score is a
deterministic function of the context (its batches, supernet and seed) and the options.

The step follows NASRec's public code (``eval_subnet_from_supernet.py`` / ``train_utils.py`` with
``--finetune_whole_supernet 0 --learning_rate 0.04 --max_train_steps 500``): Adagrad with eps 1e-2,
peak lr ``finetune_lr`` (default 0.04, NASRec's setting) with a linear ramp over the first 10 % of
the steps and cosine decay after it, the gradient clipped to norm 5 before each step, mean BCE loss,
no weight decay. Differences: NASRec streams fresh 512-row training batches (500 steps = 256k rows)
where recnas cycles over the context's few batches (e.g. 4 x 512 rows); NASRec's schedule starts
from 1e-8 and decays to 1e-8 (here the ramp starts at ``lr / ramp_steps`` and the decay ends at 0:
:func:`recnas.train.loop.lr_factor`); NASRec evaluates on ~150 x 8192 validation rows, recnas on
``ctx.val_batches``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from recnas.estimators.base import Estimator

if TYPE_CHECKING:
    from recnas.estimators.context import CandidateBatch, ScoringContext
    from recnas.space.spec import ArchSpec

__all__ = ["OneShot", "FINETUNE_LR", "FINETUNE_EPS", "FINETUNE_CLIP", "FINETUNE_RAMP", "head_features",
           "finetune_head"]

#: NASRec's fine-tuning peak lr (``--learning_rate 0.04`` in its search scripts)
FINETUNE_LR = 0.04
#: NASRec's Adagrad epsilon
FINETUNE_EPS = 1e-2
#: NASRec's gradient clipping (by norm)
FINETUNE_CLIP = 5.0
#: fraction of the steps with a linear lr ramp (NASRec: ``max_train_steps // 10``)
FINETUNE_RAMP = 0.1


def _head(module: nn.Module) -> nn.Module:
    """The head of a candidate's dense part (``DenseArch.net.head``)."""
    head = getattr(getattr(module, "net", None), "head", None)
    if head is None:
        raise ValueError(f"oneshot finetune_steps: the candidate module {type(module).__name__} has no head "
                         "(expected a recnas DenseArch: module.net.head)")
    return head


def head_features(module: nn.Module, batches: Sequence[CandidateBatch]) -> tuple[list[torch.Tensor], torch.Tensor,
                                                                                  torch.Tensor]:
    """The head's input features of ``module`` on each batch, and the head's (effective) weights.

    Returns:
        ``(features, weight, bias)``: one ``(B, k)`` tensor ``[y, flat(t)]`` per batch (no grad),
        the ``(1, k)`` weight columns the candidate's head reads and the ``(1,)`` bias -- detached
        copies, so ``F.linear(features[i], weight, bias)`` is the module's logits on batch ``i``.
    """
    head = _head(module)
    got: list[Any] = []

    def grab(_mod: nn.Module, args: tuple) -> None:
        got.append(args)

    handle = head.register_forward_pre_hook(grab)
    feats = []
    try:
        with torch.no_grad():
            for cb in batches:
                got.clear()
                module(cb.dense, cb.emb)
                y, t, _cols = got[-1]
                feats.append(torch.cat([y, t.reshape(t.shape[0], -1)], dim=1).detach())
    finally:
        handle.remove()
    if not got:
        raise ValueError("oneshot finetune_steps: no batches to compute the head's features on")
    with torch.no_grad():
        w = head.sliced(got[-1][2])
        weight, bias = w["weight"].detach().clone(), w["bias"].detach().clone()
    return feats, weight, bias


def finetune_head(features: Sequence[torch.Tensor], labels: Sequence[torch.Tensor], weight: torch.Tensor,
                  bias: torch.Tensor, steps: int, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` Adagrad steps (eps :data:`FINETUNE_EPS`, clipping :data:`FINETUNE_CLIP`, peak ``lr``
    with :data:`FINETUNE_RAMP` ramp and cosine decay) of the logistic head ``(weight, bias)`` on
    ``features`` / ``labels``, cycling over the batches; returns the trained copies (inputs untouched)."""
    w = weight.detach().clone().requires_grad_(True)
    b = bias.detach().clone().requires_grad_(True)
    opt = torch.optim.Adagrad([w, b], lr=lr, eps=FINETUNE_EPS)
    with torch.enable_grad():
        _steps(opt, features, labels, w, b, steps)
    return w.detach(), b.detach()


def _steps(opt: torch.optim.Optimizer, features: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
           w: torch.Tensor, b: torch.Tensor, steps: int) -> None:
    from recnas.train.loop import lr_factor, set_lr

    for step in range(steps):
        i = step % len(features)
        set_lr(opt, lr_factor(step, steps, FINETUNE_RAMP, "cosine"))
        opt.zero_grad(set_to_none=True)
        logits = F.linear(features[i], w, b).reshape(-1)
        loss = F.binary_cross_entropy_with_logits(logits, labels[i].reshape(-1).to(logits.dtype))
        loss.backward()
        torch.nn.utils.clip_grad_norm_([w, b], FINETUNE_CLIP)
        opt.step()


class OneShot(Estimator):
    """Negated validation log loss at inherited weights (needs a supernet and ``val_batches``).

    Args:
        finetune_steps: 0 (default: no fine-tuning, the score of earlier releases bit for bit) or
            k > 0 steps fine-tuning the head alone on ``ctx.batches`` (cycled) before scoring
            (NASRec's subnet fitness; it used 500). See the module docstring.
        finetune_lr: peak Adagrad lr of those steps; the default 0.04 is NASRec's setting (its
            search scripts' ``--learning_rate 0.04``), not the supernet's warm-up lr. Unused (and
            left out of the estimator's identity) when ``finetune_steps`` is 0.
    """

    name = "oneshot"
    needs_supernet = True
    #: options added after scores were first stored: at these values they stay out of identities
    later_params = {"finetune_steps": 0, "finetune_lr": FINETUNE_LR}

    def __init__(self, finetune_steps: int = 0, finetune_lr: float = FINETUNE_LR) -> None:
        self.finetune_steps = finetune_steps
        self.finetune_lr = finetune_lr

    def check_params(self) -> None:
        """One-line ``ValueError`` naming the parameter for a value that is not allowed."""
        s = self.finetune_steps
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0:
            raise ValueError(f"oneshot finetune_steps: expected an integer >= 0, got {s!r}")
        lr = self.finetune_lr
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (lr > 0) or lr == float("inf"):
            raise ValueError(f"oneshot finetune_lr: expected a positive number, got {lr!r}")

    def identity_params(self) -> dict[str, Any]:
        """As :meth:`Estimator.identity_params`, and without ``finetune_lr`` when there are no steps
        (the lr then changes nothing: the scores are those of ``finetune_steps: 0``)."""
        p = super().identity_params()
        if self.finetune_steps == 0:
            p.pop("finetune_lr", None)
        return p

    def score_spec(self, spec: ArchSpec, ctx: ScoringContext) -> float:
        if not ctx.val_batches:
            raise ValueError("estimator 'oneshot' needs validation batches (ScoringContext.val_batches)")
        if self.finetune_steps:
            return self._finetuned_score(spec, ctx)
        cand = ctx.candidate(spec, which="val")
        total, rows = 0.0, 0
        with torch.no_grad():
            for cb in cand.batches:
                logits = cand.module(cb.dense, cb.emb).reshape(-1)
                total += float(F.binary_cross_entropy_with_logits(logits, cb.labels, reduction="sum"))
                rows += cb.batch_size
        return -total / rows

    def _finetuned_score(self, spec: ArchSpec, ctx: ScoringContext) -> float:
        cand = ctx.candidate(spec, which="train")
        train, weight, bias = head_features(cand.module, cand.batches)
        val_batches = ctx.inputs(spec, "val")
        val, _, _ = head_features(cand.module, val_batches)
        w, b = finetune_head(train, [cb.labels for cb in cand.batches], weight, bias,
                             int(self.finetune_steps), float(self.finetune_lr))
        total, rows = 0.0, 0
        with torch.no_grad():
            for h, cb in zip(val, val_batches):
                logits = F.linear(h, w, b).reshape(-1)
                total += float(F.binary_cross_entropy_with_logits(logits, cb.labels, reduction="sum"))
                rows += cb.batch_size
        return -total / rows
