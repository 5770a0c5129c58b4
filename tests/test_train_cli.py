"""``recnas arch train`` and ``recnas supernet warmup`` in real subprocesses: results line, clear
errors, and a warm-up killed at a checkpoint that resumes to the state of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from recnas.data import ParquetBatchLoader, load_prepared, prepare_synthetic
from recnas.space.space import SearchSpace
from recnas.space.spec import ArchSpec, BlockSpec
from recnas.train.checkpoint import latest_checkpoint
from recnas.train.warmup import WarmupConfig, warmup

SPEC = ArchSpec(
    embedding_dim=8,
    blocks=(BlockSpec("fc", "efc", dense_dim=16, sparse_dim=4, dense_in=(0,), sparse_in=(0,)),),
)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_synthetic(tmp_path_factory.mktemp("synthetic"), 3000, seed=3, hash_size=300)


def recnas(*args: str, cwd: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    """``python -m recnas ARGS``; ``fault`` arms ``RECNAS_FAULT`` (see recnas.faults)."""
    env = {k: v for k, v in ENV.items() if k != "RECNAS_FAULT"}
    if fault:
        env["RECNAS_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "recnas", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=240)


def test_arch_train_prints_results_and_refuses_to_overwrite(synthetic: Path, tmp_path: Path, repo_root: Path) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(SPEC.to_json())
    args = ["arch", "train", "--data", str(synthetic), "--spec", str(spec_file), "--out", str(tmp_path / "run"),
            "--batch-size", "128", "--no-progress"]
    p = recnas(*args, cwd=repo_root)
    assert p.returncode == 0, p.stderr[-3000:]
    (line,) = [ln for ln in p.stdout.splitlines() if "val logloss" in ln]
    assert line.startswith(f"arch {SPEC.key()}: val logloss ") and "test logloss" in line
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert f"{result['val']['logloss']:.5f}" in line and result["describe"]["spec"] == SPEC.to_dict()

    p = recnas(*args, cwd=repo_root)
    assert p.returncode == 2 and "already holds a run" in p.stderr and "--resume" in p.stderr


def test_arch_train_rejects_bad_spec_naming_the_file(synthetic: Path, tmp_path: Path, repo_root: Path) -> None:
    bad = tmp_path / "bad.json"
    d = SearchSpace.load("tiny").sample(np.random.default_rng(0)).to_dict()
    d["blocks"][1]["dense_op"] = "conv"
    bad.write_text(json.dumps(d))
    p = recnas("arch", "train", "--data", str(synthetic), "--spec", str(bad), "--out", str(tmp_path / "r"),
               cwd=repo_root)
    assert p.returncode == 2
    assert str(bad) in p.stderr and "conv" in p.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_killed_warmup_resumes_to_the_uninterrupted_state(synthetic: Path, tmp_path: Path, repo_root: Path) -> None:
    """SIGKILLed at a fault point (recnas.faults) right after its 5th checkpoint (step 15), the
    warm-up resumes from there, redoing no step, to the bit-identical state of an uninterrupted run."""
    out = tmp_path / "sn"
    total, every = 60, 3
    args = ["supernet", "warmup", "--data", str(synthetic), "--space", "tiny", "--fraction", "1.0",
            "--batch-size", "32", "--max-steps", str(total), "--checkpoint-every", str(every), "--lr", "0.05",
            "--table-lr", "0.05", "--out", str(out), "--no-progress"]
    p = recnas(*args, cwd=repo_root, fault="warmup.checkpoint:5")
    assert p.returncode == -signal.SIGKILL, p.stderr[-3000:]
    assert latest_checkpoint(out).name == f"step_{5 * every:08d}"
    assert not (out / "supernet.json").exists()

    # Armed one checkpoint past what a resume from step 15 writes (every 3 steps to 57, then the
    # final one): a warm-up that restarted from step 0 would write more and be killed.
    resumed = len(range(6 * every, total, every)) + 1
    p = recnas(*args, "--resume", cwd=repo_root, fault=f"warmup.checkpoint:{resumed + 1}")
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"warm-up: steps {total}" in p.stdout and (out / "supernet.json").exists()

    # the same run, uninterrupted, in this process (the CLI's loader settings)
    fm, splits = load_prepared(synthetic)
    loader = ParquetBatchLoader(splits["train"], fm, batch_size=32, shuffle=True, seed=0, drop_last=True,
                                fraction=1.0)
    ref = tmp_path / "ref"
    warmup(fm, SearchSpace.load("tiny"), loader, out_dir=ref,
           config=WarmupConfig(max_steps=60, lr=0.05, table_lr=0.05, checkpoint_every=3, progress=False))
    dcp_to_torch_save(latest_checkpoint(out), tmp_path / "a.pt")
    dcp_to_torch_save(latest_checkpoint(ref), tmp_path / "b.pt")
    a, b = (torch.load(tmp_path / f, weights_only=True) for f in ("a.pt", "b.pt"))
    for part in ("model", "optim"):
        flat_a = {k: v for k, v in _flatten(a[part])}
        flat_b = {k: v for k, v in _flatten(b[part])}
        assert flat_a.keys() == flat_b.keys()
        for k in flat_a:
            assert torch.equal(flat_a[k], flat_b[k]), f"{part}.{k}"


def _flatten(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v
