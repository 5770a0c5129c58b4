"""Hand-designed CTR models as specs of a search space: the baselines a searched model is compared to.

Every block of a spec runs one dense and one sparse op and the head reads the last block's dense
*and* sparse outputs (``spaces/README.md``), so a preset is the closest analogue of the well-known
design that the space can express, not a byte-for-byte copy:

- widths are the space's choices closest to the published ones (ties go to the larger);
- a design with fewer layers than ``num_blocks`` repeats its last dense layer; one with more drops
  its earliest layers;
- blocks whose sparse output only feeds the head use ``efc`` over the raw embeddings (node 0) with
  the smallest field count, the closest the space has to "no sparse transformation";
- switches are off unless the design needs them.

Where the space lacks an op or switch the design needs, the preset raises
:class:`~recnas.space.spec.SpecError` saying what is missing.

The **library presets** (:data:`LIBRARY_PRESETS`: ``deepfm_lib``, ``dcn_lib``) are not specs of a
space: they mirror the structure of the models users train from a library (deepctr-torch 0.3.0's
``DeepFM`` and ``DCN`` with their defaults): as many blocks as the library model has layers, its
widths, and ``norm: none`` blocks (no LayerNorm, as the library). No shipped space holds them (the
spaces fix 7 blocks and a LayerNorm after every linear map); ``CTRModel`` builds them as any spec.
How they still differ from the library models, and the measurements that chose them:
``reports/presets/NOTES.md``.

Example::

    >>> from recnas.space import SearchSpace
    >>> space = SearchSpace.load("nasrec_small")
    >>> arch = dlrm_like(space)
    >>> space.contains(arch), [b.dense_op for b in arch.blocks]
    (True, ['fc', 'fc', 'fc', 'fc', 'dot', 'fc', 'fc'])
"""

from __future__ import annotations

from typing import Callable

from recnas.space.space import SearchSpace
from recnas.space.spec import ArchSpec, BlockSpec, SpecError

__all__ = ["dlrm_like", "deepfm_like", "dcnv2_like", "wide_deep_like", "PRESETS", "deepfm_lib", "dcn_lib",
           "LIBRARY_PRESETS"]

# Widths of the published designs (Criteo configurations).
_DLRM_BOTTOM = (512, 256, 64, 16)  # DLRM Criteo-Kaggle bottom MLP 13-512-256-64-16
_DLRM_TOP = (512, 256)  # top MLP 512-256-1 (the head is the final "-1")
_DEEPFM_DNN = (400, 400, 400)  # DeepFM: 3 hidden layers of 400
_DCNV2_CROSS_LAYERS = 3  # DCN-v2: 3 cross layers on the full-width input, then the deep part
_DCNV2_DNN = (400, 400, 400)
_WIDE_DEEP_DNN = (1024, 512, 256)  # Wide & Deep: 1024-512-256


def _closest(choices: tuple[int, ...], target: int) -> int:
    return min(choices, key=lambda c: (abs(c - target), -c))


def _fit(design: tuple[int, ...], n: int) -> tuple[int, ...]:
    """``n`` widths from ``design``: drop the earliest layers, or repeat the last one."""
    if n <= len(design):
        return design[len(design) - n :]
    return design + (design[-1],) * (n - len(design))


def _require(space: SearchSpace, preset: str, *, dense: tuple[str, ...] = (), deep_fm: bool = False) -> None:
    missing = [op for op in dense if op not in space.dense_ops]
    if missing:
        raise SpecError(
            f"{preset} is not expressible in space {space.name!r}: it needs the dense op(s) {missing}, "
            f"the space has {list(space.dense_ops)}"
        )
    if "efc" not in space.sparse_ops:
        raise SpecError(f"{preset} is not expressible in space {space.name!r}: it needs the sparse op 'efc'")
    if deep_fm and True not in space.deep_fm:
        raise SpecError(f"{preset} is not expressible in space {space.name!r}: it needs the deep_fm switch on")


def _block(
    space: SearchSpace,
    dense_op: str,
    width: int,
    dense_in: tuple[int, ...],
    *,
    sparse_in: tuple[int, ...] = (0,),
    sparse_dim: int | None = None,
    deep_fm: bool = False,
) -> BlockSpec:
    return BlockSpec(
        dense_op=dense_op,
        sparse_op="efc",
        dense_dim=_closest(space.dense_dims, width),
        sparse_dim=space.sparse_dims[0] if sparse_dim is None else _closest(space.sparse_dims, sparse_dim),
        dense_in=dense_in,
        sparse_in=sparse_in,
        dense_sparse_interact=False if False in space.dense_sparse_interact else True,
        deep_fm=deep_fm if deep_fm in space.deep_fm else not deep_fm,
    )


