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

**Fresh rows (``finetune_rows: fresh``, NASRec's way).** ``finetune_rows = "scoring"`` (the
default) is the above. ``"fresh"`` makes step ``i`` read its own new training batch instead: batch
``i`` of the context's stream ``ctx.fresh_batches`` (:class:`recnas.study.context.FreshBatches`:
the training split's rows right after the scoring batches, in file order, batches of the scoring
batch size), so 500 steps of 512 rows read 256k rows, every candidate the same ones. **When the
split has fewer full batches after the scoring ones than steps, the steps cycle over them** (step
``i`` reads batch ``i mod available``; e.g. bench_synth's ~200k training rows hold 386 batches of
512 after the 4 scoring ones, so steps 386-499 reread batches 0-113). The fresh rows are training
rows, so they may include rows the supernet was warmed up on (as in NASRec, whose supernet trained
on the whole training set). The backbone runs once per distinct batch (one forward pass of 512 rows
per step: the cost of this option, hundreds of times that of the default's 4); a batch's head
features are kept only while a later step reads the batch again. The stream's rows are read once
per stream and their lookups computed once per context (:meth:`ScoringContext.fresh_inputs`), so
candidates share them. A context without a stream (e.g. a ``ScoringContext`` built by hand with
fixed batches, or sharded scoring) refuses ``fresh`` with a one-line error naming the option.

The step follows NASRec's public code (``eval_subnet_from_supernet.py`` / ``train_utils.py`` with
``--finetune_whole_supernet 0 --learning_rate 0.04 --max_train_steps 500``): Adagrad with eps 1e-2,
peak lr ``finetune_lr`` (default 0.04, NASRec's setting) with a linear ramp over the first 10 % of
the steps and cosine decay after it, the gradient clipped to norm 5 before each step, mean BCE loss,
no weight decay. Differences: NASRec streams fresh 512-row training batches (500 steps = 256k rows)
where recnas by default cycles over the context's few batches (e.g. 4 x 512 rows; ``finetune_rows:
fresh`` streams new ones, cycling only when the split runs out); NASRec's schedule starts
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

__all__ = ["OneShot", "FINETUNE_LR", "FINETUNE_EPS", "FINETUNE_CLIP", "FINETUNE_RAMP", "FINETUNE_ROWS",
           "head_features", "finetune_head"]

#: NASRec's fine-tuning peak lr (``--learning_rate 0.04`` in its search scripts)
FINETUNE_LR = 0.04
#: NASRec's Adagrad epsilon
FINETUNE_EPS = 1e-2
#: NASRec's gradient clipping (by norm)
FINETUNE_CLIP = 5.0
#: fraction of the steps with a linear lr ramp (NASRec: ``max_train_steps // 10``)
FINETUNE_RAMP = 0.1
#: the values of ``finetune_rows``: the scoring batches (cycled) or fresh training batches
FINETUNE_ROWS = ("scoring", "fresh")


def _head(module: nn.Module) -> nn.Module:
    """The head of a candidate's dense part (``DenseArch.net.head``)."""
    head = getattr(getattr(module, "net", None), "head", None)
    if head is None:
        raise ValueError(f"oneshot finetune_steps: the candidate module {type(module).__name__} has no head "
                         "(expected a recnas DenseArch: module.net.head)")
    return head


