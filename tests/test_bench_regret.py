"""Tabular simulation of the search strategies (recnas.search.tabular, recnas.bench.regret, `recnas bench regret`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recnas.bench.groundtruth import sample_archs
from recnas.bench.regret import REGISTRY, RegretStrategy, Table, run_regret, simulate
from recnas.search.strategies import make_strategy
from recnas.search.tabular import NotInTable, TabularSpace, truth_evaluator
from recnas.space import SearchSpace

SPACE = SearchSpace.load("tiny")
N = 12
BEST = 7
TIMING = ["strategy_seconds", "seconds"]

#: small settings of the predictor-driven strategies, so each run takes well under a second
FAST = {
    "evolution": RegretStrategy("evolution", "evolution", {"population": 4, "sample": 2, "children": 2}),
    "weaknas": RegretStrategy("weaknas", "weaknas", lambda n: {"predictor": "ridge", "initial": 4, "pool": n, "top": 4,
                                                              "sample": 2}),
    "guided": RegretStrategy("guided", "guided_evolution", {"population": 4, "sample": 2, "children": 2,
                                                             "candidates": 6, "predictor": "ridge"}),
    "bonas": RegretStrategy("bonas", "bonas", lambda n: {"initial": 4, "pool": n, "k": 2,
                                                        "predictor_params": {"epochs": 2}}),
    "evo_proxy": RegretStrategy("evo_proxy", "evolution", {"population": 4, "sample": 2, "children": 2}, proxy="p"),
}


@pytest.fixture(scope="module")
def table() -> Table:
    specs = sample_archs(SPACE, N, seed=1)
    rng = np.random.default_rng(5)
    ll = 0.5 + rng.uniform(0.001, 0.01, N)
    ll[BEST] = 0.49  # the planted best
    proxy = -ll + rng.normal(0, 0.003, N)
    return Table(SPACE, specs, ll, np.arange(1.0, N + 1), {"p": (proxy, 0.5)}, seeds=2)


def test_random_search_mean_regret_falls_to_zero_by_the_table_size(table: Table) -> None:
    rows, runs = run_regret(table, ["random"], repeats=10, budget=N)
    assert (runs["queries"] == N).all() and (runs["stopped"] == "budget").all()
    assert rows.groupby("repeat")["key"].nunique().eq(N).all()  # queries are distinct architectures
    curve = rows.groupby("query")["regret"].mean().sort_index().to_numpy()
    assert len(curve) == N
    assert (np.diff(curve) <= 0).all()
    assert curve[-1] == 0.0 and curve[0] > 0
    assert (rows["regret"] >= 0).all()
    # the planted best is where regret reaches zero, and best_logloss is the running minimum
    for _, g in rows.groupby("repeat"):
        g = g.sort_values("query")
        assert g["best_logloss"].tolist() == g["test_logloss"].cummin().tolist()
        assert g.loc[g["regret"] == 0, "arch"].iloc[0] == BEST
        assert g["eval_seconds"].tolist() == pytest.approx(np.cumsum(table.seconds[g["arch"].to_numpy()]).tolist())


def test_tabular_space_never_leaves_its_list() -> None:
    specs = sample_archs(SPACE, N, seed=2)
    space = TabularSpace.of(SPACE, specs, neighbours=3)
    keys = {s.key() for s in specs}
    rng = np.random.default_rng(0)
    for _ in range(200):
        assert space.sample(rng).key() in keys
    for s in specs:
        for _ in range(20):
            child = space.mutate(s, rng)
            assert child.key() in keys and child.key() != s.key()
    assert all(space.contains(s) for s in specs) and not space.contains(SPACE.sample(np.random.default_rng(99)))
    # a real mutation that is listed is returned as it is
    parent = specs[0]
    muts = [SPACE.mutate(parent, np.random.default_rng(i)) for i in range(30)]
    dense = TabularSpace.of(SPACE, [parent, *muts])
    for i in range(30):
        assert dense.mutate(parent, np.random.default_rng(i)).key() == muts[i].key()
    # a one-architecture table mutates to itself
    assert TabularSpace.of(SPACE, specs[:1]).mutate(specs[0], rng).key() == specs[0].key()


@pytest.mark.parametrize("name", ["random", "evolution", "weaknas", "guided", "bonas", "evo_proxy"])
def test_every_strategy_proposes_only_listed_architectures_through_the_study(table: Table, name: str) -> None:
    rs = FAST.get(name) or REGISTRY[name]
    # the oracle raises NotInTable for anything else, so a finished run proposed only listed ones
    rows, run = simulate(table, rs, seed=3, budget=N, proxy_budget=8)
    assert set(r["key"] for r in rows) <= set(table.keys)
    assert len({r["key"] for r in rows}) == len(rows) == run["queries"]
    if rs.proxy is None:
        assert run["queries"] == N or run["stopped"] == "max_proposals"
    else:
        assert run["proxy_evaluations"] == 8 and run["queries"] == 8
        # the proxy's order: trained best first by its score
        p = dict(zip(table.keys, table.proxies["p"][0]))
        order = [p[r["key"]] for r in rows]
        assert order == sorted(order, reverse=True)
        assert rows[0]["eval_seconds"] == pytest.approx(8 * 0.5 + table.seconds[rows[0]["arch"]])


def test_the_oracle_refuses_an_architecture_outside_the_table(table: Table) -> None:
    ev = truth_evaluator(table.keys, table.logloss, 2.0)
    m = ev.evaluate([table.specs[BEST]])[0]
    assert (m.score, m.values["test_logloss"], m.seconds, m.train_runs) == (-0.49, 0.49, 2.0, 1)
    with pytest.raises(NotInTable, match="not in the table"):
        ev.evaluate([SPACE.sample(np.random.default_rng(99))])
    # a strategy over the whole space (not the tabular one) is caught at its first query
    from recnas.study import Study, TrialStore

    study = Study(TrialStore.memory(), SPACE, measure=ev.measure, settings=ev.settings)
    with pytest.raises(NotInTable):
        ev.evaluate(make_strategy("random", SPACE, seed=0).ask(study, 1))


@pytest.mark.parametrize("name", ["random", "weaknas", "evo_proxy"])
def test_a_strategys_repeats_with_the_same_seed_are_identical(table: Table, name: str) -> None:
    reg = {**REGISTRY, **FAST}
    a, ra = run_regret(table, [name], repeats=3, seed=4, budget=N, proxy_budget=8, registry=reg)
    b, rb = run_regret(table, [name], repeats=3, seed=4, budget=N, proxy_budget=8, registry=reg)
    pd.testing.assert_frame_equal(a.drop(columns=TIMING), b.drop(columns=TIMING))
    pd.testing.assert_frame_equal(ra.drop(columns=["strategy_seconds"]), rb.drop(columns=["strategy_seconds"]))
    c, _ = run_regret(table, [name], repeats=3, seed=5, budget=N, proxy_budget=8, registry=reg)
    assert a["key"].tolist() != c["key"].tolist()
    # repeats differ from one another (their seeds differ)
    by = [g["key"].tolist() for _, g in a.groupby("repeat")]
    assert by[0] != by[1] or by[1] != by[2]


def test_repeats_in_worker_processes_give_the_same_rows(table: Table) -> None:
    """``workers``: each strategy's repeats after the first run in joblib worker processes (the
    registry's entries travel with cloudpickle); the rows and runs equal one process's, timings aside."""
    reg = {**REGISTRY, **FAST}
    names = ["random", "weaknas", "bonas"]
    a, ra = run_regret(table, names, repeats=3, seed=2, budget=N, proxy_budget=8, registry=reg)
    b, rb = run_regret(table, names, repeats=3, seed=2, budget=N, proxy_budget=8, registry=reg, workers=2)
    pd.testing.assert_frame_equal(a.drop(columns=TIMING), b.drop(columns=TIMING))
    pd.testing.assert_frame_equal(ra.drop(columns=["strategy_seconds"]), rb.drop(columns=["strategy_seconds"]))
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        run_regret(table, ["random"], repeats=1, registry=reg, workers=0)


def _bench_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny pipeline and a folder with its build.json, a synthetic groundtruth.csv (a planted
    best), scores.csv and results.csv, as a finished benchmark's."""
    from benchkit import tiny_bench_pipeline

    from recnas.bench.config import build_signature, load_bench

    pipe = tiny_bench_pipeline(tmp_path, "b", tmp_path / "cache", num_archs=10)
    cfg = load_bench(pipe, [])
    src = tmp_path / "rep"
    src.mkdir()
    (src / "build.json").write_text(json.dumps(build_signature(cfg), indent=2, sort_keys=True) + "\n")
    specs = sample_archs(SearchSpace.load(cfg.space), cfg.num_archs, cfg.sample_seed)
    rows = []
    for i, s in enumerate(specs):
        for seed in cfg.train.seeds:
            rows.append({"arch": i, "key": s.key(), "spec": json.dumps(s.to_dict()), "seed": seed,
                         "test_logloss": 0.5 + 0.001 * ((7 * i) % 10) + 0.0001 * seed, "train_seconds": 2.0 + i})
    pd.DataFrame(rows).to_csv(src / "groundtruth.csv", index=False)
    keys = [s.key() for s in specs]
    pd.DataFrame({"arch": range(10), "key": keys, "sigeo | inherit 50%": np.arange(10.0),
                  "oneshot | inherit 50%": -np.arange(10.0)}).to_csv(src / "scores.csv", index=False)
    pd.DataFrame({"label": ["sigeo | inherit 50%", "oneshot | inherit 50%"], "seconds": [10.0, 5.0],
                  "seconds_per_arch": [1.0, 0.5]}).to_csv(src / "results.csv", index=False)
    return pipe, src


