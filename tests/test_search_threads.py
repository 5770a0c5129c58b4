"""Issue 17, item 2: a search that found its warmed supernet on disk scored 5-100x slower on a busy
machine than the run that warmed it, because libgomp's threads spun in full at every barrier
(the fresh run's warm-up had, by accident, cut the spinning). Model commands now make OpenMP waits
passive before torch is loaded, unless the user set them; ``recnas search --threads`` sets torch's
threads. Timings: ``benchmarks/bench_search_resume.py`` (no timing here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import recnas.search.runner
from recnas.cli import main, passive_openmp_waits

REPO = Path(__file__).resolve().parents[1]


def test_openmp_waits_are_made_passive_unless_the_user_set_them():
    env: dict[str, str] = {}
    assert passive_openmp_waits(env) and env == {"OMP_WAIT_POLICY": "PASSIVE"}
    for mine in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "300000"}):
        env = dict(mine)
        assert not passive_openmp_waits(env) and env == mine


def test_a_model_command_loads_torch_with_passive_openmp_waits(tmp_path):
    """libgomp's own report of its settings (OMP_DISPLAY_ENV) in a real ``recnas search`` process:
    no spinning (0) instead of libgomp's default 300,000 spins."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["OMP_DISPLAY_ENV"] = "VERBOSE"
    r = subprocess.run([sys.executable, "-m", "recnas", "search", str(tmp_path / "missing.yaml")],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "missing.yaml" in r.stderr, r.stderr[-2000:]
    assert "GOMP_SPINCOUNT = '0'" in r.stderr and "OMP_WAIT_POLICY = 'PASSIVE'" in r.stderr, r.stderr[-2000:]


def test_search_threads_is_honoured_and_checked(monkeypatch, capsys):
    seen: list[int] = []

    def fake_run_search(cfg, *, resume, progress, env):
        seen.append(torch.get_num_threads())
        return SimpleNamespace(run_dir=Path(cfg.output), best=lambda k: [])

    monkeypatch.setattr(recnas.search.runner, "run_search", fake_run_search)
    pipeline = str(REPO / "pipelines" / "demo.yaml")
    before = torch.get_num_threads()
    try:
        assert main(["search", pipeline, "--threads", "2", "--no-progress"]) == 0
        assert seen == [2]
        torch.set_num_threads(before)
        assert main(["search", pipeline, "--no-progress"]) == 0
        assert seen == [2, before]  # without --threads, torch's default is left alone
        assert main(["search", pipeline, "--threads", "0"]) == 2
        assert "--threads must be >= 1, got 0" in capsys.readouterr().err and len(seen) == 2
    finally:
        torch.set_num_threads(before)
        torch.set_flush_denormal(False)  # main() turned it on for this (test) process