class _HeadReader:
    """Reads the head's input features ``[y, flat(t)]`` of ``module`` per batch (forward pre-hook)."""

    def __init__(self, module: nn.Module) -> None:
        self.head = _head(module)
        self.module = module
        self.got: list[Any] = []
        self.handle = self.head.register_forward_pre_hook(lambda _mod, args: self.got.append(args))

    def features(self, cb: CandidateBatch) -> torch.Tensor:
        self.got.clear()
        with torch.no_grad():
            self.module(cb.dense, cb.emb)
        y, t, _cols = self.got[-1]
        return torch.cat([y, t.reshape(t.shape[0], -1)], dim=1).detach()

    def weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Detached copies of the ``(1, k)`` weight columns the head reads and its ``(1,)`` bias
        (after at least one :meth:`features`)."""
        with torch.no_grad():
            w = self.head.sliced(self.got[-1][2])
            return w["weight"].detach().clone(), w["bias"].detach().clone()

    def close(self) -> None:
        self.handle.remove()


def head_features(module: nn.Module, batches: Sequence[CandidateBatch]) -> tuple[list[torch.Tensor], torch.Tensor,
                                                                                  torch.Tensor]:
    """The head's input features of ``module`` on each batch, and the head's (effective) weights.

    Returns:
        ``(features, weight, bias)``: one ``(B, k)`` tensor ``[y, flat(t)]`` per batch (no grad),
        the ``(1, k)`` weight columns the candidate's head reads and the ``(1,)`` bias -- detached
        copies, so ``F.linear(features[i], weight, bias)`` is the module's logits on batch ``i``.
    """
    reader = _HeadReader(module)
    try:
        feats = [reader.features(cb) for cb in batches]
        if not feats:
            raise ValueError("oneshot finetune_steps: no batches to compute the head's features on")
        weight, bias = reader.weights()
    finally:
        reader.close()
    return feats, weight, bias


def finetune_head(features: Sequence[torch.Tensor], labels: Sequence[torch.Tensor], weight: torch.Tensor,
                  bias: torch.Tensor, steps: int, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` Adagrad steps (eps :data:`FINETUNE_EPS`, clipping :data:`FINETUNE_CLIP`, peak ``lr``
    with :data:`FINETUNE_RAMP` ramp and cosine decay) of the logistic head ``(weight, bias)`` on
    ``features`` / ``labels``, cycling over the batches; returns the trained copies (inputs untouched)."""
    n = len(features)
    return _finetune(lambda step: (features[step % n], labels[step % n]), weight, bias, steps, lr)


def _finetune(batch: Any, weight: torch.Tensor, bias: torch.Tensor, steps: int,
              lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`finetune_head` with ``batch(step) -> (features, labels)`` giving each step's rows."""
    from recnas.train.loop import lr_factor, set_lr

    w = weight.detach().clone().requires_grad_(True)
    b = bias.detach().clone().requires_grad_(True)
    opt = torch.optim.Adagrad([w, b], lr=lr, eps=FINETUNE_EPS)
    with torch.enable_grad():
        for step in range(steps):
            feats, labels = batch(step)
            set_lr(opt, lr_factor(step, steps, FINETUNE_RAMP, "cosine"))
            opt.zero_grad(set_to_none=True)
            logits = F.linear(feats, w, b).reshape(-1)
            loss = F.binary_cross_entropy_with_logits(logits, labels.reshape(-1).to(logits.dtype))
            loss.backward()
            torch.nn.utils.clip_grad_norm_([w, b], FINETUNE_CLIP)
            opt.step()
    return w.detach(), b.detach()


class _FreshFeatures:
    """``step -> (features, labels)`` over ``inputs`` (the context's fresh batches, cycled after
    ``len(inputs)`` steps): the backbone runs once per batch, when a step first reads it; its
    features are kept only until the last step that reads that batch again (at most
    ``min(len(inputs), steps - len(inputs))`` batches' features at once)."""

    def __init__(self, reader: _HeadReader, inputs: Sequence[CandidateBatch], steps: int) -> None:
        self.reader, self.inputs, self.steps = reader, inputs, steps
        self.kept: dict[int, torch.Tensor] = {}

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.inputs)
        i = step % n
        feats = self.kept.pop(i, None)
        if feats is None:
            feats = self.reader.features(self.inputs[i])
        if step + n < self.steps:  # a later step reads batch i again
            self.kept[i] = feats
        return feats, self.inputs[i].labels


