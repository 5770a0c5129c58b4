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

After each level the new sub-supernets are fine-tuned (the fine-tuning steps spread evenly over the
levels, a level's share evenly over the sub-supernets it made; a level with nothing left to split
gives its share to every current sub-supernet), each on architectures drawn uniformly inside its
region. Level ``L + 1`` splits the sub-supernets of level ``L`` as fine-tuned, so a child starts from
its parent's weights after the parent's own fine-tuning.

**Optimizer state** (``finetune_optimizer``). The warm-up's dense optimizer is Adagrad, whose
per-weight accumulators set the step size: a fresh Adagrad's first steps move every weight by about
``lr`` whatever its history, a large kick to weights warmed up for hundreds of steps (the first
one-level runs lost most of the single supernet's ranking to that recipe alone, see
``reports/lid_split/NOTES.md``). By default (``continue``) a sub-supernet's fine-tuning starts from
its parent's accumulators and step counts (the warm-up's last checkpoint for level 1, the parent
sub-supernet's fine-tuning above), as one supernet trained on would; ``fresh`` restores a new
Adagrad per fine-tuning. The lr follows the warm-up's schedule over each fine-tuning's steps.

**Resume.** With a ``workdir`` every unit of work is journalled as it ends (:class:`_Journal`):
each choice measured (its similarity and partition, not its signatures), each split, fine-tuning
checkpoints every ``checkpoint_every`` steps (weights, Adagrad state, generator state) and each
sub-supernet's fine-tuned state. A rerun replays them and computes only what is missing, with the
same result bit for bit (the fine-tuning batches are re-read from the same cycled source).

**Peak memory.** Each choice's measurement runs inside :class:`PeakRSS` (the process's resident-set
high-water mark, reset before and read after); a split's ``peak_rss_bytes`` is the largest of its
choices', and ``signature_bytes`` the largest signature matrix held.

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
    "PeakRSS",
    "parent_optimizer_state",
    "clear_work",
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


OptState = dict[str, dict[str, torch.Tensor]]  # dense param name -> {"sum", "step"}: Adagrad's state


def optimizer_state(opt: torch.optim.Optimizer, net: Supernet) -> OptState:
    """The dense Adagrad state of ``opt`` over ``net.dense_arch``, by parameter name (copies)."""
    out: OptState = {}
    for n, p in net.dense_arch.named_parameters():
        st = opt.state.get(p)
        if st:
            out[n] = {"sum": st["sum"].detach().clone(), "step": st["step"].detach().clone()}
    return out


def parent_optimizer_state(run_dir: str | Path, net: Supernet) -> OptState:
    """The dense Adagrad state a warm-up left in its last checkpoint (``run_dir/checkpoints``), for
    the dense parameters of the unsharded ``net``; raises naming the folder if it has none."""
    import torch.distributed.checkpoint as dcp

    from recnas.train.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(
            f"split.finetune_optimizer=continue: the parent warm-up {run_dir} has no checkpoint holding its "
            f"optimizer state (a reused or cleaned warm-up); warm it up again there or set "
            f"split.finetune_optimizer: fresh")
    state = {"optim": {"state": {f"dense_arch.{n}": {"sum": torch.zeros_like(p), "step": torch.zeros(())}
                                 for n, p in net.dense_arch.named_parameters()}}}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "assuming the intent is to load in a single process"
        dcp.load(state, checkpoint_id=str(ckpt), no_dist=True)
    return {k[len("dense_arch."):]: v for k, v in state["optim"]["state"].items()}


def _make_optimizer(net: Supernet, lr: float, eps: float, state: OptState | None) -> torch.optim.Optimizer:
    from recnas.train.distributed import dense_adagrad

    opt = dense_adagrad([p for p in net.dense_arch.parameters()], lr, eps)
    if state:
        for n, p in net.dense_arch.named_parameters():
            if n in state:  # Adagrad made its state at construction: overwrite it in place
                opt.state[p]["sum"].copy_(state[n]["sum"])
                opt.state[p]["step"].copy_(state[n]["step"])
    return opt


