"""The weight-sharing supernet: every architecture of a search space in one module.

Weight sharing (``spaces/README.md``): each block holds the largest version of every op of the
space; a subnet uses the first ``dense_dim`` / ``sparse_dim`` / ``e`` units of each layer (elastic
widths) and, for each input, the slots of the nodes it connects (one slot per earlier node, as wide
as that node's largest output; see :mod:`recnas.models.layout`). Tables are ``e_max`` wide; a
subnet reads their first ``e`` columns.

The per-spec index tensors are compiled once per ``(spec.key(), device)`` and kept in a bounded
LRU cache; that is the module's only Python state that changes across forward calls.

Example::

    >>> import numpy as np
    >>> from recnas.data.batch import random_batch
    >>> from recnas.data.feature_map import DenseFeature, SparseFeature
    >>> fm = FeatureMap("x", dense=(DenseFeature("I1"),), sparse=(SparseFeature("C1", 100),))
    >>> space = SearchSpace.load("tiny")
    >>> net = Supernet(fm, space)
    >>> spec = space.sample(np.random.default_rng(0))
    >>> batch = random_batch(fm, 4)
    >>> logits = net(batch.dense_features, batch.sparse_features, spec)
    >>> logits.shape
    torch.Size([4])
    >>> model = net.extract(spec)  # a CTRModel with the inherited weights: same predictions
    >>> bool(torch.allclose(model(batch.dense_features, batch.sparse_features), logits))
    True
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recnas.data.feature_map import FeatureMap
from recnas.models.blocks import ElasticDenseArch
from recnas.models.ctr_model import CTRModel, DenseArch
from recnas.models.layout import BlockLayout, NetLayout, NetPlan, check_spec, compile_plan, liveness
from recnas.models.sparse_arch import SparseArch, table_name
from recnas.space.space import SearchSpace
from recnas.space.spec import ArchSpec

__all__ = ["Supernet", "space_layout"]

PLAN_CACHE_SIZE = 1024


def space_layout(num_dense: int, num_sparse: int, space: SearchSpace) -> NetLayout:
    """The supernet's layout: every op of ``space`` at its largest size, a slot for every earlier node."""
    e_max = max(space.embedding_dims)
    d_max = max(space.dense_dims)
    s_max = max(space.sparse_dims)
    interact = True in space.dense_sparse_interact
    deep_fm = True in space.deep_fm
    dense_w = [num_dense if num_dense > 0 else e_max]
    fields = [num_sparse]
    blocks = []
    for i in range(space.num_blocks):
        blocks.append(
            BlockLayout(
                dense_ops=tuple(space.dense_ops),
                sparse_ops=tuple(space.sparse_ops),
                dense_dim=d_max,
                sparse_dim=s_max,
                dense_slots=tuple(enumerate(dense_w)),
                sparse_slots=tuple(enumerate(fields)),
                interact=interact,
                deep_fm=deep_fm,
            )
        )
        dense_w.append(d_max)
        fields.append(s_max + int(interact))
    return NetLayout(e_max, num_dense, num_sparse, tuple(blocks), dense_w[-1], fields[-1])