def test_regret_command_writes_its_files(tmp_path: Path) -> None:
    from recnas.cli import main

    pipe, src = _bench_folder(tmp_path)
    argv = ["bench", "regret", str(pipe), "--from", str(src), "--repeats", "3",
            "--strategies", "random,evolution_sigeo,evolution_oneshot", "--no-progress"]
    assert main(argv) == 0
    out = src / "regret"
    assert sorted(p.name for p in out.iterdir()) == ["regret.csv", "regret.md", "regret_queries.png",
                                                      "regret_runs.csv", "regret_seconds.png", "regret_summary.csv"]
    rows = pd.read_csv(out / "regret.csv")
    assert list(rows.columns[:4]) == ["strategy", "repeat", "seed", "query"]
    assert set(rows["strategy"]) == {"random", "evolution_sigeo", "evolution_oneshot"}
    assert rows[rows.strategy == "random"].groupby("repeat")["query"].max().eq(10).all()
    # the estimator-driven searches score half the table (5) and train those, best first by the proxy
    runs = pd.read_csv(out / "regret_runs.csv")
    assert runs.loc[runs.strategy != "random", "queries"].eq(5).all()
    assert (rows.loc[rows.strategy == "random", "regret"].groupby(rows["repeat"]).last() == 0).all()
    summary = pd.read_csv(out / "regret_summary.csv")
    assert set(summary["axis"]) == {"queries", "seconds"}
    q = summary[(summary.axis == "queries") & (summary.budget == 10)].set_index("strategy")
    assert q.at["random", "mean"] == 0 and q.at["random", "found_best"] == 1
    ok = summary.dropna(subset=["mean"])
    assert (ok["lo"] >= 0).all() and (ok["lo"] <= ok["mean"]).all() and (ok["mean"] <= ok["hi"]).all()
    md = (out / "regret.md").read_text()
    assert "recnas bench regret" in md and "| evolution_sigeo |" in md and "regret_queries.png" in md
    # a second run with the same seeds writes the same rows (timings aside)
    assert main([*argv, "--out", str(tmp_path / "again")]) == 0
    pd.testing.assert_frame_equal(rows.drop(columns=TIMING), pd.read_csv(tmp_path / "again" / "regret.csv").drop(
        columns=TIMING))
    # an unknown strategy, or a folder without a build, is one clear error
    assert main(["bench", "regret", str(pipe), "--from", str(src), "--strategies", "nope", "--no-progress"]) == 2
    assert main(["bench", "regret", str(pipe), "--from", str(tmp_path), "--no-progress"]) == 2
