"""Supernet steps that update only the slices a subnet used (the warm-up's dense optimizer).

A subnet reads slices of the supernet's shared tensors (row prefixes, gathered input columns). Left
to autograd, each of those tensors gets a full-size gradient -- zeros outside the slice -- and the
dense Adagrad then reads and writes every element of every such tensor: for NASRec-Small's 52M dense
parameters that zero-filling, scattering and updating was about a third of a warm-up step on CPU.

:class:`SlicedOptimizer` wraps the warm-up's optimizer instead: the forward runs under
:func:`recnas.models.ops.slice_leaves`, so each slice is an autograd leaf of its own; after
backward, the dense Adagrad's own update rule (``torch.optim.adagrad.adagrad``, fused where the
optimizer is) runs on the slices of the parameters and of their ``sum`` state, which are then put
back. Adagrad without weight decay leaves an element with a zero gradient exactly as it is (its sum
gains 0, the parameter moves by 0), and the per-element arithmetic on the slice is that of the
full-tensor kernel, so the weights, the optimizer state (``sum`` and ``step``) and checkpoints are
bit for bit those of the full-tensor update (``tests/test_warmup_sliced.py``). Parameters read
whole (no slice) keep their ordinary gradients and step.

Usage (what :func:`recnas.train.warmup.warmup` does)::

    sliced = SlicedOptimizer(optimizer, env)
    def forward(m, batch):
        with sliced.recording():
            return m(batch.dense_features, batch.sparse_features, spec)
    train_step(model, sliced, batch, env, forward)   # zero_grad, forward, backward, step
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
from torch.optim.adagrad import adagrad

from recnas.models.ops import SliceLeaf, _take, index_runs, slice_leaves
from recnas.train.distributed import DistEnv

__all__ = ["SlicedOptimizer", "dense_adagrad_of"]


def dense_adagrad_of(optimizer: Any) -> torch.optim.Adagrad:
    """The one ``torch.optim.Adagrad`` inside ``optimizer`` (a plain one, or TorchRec's
    ``CombinedOptimizer`` / ``KeyedOptimizerWrapper`` from :func:`recnas.train.distributed.make_optimizer`)."""
    found: list[torch.optim.Adagrad] = []

    def walk(o: Any) -> None:
        if isinstance(o, torch.optim.Adagrad):
            found.append(o)
        elif hasattr(o, "_optimizer"):
            walk(o._optimizer)
        elif hasattr(o, "optimizers"):
            for item in o.optimizers:
                walk(item[1] if isinstance(item, tuple) else item)

    walk(optimizer)
    if len(found) != 1:
        raise ValueError(f"sliced updates need exactly one dense torch.optim.Adagrad in the optimizer, found {len(found)}")
    return found[0]


def _put(w: torch.Tensor, rows: Any, cols: Any, v: torch.Tensor) -> None:
    """``w[rows][:, cols] = v`` for the :data:`recnas.models.layout.Index` forms ``take`` reads."""
    if rows is not None and not isinstance(rows, int):  # gathered rows: update them whole, put them back
        if cols is None:
            w.index_copy_(0, rows, v)
            return
        block = w.index_select(0, rows)
        _put(block, None, cols, v)
        w.index_copy_(0, rows, block)
        return
    target = w if rows is None else w[:rows]
    if cols is None:
        target.copy_(v)
    elif isinstance(cols, int):
        target[:, :cols].copy_(v)
    elif (runs := index_runs(cols)) is not None:  # run by run: rows of contiguous memory
        for a, d, n in runs:
            target[:, a : a + n].copy_(v[:, d : d + n])
    else:
        target.index_copy_(1, cols, v)


class SlicedOptimizer:
    """Proxy of the warm-up optimizer for :func:`recnas.train.loop.train_step`: ``zero_grad`` and
    ``step`` of the wrapped optimizer, plus the Adagrad update of the slices recorded by
    :meth:`recording` since the last ``zero_grad``.

    Args:
        optimizer: the optimizer from :func:`recnas.train.distributed.make_optimizer` (its dense
            Adagrad must have no weight decay: with it, a zero gradient still moves a weight).
        env: the process group; with world size > 1 the slices' gradients are averaged over ranks
            first, as :func:`recnas.train.distributed.sync_dense_grads` averages whole gradients.
    """

    def __init__(self, optimizer: Any, env: DistEnv) -> None:
        self.optimizer = optimizer
        self.env = env
        self.adagrad = dense_adagrad_of(optimizer)
        if len(self.adagrad.param_groups) != 1:
            raise ValueError("sliced updates need the dense Adagrad to have one parameter group")
        group = self.adagrad.param_groups[0]
        if group["weight_decay"] != 0:
            raise ValueError("sliced updates need weight_decay 0 (a zero gradient would still move a weight)")
        self._dense = {id(p) for p in group["params"]}
        self.records: list[SliceLeaf] = []

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    @contextmanager
    def recording(self) -> Iterator[list[SliceLeaf]]:
        """Run the forward inside: the dense parameters' slices become leaves (see the module doc)."""
        with slice_leaves(self.records) as records:
            yield records

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.records.clear()
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.optimizer.step()  # the tables (fused, a no-op here) and any whole-tensor dense gradients
        records = [r for r in self.records if r.leaf.grad is not None]
        self.records.clear()
        if not records:
            return
        seen: set[int] = set()
        for r in records:
            if id(r.param) not in self._dense:
                raise ValueError("sliced update: a sliced parameter is not one of the dense Adagrad's")
            if id(r.param) in seen or r.param.grad is not None:
                raise ValueError("sliced update: a parameter was read twice in one step (sliced and/or whole)")
            seen.add(id(r.param))
        grads = [r.leaf.grad for r in records]
        if self.env.world_size > 1:
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= self.env.world_size
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()
        group = self.adagrad.param_groups[0]
        state = self.adagrad.state
        params, sums, steps, puts = [], [], [], []
        with torch.no_grad():
            for r in records:
                st = state[r.param]
                s_slice = _take(st["sum"], r.rows, r.cols)
                if r.cols is None and isinstance(r.rows, int):  # a row prefix: a contiguous view, in place
                    p_slice = _take(r.param.detach(), r.rows, r.cols)
                else:  # a contiguous copy, put back after the update
                    # the leaf holds the slice's values (the weights have not changed since the forward);
                    # a gather (an index tensor on either axis) made it a copy already, a prefix did not
                    p_slice = r.leaf.detach()
                    if not (isinstance(r.rows, torch.Tensor) or isinstance(r.cols, torch.Tensor)):
                        p_slice, s_slice = p_slice.clone(), s_slice.clone()
                    puts.append((r, p_slice, s_slice))
                params.append(p_slice)
                sums.append(s_slice)
                steps.append(st["step"])
            adagrad(
                params, [g.contiguous() for g in grads], sums, steps,
                fused=group.get("fused"), foreach=group.get("foreach"), differentiable=False,
                has_complex=False, lr=group["lr"], weight_decay=group["weight_decay"],
                lr_decay=group["lr_decay"], eps=group["eps"], maximize=group.get("maximize", False),
            )
            for r, p_slice, s_slice in puts:
                _put(r.param.detach(), r.rows, r.cols, p_slice)
                _put(state[r.param]["sum"], r.rows, r.cols, s_slice)
