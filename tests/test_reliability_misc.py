"""Small reliability items of issue 17 (item 7): ``recnas train --resume`` into a folder without a
run is refused; a resume refused for another architecture names the first differences, not two
whole dicts; the history table stars the epoch ``result.json`` says is exported and names the best
one. (The first five skipped examples: tests/test_data_reliability.py.)"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from recnas.cli import build_parser
from recnas.export.production import EpochMetrics, ProdTrainConfig, ProdTrainResult, _check_run_file, format_history
from recnas.export.train_cli import run_train
from recnas.space.space import SearchSpace


def test_train_resume_into_a_folder_without_a_run_is_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "feature_map.json").write_text("{}")
    argv = ["train", "--baseline", "dlrm", "--data", str(data), "--out", str(tmp_path / "new"), "--resume"]
    args = build_parser(argv).parse_args(argv)
    with pytest.raises(ValueError, match=r"--resume: .*new holds no training run \(no run.json\); drop --resume"):
        run_train(args)
    assert not (tmp_path / "new").exists()


def test_resume_refused_for_another_architecture_names_the_first_differences(tmp_path):
    space = SearchSpace.load("nasrec_small")
    a, b = (space.sample(np.random.default_rng(s)).to_dict() for s in (0, 1))
    run = {"name": "x", "architecture": a, "init": "inherited", "data": "/d", "config": asdict(ProdTrainConfig())}
    (tmp_path / "run.json").write_text(json.dumps(run))
    _check_run_file(tmp_path, run, resume=True)  # the same run resumes
    with pytest.raises(ValueError) as e:
        _check_run_file(tmp_path, {**run, "architecture": b}, resume=True)
    msg = str(e.value)
    assert "this run trains a different architecture (differs at architecture.blocks: saved [" in msg
    assert len(json.dumps(a)) > 1000 and len(msg) < 500, len(msg)


def _result(val: list[float], exported: int | None, status: str = "completed") -> ProdTrainResult:
    history = tuple(EpochMetrics(epoch=i + 1, step=10 * (i + 1), val_logloss=v, val_auc=0.7, test_logloss=v + 0.01,
                                 test_auc=0.7, val_rows=100, test_rows=100, train_seconds=1.0, samples_per_s=1.0)
                    for i, v in enumerate(val))
    best = min(range(len(val)), key=lambda i: val[i]) + 1
    return ProdTrainResult(name="m", history=history, best_epoch=best, status=status, steps=10 * len(val),
                           start_step=0, export_dir="/x", exported_epoch=exported)


def _starred(table: str) -> list[int]:
    return [int(line.split()[1]) for line in table.splitlines() if line.startswith("*") and line.split()[1].isdigit()]


def test_history_table_stars_the_exported_epoch_and_result_json_says_which_it_is():
    # no early stopping: the last epoch is exported although epoch 1 had the lower validation log loss
    r = _result([0.40, 0.45], exported=2)
    d = json.loads(json.dumps(r.to_dict()))
    assert (d["best_epoch"], d["exported_epoch"], d["final"]["epoch"]) == (1, 2, 2)
    table = format_history(r)
    assert _starred(table) == [2] and table.splitlines()[1].startswith("b   1")
    assert table.splitlines()[-1] == ("* exported: epoch 2, the last (--early-stopping exports the lowest val "
                                      "logloss); b lowest val logloss: epoch 1")
    # early stopping exports the best epoch, stopped or not: its metrics are the final ones
    for status in ("early_stopped", "completed"):
        r = _result([0.40, 0.45, 0.46], exported=1, status=status)
        assert r.best.epoch == 1 and r.to_dict()["final"]["val_logloss"] == 0.40
        table = format_history(r)
        assert _starred(table) == [1] and table.splitlines()[-1] == "* exported: epoch 1, the lowest val logloss"
        assert not any(line.startswith("b") for line in table.splitlines())
    # nothing exported yet (interrupted): no star, the last epoch's metrics
    r = _result([0.40, 0.45], exported=None, status="interrupted")
    assert r.best.epoch == 2 and _starred(format_history(r)) == [] and r.to_dict()["exported_epoch"] is None
