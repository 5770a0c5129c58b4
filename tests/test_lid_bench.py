"""The split in a bench pipeline: the ``split:`` section checked, compute parity, the split cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchkit import tiny_bench_pipeline
from recnas.bench.config import load_bench
from recnas.config import ConfigError


def test_a_bad_split_key_or_value_is_a_clear_error(tmp_path: Path) -> None:
    pipe = tiny_bench_pipeline(tmp_path, "b", tmp_path / "cache", num_archs=4,
                               split={"method": "lid", "levles": 2})
    with pytest.raises(ConfigError, match=r"unknown key 'split.levles'; allowed keys under 'split': .*'levels'"):
        load_bench(pipe)
    with pytest.raises(ConfigError, match=r"'split': method: 'lidd' is not one of \['lid', 'gm'\]"):
        load_bench(pipe, ["split={method: lidd}"])
    cfg = load_bench(pipe, ["split={method: gm, levels: 2, batches: 3, finetune_fraction: 0.25}"])
    assert (cfg.split.method, cfg.split.levels, cfg.split.batches, cfg.split.k) == ("gm", 2, 3, 20)
    assert load_bench(tiny_bench_pipeline(tmp_path, "c", tmp_path / "cache", num_archs=4)).split is None


def test_split_run_trains_the_single_supernets_steps_and_is_found_again(tmp_path: Path) -> None:
    from recnas.data.loader import load_prepared
    from recnas.estimators import ScoringContext, make_estimator
    from recnas.lid.bench import parity, split_dir, split_for_fraction
    from recnas.pipeline import resolve_data
    from recnas.space.space import SearchSpace
    from recnas.study.context import scoring_batches

    pipe = tiny_bench_pipeline(tmp_path, "s", tmp_path / "cache", num_archs=4,
                               split={"method": "lid", "levels": 1, "batches": 2, "batch_size": 32, "k": 10,
                                      "finetune_fraction": 0.25})
    cfg = load_bench(pipe)
    data_dir = Path(resolve_data(cfg.data, progress=False)).resolve()
    fm, splits = load_prepared(data_dir)
    space = SearchSpace.load("tiny")
    out = Path(cfg.output)
    split, facts = split_for_fraction(cfg, 0.5, fm, space, splits, data_dir, out, progress=False)
    # parent (37.5 % of the rows) + fine-tuning = the steps of the single supernet of 50 %
    assert facts["parent_steps"] + facts["finetune_steps"] == facts["single_steps"] > facts["parent_steps"] > 0
    assert facts["measure_forward_passes"] > 0 and "fine-tuning" in parity(facts)
    assert (out / "warmup" / "frac_0.375" / "supernet.json").exists()
    assert len(split.subnets) == 2 and len(facts["splits"]) == 1

    again, facts2 = split_for_fraction(cfg, 0.5, fm, space, splits, data_dir, out, progress=False)
    assert facts2 == facts and again.regions == split.regions
    for a, b in zip(split.subnets, again.subnets):
        sa, sb = a.dense_arch.state_dict(), b.dense_arch.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    tr, va = scoring_batches(splits, fm, batches=2, val_batches=2, batch_size=32, section="scoring")
    specs = [space.sample(np.random.default_rng(i)) for i in range(3)]
    est = make_estimator("oneshot")
    assert np.array_equal(est.score(specs, ScoringContext(fm, tr, va, supernet=split, device="cpu")),
                          est.score(specs, ScoringContext(fm, tr, va, supernet=again, device="cpu")))

    other = load_bench(pipe, ["split.k=12"])
    with pytest.raises(ValueError, match=r"holds a split made with other settings"):
        split_for_fraction(other, 0.5, fm, space, splits, data_dir, out, progress=False)
    assert split_dir(out, cfg, 0.5).is_dir()
