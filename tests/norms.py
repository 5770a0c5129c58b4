"""LayerNorm helpers shared by the model tests: the formula written out, and randomised LN params."""

from __future__ import annotations

import torch


def ln(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm over the last axis written out: ``(h - mean) / sqrt(var + eps) * w + b``, h ``(..., d)``."""
    mu = h.mean(-1, keepdim=True)
    var = ((h - mu) ** 2).mean(-1, keepdim=True)
    return (h - mu) / torch.sqrt(var + eps) * w + b


def randomize_norms(module: torch.nn.Module, seed: int = 0) -> None:
    """Give every LayerNorm weight / bias (``*norm*`` parameters) distinct random values, so tests
    see them used (at init they are 1 and 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name.rsplit(".", 1)[-1]:
                if name.endswith("weight"):
                    p.copy_(torch.rand(p.shape, generator=g) + 0.5)
                else:
                    p.copy_(torch.randn(p.shape, generator=g))
