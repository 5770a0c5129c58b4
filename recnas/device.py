"""Which device recnas runs its models on: ``RECNAS_DEVICE`` = ``auto`` (default) | ``cpu`` | ``cuda``.

The variable is the one ``scripts/setup.sh`` reads to pick the CPU or CUDA build, so one setting
chooses the build and the device:

- ``auto`` (or unset / empty): CUDA where ``torch.cuda.is_available()``, else CPU -- what every
  command did before the variable existed;
- ``cpu``: CPU (and gloo for process groups) even on a GPU host, e.g. the 2-process gloo tests on a
  host with one GPU, which NCCL cannot share between two ranks;
- ``cuda``: CUDA (and NCCL), or a one-line error saying why CUDA is not usable here.

Importing this module loads nothing heavy; :func:`resolve_device` imports torch.
"""

from __future__ import annotations

import os

__all__ = ["DEVICE_ENV", "DEVICE_CHOICES", "resolve_device"]

DEVICE_ENV = "RECNAS_DEVICE"
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(requested: str | None = None, *, setting: str = "device",
                   instead: str = f"use {DEVICE_ENV}=cpu") -> str:
    """``"cuda"`` or ``"cpu"``: ``requested`` (one of :data:`DEVICE_CHOICES`), or ``RECNAS_DEVICE``
    when ``requested`` is ``None``, with ``auto`` resolved by ``torch.cuda.is_available()``.

    Args:
        setting: how an error names ``requested`` (e.g. ``"pipelines/x.yaml: train.device"``).
        instead: the way out an error about unusable CUDA ends with (default: ``use RECNAS_DEVICE=cpu``).

    Raises:
        ValueError: a value outside :data:`DEVICE_CHOICES`, or ``cuda`` where CUDA is not usable
            (a CPU build of torch, or no GPU visible); the message names the setting.
    """
    from_env = requested is None
    raw = os.environ.get(DEVICE_ENV, "") if from_env else requested
    where = f"{DEVICE_ENV}={raw!r}" if from_env else f"{setting} {raw!r}"
    value = (raw or "").strip().lower() or "auto"
    if value not in DEVICE_CHOICES:
        raise ValueError(f"{where}: expected one of {', '.join(DEVICE_CHOICES)}")
    if value == "cpu":
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    if value == "cuda" and not available:
        if torch.version.cuda is None:
            why = (f"this torch ({torch.__version__}) is a CPU build; set up the CUDA build on a GPU host "
                   f"with `{DEVICE_ENV}=cuda bash scripts/setup.sh`")
        else:
            why = (f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU "
                   "(check nvidia-smi and CUDA_VISIBLE_DEVICES)")
        raise ValueError(f"{where}: CUDA is not usable here: {why}; or {instead}")
    return "cuda" if available else "cpu"
