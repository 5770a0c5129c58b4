"""What an estimator scores with: data, weights (inherited or fresh), device -- and candidates.

A :class:`ScoringContext` holds the minibatches for the gradient proxies, the validation batches for
the one-shot score, the warmed-up supernet (or ``None``), and whether candidates inherit the
supernet's weights (``init="inherit"``, sub-one-shot) or start from a seeded fresh initialisation
(``init="fresh"``, zero-shot).

For one architecture, :meth:`ScoringContext.candidate` gives a :class:`Candidate`: the *dense part*
of the model (``forward(dense (B, n_dense), emb (B, n_sparse, e)) -> logits (B,)``) and, per batch,
its inputs. The embedding lookups are the dense part's input; they are computed once per batch under
``no_grad`` and shared by every candidate (the supernet's tables at their widest, sliced to the
candidate's ``e``), so the (possibly sharded) tables are never touched by scoring. They can also be
given ready-made (``lookups``: e.g. computed through TorchRec-sharded tables by
:func:`recnas.study.sharded.sharded_scoring_context`); the supernet's tables are then never read.

Scoring never modifies the supernet: estimators take gradients with ``torch.autograd.grad`` (no
``.grad`` is written), and anything that updates weights works on a private copy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torchrec.datasets.utils import Batch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recnas.data.feature_map import FeatureMap
from recnas.space.spec import ArchSpec

__all__ = ["CandidateBatch", "Candidate", "ScoringContext", "INITS"]

INITS = ("inherit", "fresh")


@dataclass(frozen=True)
class CandidateBatch:
    """The inputs of a candidate's dense part for one minibatch.

    Attributes:
        dense: ``(B, n_dense)`` float dense features.
        emb: ``(B, n_sparse, e)`` embedding lookups (no grad; the candidate's embedding width).
        labels: ``(B,)`` float labels in {0, 1}.
        ids: the batch's ``KeyedJaggedTensor`` of sparse ids (keys in feature-map order), used to
            map gradients w.r.t. ``emb`` onto the table rows they belong to; ``None`` if unknown.
    """

    dense: torch.Tensor
    emb: torch.Tensor
    labels: torch.Tensor
    ids: KeyedJaggedTensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class Candidate:
    """One architecture ready to be scored.

    Attributes:
        spec: the architecture.
        module: its dense part, ``forward(dense (B, n_dense), emb (B, n_sparse, e)) -> (B,)``
            logits. With ``init="inherit"`` its parameters hold the supernet's values; treat it as
            read-only (copy it before updating weights).
        batches: the gradient minibatches (``ctx.batches``) as dense-part inputs.
        feature_names: the sparse feature names, in the order of ``emb``'s field axis.
    """

    spec: ArchSpec
    module: nn.Module
    batches: list[CandidateBatch]
    feature_names: list[str]


def _spec_seed(seed: int, spec: ArchSpec) -> int:
    """A per-(seed, architecture) seed, so fresh weights do not depend on scoring order."""
    h = hashlib.sha256(f"{seed}:{spec.key()}".encode()).hexdigest()
    return int(h[:15], 16)


@dataclass
class ScoringContext:
    """Data and weights that estimators score candidates with.

    Attributes:
        feature_map: the dataset's features.
        batches: minibatches for the gradient-based proxies (e.g. 4 x 512 training rows), moved to
            ``device`` once. ZiCo and SiGeo use all of them (at least 2); the single-batch proxies
            use the first.
        val_batches: validation batches for the one-shot score.
        supernet: the warmed-up ``recnas.models.Supernet``, or ``None`` (zero-shot only).
        init: ``"inherit"`` (weights sliced from the supernet: sub-one-shot) or ``"fresh"`` (a
            seeded fresh initialisation of the candidate, and fresh seeded embedding tables:
            zero-shot).
        seed: seeds fresh initialisation (per architecture) and any randomness of an estimator.
        device: where candidates run; ``None``: as ``RECNAS_DEVICE`` says (default ``auto``: CUDA if
            available, else CPU; :func:`recnas.device.resolve_device`).
        lookups: ``{"train": [...], "val": [...]}``, the widest (``e_max``) pooled lookups of
            ``batches`` / ``val_batches``, one ``(B, n_sparse, e_max)`` tensor per batch, computed
            elsewhere (e.g. through sharded tables); ``init="inherit"`` only. ``None``: computed
            from ``supernet.sparse_arch`` when first needed.
        fresh_batches: a stream of further training batches (``get(n)``, ``available``, ``index``:
            :class:`recnas.study.context.FreshBatches`, the rows after ``batches``) for estimators
            that train on new rows, e.g. the one-shot score's ``finetune_rows: fresh``
            (:meth:`fresh_inputs`); ``None``: the context has its fixed batches only. Not usable
            with ready-made ``lookups`` (their tables may be sharded over ranks).
    """

    feature_map: FeatureMap
    batches: Sequence[Batch]
    val_batches: Sequence[Batch] = ()
    supernet: Any = None
    init: Literal["inherit", "fresh"] = "inherit"
    seed: int = 0
    device: torch.device | str | None = None
    lookups: dict[str, Sequence[torch.Tensor]] | None = field(default=None, repr=False)
    fresh_batches: Any = field(default=None, repr=False)
    _fresh_cache: dict[Any, list[CandidateBatch]] = field(default_factory=dict, init=False, repr=False)
    _emb_cache: dict[Any, list[torch.Tensor]] = field(default_factory=dict, init=False, repr=False)
    _sparse_archs: dict[int, nn.Module] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ValueError(f"init: expected one of {INITS}, got {self.init!r}")
        if self.init == "inherit" and self.supernet is None:
            raise ValueError("init='inherit' needs a supernet (pass supernet=..., or use init='fresh')")
        if not self.batches:
            raise ValueError("batches: at least one minibatch is needed to score candidates")
        if self.device is None:
            from recnas.device import resolve_device

            self.device = resolve_device()
        self.device = torch.device(self.device)
        self.batches = [b.to(self.device) for b in self.batches]
        self.val_batches = [b.to(self.device) for b in self.val_batches]
        keys = self.feature_map.sparse_names
        for i, b in enumerate([*self.batches, *self.val_batches]):
            if list(b.sparse_features.keys()) != keys:
                raise ValueError(
                    f"batch {i}: sparse keys {list(b.sparse_features.keys())} do not match the "
                    f"feature map's {keys}"
                )
        if self.lookups is not None:
            self._check_lookups()

    def _check_lookups(self) -> None:
        if self.init != "inherit":
            raise ValueError("lookups: ready-made embedding lookups are the supernet's tables; they need init='inherit'")
        unknown = sorted(set(self.lookups) - {"train", "val"})
        if unknown:
            raise ValueError(f"lookups: unknown keys {unknown}; expected 'train' and 'val'")
        e_max = self.supernet.embedding_dim
        for which, src in (("train", self.batches), ("val", self.val_batches)):
            embs = list(self.lookups.get(which, []))
            if len(embs) != len(src):
                raise ValueError(f"lookups[{which!r}]: {len(embs)} tensors for {len(src)} batches")
            for i, (b, e) in enumerate(zip(src, embs)):
                want = (b.labels.shape[0], self.feature_map.num_sparse, e_max)
                if tuple(e.shape) != want:
                    raise ValueError(f"lookups[{which!r}][{i}]: shape {tuple(e.shape)}, expected {want}")
            self._emb_cache[(which, None)] = [e.detach().to(self.device) for e in embs]

    # -- embeddings --------------------------------------------------------------------------------
    def _fresh_sparse_arch(self, dim: int) -> nn.Module:
        if dim not in self._sparse_archs:
            from recnas.models import SparseArch

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                self._sparse_archs[dim] = SparseArch(self.feature_map, dim).to(self.device)
        return self._sparse_archs[dim]

    def embeddings(self, which: Literal["train", "val"], dim: int) -> list[torch.Tensor]:
        """The embedding lookups of ``batches`` (``"train"``) or ``val_batches``, ``(B, n, dim)`` each.

        Inherited: the supernet's tables (widest), computed once per batch and sliced to ``dim``.
        Fresh: a seeded fresh ``SparseArch`` of width ``dim`` (one per width and context).
        """
        src = self.batches if which == "train" else self.val_batches
        key = (which, None) if self.init == "inherit" else (which, dim)
        if key not in self._emb_cache:
            arch = self.supernet.sparse_arch if self.init == "inherit" else self._fresh_sparse_arch(dim)
            with torch.no_grad():
                self._emb_cache[key] = [
                    arch(b.sparse_features).detach() for b in src
                ]
        return _sliced(self._emb_cache[key], dim)

    # -- candidates --------------------------------------------------------------------------------
    def dense_module(self, spec: ArchSpec) -> nn.Module:
        """The candidate's dense part: inherited (``supernet.extract_dense``) or fresh (seeded)."""
        if self.init == "inherit":
            module = self.supernet.extract_dense(spec)
        else:
            from recnas.models import DenseArch

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_spec_seed(self.seed, spec))
                module = DenseArch(self.feature_map.num_dense, self.feature_map.num_sparse, spec)
        return module.to(self.device).eval()

    def inputs(self, spec: ArchSpec, which: Literal["train", "val"] = "train") -> list[CandidateBatch]:
        """The dense-part inputs of ``spec`` on ``batches`` (or ``val_batches``), without a module."""
        src = self.batches if which == "train" else self.val_batches
        embs = self.embeddings(which, spec.embedding_dim)
        return [
            CandidateBatch(
                dense=b.dense_features,
                emb=e,
                labels=b.labels.float(),
                ids=b.sparse_features,
            )
            for b, e in zip(src, embs)
        ]

    def fresh_inputs(self, spec: ArchSpec, n: int, option: str = "fresh_batches") -> list[CandidateBatch]:
        """The dense-part inputs of ``spec`` on the first ``min(n, available)`` batches of
        ``fresh_batches`` (a reader needing more cycles: step ``i`` reads item
        ``fresh_batches.index(i)``). The embedding lookups are computed once per batch and context
        (the widest, sliced to ``spec``'s width, as for :meth:`embeddings`) and kept with the batch's
        dense features and labels on ``device``: for ``m`` batches of ``B`` rows, ``m x B x
        n_sparse x e_max x 4`` bytes (e.g. 386 x 512 x 26 x 16 x 4 ~ 330 MB), freed with the context.

        Raises:
            ValueError: naming ``option`` (the estimator option that asked), when the context has no
                ``fresh_batches`` or has ready-made ``lookups`` (sharded tables).
        """
        if self.fresh_batches is None:
            raise ValueError(f"{option}: this scoring context has fixed batches only, no stream of further training "
                             "rows (ScoringContext.fresh_batches; the bench and the search supply one)")
        if self.lookups is not None:
            raise ValueError(f"{option}: not available with ready-made embedding lookups (sharded scoring, "
                             "estimator.sharded): the further rows' lookups would need the sharded tables")
        raw = self.fresh_batches.get(n)
        key = ("fresh", None) if self.init == "inherit" else ("fresh", spec.embedding_dim)
        have = self._fresh_cache.setdefault(key, [])
        if len(have) < len(raw):
            dim = spec.embedding_dim
            arch = self.supernet.sparse_arch if self.init == "inherit" else self._fresh_sparse_arch(dim)
            with torch.no_grad():
                for b in raw[len(have):]:
                    b = b.to(self.device)
                    have.append(CandidateBatch(dense=b.dense_features, emb=arch(b.sparse_features).detach(),
                                               labels=b.labels.float()))
        have = have[:len(raw)]
        embs = _sliced([c.emb for c in have], spec.embedding_dim)
        return [CandidateBatch(dense=c.dense, emb=e, labels=c.labels) for c, e in zip(have, embs)]

    def candidate(self, spec: ArchSpec, which: Literal["train", "val"] = "train") -> Candidate:
        """The dense part of ``spec`` and its inputs on ``batches`` (or ``val_batches``)."""
        cbs = self.inputs(spec, which)
        return Candidate(spec, self.dense_module(spec), cbs, self.feature_map.sparse_names)


def _sliced(embs: Sequence[torch.Tensor], dim: int) -> list[torch.Tensor]:
    """The lookups ``embs`` (the widest tables' width) sliced to ``dim``; a ``dim`` wider than them is
    a one-line error."""
    if embs and embs[0].shape[-1] < dim:
        raise ValueError(f"embedding_dim {dim} is wider than the supernet's tables ({embs[0].shape[-1]})")
    return [e[..., :dim] for e in embs]
