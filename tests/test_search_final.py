"""The search's final stage keeps going when one model diverges, and says so."""

from __future__ import annotations

import math
from pathlib import Path

from recnas.data import prepare_synthetic
from recnas.search.config import FinalConfig
from recnas.search.final import FINAL_FILE, format_final, train_final
from recnas.train.distributed import init_distributed


def test_a_diverging_baseline_is_reported_and_the_others_still_train(tmp_path: Path) -> None:
    data = prepare_synthetic(tmp_path / "data", 3000, seed=0, hash_size=500)
    env = init_distributed()
    # the trainer's divergence guard (max_loss 10) trips after Adagrad's first step at this lr
    wild = FinalConfig(top=0, baselines=("dlrm",), batch_size=256, dense_lr=1e4, table_lr=1e4)
    rows = train_final(wild, tmp_path / "run", [], data, env, progress=False)
    assert [r["status"] for r in rows] == ["diverged"]
    assert math.isnan(rows[0]["test_logloss"]) and rows[0]["steps"] >= 2
    assert "diverged" in (tmp_path / "run" / FINAL_FILE).read_text()
    assert "dlrm [diverged]" in format_final(rows)

    both = FinalConfig(top=0, baselines=("dlrm", "deepfm"), batch_size=256, dense_lr=1e4, table_lr=1e4)
    sane = FinalConfig(top=0, baselines=("deepfm",), batch_size=256)
    rows = train_final(both, tmp_path / "run2", [], data, env, progress=False)
    assert [r["status"] for r in rows] == ["diverged", "diverged"]  # deepfm was still attempted
    rows = train_final(sane, tmp_path / "run3", [], data, env, progress=False)
    assert rows[0]["status"] == "completed" and rows[0]["test_logloss"] < 1.0


def test_final_trains_the_library_presets_and_rejects_unknown_baselines(tmp_path: Path) -> None:
    import pytest

    with pytest.raises(ValueError, match=r"final.baselines: unknown \['deepfm_lb'\]; known: .*'deepfm_lib'"):
        FinalConfig(top=0, baselines=("deepfm_lb",))
    data = prepare_synthetic(tmp_path / "data", 2000, seed=0, hash_size=300)
    env = init_distributed()
    cfg = FinalConfig(top=0, baselines=("deepfm_lib", "dcn_lib"), batch_size=256)
    rows = train_final(cfg, tmp_path / "run", [], data, env, progress=False)
    assert [r["status"] for r in rows] == ["completed", "completed"]
    assert all(0.0 < r["test_logloss"] < 1.0 for r in rows)
    text = format_final(rows)
    assert "deepfm_lib" in text and "dcn_lib" in text
