"""Splitting the CTR supernet into sub-supernets: NAS-LID (similarity of LID vectors) and GM-NAS
(similarity of gradients), one procedure with two similarity measures.

A *choice* is one op slot of the supernet: ``(block, "dense_op")`` or ``(block, "sparse_op")``. A
:class:`Region` says which ops a sub-supernet allows on the choices split so far; its
architectures are the space's with those restrictions, and the regions of a split partition the
space, so every architecture belongs to exactly one sub-supernet.

One level of :func:`split_supernet`, for every current sub-supernet:

1. for every choice not yet split (two or more ops allowed) and every op on it: fix the op, draw the
   rest of the architecture inside the region (redrawn until the fixed op is live, i.e. reaches the
   logit), and measure a *signature* on each of ``batches`` batches, averaged:

   - ``lid``: the LID vector -- the MLE LID (:func:`recnas.lid.estimator.lid_mle`, ``k``
     neighbours) of every block's dense output ``(B, d)`` and sparse output ``(B, F * e)``, in
     block order (``2 x num_blocks`` numbers; an output the drawn architecture does not compute
     is left out of that batch's average, and one never computed is 0);
   - ``gm``: the gradient of the batch log loss w.r.t. the dense weights *shared* by the choice's
     ops (every dense weight but the choice's own op modules), flattened.

   The architectures drawn for batch ``j`` are the same for every op of a choice (one seeded
   generator per batch), so ops are compared on the same rest of the network.
2. similarity of two ops = cosine of their signatures; the choice's best bipartition is the one
   with the lowest mean cross-group similarity (all of them when the choice has at most
   ``exhaustive_max`` ops -- the exhaustive min-cut -- else scikit-learn's spectral clustering on
   the similarity shifted into [0, 1]); its *partition score* is that mean.
3. the choice with the lowest score is split: each group becomes a sub-supernet initialised from
   its parent (the parent's dense weights copied; the other group's op modules on that choice
   dropped), sharing the parent's embedding tables.

After each level the new sub-supernets are fine-tuned (an equal share of the fine-tuning steps,
spread evenly over the levels), each on architectures drawn uniformly inside its region.

**What is shared.** The embedding tables hold most of a CTR supernet's memory, and a sub-supernet
differs from its parent in the dense ops it may run, not in its ids, so every sub-supernet holds
the *same* ``SparseArch`` module (one set of tables, same storage); only the dense part is copied.
Fine-tuning trains the dense copies and leaves the shared tables as the parent's warm-up left
them (training them from each sub-supernet in turn would make one group's fine-tuning move the
inputs of the others -- the interference the split is meant to remove). :meth:`SplitSupernet.memory`
counts the parameters of each.

Cost (compute parity): :class:`SplitRecord` counts the forward passes of the measurement, the
backward passes of ``gm`` and the fine-tuning steps, so a split run can be set against a single
supernet given the same number of training steps.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchrec.datasets.utils import Batch

from recnas.lid.config import METHODS, SplitConfig
from recnas.lid.estimator import lid_mle
from recnas.models.layout import liveness
from recnas.models.supernet import Supernet
from recnas.space.space import SearchSpace
from recnas.space.spec import ArchSpec, BlockSpec, SpecError

__all__ = [
    "Choice",
    "Region",
    "SplitConfig",
    "SplitRecord",
    "SplitSupernet",
    "METHODS",
    "lid_vector",
    "op_signatures",
    "best_bipartition",
    "split_supernet",
    "finetune",
    "restricted_copy",
    "save_split",
    "load_split",
]

Choice = tuple[int, str]  # (block index, "dense_op" | "sparse_op")
_KINDS = ("dense_op", "sparse_op")


def _space_ops(space: SearchSpace, kind: str) -> tuple[str, ...]:
    return space.dense_ops if kind == "dense_op" else space.sparse_ops


def choice_name(c: Choice) -> str:
    return f"blocks[{c[0]}].{c[1]}"


@dataclass(frozen=True)
class Region:
    """The architectures of one sub-supernet: the ops allowed on each split choice.

    Attributes:
        allowed: ``((block, kind, ops), ...)`` sorted by choice; choices not listed allow every op
            of the space.
    """

    allowed: tuple[tuple[int, str, tuple[str, ...]], ...] = ()

    def ops(self, space: SearchSpace, c: Choice) -> tuple[str, ...]:
        for b, k, ops in self.allowed:
            if (b, k) == c:
                return ops
        return _space_ops(space, c[1])

    def restrict(self, c: Choice, ops: Sequence[str]) -> Region:
        rest = [a for a in self.allowed if (a[0], a[1]) != c]
        return Region(tuple(sorted([*rest, (c[0], c[1], tuple(ops))])))

    def contains(self, spec: ArchSpec) -> bool:
        return all(getattr(spec.blocks[b], k) in ops for b, k, ops in self.allowed)

    def sample(self, space: SearchSpace, rng: np.random.Generator) -> ArchSpec:
        """``space.sample(rng)`` with every restricted op redrawn uniformly among the allowed ones."""
        spec = space.sample(rng)
        if not self.allowed:
            return spec
        blocks = list(spec.blocks)
        for b, k, ops in self.allowed:
            blocks[b] = BlockSpec(**{**blocks[b].to_dict(), k: ops[int(rng.integers(len(ops)))]})
        return ArchSpec(embedding_dim=spec.embedding_dim, blocks=tuple(blocks), space=spec.space,
                        space_file=spec.space_file)

    def describe(self) -> str:
        if not self.allowed:
            return "all"
        return "; ".join(f"{choice_name((b, k))} in {{{', '.join(ops)}}}" for b, k, ops in self.allowed)

    def to_dict(self) -> list[dict[str, Any]]:
        return [{"block": b, "kind": k, "ops": list(ops)} for b, k, ops in self.allowed]

    @classmethod
    def from_dict(cls, d: Sequence[dict[str, Any]]) -> Region:
        r = cls()
        for a in d:
            r = r.restrict((int(a["block"]), str(a["kind"])), tuple(a["ops"]))
        return r


# -- measurement ------------------------------------------------------------------------------------


def lid_vector(net: Supernet, dense: torch.Tensor, emb: torch.Tensor, spec: ArchSpec, k: int = 20) -> np.ndarray:
    """The LID vector of ``spec`` on one batch, with the weights ``net`` holds for it.

    Args:
        net: the (sub-)supernet; dense ``(B, num_dense)`` and emb ``(B, num_sparse, e_max)`` its inputs.

    Returns:
        ``(2 * num_blocks,)``: ``[LID(y_0), LID(t_0), LID(y_1), ...]`` of each block's dense output
        ``y_i`` ``(B, d)`` and sparse output ``t_i`` ``(B, F, e)`` (flattened), read by forward
        hooks; NaN for an output the architecture does not compute.
    """
    outs: dict[int, tuple[torch.Tensor | None, torch.Tensor | None]] = {}
    hooks = [blk.register_forward_hook(lambda m, i, o, j=j: outs.__setitem__(j, o))
             for j, blk in enumerate(net.dense_arch.blocks)]
    try:
        with torch.no_grad():
            net.dense_forward(dense, emb, spec)
    finally:
        for h in hooks:
            h.remove()
    v = np.full(2 * len(net.dense_arch.blocks), np.nan)
    for j, (y, t) in outs.items():
        if y is not None:
            v[2 * j] = lid_mle(y, k)
        if t is not None:
            v[2 * j + 1] = lid_mle(t, k)
    return v


def _draw_live(region: Region, space: SearchSpace, rng: np.random.Generator, c: Choice, op: str) -> ArchSpec:
    """An architecture of ``region`` with ``op`` on choice ``c``, redrawn (up to 100 times) until that op is live."""
    r = region.restrict(c, (op,))
    spec = r.sample(space, rng)
    for _ in range(100):
        live, _ = liveness(spec)
        if getattr(live[c[0]], c[1]):
            break
        spec = r.sample(space, rng)
    return spec


def _shared_params(net: Supernet, c: Choice) -> list[tuple[str, nn.Parameter]]:
    """Dense weights every op of choice ``c`` shares: all but the choice's own op modules."""
    own = f"blocks.{c[0]}.{'dense_ops' if c[1] == 'dense_op' else 'sparse_ops'}."
    return [(n, p) for n, p in net.dense_arch.named_parameters() if not n.startswith(own)]