def _arch(space: SearchSpace, blocks: list[BlockSpec], embedding_dim: int = 16) -> ArchSpec:
    arch = ArchSpec(_closest(space.embedding_dims, embedding_dim), tuple(blocks), space=space.name, space_file=space.file)
    space.validate(arch)  # a preset outside its space is a bug here, not the user's
    return arch


def dlrm_like(space: SearchSpace) -> ArchSpec:
    """DLRM (Naumov et al., 2019): bottom MLP on dense features, dot interaction, top MLP.

    Blocks ``0..k-1`` are ``fc`` (the bottom MLP 512-256-64-16 on node 0's dense features), block
    ``k`` is ``dot`` over the bottom output and the raw embeddings (its width is the first top
    layer, 512), the rest ``fc`` (256). ``k = min(4, num_blocks - 2)`` (0 with one block). Needs
    ``fc`` and ``dot``.
    """
    _require(space, "dlrm_like", dense=("fc", "dot"))
    n = space.num_blocks
    k = max(0, min(len(_DLRM_BOTTOM), n - 2))
    bottom = _DLRM_BOTTOM[len(_DLRM_BOTTOM) - k :]
    top = _fit(_DLRM_TOP, n - k)
    blocks = [_block(space, "fc", w, (i,)) for i, w in enumerate(bottom)]
    blocks.append(_block(space, "dot", top[0], (k,), sparse_in=(0,)))
    blocks += [_block(space, "fc", w, (k + 1 + i,)) for i, w in enumerate(top[1:])]
    return _arch(space, blocks)


def deepfm_like(space: SearchSpace) -> ArchSpec:
    """DeepFM (Guo et al., 2017): an MLP over [dense features, embeddings] plus an FM term.

    Block 0 is ``sum`` (``relu(W1 x) + relu(W2 flat(embeddings))``, the DNN's input layer), the
    rest ``fc`` (DNN widths 400 -> the closest choice). The last block turns ``deep_fm`` on with its
    sparse op ``efc`` over the raw embeddings, so the FM term is added just before the head. Needs
    ``sum``, ``fc`` (with more than one block) and the ``deep_fm`` switch.
    """
    n = space.num_blocks
    _require(space, "deepfm_like", dense=("sum",) + (("fc",) if n > 1 else ()), deep_fm=True)
    widths = _fit(_DEEPFM_DNN, n)
    blocks = [
        _block(
            space,
            "sum" if i == 0 else "fc",
            w,
            (i,),
            sparse_dim=26 if i == n - 1 else None,  # FM over ~one field per Criteo feature
            deep_fm=i == n - 1,
        )
        for i, w in enumerate(widths)
    ]
    return _arch(space, blocks)


def dcnv2_like(space: SearchSpace) -> ArchSpec:
    """DCN-v2 (Wang et al., 2021), stacked: input layer, cross layers, then a deep MLP.

    Block 0 is ``sum`` over dense features and flattened embeddings at the largest width (the
    stacked input ``x0``), then up to 3 ``cross`` blocks at that width, then ``fc`` blocks (400 ->
    the closest choice); with few blocks the deep part keeps at least one block from 3 on. Needs
    ``sum``, ``cross`` and (with more than two blocks) ``fc``.
    """
    n = space.num_blocks
    if n < 2:
        raise SpecError(
            f"dcnv2_like is not expressible in space {space.name!r}: it needs at least 2 blocks "
            "(an input layer over the embeddings, then cross layers)"
        )
    n_deep = 0 if n == 2 else max(1, n - 1 - _DCNV2_CROSS_LAYERS)
    n_cross = n - 1 - n_deep
    _require(space, "dcnv2_like", dense=("sum", "cross") + (("fc",) if n_deep else ()))
    width = space.dense_dims[-1]
    blocks = [_block(space, "sum", width, (0,))]
    blocks += [_block(space, "cross", width, (1 + i,)) for i in range(n_cross)]
    blocks += [_block(space, "fc", w, (1 + n_cross + i,)) for i, w in enumerate(_fit(_DCNV2_DNN, n_deep))]
    return _arch(space, blocks)