@dataclass
class _Progress:
    """Where a sub-supernet's fine-tuning stands (a checkpoint's content)."""

    step: int = 0
    rng: dict[str, Any] | None = None
    losses: list[float] = field(default_factory=list)


def finetune(net: Supernet, region: Region, space: SearchSpace, batches: Iterator[Batch], steps: int, *,
             lr: float, eps: float, seed: int, lr_warmup: float = 0.1, opt_state: OptState | None = None,
             start: _Progress | None = None, checkpoint_every: int = 0,
             on_checkpoint: Any = None) -> tuple[list[float], OptState]:
    """``steps`` Adagrad steps on the dense weights of ``net`` (tables frozen), each on an architecture
    drawn uniformly inside ``region``, lr on the warm-up's schedule (cosine after a linear ramp).

    Args:
        opt_state: the Adagrad state to continue (:func:`optimizer_state`); ``None``: a fresh one.
        start: resume at ``start.step`` with its generator state and losses (``batches`` must
            then be positioned at that step's batch).
        checkpoint_every, on_checkpoint: ``on_checkpoint(progress, opt_state)`` every
            ``checkpoint_every`` steps (0: never) before the last.

    Returns:
        The losses of all ``steps`` steps and the final optimizer state.
    """
    from recnas.train.loop import lr_factor, set_lr

    opt = _make_optimizer(net, lr, eps, opt_state)
    rng = np.random.default_rng(seed)
    pos = start or _Progress()
    if pos.rng is not None:
        rng.bit_generator.state = pos.rng
    losses = list(pos.losses)
    net.train()
    for step in range(pos.step, steps):
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
        done = step + 1
        if on_checkpoint is not None and checkpoint_every > 0 and done % checkpoint_every == 0 and done < steps:
            on_checkpoint(_Progress(done, rng.bit_generator.state, list(losses)), optimizer_state(opt, net))
    net.eval()
    return losses, optimizer_state(opt, net)


