"""Scoring through the TorchRec-sharded supernet, so that no rank holds all embedding tables.

Every estimator reads the tables only through the scoring batches' pooled lookups
(:meth:`recnas.estimators.ScoringContext.embeddings`): the tables are inherited, never updated by
scoring, and the lookups of the few scoring batches are the same for every candidate. Embedding-row
gradients (ZiCo / SiGeo ``embeddings: rows``) are derived from ``d loss / d lookups`` and the
batch's ids (sum pooling: a row's gradient is the sum over the bags that contain it,
:func:`recnas.estimators._autograd.batch_gradients`), so they need the lookups, never the tables.
SiGeo's ``local_steps`` update a private copy of the dense part only, and the one-shot score's
``finetune_steps`` a private copy of the head, on features computed from the lookups. So every
inherited-weight estimator scores the same from lookups computed anywhere -- except the one-shot
score's ``finetune_rows: fresh``, which reads training rows beyond the scoring batches: their lookups
would need the sharded tables (collectively, on every rank, per candidate), so sharded scoring has no
stream of them and refuses it (``recnas search`` before its warm-up; a context made here raises the
option's one-line error when scored).

:func:`sharded_scoring_context` therefore:

1. builds the supernet with its tables on ``meta`` and wraps it in ``DistributedModelParallel``
   with TorchRec's planner (the warm-up's placement rules: whole tables or row / column shards on
   ranks, never replicated; no table optimizer): each rank allocates only its own shards;
2. loads the warmed-up weights into it with ``torch.distributed.checkpoint`` (collective; each rank
   reads its shards and the dense part, never a full table it does not own);
3. computes the pooled lookups of every scoring batch (training and validation) through the sharded
   collection -- all ranks in lockstep, the same batches on every rank, a few collectives per batch;
4. returns a :class:`~recnas.estimators.ScoringContext` holding those lookups and the supernet's
   dense part (replicated, needed to extract candidates), so each rank then scores its share of the
   candidates alone, with no further collective.

The lookups equal the unsharded tables' to float rounding (bit for bit where a table is placed
whole: FBGEMM sums each bag in the same order as ``EmbeddingBagCollection``); a row-sharded table's
bag sums are added across ranks, in another order.

``estimator.sharded`` (``auto`` | ``true`` | ``false``) chooses: ``auto`` scores sharded under
torchrun (world size > 1) with ``init: inherit``, and unsharded otherwise; ``true`` always shards
(also in one process: a world of one) and is refused with ``init: fresh``, whose fresh seeded tables
are built unsharded on every rank; ``false`` loads the unsharded supernet on every rank (the path
before sharded scoring).

Example (collective under torchrun)::

    >>> env = init_distributed()                                                       # doctest: +SKIP
    >>> ctx, sn = sharded_scoring_context(run_dir, fm, train, valid, env)              # doctest: +SKIP
    >>> sn.local_table_bytes / sn.full_table_bytes                                     # doctest: +SKIP
    0.5
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "SHARDED_VALUES",
    "check_sharded",
    "use_sharded",
    "ShardedSupernet",
    "load_sharded_supernet",
    "sharded_lookups",
    "sharded_scoring_context",
    "local_table_bytes",
]

#: the values of ``estimator.sharded``
SHARDED_VALUES = ("auto", True, False)


def check_sharded(value: Any, init: str, key: str = "estimator.sharded", init_key: str = "estimator.init") -> None:
    """Raises a one-line ``ValueError`` naming ``key`` for a value other than ``auto`` / ``true`` /
    ``false``, or for ``true`` with fresh initialisation."""
    if not (value == "auto" or value is True or value is False):
        raise ValueError(f"{key}: expected auto, true or false, got {value!r}")
    if value is True and init != "inherit":
        raise ValueError(
            f"{key}: true scores through the warmed-up supernet's sharded tables, but {init_key} is {init!r} "
            f"(fresh seeded tables are built unsharded on every rank); use {key}: auto or false"
        )


def use_sharded(value: Any, init: str, world_size: int) -> bool:
    """Whether to score through the sharded supernet: ``true`` -> yes, ``false`` -> no, ``auto`` ->
    with inherited weights under more than one process (:func:`check_sharded` first)."""
    check_sharded(value, init)
    if value == "auto":
        return init == "inherit" and world_size > 1
    return bool(value)


@dataclass
class ShardedSupernet:
    """The warmed-up supernet sharded over the ranks (what :func:`load_sharded_supernet` returns).

    Attributes:
        dmp: the ``DistributedModelParallel`` module (tables sharded, dense part replicated).
        supernet: the ``Supernet`` inside it (its ``sparse_arch`` is the sharded collection; its
            dense part is complete on every rank, so ``extract_dense`` works).
        card: the supernet card (``supernet.json``).
        placement: ``{table: ranks holding a shard of it}``.
        local_table_bytes: bytes of the table shards this rank holds.
        full_table_bytes: bytes of one full copy of every table.
    """

    dmp: Any = field(repr=False)
    supernet: Any = field(repr=False)
    card: dict[str, Any] = field(repr=False)
    placement: dict[str, list[int]]
    local_table_bytes: int
    full_table_bytes: int


def local_table_bytes(module: torch.nn.Module) -> int:
    """Bytes of the embedding-table shards held by this rank: the local shards of every
    ``ShardedTensor`` in ``module``'s state dict (a plain module's tables count in full)."""
    total = 0
    for name, v in module.state_dict().items():
        if hasattr(v, "local_shards"):
            total += sum(s.tensor.numel() * s.tensor.element_size() for s in v.local_shards())
        elif "embedding_bags" in name and isinstance(v, torch.Tensor):
            total += v.numel() * v.element_size()
    return total


def load_sharded_supernet(path: str | os.PathLike, env: Any) -> ShardedSupernet:
    """The warmed-up supernet of ``path`` (a folder holding ``supernet.json``, or the card) with its
    tables sharded over the ranks of ``env``; collective (every rank calls it).

    Tables are placed by TorchRec's planner under the warm-up's rules
    (:data:`recnas.train.distributed.SHARDING_TYPES`: never replicated) and get no optimizer; each
    rank allocates and reads (DCP) only its own shards, at any warm-up world size.
    """
    import torch.distributed.checkpoint as dcp
    from torchrec.distributed.model_parallel import DistributedModelParallel

    from recnas.data.feature_map import FeatureMap
    from recnas.models import Supernet
    from recnas.space.space import SearchSpace
    from recnas.train.checkpoint import read_meta
    from recnas.train.distributed import _NoDataParallel, plan_sharding, table_placement
    from recnas.train.warmup import read_card

    card_path, card = read_card(path)
    fm = FeatureMap.from_dict(card["feature_map"], source=str(card_path))
    space = SearchSpace.from_dict(card["space"], source=str(card_path))
    weights = card_path.parent / card["weights"]
    read_meta(weights)  # a clear error for a missing or foreign weights folder
    net = Supernet(fm, space, device=torch.device("meta"))
    plan = plan_sharding(net, env)
    dmp = DistributedModelParallel(net, device=env.device, plan=plan, data_parallel_wrapper=_NoDataParallel())
    state = {"model": dmp.state_dict()}
    dcp.load(state, checkpoint_id=str(weights))
    dmp.load_state_dict(state["model"])
    dmp.eval()
    e = net.embedding_dim
    full = sum(f.num_embeddings for f in fm.sparse) * e * torch.empty((), dtype=torch.float32).element_size()
    return ShardedSupernet(dmp, dmp.module, card, table_placement(dmp), local_table_bytes(dmp), full)


def sharded_lookups(sn: ShardedSupernet, batches: Sequence[Any], device: torch.device | str) -> list[torch.Tensor]:
    """The pooled ``(B, n_sparse, e_max)`` lookups of ``batches`` through the sharded tables, on
    ``device``; collective: every rank must pass the same number of batches, in the same order (the
    scoring batches are the same on every rank, so each rank gets every batch's full lookups)."""
    out = []
    with torch.no_grad():
        for b in batches:
            out.append(sn.supernet.sparse_arch(b.sparse_features.to(device)).detach().clone())
    return out


def sharded_scoring_context(
    path: str | os.PathLike,
    feature_map: Any,
    batches: Sequence[Any],
    val_batches: Sequence[Any],
    env: Any,
    *,
    seed: int = 0,
) -> tuple[Any, ShardedSupernet]:
    """A :class:`~recnas.estimators.ScoringContext` (``init="inherit"``) over the sharded supernet of
    ``path``: the lookups of ``batches`` and ``val_batches`` computed once through the sharded
    tables (collective), the dense part from the supernet. Returns ``(ctx, sharded supernet)``.

    Raises:
        ValueError: the supernet was warmed up on another feature map than ``feature_map``.
    """
    from recnas.estimators import ScoringContext
    from recnas.identity import check_identity

    sn = load_sharded_supernet(path, env)
    check_identity(sn.card.get("feature_map"), feature_map.to_dict(), f"supernet: {path}",
                   what="was warmed up on data with a different feature map",
                   hint="score with a supernet warmed up on this data")
    device = env.device
    lookups = {"train": sharded_lookups(sn, batches, device), "val": sharded_lookups(sn, val_batches, device)}
    ctx = ScoringContext(feature_map, batches=batches, val_batches=val_batches, supernet=sn.supernet,
                         init="inherit", seed=seed, device=device, lookups=lookups)
    return ctx, sn