@dataclass
class _Inputs:
    dense: torch.Tensor
    emb: torch.Tensor
    labels: torch.Tensor


def _inputs(net: Supernet, batches: Sequence[Batch]) -> list[_Inputs]:
    with torch.no_grad():
        return [_Inputs(b.dense_features, net.sparse_arch(b.sparse_features).detach(), b.labels.float())
                for b in batches]


def op_signatures(net: Supernet, region: Region, space: SearchSpace, c: Choice, inputs: Sequence[_Inputs],
                  method: str, k: int, seed: int) -> tuple[tuple[str, ...], np.ndarray, dict[str, int]]:
    """The signature of every op of choice ``c`` inside ``region`` (module docstring), ``(n_ops, dim)``,
    and the passes it took (``forward``, ``backward``)."""
    ops = region.ops(space, c)
    rows, fwd, bwd = [], 0, 0
    shared = _shared_params(net, c) if method == "gm" else []
    for op in ops:
        acc: list[np.ndarray] = []
        grad = None
        for j, x in enumerate(inputs):
            spec = _draw_live(region, space, np.random.default_rng([seed, c[0], _KINDS.index(c[1]), j]), c, op)
            fwd += 1
            if method == "lid":
                acc.append(lid_vector(net, x.dense, x.emb, spec, k))
                continue
            loss = F.binary_cross_entropy_with_logits(net.dense_forward(x.dense, x.emb, spec), x.labels)
            gs = torch.autograd.grad(loss, [p for _, p in shared], allow_unused=True)
            bwd += 1
            flat = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).detach()
                              for g, (_, p) in zip(gs, shared)])
            grad = flat if grad is None else grad + flat
        if method == "lid":
            a = np.vstack(acc)
            seen = ~np.isnan(a)
            rows.append(np.where(seen, a, 0.0).sum(axis=0) / np.maximum(seen.sum(axis=0), 1))
        else:
            rows.append((grad / len(inputs)).numpy())  # float32, as accumulated
    return ops, np.vstack(rows), {"forward": fwd, "backward": bwd}


