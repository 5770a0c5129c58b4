"""benchmarks/gpu_check.sh and the device choice it relies on (recnas.device, RECNAS_DEVICE).

CI has no GPU: the script itself is checked for its no-GPU exit (code 3, one line, nothing written)
and its argument errors; its full ``--cpu-dry-run`` (every step on CPU at tiny scale, the GPU tier's
pilot included, a minute or two on 2 busy cores: over the suite's budget) runs when
``RECNAS_TEST_GPU_CHECK_DRY_RUN=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recnas.device import DEVICE_CHOICES, DEVICE_ENV, resolve_device

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def _gpu_visible() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    p = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return p.returncode == 0 and any(line.startswith("GPU") for line in p.stdout.splitlines())


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", DEVICE_ENV)}
    env.update(OUT=str(tmp_path / "out"), GPU_CHECK_WORK=str(tmp_path / "work"), OMP_NUM_THREADS="1", **extra)
    return env


# -- recnas.device ---------------------------------------------------------------------------------


def test_resolve_device_choices(monkeypatch):
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert resolve_device() == auto
    for value, want in (("", auto), ("auto", auto), ("cpu", "cpu"), (" CPU ", "cpu")):
        monkeypatch.setenv(DEVICE_ENV, value)
        assert resolve_device() == want
    assert resolve_device("cpu") == "cpu" and resolve_device("auto") == auto
    assert DEVICE_CHOICES == ("auto", "cpu", "cuda")


def test_resolve_device_unknown_value_names_the_setting(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "gpu")
    with pytest.raises(ValueError, match=r"^RECNAS_DEVICE='gpu': expected one of auto, cpu, cuda$"):
        resolve_device()
    with pytest.raises(ValueError, match=r"^device 'tpu': expected one of auto, cpu, cuda$"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is usable here")
def test_resolve_device_cuda_without_a_gpu_says_why(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    with pytest.raises(ValueError, match=r"^RECNAS_DEVICE='cuda': CUDA is not usable here: .*RECNAS_DEVICE=cpu$") as e:
        resolve_device()
    why = "is a CPU build" if torch.version.cuda is None else "sees no GPU"
    assert why in str(e.value)


def test_bad_device_is_a_one_line_cli_error(tmp_path):
    """A command that starts a process group refuses an unknown RECNAS_DEVICE with exit code 2 and
    one line, before it reads any data."""
    p = subprocess.run(
        [sys.executable, "-m", "recnas", "search", str(REPO / "pipelines" / "demo.yaml"),
         "--set", f"output={tmp_path / 'run'}", "--set", f"data.cache={tmp_path / 'cache'}"],
        capture_output=True, text=True, env=_env(tmp_path, **{DEVICE_ENV: "gpu"}), cwd=tmp_path, timeout=120,
    )
    assert p.returncode == 2, p.stderr[-2000:]
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "RECNAS_DEVICE='gpu': expected one of auto, cpu, cuda" in lines[0]
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()


# -- the script --------------------------------------------------------------------------------------


@pytest.mark.skipif(_gpu_visible(), reason="a GPU is visible: the script would run")
def test_gpu_check_without_a_gpu_exits_3_at_once(tmp_path):
    p = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=_env(tmp_path), timeout=60)
    assert p.returncode == 3
    assert p.stdout == ""
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: no NVIDIA GPU here") and "--cpu-dry-run" in lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_gpu_check_bad_arguments_exit_2(tmp_path):
    for args, msg in ((["--bogus"], "unknown argument '--bogus'"), (["--budget", "soon"], "--budget needs"),
                      (["--pilot-seconds", "x"], "--pilot-seconds needs"),
                      (["--pilot-import", str(tmp_path / "none")], "--pilot-import needs a folder with a build.json")):
        p = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=_env(tmp_path),
                           timeout=60)
        assert p.returncode == 2 and msg in p.stderr
    p = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, env=_env(tmp_path), timeout=60)
    assert p.returncode == 0 and "--cpu-dry-run" in p.stdout and "exit code" in p.stdout.lower()


def test_gpu_check_summary_names_a_failed_step(tmp_path):
    """The summary (standard library only, so it runs when the setup failed) marks the run failed
    when a required step failed, and writes both files."""
    work, out = tmp_path / "work", tmp_path / "out"
    (out / "logs").mkdir(parents=True)
    work.mkdir()
    (work / "steps.tsv").write_text("setup\tpass\t3\t\npreflight\tfail\t5\texit 1: ImportError\n"
                                    "pipeline_1proc\tskipped\t0\tenvironment not ready\n")
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "summary", "--work", str(work),
                        "--out", str(out), "--device", "cuda"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["ok"] is False and s["failed"] == ["preflight"] and s["total_seconds"] == 8
    assert [x["status"] for x in s["steps"]] == ["pass", "fail", "skipped"]
    md = (out / "summary.md").read_text()
    assert "FAILED: preflight" in md and "| preflight | fail | 5 | exit 1: ImportError |" in md


@pytest.mark.skipif(os.environ.get("RECNAS_TEST_GPU_CHECK_DRY_RUN") != "1",
                    reason="the full dry run takes a minute or two; set RECNAS_TEST_GPU_CHECK_DRY_RUN=1")
def test_gpu_check_cpu_dry_run_runs_every_step(tmp_path):
    p = subprocess.run(["bash", str(SCRIPT), "--cpu-dry-run", "--python", sys.executable], capture_output=True,
                       text=True, env=_env(tmp_path), timeout=900)
    out = tmp_path / "out"
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    s = json.loads((out / "summary.json").read_text())
    status = {x["step"]: x["status"] for x in s["steps"]}
    assert status == {"setup": "skipped", "preflight": "pass", "pipeline_1proc": "pass", "bench": "pass",
                      "bench_gpu_pilot": "pass", "pipeline_2proc": "pass", "tests": "pass"}
    assert s["ok"] and s["device"] == "cpu" and s["environment"]["backend"] == "gloo"
    assert s["environment"]["tables_updated"] >= 1
    bench = s["figures"]["bench_train"]["ratios"]
    assert set(bench) == {"warmup_vs_dlrm", "warmup_vs_dlrm_flops", "standalone_vs_dlrm"}
    assert all(v > 0 for v in bench.values())
    for run in ("pipeline_1proc", "pipeline_2proc"):
        f = s["figures"][run]
        assert f["warmup_samples_per_s"] > 0 and f["candidates_scored"] >= 1 and f["prod_searched_vs_dlrm"] > 0
    # the GPU tier's pilot at tiny scale on CPU: 4 architectures x 2 seeds, its ceiling, the rows back in OUT
    g = s["figures"]["bench_gpu_pilot"]
    assert g["rows"] == 8 and g["devices"] == ["cpu"] and not g["cut_at_limit"] and g["ceiling_rc"] == 0
    assert set(g["projected_kendall"]) == {"1", "2", "3", "4"}
    assert {q.name for q in (out / "bench_gpu_pilot").iterdir()} == {"build.json", "groundtruth.csv",
                                                                      "ceiling_projection.md"}
    files = [q for q in out.rglob("*") if q.is_file()]
    assert len(files) <= 8 and (out / "summary.md").exists()
    assert (out / "logs.tar.gz").exists()  # more than 8 files: the logs travel as one archive
