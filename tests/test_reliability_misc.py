"""Small reliability items of issue 17 (item 7): ``recnas train --resume`` into a folder without a
run is refused; a resume refused for another architecture names the first differences, not two
whole dicts. (The first five skipped examples: tests/test_data_reliability.py.)"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from recnas.cli import build_parser
from recnas.export.production import ProdTrainConfig, _check_run_file
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