def best_bipartition(sim: np.ndarray, exhaustive_max: int = 8, seed: int = 0) -> tuple[tuple[int, ...], tuple[int, ...], float]:
    """The two groups of ``sim``'s items (``(n, n)`` similarity, ``n >= 2``) with the lowest mean
    cross-group similarity, and that mean (the partition score).

    Every bipartition is tried when ``n <= exhaustive_max`` (the first of equal scores, in the
    order where item 0 stays in the first group); otherwise scikit-learn's ``SpectralClustering``
    (2 clusters, precomputed affinity ``(sim + 1) / 2``) gives the groups.
    """
    sim = np.asarray(sim, dtype=np.float64)
    n = sim.shape[0]
    if n < 2 or sim.shape != (n, n):
        raise ValueError(f"best_bipartition: expected a square similarity matrix of >= 2 items, got {sim.shape}")

    def score(a: tuple[int, ...], b: tuple[int, ...]) -> float:
        return float(sim[np.ix_(a, b)].mean())

    if n <= exhaustive_max:
        best = None
        for r in range(0, n - 1):
            for rest in itertools.combinations(range(1, n), r):
                a = (0, *rest)
                b = tuple(i for i in range(n) if i not in a)
                s = score(a, b)
                if best is None or s < best[2] - 1e-12:
                    best = (a, b, s)
        assert best is not None
        return best
    from sklearn.cluster import SpectralClustering

    aff = np.clip((sim + sim.T) / 4.0 + 0.5, 0.0, 1.0)
    labels = SpectralClustering(2, affinity="precomputed", random_state=seed).fit_predict(aff)
    a = tuple(int(i) for i in np.flatnonzero(labels == labels[0]))
    b = tuple(int(i) for i in np.flatnonzero(labels != labels[0]))
    if not b:  # degenerate clustering: cut off the least similar item
        worst = int(np.argmin(sim.sum(axis=1) - np.diag(sim)))
        a, b = tuple(i for i in range(n) if i != worst), (worst,)
    return a, b, score(a, b)


