"""What an export holds: an architecture spec of a space (``CTRModel``) or TorchRec's DLRM baseline.

``Architecture = ArchSpec | DLRMConfig``. Both are plain, frozen data that rebuild their model from a
feature map (:func:`build_model`), so the exporter, the loader and the production trainer share one
way to turn an export folder back into a module.

Example::

    >>> arch = baseline_architecture("dlrm", fm)                             # doctest: +SKIP
    >>> build_model(arch, fm, torch.device("meta"))                           # doctest: +SKIP
    DLRMBaseline(...)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import nn

from recnas.data.feature_map import FeatureMap
from recnas.export.names import BASELINE_SPACE, BASELINES
from recnas.models import CTRModel, dense_flops_per_example
from recnas.space.spec import ArchSpec
from recnas.train.baselines import DLRMBaseline

__all__ = [
    "Architecture",
    "DLRMConfig",
    "BASELINES",
    "BASELINE_SPACE",
    "baseline_architecture",
    "build_model",
    "architecture_file",
    "describe_model",
]



@dataclass(frozen=True)
class DLRMConfig:
    """TorchRec's DLRM (``torchrec.models.dlrm.DLRM``) at the sizes of its Criteo configuration.

    Attributes:
        embedding_dim: width of every table; equals the bottom MLP's last width.
        dense_arch_layer_sizes: bottom MLP over the dense features (13-512-256-64-16 in DLRM).
        over_arch_layer_sizes: top MLP over the pairwise dot products, ending in one logit.
    """

    embedding_dim: int = 16
    dense_arch_layer_sizes: tuple[int, ...] = (512, 256, 64, 16)
    over_arch_layer_sizes: tuple[int, ...] = (512, 256, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": "dlrm",
            "embedding_dim": self.embedding_dim,
            "dense_arch_layer_sizes": list(self.dense_arch_layer_sizes),
            "over_arch_layer_sizes": list(self.over_arch_layer_sizes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "dlrm config") -> DLRMConfig:
        allowed = {"name", "embedding_dim", "dense_arch_layer_sizes", "over_arch_layer_sizes"}
        unknown = sorted(set(d) - allowed)
        if unknown or d.get("name") != "dlrm":
            raise ValueError(f"{source}: not a DLRM config (keys {sorted(d)}, name {d.get('name')!r})")
        try:
            return cls(
                embedding_dim=int(d["embedding_dim"]),
                dense_arch_layer_sizes=tuple(int(x) for x in d["dense_arch_layer_sizes"]),
                over_arch_layer_sizes=tuple(int(x) for x in d["over_arch_layer_sizes"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{source}: bad DLRM config: {e!r}") from None


Architecture = Union[ArchSpec, DLRMConfig]


def baseline_architecture(name: str, space: str = BASELINE_SPACE) -> Architecture:
    """The architecture of a named baseline.

    ``dlrm`` is TorchRec's DLRM (:class:`DLRMConfig`); ``deepfm`` and ``dcnv2`` are the presets of
    ``space`` (``recnas.space.presets``: the closest designs the space expresses); ``deepfm_lib`` and
    ``dcn_lib`` the library presets (the structure of the libraries' DeepFM / DCN, no space;
    ``space`` is not read).
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {list(BASELINES)}")
    if name == "dlrm":
        return DLRMConfig()
    from recnas.space.presets import LIBRARY_PRESETS, PRESETS

    if name in LIBRARY_PRESETS:
        return LIBRARY_PRESETS[name]()
    from recnas.space.space import SearchSpace

    return PRESETS[name](SearchSpace.load(space))


def build_model(arch: Architecture, feature_map: FeatureMap, device: torch.device | None = None) -> nn.Module:
    """The model of ``arch`` for ``feature_map``: ``forward(dense (B, n_dense), kjt) -> logits (B,)``."""
    if isinstance(arch, ArchSpec):
        return CTRModel(feature_map, arch, device=device)
    return DLRMBaseline(
        feature_map,
        arch.embedding_dim,
        list(arch.dense_arch_layer_sizes),
        list(arch.over_arch_layer_sizes),
        device=device,
    )


def architecture_file(arch: Architecture) -> str:
    """The file an export keeps ``arch`` in: ``spec.json`` or ``dlrm.json``."""
    return "spec.json" if isinstance(arch, ArchSpec) else "dlrm.json"


def _mlp_macs(d_in: int, sizes: tuple[int, ...]) -> int:
    macs = 0
    for d in sizes:
        macs += d_in * d
        d_in = d
    return macs


def describe_model(arch: Architecture, feature_map: FeatureMap, model: nn.Module) -> dict[str, Any]:
    """Name, key, parameter counts and FLOPs per example (2 x multiply-adds + pooling) of a model."""
    tables = sum(f.num_embeddings for f in feature_map.sparse) * arch.embedding_dim
    total = sum(p.numel() for p in model.parameters())
    if isinstance(arch, ArchSpec):
        flops = dense_flops_per_example(feature_map.num_dense, feature_map.num_sparse, arch)
        d = {"kind": "ctr_model", "key": arch.key(), "space": arch.space}
    else:
        n, e = feature_map.num_sparse, arch.embedding_dim
        pairs = (n + 1) * n // 2
        macs = _mlp_macs(feature_map.num_dense, arch.dense_arch_layer_sizes) + pairs * e
        macs += _mlp_macs(e + pairs, arch.over_arch_layer_sizes)
        flops = 2 * macs
        d = {"kind": "dlrm", "key": "dlrm", "space": None}
    pooling = feature_map.num_sparse * arch.embedding_dim
    return {
        **d,
        "embedding_dim": arch.embedding_dim,
        "num_params": total,
        "embedding_params": tables,
        "dense_params": total - tables,
        "flops_per_example": flops + pooling,
    }
