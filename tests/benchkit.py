"""The tiny benchmark pipeline the bench tests build on (700 synthetic rows, the tiny space)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def tiny_bench_pipeline(tmp: Path, out: str, cache: Path, *, num_archs: int, checkpoint_every: int = 0,
                        n_boot: int = 50, **extra: Any) -> Path:
    """Writes ``tmp/<out>.yaml``: ``num_archs`` architectures x seeds 0, 1, one epoch at batch 32,
    warm-ups at 0 and 50 %, 2 x 32 scoring rows; ``extra`` replaces whole top-level sections."""
    d = {
        "data": {"synth_rows": 700, "hash_size": 50, "cache": str(cache), "name": "tiny"},
        "space": "tiny",
        "num_archs": num_archs,
        "sample_seed": 3,
        "train": {"epochs": 1, "batch_size": 32, "seeds": [0, 1], "checkpoint_every": checkpoint_every, "threads": 1},
        "warmup": {"fractions": [0.0, 0.5], "batch_size": 32},
        "scoring": {"batches": 2, "batch_size": 32, "val_batches": 2, "threads": 1},
        "stats": {"n_boot": n_boot},
        "output": str(tmp / out),
    }
    d.update(extra)
    p = tmp / f"{out}.yaml"
    p.write_text(yaml.safe_dump(d))
    return p