class OneShot(Estimator):
    """Negated validation log loss at inherited weights (needs a supernet and ``val_batches``).

    Args:
        finetune_steps: 0 (default: no fine-tuning, the score of earlier releases bit for bit) or
            k > 0 steps fine-tuning the head alone on ``ctx.batches`` (cycled) before scoring
            (NASRec's subnet fitness; it used 500). See the module docstring.
        finetune_lr: peak Adagrad lr of those steps; the default 0.04 is NASRec's setting (its
            search scripts' ``--learning_rate 0.04``), not the supernet's warm-up lr. Unused (and
            left out of the estimator's identity) when ``finetune_steps`` is 0.
        finetune_rows: the rows of those steps: ``"scoring"`` (default: ``ctx.batches``, cycled) or
            ``"fresh"`` (one new training batch per step from ``ctx.fresh_batches``, the rows after
            the scoring batches, cycled only when the split runs out: NASRec's way). Unused (and
            left out of the identity) when ``finetune_steps`` is 0; ``"scoring"`` stays out of it.
    """

    name = "oneshot"
    needs_supernet = True
    #: options added after scores were first stored: at these values they stay out of identities
    later_params = {"finetune_steps": 0, "finetune_lr": FINETUNE_LR, "finetune_rows": "scoring"}

    def __init__(self, finetune_steps: int = 0, finetune_lr: float = FINETUNE_LR,
                 finetune_rows: str = "scoring") -> None:
        self.finetune_steps = finetune_steps
        self.finetune_lr = finetune_lr
        self.finetune_rows = finetune_rows

    def check_params(self) -> None:
        """One-line ``ValueError`` naming the parameter for a value that is not allowed."""
        s = self.finetune_steps
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0:
            raise ValueError(f"oneshot finetune_steps: expected an integer >= 0, got {s!r}")
        lr = self.finetune_lr
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (lr > 0) or lr == float("inf"):
            raise ValueError(f"oneshot finetune_lr: expected a positive number, got {lr!r}")
        if not isinstance(self.finetune_rows, str) or self.finetune_rows not in FINETUNE_ROWS:
            raise ValueError(f"oneshot finetune_rows: expected one of {list(FINETUNE_ROWS)}, got {self.finetune_rows!r}")

    def uses_fresh_rows(self) -> bool:
        """Whether scoring reads the context's stream of further training rows (``ctx.fresh_batches``)."""
        return bool(self.finetune_steps) and self.finetune_rows == "fresh"

    def identity_params(self) -> dict[str, Any]:
        """As :meth:`Estimator.identity_params`, and without ``finetune_lr`` and ``finetune_rows``
        when there are no steps (they then change nothing: the scores are those of ``finetune_steps: 0``)."""
        p = super().identity_params()
        if self.finetune_steps == 0:
            p.pop("finetune_lr", None)
            p.pop("finetune_rows", None)
        return p

    def score_spec(self, spec: ArchSpec, ctx: ScoringContext) -> float:
        if not ctx.val_batches:
            raise ValueError("estimator 'oneshot' needs validation batches (ScoringContext.val_batches)")
        if self.finetune_steps:
            return self._finetuned_score(spec, ctx)
        cand = ctx.candidate(spec, which="val")
        return _neg_logloss((cand.module(cb.dense, cb.emb), cb) for cb in cand.batches)

    def _finetuned_score(self, spec: ArchSpec, ctx: ScoringContext) -> float:
        steps, lr = int(self.finetune_steps), float(self.finetune_lr)
        if self.finetune_rows == "fresh":
            fresh = ctx.fresh_inputs(spec, steps, option="oneshot finetune_rows: fresh")
            module = ctx.dense_module(spec)
            reader = _HeadReader(module)
            try:
                val_batches = ctx.inputs(spec, "val")
                val = [reader.features(cb) for cb in val_batches]
                weight, bias = reader.weights()
                w, b = _finetune(_FreshFeatures(reader, fresh, steps), weight, bias, steps, lr)
            finally:
                reader.close()
        else:
            cand = ctx.candidate(spec, which="train")
            train, weight, bias = head_features(cand.module, cand.batches)
            val_batches = ctx.inputs(spec, "val")
            val, _, _ = head_features(cand.module, val_batches)
            w, b = finetune_head(train, [cb.labels for cb in cand.batches], weight, bias, steps, lr)
        return _neg_logloss((F.linear(h, w, b), cb) for h, cb in zip(val, val_batches))


def _neg_logloss(pairs: Any) -> float:
    """Minus the mean BCE over all rows of ``(logits, batch)`` pairs (computed lazily, without grad)."""
    total, rows = 0.0, 0
    with torch.no_grad():
        for logits, cb in pairs:
            total += float(F.binary_cross_entropy_with_logits(logits.reshape(-1), cb.labels, reduction="sum"))
            rows += cb.batch_size
    return -total / rows
