"""The split in a bench pipeline: the ``split:`` section checked, compute parity, the split cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

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


def test_compare_scores_the_split_as_rows_of_its_own_cached_and_absent_without_split(tmp_path: Path) -> None:
    """A ``split:`` section adds, at each warm-up fraction > 0, every inherited-weight estimator
    scored through the split supernet (equal to scoring through that split directly), reported
    beside the single supernet with the compute parity; a rerun scores nothing; the same folder
    without ``split:`` gives the columns and files of before, with the same numbers."""
    import json
    import shutil

    import pandas as pd

    from recnas.bench.compare import SPLIT_FACTS_FILE, run_compare, run_report
    from recnas.bench.groundtruth import build, sample_archs
    from recnas.data.loader import load_prepared
    from recnas.estimators import ScoringContext, make_estimator
    from recnas.lid.bench import split_for_fraction
    from recnas.pipeline import resolve_data
    from recnas.space.space import SearchSpace
    from recnas.study.context import scoring_batches

    split = {"method": "lid", "levels": 1, "batches": 2, "batch_size": 32, "k": 10, "finetune_fraction": 0.25}
    pipe = tiny_bench_pipeline(tmp_path, "s", tmp_path / "cache", num_archs=4, split=split,
                               estimators=[{"name": "params"}, {"name": "oneshot"}, {"name": "sigeo"}],
                               sigeo_ablation={"embeddings": ["none"], "inits": ["fresh"]})
    cfg = load_bench(pipe)
    out = Path(cfg.output)
    build(cfg, progress=False)
    report = run_compare(cfg, progress=False)
    res = pd.read_csv(out / "results.csv")
    rows = res[res["kind"] == "split"]
    assert sorted(rows["label"]) == ["oneshot | inherit 50% lid split L1", "sigeo | inherit 50% lid split L1"]
    assert (rows["init"] == "inherit").all() and (rows["fraction"] == 0.5).all()
    assert np.isfinite(rows[["kendall", "kendall_lo", "kendall_hi", "spearman", "top"]].to_numpy()).all()

    # the compare's column is oneshot scored through the split supernet itself
    data_dir = Path(resolve_data(cfg.data, progress=False)).resolve()
    fm, splits = load_prepared(data_dir)
    space = SearchSpace.load("tiny")
    net, facts = split_for_fraction(cfg, 0.5, fm, space, splits, data_dir, out, progress=False)
    sc = cfg.scoring
    tr, va = scoring_batches(splits, fm, batches=sc.batches, val_batches=sc.val_batches, batch_size=sc.batch_size,
                             section="scoring")
    specs = sample_archs(space, cfg.num_archs, cfg.sample_seed)
    direct = make_estimator("oneshot").score(specs, ScoringContext(fm, tr, va, supernet=net, init="inherit",
                                                                   seed=sc.seed, device="cpu"))
    scores = pd.read_csv(out / "scores.csv")
    np.testing.assert_array_equal(scores["oneshot | inherit 50% lid split L1"].to_numpy(), direct)
    assert not np.array_equal(scores["oneshot | inherit 50%"].to_numpy(), direct)

    saved = json.loads((out / SPLIT_FACTS_FILE).read_text())
    assert saved["fractions"] == [json.loads(json.dumps(facts))] and saved["settings"]["k"] == 10
    f = saved["fractions"][0]
    text = report.read_text()
    assert "## Split supernet (lid split, 1 level(s))" in text
    assert (f"split {f['parent_steps']} parent + {f['finetune_steps']} fine-tuning = {f['single_steps']} steps"
            in text)
    assert "| oneshot | 50% | single |" in text and "| oneshot | 50% | lid split L1 |" in text

    # a rerun scores nothing and gives the same numbers
    store = out / "scores" / "trials.jsonl"
    records = store.read_text().splitlines()
    run_compare(cfg, progress=False)
    assert store.read_text().splitlines() == records
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), res)
    # recnas bench report rewrites the same section from the folder's files
    assert run_report(cfg).read_text().split("## Split supernet")[1] == text.split("## Split supernet")[1]

    # the same folder without split: the old rows, columns and files, nothing rescored
    plain = tmp_path / "plain"
    shutil.copytree(out, plain, ignore=shutil.ignore_patterns(SPLIT_FACTS_FILE))
    d = yaml.safe_load(pipe.read_text())
    del d["split"]
    d["output"] = str(plain)
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump(d))
    text = run_compare(load_bench(tmp_path / "plain.yaml"), progress=False).read_text()
    assert (plain / "scores" / "trials.jsonl").read_text().splitlines() == records
    old = pd.read_csv(plain / "results.csv")
    pd.testing.assert_frame_equal(old, res[res["kind"] != "split"].reset_index(drop=True))
    assert list(pd.read_csv(plain / "scores.csv").columns) == [c for c in scores.columns if "split" not in c]
    assert "Split supernet" not in text and not (plain / SPLIT_FACTS_FILE).exists()


@pytest.mark.parametrize(("bench", "truth", "warmup"), [("bench_synth", "", 0.1), ("bench_criteo_real", "", 0.1),
                                                     ("bench_ctr", "build", 0.2)])
def test_lid_pipeline_is_its_benchmarks_settings_with_a_split(bench: str, truth: str, warmup: float) -> None:
    """``pipelines/<bench>_lid.yaml`` reads the committed ground truth of ``reports/<bench>/<truth>`` (same
    build signature), warms up, scores and judges as the benchmark does at one of its warm-ups, and asks
    for one split."""
    from recnas.bench.compare import read_built
    from recnas.config import to_dict

    root = Path(__file__).resolve().parents[1]
    lid = load_bench(root / "pipelines" / f"{bench}_lid.yaml")
    base = load_bench(root / "pipelines" / f"{bench}.yaml")
    table = read_built(lid, root / "reports" / bench / truth, f"{bench}_lid.yaml")  # raises on another signature
    assert len(table) == lid.num_archs * len(lid.train.seeds)
    for section in ("data", "train", "scoring", "stats"):
        assert to_dict(getattr(lid, section)) == to_dict(getattr(base, section)), section
    assert (lid.space, lid.num_archs, lid.sample_seed) == (base.space, base.num_archs, base.sample_seed)
    w, wb = to_dict(lid.warmup), to_dict(base.warmup)
    assert w.pop("fractions") == [warmup] and warmup in wb.pop("fractions") and w == wb
    assert (lid.split.method, lid.split.levels) == ("lid", 1)
    assert [(e.name, e.resolved_inits()) for e in lid.estimators] == [("oneshot", ("inherit",)), ("sigeo", ("inherit",))]
    sigeo = {e.display: e.params for e in base.estimators}["sigeo"]
    assert lid.estimators[1].params == sigeo and lid.estimators[1].display == "sigeo"
    assert lid.output != base.output


def test_compare_import_judges_against_an_earlier_builds_truth_in_one_command(tmp_path: Path, capsys) -> None:
    """``recnas bench compare PIPELINE --import DIR`` (what the ``*_lid.yaml`` pipelines' one command
    does with a committed reports/ folder) takes DIR's rows as the ground truth, trains nothing, and
    writes the same results as a compare in the folder that built them; without it a fresh output
    folder has no truth to judge against."""
    import pandas as pd

    from recnas.bench.compare import run_compare
    from recnas.bench.groundtruth import build, read_table
    from recnas.cli import main

    few = {"estimators": [{"name": "params"}, {"name": "grad_norm"}], "warmup": {"fractions": [0.0], "batch_size": 32},
           "sigeo_ablation": {"inits": []}}
    cfg = load_bench(tiny_bench_pipeline(tmp_path, "built", tmp_path / "cache", num_archs=4, **few))
    reference = build(cfg, progress=False)
    run_compare(cfg, progress=False)
    pipe = tiny_bench_pipeline(tmp_path, "other", tmp_path / "cache", num_archs=4, **few)
    assert main(["bench", "compare", str(pipe), "--no-progress"]) != 0
    assert "lacks 8 of 8 (architecture, seed) rows" in capsys.readouterr().err
    assert main(["bench", "compare", str(pipe), "--import", str(tmp_path / "built"), "--no-progress"]) == 0
    assert f"imported {len(reference)} rows from {tmp_path / 'built'}" in capsys.readouterr().err
    got = read_table(tmp_path / "other")
    cols = ["arch", "key", "seed", "test_logloss", "finished_at"]  # the build's own times: none trained here
    pd.testing.assert_frame_equal(got[cols], reference[cols])
    res = pd.read_csv(tmp_path / "other" / "results.csv")
    assert len(res) == 3 and np.isfinite(res["kendall"]).all()  # params; grad_norm fresh and at 0 %
    timing = ["seconds", "seconds_per_arch"]  # the scores' own timings differ
    pd.testing.assert_frame_equal(res.drop(columns=timing),
                                  pd.read_csv(tmp_path / "built" / "results.csv").drop(columns=timing))
