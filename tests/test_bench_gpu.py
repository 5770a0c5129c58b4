"""The GPU tier of the benchmark (pipelines/bench_gpu.yaml) and the device choice of `recnas bench build`.

CI has no GPU: the pipeline is validated as it is, built for real on CPU at tiny scale through the CLI
(``--set`` overrides: the tiny space, a few hundred rows, 2 architectures x 2 seeds, ``train.device=cpu``),
and its ``train.device: cuda`` is checked to stop a build on a host without CUDA with one line, before
any data is made.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recnas.bench.config import build_signature, load_bench
from recnas.config import ConfigError
from recnas.device import DEVICE_ENV

REPO = Path(__file__).resolve().parents[1]
GPU = REPO / "pipelines" / "bench_gpu.yaml"
CTR = REPO / "pipelines" / "bench_ctr.yaml"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", DEVICE_ENV)}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _tiny(tmp: Path) -> list[str]:
    """``--set`` overrides that shrink the GPU pipeline to a CPU test (its recipe keys stay)."""
    sets = ["data.synth_rows=600", "data.hash_size=50", f"data.cache={tmp / 'cache'}", "space=tiny", "num_archs=2",
            "train.seeds=[0,1]", "train.batch_size=32", "train.eval_batch_size=512", "train.workers=1",
            "train.threads=1", "train.checkpoint_every=0", "estimators=[{name: params}]", f"output={tmp / 'out'}"]
    return [a for s in sets for a in ("--set", s)]


def test_gpu_pipeline_validates_and_is_its_own_benchmark() -> None:
    cfg, ctr = load_bench(GPU), load_bench(CTR)
    assert cfg.space == "nasrec_small" and cfg.num_archs >= 200 and len(cfg.train.seeds) <= 4
    assert cfg.data.synth_teacher == "v2" and cfg.train.device == "cuda"
    assert cfg.data.synth_rows * 0.8 * cfg.train.fraction >= 2_000_000  # millions of training rows a run
    assert (cfg.train.epochs, cfg.train.lr_schedule, cfg.train.lr_warmup) == (1, "cosine", 0.1)
    assert cfg.output != ctr.output
    assert build_signature(cfg) != build_signature(ctr)
    # where and how many at once is not what a row depends on: the same signature on CPU, 1 worker
    assert build_signature(cfg) == build_signature(load_bench(GPU, ["train.device=cpu", "train.workers=1"]))
    assert "device" not in build_signature(cfg)["train"]


def test_train_device_value_and_env_conflict_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"train.device: expected one of auto, cpu, cuda, got 'gpu'") as e:
        load_bench(GPU, ["train.device=gpu"])
    assert str(GPU) in str(e.value)
    cfg = load_bench(GPU, ["train.device=cpu"])
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert cfg.train.resolve_device("p.yaml") == "cpu"
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    with pytest.raises(ValueError, match=r"^p.yaml: train.device 'cpu' and RECNAS_DEVICE='cuda' disagree"):
        cfg.train.resolve_device("p.yaml")
    monkeypatch.setenv(DEVICE_ENV, "auto")  # auto refines nothing: the pipeline's cpu stands
    assert cfg.train.resolve_device("p.yaml") == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is usable here: the GPU pipeline would train")
def test_cuda_pipeline_on_a_cpu_host_stops_with_one_line(tmp_path: Path) -> None:
    """bench_gpu.yaml as it is (train.device: cuda) on a host without CUDA: exit 2, one line naming the file,
    the key and the way out, before any data or output folder is made."""
    sets = [a for a in _tiny(tmp_path) if "train.device" not in a]
    p = subprocess.run([sys.executable, "-m", "recnas", "bench", "build", str(GPU), *sets], capture_output=True,
                       text=True, env=_env(), cwd=REPO, timeout=300)
    assert p.returncode == 2, p.stderr[-2000:]
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr
    assert f"{GPU}: train.device 'cuda': CUDA is not usable here" in lines[0]
    assert lines[0].endswith("--set train.device=cpu")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


def test_gpu_pipeline_builds_at_tiny_scale_on_cpu(tmp_path: Path) -> None:
    """`recnas bench build pipelines/bench_gpu.yaml --set train.device=cpu ...` in a subprocess: the
    ground-truth table of 2 architectures x 2 seeds, every row recorded as trained on the CPU."""
    from recnas.bench.groundtruth import BUILD_FILE, COLUMNS, read_table

    cmd = [sys.executable, "-m", "recnas", "bench", "build", str(GPU), *_tiny(tmp_path), "--set", "train.device=cpu"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=REPO, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "4 to train on cpu" in p.stderr
    df = read_table(tmp_path / "out")
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 4 and sorted(zip(df["arch"], df["seed"])) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert set(df["device"]) == {"cpu"}
    assert all(math.isfinite(x) and x > 0 for x in df["test_logloss"])
    assert df["val_logloss"].isna().all()  # the pipeline's validate: false
    assert df["steps"].eq(df["steps"].iloc[0]).all() and df["steps"].iloc[0] > 0
    sig = json.loads((tmp_path / "out" / BUILD_FILE).read_text())
    assert sig["space"] == "tiny" and "device" not in sig["train"] and sig["train"]["batch_size"] == 32
