"""Self-describing, atomic, resumable checkpoints of sharded training runs.

Layout of one checkpoint (a directory under ``RUN_DIR/checkpoints/``)::

    step_00000120/
        meta.json          what this is: kind, step, epoch, loader position, config, spec / space,
                           feature map, world size, versions (human-readable, no pickle)
        rng_rank{r}.json   every RNG of rank r: torch (+cuda), numpy, python, named generators
        .metadata, *.distcp   torch.distributed.checkpoint of {"model": ..., "optim": ...}
    LATEST                 name of the newest complete checkpoint

Tensors go through ``torch.distributed.checkpoint`` (DCP): each rank writes the shards it owns
(TorchRec tables and the fused RowWiseAdagrad state are ``ShardedTensor``s), replicated dense tensors
are written once. A checkpoint is first written to ``step_XXXXXXXX.tmp`` and renamed when every rank
has finished, then ``LATEST`` is replaced atomically: a run killed mid-save keeps the previous one.

World-size rules:
  - *resuming* a run requires the world size it was saved with (the data shards and per-rank RNG
    streams depend on it); :func:`load_checkpoint` raises a clear error otherwise.
  - *reading the weights* (``model`` only) works at any world size, including a plain process with no
    process group: DCP reassembles the shards into whatever tensors the target state dict holds, so
    an unsharded model gets full tables (see ``recnas.train.warmup.load_supernet``).
  - every rank must see ``RUN_DIR`` (one host, or a shared filesystem).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn

from recnas.faults import fault_point

__all__ = [
    "CHECKPOINT_DIR",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "read_meta",
    "load_model_weights",
    "save_weights",
    "capture_rng",
    "restore_rng",
]

CHECKPOINT_DIR = "checkpoints"
FORMAT_VERSION = 1


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def _barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _versions() -> dict[str, str]:
    import torchrec

    import recnas

    return {"torch": torch.__version__, "torchrec": torchrec.__version__, "recnas": recnas.__version__}


# -- RNG state ------------------------------------------------------------------------------------
def capture_rng(generators: dict[str, np.random.Generator | torch.Generator] | None = None) -> dict[str, Any]:
    """Every RNG state of this process as JSON-able data (no pickle).

    ``generators`` are named extra streams (e.g. the warm-up's spec sampler) captured beside the
    global torch / CUDA / numpy / python states.
    """
    np_state = np.random.get_state()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state().tolist(),
        "numpy": [np_state[0], np_state[1].tolist(), *[float(x) if isinstance(x, float) else int(x) for x in np_state[2:]]],
        "python": _py_state_to_json(random.getstate()),
        "generators": {},
    }
    if torch.cuda.is_available():
        out["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    for name, g in (generators or {}).items():
        if isinstance(g, np.random.Generator):
            out["generators"][name] = {"type": "numpy", "state": g.bit_generator.state}
        elif isinstance(g, torch.Generator):
            out["generators"][name] = {"type": "torch", "state": g.get_state().tolist()}
        else:
            raise TypeError(f"capture_rng: generator {name!r} has unsupported type {type(g).__name__}")
    return out


def restore_rng(state: dict[str, Any], generators: dict[str, np.random.Generator | torch.Generator] | None = None) -> None:
    """Inverse of :func:`capture_rng`; ``generators`` are restored in place by name."""
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), int(n[2]), int(n[3]), float(n[4])))
    random.setstate(_py_state_from_json(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])
    for name, g in (generators or {}).items():
        if name not in state["generators"]:
            raise KeyError(f"checkpoint has no RNG state for generator {name!r}")
        saved = state["generators"][name]["state"]
        if isinstance(g, np.random.Generator):
            g.bit_generator.state = saved
        else:
            g.set_state(torch.tensor(saved, dtype=torch.uint8))


def _py_state_to_json(s: tuple) -> list:
    return [s[0], list(s[1]), s[2]]


def _py_state_from_json(s: list) -> tuple:
    return (s[0], tuple(s[1]), s[2])


# -- save / load ----------------------------------------------------------------------------------
def _ckpt_root(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def save_checkpoint(
    run_dir: str | os.PathLike,
    *,
    step: int,
    model: nn.Module,
    optimizer: Any,
    meta: dict[str, Any],
    rng: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Writes ``RUN_DIR/checkpoints/step_{step:08d}`` atomically; collective (every rank calls it).

    Args:
        run_dir: the run's output directory (shared by all ranks).
        step: optimizer steps done; the checkpoint resumes *after* that many steps.
        model: the ``DistributedModelParallel`` (or any module) whose ``state_dict()`` is saved.
        optimizer: its optimizer (``CombinedOptimizer`` incl. the fused table optimizer).
        meta: JSON-able description and progress (kind, epoch, loader position, config, spec, ...).
        rng: this rank's :func:`capture_rng` state.
        keep: how many complete checkpoints to keep (older ones are deleted by rank 0).

    Returns:
        The checkpoint directory.

    Once the checkpoint is complete on every rank, each rank passes the fault point
    ``"<kind>.checkpoint"`` (``meta["kind"]``: ``train.checkpoint`` for the trainer,
    ``warmup.checkpoint`` for the supernet warm-up; see :mod:`recnas.faults`), once per checkpoint.
    """
    root = _ckpt_root(run_dir)
    name = f"step_{step:08d}"
    final = root / name
    state = {"model": model.state_dict(), "optim": optimizer.state_dict()}
    _publish(final, state, {"step": step, **meta}, rank_file=(f"rng_rank{_rank()}.json", json.dumps(rng)))
    if _rank() == 0:
        latest_tmp = root / "LATEST.tmp"
        latest_tmp.write_text(name + "\n")
        os.replace(latest_tmp, root / "LATEST")
        done = sorted(p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
        for old in done[:-keep] if keep > 0 else []:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    _barrier()
    fault_point(f"{meta.get('kind', 'unknown')}.checkpoint")
    return final


def _publish(
    final: Path, state: dict[str, Any], meta: dict[str, Any], rank_file: tuple[str, str] | None = None
) -> None:
    """Writes ``state`` (DCP, every rank) and ``meta.json`` (rank 0) into ``final.tmp``, then renames it
    to ``final`` (rank 0), so a reader never sees a half-written folder; collective. ``rank_file`` is
    an optional (name, text) each rank writes beside the tensors."""
    tmp = final.with_name(final.name + ".tmp")
    if _rank() == 0:
        final.parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
    _barrier()
    dcp.save(state, checkpoint_id=str(tmp))
    if rank_file is not None:
        (tmp / rank_file[0]).write_text(rank_file[1])
    _barrier()
    if _rank() == 0:
        full_meta = {
            "format": "recnas-checkpoint",
            "format_version": FORMAT_VERSION,
            "world_size": _world(),
            "versions": _versions(),
            **meta,
        }
        (tmp / "meta.json").write_text(json.dumps(full_meta, indent=2, sort_keys=True) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint of a run, or ``None`` if it has none."""
    root = _ckpt_root(run_dir)
    latest = root / "LATEST"
    if not latest.exists():
        return None
    path = root / latest.read_text().strip()
    if not (path / "meta.json").exists():
        raise FileNotFoundError(f"{latest} names {path.name}, which is missing or incomplete")
    return path


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The ``meta.json`` of a checkpoint directory, checked to be a recnas checkpoint."""
    p = Path(path) / "meta.json"
    if not p.exists():
        raise FileNotFoundError(f"{Path(path)} is not a recnas checkpoint (no meta.json)")
    meta = json.loads(p.read_text())
    if meta.get("format") != "recnas-checkpoint":
        raise ValueError(f"{p}: not a recnas checkpoint (format={meta.get('format')!r})")
    return meta


def load_checkpoint(
    path: str | os.PathLike, *, model: nn.Module, optimizer: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restores model and optimizer in place from a checkpoint; collective.

    ``model`` / ``optimizer`` must be built and sharded the way the run built them (same spec or
    space, same world size). Returns ``(meta, rng)`` -- this rank's RNG state, for
    :func:`restore_rng` -- so the caller restores its own progress counters and generators.
    """
    path = Path(path)
    meta = read_meta(path)
    if meta["world_size"] != _world():
        raise ValueError(
            f"{path}: saved with world size {meta['world_size']}, resumed with {_world()}; "
            "resume with the same number of processes (the data shards and RNG streams depend on it)"
        )
    state = {"model": model.state_dict(), "optim": optimizer.state_dict()}
    dcp.load(state, checkpoint_id=str(path))
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optim"])
    rng = json.loads((path / f"rng_rank{_rank()}.json").read_text())
    return meta, rng


def save_weights(out: str | os.PathLike, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Writes only the model weights (DCP) plus ``meta.json`` to ``out`` atomically; collective.

    This is the artefact other tools load (e.g. a warmed-up supernet): unlike checkpoints it is not
    rotated away and holds no optimizer state. Read it back with :func:`load_model_weights`.
    """
    final = Path(out)
    _publish(final, {"model": model.state_dict()}, {"weights_only": True, **meta})
    _barrier()
    return final


def load_model_weights(path: str | os.PathLike, model: nn.Module) -> dict[str, Any]:
    """Loads only the model weights of a checkpoint (or :func:`save_weights` output) into an
    *unsharded* ``model`` in this process alone (no collective; any saved world size; the tables are
    reassembled from their shards). Returns the saved meta."""
    path = Path(path)
    meta = read_meta(path)
    state = {"model": model.state_dict()}
    dcp.load(state, checkpoint_id=str(path), no_dist=True)
    model.load_state_dict(state["model"])
    return meta