def wide_deep_like(space: SearchSpace) -> ArchSpec:
    """Wide & Deep (Cheng et al., 2016): a deep MLP over [dense, embeddings] plus a wide linear part.

    Block 0 is ``sum`` over dense features and flattened embeddings, the rest ``fc`` (1024-512-256,
    the last width repeated). The wide part is the head's linear map over the last block's sparse
    output, ``efc`` over the raw embeddings (a linear model of the categorical features). Needs
    ``sum`` and ``fc`` (with more than one block).
    """
    n = space.num_blocks
    _require(space, "wide_deep_like", dense=("sum",) + (("fc",) if n > 1 else ()))
    widths = _fit(_WIDE_DEEP_DNN, n)
    blocks = [
        _block(space, "sum" if i == 0 else "fc", w, (i,), sparse_dim=26 if i == n - 1 else None)
        for i, w in enumerate(widths)
    ]
    return _arch(space, blocks)


#: Preset name -> function(space) -> ArchSpec.
PRESETS: dict[str, Callable[[SearchSpace], ArchSpec]] = {
    "dlrm": dlrm_like,
    "deepfm": deepfm_like,
    "dcnv2": dcnv2_like,
    "wide_deep": wide_deep_like,
}


# -- library presets: the structure of the libraries' models, outside any space -------------------
_LIB_DEEPFM_DNN = (256, 128)  # deepctr-torch DeepFM's dnn_hidden_units default
_LIB_DCN_DNN = (128, 128)  # deepctr-torch DCN's dnn_hidden_units default
_LIB_DCN_INPUT = 128  # width of the input layer the cross layer reads (chosen on validation, see below)
_LIB_FM_FIELDS = 26  # fields of the FM / linear part's efc (Criteo's 26 categorical features)


def _lib_block(dense_op: str, width: int, dense_in: tuple[int, ...], *, sparse_dim: int = 16,
               deep_fm: bool = False) -> BlockSpec:
    return BlockSpec(dense_op=dense_op, sparse_op="efc", dense_dim=width, sparse_dim=sparse_dim,
                     dense_in=dense_in, sparse_in=(0,), deep_fm=deep_fm, norm="none")


def deepfm_lib(embedding_dim: int = 16) -> ArchSpec:
    """DeepFM as deepctr-torch builds it by default: a 256-128 MLP over [dense, embeddings] plus FM.

    Block 0 is ``sum`` 256 (``relu(W1 x) + relu(W2 flat(embeddings))``, the MLP's first layer),
    block 1 ``fc`` 128 with ``deep_fm`` on over ``efc`` (26 fields) of the raw embeddings; the head's
    linear map over that ``efc`` output is the linear part. Every block ``norm: none``. Differences
    from the library's model (first layer as a sum of two relus, FM over learned field mixes,
    nn.Linear init, recnas's training recipe) are listed in ``reports/presets/NOTES.md``.
    """
    w1, w2 = _LIB_DEEPFM_DNN
    return ArchSpec(embedding_dim, (
        _lib_block("sum", w1, (0,)),
        _lib_block("fc", w2, (1,), sparse_dim=_LIB_FM_FIELDS, deep_fm=True),
    ))


def dcn_lib(embedding_dim: int = 16) -> ArchSpec:
    """DCN as deepctr-torch builds it by default, in parallel form: cross and deep part side by side.

    Block 0 is ``sum`` 128 (the input layer ``x0`` over [dense, flat(embeddings)]), block 1 one
    ``cross`` layer on ``x0`` (``u * (W1 u + b1) + u``, ``u = W0 x0``), block 2 the first deep layer
    (``fc`` 128 on ``x0``), block 3 ``fc`` 128 over [cross output, deep layer 1], whose sparse op
    ``efc`` (26 fields) of the raw embeddings gives the head a linear part. Every block ``norm:
    none``. One recnas cross layer, not the library's two: recnas's cross multiplies its own
    projected input, so two stacked ones form degree-4 products and diverged without LayerNorm in
    1 of 5 seeds (with LayerNorm they trained worse); see ``reports/presets/NOTES.md``.
    """
    d1, d2 = _LIB_DCN_DNN
    return ArchSpec(embedding_dim, (
        _lib_block("sum", _LIB_DCN_INPUT, (0,)),
        _lib_block("cross", _LIB_DCN_INPUT, (1,)),
        _lib_block("fc", d1, (1,)),
        _lib_block("fc", d2, (2, 3), sparse_dim=_LIB_FM_FIELDS),
    ))


#: Library preset name -> function() -> ArchSpec (specs of no space; ``norm: none`` blocks).
LIBRARY_PRESETS: dict[str, Callable[[], ArchSpec]] = {"deepfm_lib": deepfm_lib, "dcn_lib": dcn_lib}
