"""The settings of a supernet split (NAS-LID / GM-NAS), the ``split:`` section of a bench pipeline.

Kept apart from :mod:`recnas.lid.split` so that reading a pipeline file does not load the models.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["METHODS", "OPTIMIZERS", "SplitConfig"]

METHODS = ("lid", "gm")
OPTIMIZERS = ("continue", "fresh")


@dataclass(frozen=True)
class SplitConfig:
    """How to split (the ``split:`` section of a bench pipeline).

    Attributes:
        method: ``lid`` (NAS-LID: cosine of LID vectors) or ``gm`` (GM-NAS: cosine of gradients).
        levels: split levels; each splits every sub-supernet once (``2**levels`` at most).
        batches: measurement batches per op (NAS-LID: about 50; smaller by default for CPUs).
        batch_size: rows per measurement batch (NAS-LID: 128).
        k: neighbours of the LID estimate (NAS-LID: 20).
        finetune_fraction: share of the warm-up steps given to fine-tuning the sub-supernets; the
            parent's warm-up gets the rest, so parent + fine-tuning = the single supernet's steps.
        exhaustive_max: choices with at most this many ops are split by trying every bipartition.
        seed: seeds the architectures drawn for the measurement and the fine-tuning.
        finetune_optimizer: ``continue`` (default): a sub-supernet's fine-tuning continues its
            parent's dense Adagrad state (the accumulators of the parent's warm-up, or of the
            parent sub-supernet's fine-tuning one level up); ``fresh``: a new Adagrad per
            fine-tuning (the first NAS-LID runs' recipe).
        checkpoint_every: fine-tuning steps between checkpoints of a sub-supernet (0: only when
            its fine-tuning ends); not part of the split's identity (:meth:`identity`).
    """

    method: str = "lid"
    levels: int = 1
    batches: int = 8
    batch_size: int = 128
    k: int = 20
    finetune_fraction: float = 0.2
    exhaustive_max: int = 8
    seed: int = 0
    finetune_optimizer: str = "continue"
    checkpoint_every: int = 25

    def identity(self) -> dict[str, object]:
        """The settings that decide the split's result (every field but ``checkpoint_every``)."""
        from dataclasses import asdict

        d = asdict(self)
        d.pop("checkpoint_every")
        return d

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method: {self.method!r} is not one of {list(METHODS)}")
        if self.levels < 1:
            raise ValueError(f"levels must be >= 1, got {self.levels}")
        if self.batches < 1 or self.batch_size < 3:
            raise ValueError("batches must be >= 1 and batch_size >= 3 (a LID needs three distinct points)")
        if self.k < 2:
            raise ValueError(f"k must be >= 2, got {self.k}")
        if not 0.0 <= self.finetune_fraction < 1.0:
            raise ValueError(f"finetune_fraction must be in [0, 1), got {self.finetune_fraction}")
        if self.finetune_optimizer not in OPTIMIZERS:
            raise ValueError(f"finetune_optimizer: {self.finetune_optimizer!r} is not one of {list(OPTIMIZERS)}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.exhaustive_max < 2:
            raise ValueError(f"exhaustive_max must be >= 2, got {self.exhaustive_max}")