def _cosine(x: np.ndarray) -> np.ndarray:
    from sklearn.metrics.pairwise import cosine_similarity

    return cosine_similarity(x)


# -- sub-supernets ----------------------------------------------------------------------------------


def restricted_copy(parent: Supernet, region: Region) -> Supernet:
    """A copy of ``parent``'s dense part without the op modules ``region`` rules out, over the
    *same* ``sparse_arch`` module (shared tables)."""
    child = copy.deepcopy(parent, memo={id(parent.sparse_arch): parent.sparse_arch})
    child._plans = OrderedDict()
    for b, k, keep in region.allowed:
        blk = child.dense_arch.blocks[b]
        mods = blk.dense_ops if k == "dense_op" else blk.sparse_ops
        for op in list(mods.keys()):
            if op not in keep:
                del mods[op]
    return child


class SplitSupernet(nn.Module):
    """Sub-supernets over one set of embedding tables; a candidate is scored by the one holding it.

    Attributes:
        sparse_arch: the shared tables (the same module object in every sub-supernet).
        subnets: ``nn.ModuleList`` of :class:`~recnas.models.Supernet`, one per region.
        regions: the :class:`Region` of each (they partition the space).
        record: what the split did (:class:`SplitRecord`).

    Drop-in for a supernet where scoring reads inherited weights
    (:class:`recnas.estimators.ScoringContext` uses ``sparse_arch`` and :meth:`extract_dense`).
    """

    def __init__(self, subnets: Sequence[Supernet], regions: Sequence[Region], record: SplitRecord | None = None) -> None:
        super().__init__()
        if len(subnets) != len(regions) or not subnets:
            raise ValueError("SplitSupernet: one region per sub-supernet, at least one")
        if any(s.sparse_arch is not subnets[0].sparse_arch for s in subnets):
            raise ValueError("SplitSupernet: every sub-supernet must hold the same sparse_arch (shared tables)")
        self.subnets = nn.ModuleList(subnets)
        self.sparse_arch = subnets[0].sparse_arch
        self.regions = tuple(regions)
        self.feature_map = subnets[0].feature_map
        self.space = subnets[0].space
        self.record = record

    def route(self, spec: ArchSpec) -> int:
        """The index of the sub-supernet whose region holds ``spec``."""
        for i, r in enumerate(self.regions):
            if r.contains(spec):
                return i
        raise SpecError(f"no sub-supernet holds architecture {spec.key()} (regions: "
                        f"{[r.describe() for r in self.regions]})")

    def subnet_for(self, spec: ArchSpec) -> Supernet:
        return self.subnets[self.route(spec)]

    def forward(self, dense: torch.Tensor, sparse: Any, spec: ArchSpec) -> torch.Tensor:
        return self.subnet_for(spec)(dense, sparse, spec)

    def dense_forward(self, dense: torch.Tensor, emb: torch.Tensor, spec: ArchSpec) -> torch.Tensor:
        return self.subnet_for(spec).dense_forward(dense, emb, spec)

    def extract_dense(self, spec: ArchSpec) -> nn.Module:
        return self.subnet_for(spec).extract_dense(spec)

    def extract(self, spec: ArchSpec) -> nn.Module:
        return self.subnet_for(spec).extract(spec)

    def check(self, spec: ArchSpec) -> None:
        self.subnet_for(spec).check(spec)

    def memory(self) -> dict[str, int]:
        """Parameter counts: the shared tables (once), each sub-supernet's dense part, their sum."""
        tables = sum(p.numel() for p in self.sparse_arch.parameters())
        dense = [sum(p.numel() for p in s.dense_arch.parameters()) for s in self.subnets]
        return {"table_params": tables, "dense_params_total": sum(dense), "subnets": len(dense),
                **{f"dense_params_{i}": d for i, d in enumerate(dense)}}