def _shares(total: int, n: int) -> list[int]:
    return [total // n + (1 if i < total % n else 0) for i in range(n)]


# -- peak memory ------------------------------------------------------------------------------------


def _status_kb(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakRSS:
    """The peak resident memory a block of code adds to the process, in bytes (Linux).

    On entry freed heap memory is returned to the system (glibc ``malloc_trim``), the kernel's
    high-water mark is reset (``/proc/self/clear_refs``, value 5) and the resident size read; on
    exit ``peak_bytes = VmHWM - VmRSS(entry)``: the most memory the block held at once beyond what
    the process held before it (memory freed before the block but kept by an allocator can still
    hide part of it, so it is a lower bound). ``None`` where ``/proc`` does not offer it."""

    def __enter__(self) -> PeakRSS:
        self.peak_bytes: int | None = None
        self._base: int | None = None
        try:  # hand freed heap pages back first, so that memory the block reuses counts as its own
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self._base = _status_kb("VmRSS")
        except OSError:
            self._base = None
        return self

    def __exit__(self, *exc: Any) -> None:
        hwm = _status_kb("VmHWM")
        if self._base is not None and hwm is not None:
            self.peak_bytes = max(hwm - self._base, 0) * 1024


# -- the procedure ----------------------------------------------------------------------------------

JOURNAL_FILE = "journal.jsonl"


class _Journal:
    """The split's work, one JSON line per finished unit, in ``workdir/journal.jsonl``, plus the
    sub-supernets' states (``L<level>_<i>.pt`` when fine-tuned, ``L<level>_<i>.ckpt.pt`` mid-way).

    Line kinds: ``settings`` (first line), ``choice`` (one choice of one sub-supernet measured:
    similarity, groups, score, passes), ``split`` (a sub-supernet split: the choice picked),
    ``steps`` (fine-tuning steps ``[from, to)`` of one sub-supernet run in this process, written at
    each checkpoint and at its end), ``finetuned`` (a sub-supernet's fine-tuning done, its state saved).
    A rerun replays the lines instead of computing them again."""

    def __init__(self, workdir: Path | None, settings: dict[str, Any]) -> None:
        import json

        self.dir = workdir
        self.lines: list[dict[str, Any]] = []
        if workdir is None:
            return
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / JOURNAL_FILE
        if path.exists():
            raw = path.read_text().splitlines()
            for i, line in enumerate(raw):
                try:
                    self.lines.append(json.loads(line))
                except json.JSONDecodeError:
                    if i != len(raw) - 1:  # only a torn last line (a kill mid-write) is dropped
                        raise ValueError(f"{path}: line {i + 1} is not JSON") from None
            if self.lines and self.lines[0].get("settings") != json.loads(json.dumps(settings)):
                raise ValueError(f"split: {workdir} holds the work of a split with other settings "
                                 f"({self.lines[0].get('settings')}) than asked now ({settings}); delete it")
        if not self.lines:
            self.add({"kind": "settings", "settings": settings})

    def add(self, line: dict[str, Any]) -> None:
        import json
        import os

        self.lines.append(json.loads(json.dumps(line)))
        if self.dir is None:
            return
        with open(self.dir / JOURNAL_FILE, "a") as f:
            f.write(json.dumps(line, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def find(self, **match: Any) -> dict[str, Any] | None:
        for line in self.lines:
            if all(line.get(k) == v for k, v in match.items()):
                return line
        return None

    def save(self, name: str, obj: Any) -> None:
        import os

        if self.dir is None:
            return
        tmp = self.dir / (name + ".tmp")
        torch.save(obj, tmp)
        os.replace(tmp, self.dir / name)

    def load(self, name: str) -> Any:
        if self.dir is None or not (self.dir / name).exists():
            return None
        return torch.load(self.dir / name, map_location="cpu", weights_only=False)


def _prime(net: Supernet, x: _Inputs) -> None:
    """Loads what the measurement's first pass would load (scikit-learn's modules, the kernels of a
    forward and backward pass on 3 rows), so that :class:`PeakRSS` counts the measurement, not imports."""
    _cosine(np.eye(2))
    best_bipartition(np.eye(2))
    lid_mle(torch.randn(5, 2, generator=torch.Generator().manual_seed(0)), 2)
    spec = net.space.sample(np.random.default_rng(0))
    loss = net.dense_forward(x.dense[:3], x.emb[:3], spec).sum()
    torch.autograd.grad(loss, [p for p in net.dense_arch.parameters() if p.requires_grad], allow_unused=True)


def _skip(it: Iterator[Batch], n: int) -> Iterator[Batch]:
    for _ in range(n):
        next(it)
    return it


def split_supernet(net: Supernet, measure_batches: Sequence[Batch], config: SplitConfig, *,
                   finetune_batches: Iterable[Batch] = (), finetune_steps: int = 0, lr: float = 0.01,
                   eps: float = 1e-2, progress: bool = False, parent_opt_state: OptState | None = None,
                   workdir: str | Path | None = None, identity: dict[str, Any] | None = None) -> SplitSupernet:
    """Splits ``net`` (left unchanged: children copy its dense part, share its tables) for
    ``config.levels`` levels and fine-tunes the sub-supernets (module docstring).

    Args:
        net: the warmed-up parent supernet (unsharded).
        measure_batches: at least ``config.batches`` batches; the first ``config.batches`` are used
            for every measurement.
        finetune_batches: the fine-tuning rows, cycled (e.g. the warm-up loader); re-iterable.
        finetune_steps: fine-tuning steps in all (0: none), spread evenly over the levels and, in a
            level, over the sub-supernets made there (a level that splits nothing gives its steps
            to every current sub-supernet), so they always add up to ``finetune_steps``.
        lr, eps: the dense Adagrad of the fine-tuning.
        parent_opt_state: the parent's dense Adagrad state (:func:`parent_optimizer_state`), which
            the level-1 sub-supernets continue under ``finetune_optimizer: continue`` (``None``: fresh).
        workdir: where the work is journalled (:class:`_Journal`); a rerun with the same folder
            resumes: choices measured, splits made and fine-tuning steps done are read, not redone.
        identity: the settings the journal must match (default ``config.identity()``).

    Fault points (:mod:`recnas.faults`): ``split.measure`` (a choice's similarity journalled),
    ``split.partition`` (a sub-supernet's split journalled), ``split.checkpoint`` (a fine-tuning
    checkpoint written), ``split.finetuned`` (a sub-supernet's fine-tuning done and saved).
    """
    import sys

    from recnas.faults import fault_point

    if len(measure_batches) < config.batches:
        raise ValueError(f"split: {len(measure_batches)} measurement batches given, config.batches={config.batches}")
    journal = _Journal(Path(workdir) if workdir is not None else None, identity or config.identity())
    space = net.space
    inputs = _inputs(net, list(measure_batches)[: config.batches])
    record = SplitRecord(config.method, config.levels)
    _prime(net, inputs[0])
    continue_opt = config.finetune_optimizer == "continue"
    # (region, sub-supernet, its Adagrad state or None)
    leaves: list[tuple[Region, Supernet, OptState | None]] = [(Region(), net, parent_opt_state if continue_opt else None)]
    choices = [(b, k) for b in range(space.num_blocks) for k in _KINDS]
    per_level = _shares(finetune_steps, config.levels)
    consumed = 0  # fine-tuning batches drawn before the current sub-supernet's
    for level in range(config.levels):
        t0 = time.perf_counter()
        new: list[tuple[Region, Supernet, OptState | None, bool]] = []  # ..., made at this level
        for region, sub, opt_state in leaves:
            key = region.describe()
            cands = [c for c in choices if len(region.ops(space, c)) >= 2]
            if not cands:
                new.append((region, sub, opt_state, False))
                continue
            scored = []
            peak = 0
            for ci, c in enumerate(cands):
                done = journal.find(kind="choice", level=level + 1, region=key, choice=choice_name(c))
                if done is None:
                    ts = time.perf_counter()
                    with PeakRSS() as one:
                        ops, sig, passes = op_signatures(sub, region, space, c, inputs, config.method, config.k,
                                                         config.seed + 1000 * level)
                        sim = _cosine(sig)
                        a, b, sc = best_bipartition(sim, config.exhaustive_max, config.seed)
                    done = {"kind": "choice", "level": level + 1, "region": key, "choice": choice_name(c),
                            "ops": list(ops), "similarity": np.round(sim, 6).tolist(), "a": list(a),
                            "b": list(b), "score": sc, "forward": passes["forward"],
                            "backward": passes["backward"], "signature_floats": int(sig.size),
                            "signature_bytes": int(sig.nbytes), "seconds": time.perf_counter() - ts,
                            "peak_rss_bytes": one.peak_bytes}
                    del sig
                    journal.add(done)
                    fault_point("split.measure")
                record.forward_passes += done["forward"]
                record.backward_passes += done["backward"]
                peak = max(peak, done["peak_rss_bytes"] or 0)
                scored.append((done["score"], ci, c, tuple(done["ops"]), tuple(done["a"]), tuple(done["b"]), done))
            s, _, c, ops, a, b, _ = min(scored, key=lambda x: (x[0], x[1]))
            groups = (tuple(ops[i] for i in a), tuple(ops[i] for i in b))
            chosen = [x[6] for x in scored if x[2] == c][0]
            if journal.find(kind="split", level=level + 1, region=key) is None:
                journal.add({"kind": "split", "level": level + 1, "region": key, "choice": choice_name(c),
                             "groups": [list(g) for g in groups]})
                fault_point("split.partition")
            record.splits.append({
                "level": level + 1, "parent": key, "choice": choice_name(c),
                "groups": [list(g) for g in groups], "score": s,
                "scores": {choice_name(x[2]): x[0] for x in scored},
                "ops": list(ops), "similarity": chosen["similarity"],
                "seconds": sum(x[6]["seconds"] for x in scored),
                "signature_floats": max(x[6]["signature_floats"] for x in scored),
                "signature_bytes": max(x[6].get("signature_bytes", 0) for x in scored),
                # the measurement's own peak: the largest of its choices' (each in this or an earlier process)
                "peak_rss_bytes": peak if any(x[6].get("peak_rss_bytes") is not None for x in scored) else None,
            })
            if progress:
                print(f"  {config.method} split level {level + 1} [{key}]: {choice_name(c)} -> "
                      f"{groups[0]} | {groups[1]} (score {s:.4f})", file=sys.stderr, flush=True)
            for g in groups:
                r = region.restrict(c, g)
                st = None if opt_state is None else {n: v for n, v in opt_state.items()}
                new.append((r, restricted_copy(sub, r), st, True))
        record.measure_seconds += time.perf_counter() - t0
        t1 = time.perf_counter()
        fresh = [i for i, x in enumerate(new) if x[3]] or list(range(len(new)))
        for i, steps in zip(fresh, _shares(per_level[level], len(fresh))):
            r, sub, opt_state, made = new[i]
            name = f"L{level + 1}_{i}"
            if steps > 0:
                if journal.find(kind="finetuned", level=level + 1, index=i) is not None:
                    saved = journal.load(name + ".pt")
                    if saved is None:
                        raise FileNotFoundError(f"split: {journal.dir} journals {name} as fine-tuned but "
                                                f"{name}.pt is missing; delete the folder")
                    sub.dense_arch.load_state_dict(saved["dense"], strict=True)
                    opt_state = saved["optim"]
                else:
                    ck = journal.load(name + ".ckpt.pt")
                    start = None
                    if ck is not None:
                        sub.dense_arch.load_state_dict(ck["dense"], strict=True)
                        opt_state = ck["optim"]
                        start = _Progress(ck["step"], ck["rng"], ck["losses"])
                    begin = start.step if start else 0
                    it = _skip(_cycle(finetune_batches), consumed + begin)
                    mark = [begin]

                    def on_ck(pos: _Progress, st: OptState, name: str = name, sub: Supernet = sub,
                              level: int = level, i: int = i, mark: list[int] = mark) -> None:
                        journal.save(name + ".ckpt.pt", {"dense": sub.dense_arch.state_dict(), "optim": st,
                                                         "step": pos.step, "rng": pos.rng, "losses": pos.losses})
                        journal.add({"kind": "steps", "level": level + 1, "index": i, "from": mark[0], "to": pos.step})
                        mark[0] = pos.step
                        fault_point("split.checkpoint")

                    losses, st = finetune(sub, r, space, it, steps, lr=lr, eps=eps,
                                          seed=config.seed + 7919 * (level + 1) + i, opt_state=opt_state,
                                          start=start, checkpoint_every=config.checkpoint_every if journal.dir else 0,
                                          on_checkpoint=on_ck)
                    opt_state = st if continue_opt else None
                    journal.save(name + ".pt", {"dense": sub.dense_arch.state_dict(), "optim": opt_state,
                                                "losses": losses})
                    journal.add({"kind": "steps", "level": level + 1, "index": i, "from": mark[0], "to": steps})
                    journal.add({"kind": "finetuned", "level": level + 1, "index": i, "region": r.describe(),
                                 "steps": steps})
                    fault_point("split.finetuned")
                if not continue_opt:
                    opt_state = None
                new[i] = (r, sub, opt_state, made)
            consumed += steps
            record.finetune_steps += steps
        record.finetune_seconds += time.perf_counter() - t1
        leaves = [(r, s, o) for r, s, o, _ in new]
    for _, s, _ in leaves:
        s.eval()
    return SplitSupernet([s for _, s, _ in leaves], [r for r, _, _ in leaves], record)


def clear_work(workdir: str | Path) -> None:
    """Removes the sub-supernets' states from a finished split's work folder (the journal stays)."""
    for p in Path(workdir).glob("*.pt"):
        p.unlink()


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
