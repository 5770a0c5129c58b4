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


def test_final_seeds_train_every_model_per_seed_and_summarize_against_the_first_baseline(tmp_path: Path) -> None:
    import pytest

    from recnas.search.final import summarize_final
    from recnas.study import TrialStore

    with pytest.raises(ValueError, match=r"final.seeds: seeds must be distinct, got \[1, 1\]"):
        FinalConfig(seeds=(1, 1))
    with pytest.raises(ValueError, match=r"give final.seed \(one seed\) or final.seeds \(several\), not both"):
        FinalConfig(seed=5, seeds=(0, 1))
    assert FinalConfig(seed=3).resolved_seeds() == (3,) and FinalConfig(seeds=(2, 4)).resolved_seeds() == (2, 4)

    data = prepare_synthetic(tmp_path / "data", 2000, seed=0, hash_size=300)
    env = init_distributed()
    store = TrialStore.memory()
    # one seed first (the old layout: final/baseline-dlrm/), then seeds 0 and 1 with the same store:
    # seed 0 is read back from the store, not retrained; seed 1 trains into final/baseline-dlrm-seed1/
    one = train_final(FinalConfig(top=0, baselines=("dlrm",), batch_size=256), tmp_path / "run", [], data, env,
                      progress=False, store=store)
    cfg = FinalConfig(top=0, baselines=("dlrm", "deepfm_lib"), batch_size=256, seeds=(0, 1))
    rows = train_final(cfg, tmp_path / "run", [], data, env, progress=False, store=store)
    assert [(r["model"], r["seed"]) for r in rows] == [("dlrm", 0), ("dlrm", 1), ("deepfm_lib", 0), ("deepfm_lib", 1)]
    assert rows[0]["test_logloss"] == one[0]["test_logloss"]
    assert not (tmp_path / "run" / "final" / "baseline-dlrm-seed0").exists()
    assert (tmp_path / "run" / "final" / "baseline-dlrm-seed1" / "result.json").exists()
    assert rows[0]["test_logloss"] != rows[1]["test_logloss"]  # the seed changes init and shuffling
    lines = (tmp_path / "run" / FINAL_FILE).read_text().splitlines()
    assert lines[0].split(",")[:3] == ["model", "kind", "seed"] and len(lines) == 5

    s = {r["model"]: r for r in summarize_final(rows)}
    a = [r["test_logloss"] for r in rows if r["model"] == "deepfm_lib"]
    b = [r["test_logloss"] for r in rows if r["model"] == "dlrm"]
    assert s["deepfm_lib"]["seeds"] == 2 and s["deepfm_lib"]["reference"] == "dlrm"
    assert s["deepfm_lib"]["test_logloss_mean"] == pytest.approx(sum(a) / 2)
    assert s["deepfm_lib"]["diff"] == pytest.approx((a[0] - b[0] + a[1] - b[1]) / 2)
    assert math.isnan(s["dlrm"]["diff"])  # the reference itself
    text = format_final(rows)
    assert "±" in text and "vs dlrm" in text


def test_summary_counts_a_diverged_seed_and_pairs_only_completed_seeds() -> None:
    import pytest

    from recnas.search.final import summarize_final

    def row(model: str, kind: str, seed: int, ll: float | None) -> dict:
        bad = ll is None
        return {"model": model, "kind": kind, "seed": seed, "status": "diverged" if bad else "completed",
                "epochs": 1, "steps": 10, "test_logloss": math.nan if bad else ll, "test_auc": 0.7,
                "val_logloss": math.nan if bad else ll, "val_auc": 0.7, "params": None if bad else 100,
                "flops_per_example": None if bad else 200}

    rows = [row("searched #1 (k)", "search", s, ll) for s, ll in ((0, 0.45), (1, None), (2, 0.47))]
    rows += [row("dlrm", "baseline", s, ll) for s, ll in ((0, 0.46), (1, 0.46), (2, 0.46))]
    s = summarize_final(rows)[0]
    assert (s["seeds"], s["diverged"]) == (2, 1)
    assert s["test_logloss_mean"] == pytest.approx(0.46) and s["diff"] == pytest.approx(0.0)
    assert s["p"] == pytest.approx(1.0)  # differences -0.01 and +0.01: t = 0
    assert "[1 diverged]" in format_final(rows)