@dataclass
class SplitRecord:
    """What a split did, for the report and the compute count.

    Attributes:
        method, levels: as configured.
        splits: one dict per split: level, parent region, chosen choice, its groups and score, every
            candidate choice's score, the similarity matrix, seconds and signature floats (the largest ``n_ops x dim`` held at once).
        forward_passes, backward_passes: measurement passes of ``batch_size`` rows (``gm`` only has
            backward passes).
        finetune_steps: fine-tuning steps over all sub-supernets.
        measure_seconds, finetune_seconds: wall time of each stage.
    """

    method: str
    levels: int
    splits: list[dict[str, Any]] = field(default_factory=list)
    forward_passes: int = 0
    backward_passes: int = 0
    finetune_steps: int = 0
    measure_seconds: float = 0.0
    finetune_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("method", "levels", "splits", "forward_passes", "backward_passes",
                                               "finetune_steps", "measure_seconds", "finetune_seconds")}


# -- fine-tuning ------------------------------------------------------------------------------------


def _cycle(batches: Iterable[Batch]) -> Iterator[Batch]:
    while True:
        n = 0
        for b in batches:
            n += 1
            yield b
        if n == 0:
            raise ValueError("fine-tuning: the batch source yields no batches")


def finetune(net: Supernet, region: Region, space: SearchSpace, batches: Iterator[Batch], steps: int, *,
             lr: float, eps: float, seed: int, lr_warmup: float = 0.1) -> list[float]:
    """``steps`` Adagrad steps on the dense weights of ``net`` (tables frozen), each on an architecture
    drawn uniformly inside ``region``, lr on the warm-up's schedule (cosine after a linear ramp)."""
    from recnas.train.distributed import dense_adagrad
    from recnas.train.loop import lr_factor, set_lr

    if steps <= 0:
        return []
    opt = dense_adagrad([p for p in net.dense_arch.parameters()], lr, eps)
    rng = np.random.default_rng(seed)
    losses = []
    net.train()
    for step in range(steps):
        set_lr(opt, lr_factor(step, steps, lr_warmup))
        b = next(batches)
        with torch.no_grad():
            emb = net.sparse_arch(b.sparse_features)
        spec = region.sample(space, rng)
        loss = F.binary_cross_entropy_with_logits(net.dense_forward(b.dense_features, emb, spec), b.labels.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    net.eval()
    return losses


def _shares(total: int, n: int) -> list[int]:
    return [total // n + (1 if i < total % n else 0) for i in range(n)]


# -- the procedure ----------------------------------------------------------------------------------


def split_supernet(net: Supernet, measure_batches: Sequence[Batch], config: SplitConfig, *,
                   finetune_batches: Iterable[Batch] = (), finetune_steps: int = 0, lr: float = 0.01,
                   eps: float = 1e-2, progress: bool = False) -> SplitSupernet:
    """Splits ``net`` (left unchanged: children copy its dense part, share its tables) for
    ``config.levels`` levels and fine-tunes the sub-supernets (module docstring).

    Args:
        net: the warmed-up parent supernet (unsharded).
        measure_batches: at least ``config.batches`` batches; the first ``config.batches`` are used
            for every measurement.
        finetune_batches: the fine-tuning rows, cycled (e.g. the warm-up loader).
        finetune_steps: fine-tuning steps in all (0: none), spread evenly over levels and sub-supernets.
        lr, eps: the dense Adagrad of the fine-tuning.
    """
    import sys

    if len(measure_batches) < config.batches:
        raise ValueError(f"split: {len(measure_batches)} measurement batches given, config.batches={config.batches}")
    space = net.space
    inputs = _inputs(net, list(measure_batches)[: config.batches])
    record = SplitRecord(config.method, config.levels)
    leaves: list[tuple[Region, Supernet]] = [(Region(), net)]
    choices = [(b, k) for b in range(space.num_blocks) for k in _KINDS]
    it = _cycle(finetune_batches) if finetune_steps > 0 else iter(())
    per_level = _shares(finetune_steps, config.levels)
    for level in range(config.levels):
        t0 = time.perf_counter()
        new: list[tuple[Region, Supernet]] = []
        for region, sub in leaves:
            cands = [c for c in choices if len(region.ops(space, c)) >= 2]
            if not cands:
                new.append((region, sub))
                continue
            ts = time.perf_counter()
            scored = []
            sig_floats = 0
            for ci, c in enumerate(cands):
                ops, sig, passes = op_signatures(sub, region, space, c, inputs, config.method, config.k,
                                                 config.seed + 1000 * level)
                record.forward_passes += passes["forward"]
                record.backward_passes += passes["backward"]
                sig_floats = max(sig_floats, sig.size)
                sim = _cosine(sig)
                a, b, s = best_bipartition(sim, config.exhaustive_max, config.seed)
                scored.append((s, ci, c, ops, a, b, sim))
            s, _, c, ops, a, b, sim = min(scored, key=lambda x: (x[0], x[1]))
            groups = (tuple(ops[i] for i in a), tuple(ops[i] for i in b))
            record.splits.append({
                "level": level + 1, "parent": region.describe(), "choice": choice_name(c),
                "groups": [list(g) for g in groups], "score": s,
                "scores": {choice_name(x[2]): x[0] for x in scored},
                "ops": list(ops), "similarity": np.round(sim, 6).tolist(),
                "seconds": time.perf_counter() - ts, "signature_floats": sig_floats,
            })
            if progress:
                print(f"  {config.method} split level {level + 1} [{region.describe()}]: {choice_name(c)} -> "
                      f"{groups[0]} | {groups[1]} (score {s:.4f})", file=sys.stderr, flush=True)
            for g in groups:
                r = region.restrict(c, g)
                new.append((r, restricted_copy(sub, r)))
        record.measure_seconds += time.perf_counter() - t0
        t1 = time.perf_counter()
        fresh = [i for i, (r, s) in enumerate(new) if all(s is not old for _, old in leaves)]
        for i, steps in zip(fresh, _shares(per_level[level], max(len(fresh), 1))):
            r, s = new[i]
            finetune(s, r, space, it, steps, lr=lr, eps=eps, seed=config.seed + 7919 * (level + 1) + i)
            record.finetune_steps += steps
        record.finetune_seconds += time.perf_counter() - t1
        leaves = new
    for _, s in leaves:
        s.eval()
    return SplitSupernet([s for _, s in leaves], [r for r, _ in leaves], record)


# -- saving -----------------------------------------------------------------------------------------

SPLIT_FILE = "split.json"
DENSE_FILE = "dense.pt"


def save_split(split: SplitSupernet, out: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Writes the sub-supernets' dense weights (``dense.pt``) and ``split.json`` (regions, record,
    ``meta``) into ``out``; the tables are the parent's and are not written. ``split.json`` is
    written last, so a folder holding it is complete."""
    import json
    import os

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (DENSE_FILE + ".tmp")
    torch.save({str(i): s.dense_arch.state_dict() for i, s in enumerate(split.subnets)}, tmp)
    os.replace(tmp, out / DENSE_FILE)
    card = {"format": "recnas-split", "regions": [r.to_dict() for r in split.regions],
            "record": split.record.to_dict() if split.record else None, **(meta or {})}
    tmp = out / (SPLIT_FILE + ".tmp")
    tmp.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / SPLIT_FILE)
    return out / SPLIT_FILE


def load_split(out: str | Path, parent: Supernet) -> SplitSupernet:
    """The split saved in ``out`` by :func:`save_split`, rebuilt over ``parent``'s tables (the
    parent it was split from: same space and feature map)."""
    import json

    out = Path(out)
    card = json.loads((out / SPLIT_FILE).read_text())
    if card.get("format") != "recnas-split":
        raise ValueError(f"{out / SPLIT_FILE}: not a recnas split (format={card.get('format')!r})")
    states = torch.load(out / DENSE_FILE, map_location="cpu", weights_only=True)
    regions = [Region.from_dict(d) for d in card["regions"]]
    subnets = []
    for i, r in enumerate(regions):
        s = restricted_copy(parent, r)
        s.dense_arch.load_state_dict(states[str(i)], strict=True)
        subnets.append(s.eval())
    rec = card.get("record")
    return SplitSupernet(subnets, regions, SplitRecord(**rec) if rec else None)