def _own(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a contiguous tensor of its own: a view or a parameter is copied, a fresh one kept."""
    if t._base is not None or isinstance(t, nn.Parameter) or not t.is_contiguous():
        return t.detach().clone(memory_format=torch.contiguous_format)
    return t.detach()


class Supernet(nn.Module):
    """All architectures of ``space`` over one set of shared weights.

    Args:
        feature_map: the dataset's features; one ``max(space.embedding_dims)``-wide table each.
        space: the search space; every spec passed in must lie in it.
        device: where parameters live (``torch.device("meta")`` for ``DistributedModelParallel``).

    ``forward(dense, sparse, spec)``: dense ``(B, num_dense)``, sparse ``KeyedJaggedTensor`` ->
    logits ``(B,)`` of the subnet ``spec``. Only the weights the subnet uses enter the graph, so the
    others get no gradient (wrap with ``find_unused_parameters=True`` under DDP).
    """

    def __init__(self, feature_map: FeatureMap, space: SearchSpace, device: torch.device | None = None) -> None:
        super().__init__()
        self.feature_map = feature_map
        self.space = space
        self.layout = space_layout(feature_map.num_dense, feature_map.num_sparse, space)
        self.embedding_dim = self.layout.embedding_dim
        self.sparse_arch = SparseArch(feature_map, self.embedding_dim, device)
        self.dense_arch = ElasticDenseArch(self.layout, device)
        self._plans: OrderedDict[tuple[str, torch.device], NetPlan] = OrderedDict()

    # -- specs ------------------------------------------------------------------------------------
    def check(self, spec: ArchSpec) -> None:
        """Raises :class:`~recnas.space.spec.SpecError` naming the choice if ``spec`` is not a subnet."""
        check_spec(self.layout, spec, what="supernet")
        self.space.validate(spec)

    def plan(self, spec: ArchSpec, device: torch.device) -> NetPlan:
        """The compiled index tensors of ``spec`` on ``device`` (validated and cached on first use)."""
        k = (spec.key(), device)
        p = self._plans.get(k)
        if p is not None:
            self._plans.move_to_end(k)
            return p
        self.check(spec)
        p = compile_plan(self.layout, spec, device)
        self._plans[k] = p
        if len(self._plans) > PLAN_CACHE_SIZE:
            self._plans.popitem(last=False)
        return p

    # -- forward ----------------------------------------------------------------------------------
    def forward(self, dense: torch.Tensor, sparse: KeyedJaggedTensor, spec: ArchSpec) -> torch.Tensor:
        return self.dense_forward(dense, self.sparse_arch(sparse), spec)

    def dense_forward(self, dense: torch.Tensor, emb: torch.Tensor, spec: ArchSpec) -> torch.Tensor:
        """dense ``(B, num_dense)``, emb ``(B, num_sparse, e_max)`` -> logits ``(B,)``."""
        p = self.plan(spec, emb.device)
        if p.e_rows is not None:
            emb = emb[..., : p.e]
        return self.dense_arch(dense, emb, p)

    # -- extraction -------------------------------------------------------------------------------
    def extract_dense(self, spec: ArchSpec) -> DenseArch:
        """The dense part of ``spec`` with the inherited weights (copies, no tables).

        ``extract_dense(spec)(dense, emb[..., :e])`` equals ``dense_forward(dense, emb, spec)``.
        """
        device = self._dense_device()
        p = self.plan(spec, device)
        # built on meta (no initialisation to overwrite) and handed the slices themselves: a gather
        # (index_select) is already a fresh tensor, a view or a whole parameter is copied once
        arch = DenseArch(self.feature_map.num_dense, self.feature_map.num_sparse, spec, torch.device("meta"))
        with torch.no_grad():
            state = {f"net.{k}": _own(v) for k, v in self.dense_arch.sliced_state(p).items()}
        arch.load_state_dict(state, strict=True, assign=True)
        return arch

    def extract(self, spec: ArchSpec) -> CTRModel:
        """A standalone :class:`CTRModel` of ``spec`` with the inherited weights (tables' first ``e`` columns).

        Needs the supernet's tables as plain (unsharded) ``EmbeddingBagCollection`` weights; for a
        sharded supernet use :meth:`extract_dense` plus the tables from its state dict.
        """
        device = self._dense_device()
        model = CTRModel(self.feature_map, spec, device=torch.device("meta"))
        model.dense_arch = self.extract_dense(spec)
        model.sparse_arch = SparseArch(self.feature_map, spec.embedding_dim, device)
        bags = getattr(self.sparse_arch.ebc, "embedding_bags", None)
        if bags is None:
            raise RuntimeError("extract: the supernet's tables are sharded; use extract_dense() and the state dict")
        e = spec.embedding_dim
        with torch.no_grad():
            for f in self.feature_map.sparse_names:
                t = table_name(f)
                model.sparse_arch.ebc.embedding_bags[t].weight.copy_(bags[t].weight[:, :e])
        return model

    def fresh_dense(self, spec: ArchSpec, seed: int) -> DenseArch:
        """A freshly initialised dense part of ``spec`` (its own sizes; seeded), e.g. for zero-shot scoring."""
        self.check(spec)
        device = self._dense_device()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            arch = DenseArch(self.feature_map.num_dense, self.feature_map.num_sparse, spec, torch.device("cpu"))
        return arch.to(device)

    def subnet_parameters(self, spec: ArchSpec) -> list[tuple[str, nn.Parameter]]:
        """``(name, parameter)`` of the dense parameters ``spec`` reads (any slice of them).

        Ops of ``spec`` that cannot reach the logit are not run, so their weights are not listed.
        """
        self.check(spec)
        used = []
        live, _ = liveness(spec)
        for i, (b, lv) in enumerate(zip(spec.blocks, live)):
            pre = f"dense_arch.blocks.{i}."
            want = []
            if lv.dense_op:
                want.append(f"dense_ops.{b.dense_op}.")
            if lv.sparse_op:
                want.append(f"sparse_ops.{b.sparse_op}.")
            if lv.deep_fm:
                want.append("deep_fm.")
            if lv.interact:
                want.append("interact.")
            used += [pre + w for w in want]
        used.append("dense_arch.head.")
        return [(n, p) for n, p in self.named_parameters() if any(n.startswith(u) for u in used)]

    def _dense_device(self) -> torch.device:
        return self.dense_arch.head.weight.device
