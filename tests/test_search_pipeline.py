"""`recnas search`: pipeline validation, the journalled search loop (replay, cache, kill/resume as a
real subprocess), the report files, and a 2-process torchrun search on CPU over gloo.

Everything runs on a few thousand synthetic Criteo rows, the tiny space and budgets of a few dozen.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recnas.config import ConfigError
from recnas.search.config import PipelineConfig, load_pipeline
from recnas.search.runner import JOURNAL_FILE, read_journal, run_search, search_loop
from recnas.space import SearchSpace
from recnas.study import StoreError as JournalError
from recnas.study import Study, TrialStore

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
TIMEOUT = 240


def _pipeline(cache: Path, out: Path, **sections) -> dict:
    d = {
        "data": {"synth_rows": 3000, "hash_size": 1000, "cache": str(cache)},
        "space": "tiny",
        "supernet": {"fraction": 0.5, "batch_size": 128, "checkpoint_every": 4},
        "estimator": {"name": "sigeo", "params": {"weights": "public_criteo"}, "batches": 2, "batch_size": 128},
        "search": {"strategy": "evolution", "budget": 24, "population": 8, "sample": 4, "children": 4, "seed": 3},
        "top_k": 5,
        "retrain": {"top": 0},
        "export": {"top": 0},
        "output": str(out),
    }
    for k, v in sections.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) and isinstance(d.get(k), dict) else v
    return d


def _write(path: Path, d: dict) -> Path:
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _trials(run_dir: Path) -> list[dict]:
    return read_journal(run_dir)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("search")


@pytest.fixture(scope="module")
def reference(workdir: Path):
    """One uninterrupted in-process search (with its own warm-up and a 2-model retraining)."""
    d = _pipeline(workdir / "cache", workdir / "ref", retrain={"top": 2, "max_steps": 4, "batch_size": 128})
    cfg = load_pipeline(_write(workdir / "ref.yaml", d))
    result = run_search(cfg, progress=False)
    return cfg, result


# -- validation ---------------------------------------------------------------------------------


def test_pipeline_unknown_key_names_dotted_path_and_allowed_keys(tmp_path):
    p = _write(tmp_path / "p.yaml", {"search": {"budgt": 3}})
    with pytest.raises(ConfigError) as e:
        load_pipeline(p)
    msg = str(e.value)
    assert str(p) in msg and "'search.budgt'" in msg
    assert "['batch', 'budget', 'evaluator', 'params', 'seed', 'strategy']" in msg
    with pytest.raises(ConfigError, match=r"unknown key 'supernet.fration'.*'fraction'"):
        load_pipeline(_write(tmp_path / "q.yaml", {}), ["supernet.fration=0.1"])
    with pytest.raises(ConfigError, match=r"unknown key 'outptu'"):
        load_pipeline(_write(tmp_path / "r.yaml", {"outptu": "x"}))


def test_pipeline_bad_values_name_their_key(tmp_path):
    p = _write(tmp_path / "p.yaml", {})
    with pytest.raises(ConfigError, match=r"'search.budget': expected an integer"):
        load_pipeline(p, ["search.budget=lots"])
    import re

    from recnas.search.strategies import STRATEGIES

    assert {"evolution", "predictor", "random", "weaknas", "guided_evolution", "bonas"} <= set(STRATEGIES)
    known = re.escape(str(sorted(STRATEGIES)))
    with pytest.raises(ConfigError, match=rf"search.strategy: unknown 'grid'; known: {known}"):
        load_pipeline(p, ["search.strategy=grid"])
    with pytest.raises(ConfigError, match=r"'search': evolution: sample must be in \[1, population=8\]"):
        load_pipeline(p, ["search.population=8", "search.sample=9"])
    with pytest.raises(ConfigError, match=r"'search': strategy 'predictor': unknown parameters \['pol'\]"):
        load_pipeline(p, ["search.strategy=predictor", "search.params={pol: 3}"])
    with pytest.raises(ConfigError, match=r"search.children and search.params.children are both set"):
        load_pipeline(p, ["search.children=4", "search.params={children: 2}"])
    with pytest.raises(ConfigError, match=r"supernet.fraction must be in \(0, 1\]"):
        load_pipeline(p, ["supernet.fraction=0"])
    with pytest.raises(ConfigError, match=r"unknown estimator 'sigoe'; known estimators are \[.*'sigeo'"):
        load_pipeline(p, ["estimator.name=sigoe"])
    with pytest.raises(ConfigError, match=r"estimator 'sigeo': unknown parameters \['wieghts'\]"):
        load_pipeline(p, ["estimator.name=sigeo", "estimator.params={wieghts: paper}"])
    with pytest.raises(ConfigError, match=r"zico reduce: expected one of \['sum', 'mean', 'per_layer'\], got 'avg'"):
        load_pipeline(p, ["estimator.params={reduce: avg}"])  # the default estimator's parameters are checked too
    with pytest.raises(ConfigError, match=r"data: give exactly one of 'raw'"):
        load_pipeline(p, ["data.synth_rows=0"])


def test_pipeline_defaults_are_nasrecs_full_run(tmp_path):
    cfg = load_pipeline(_write(tmp_path / "p.yaml", {}))
    s = cfg.search.make(SearchSpace.load(cfg.space))
    assert (s.name, s.population, s.sample, s.children, cfg.search.budget) == ("evolution", 128, 64, 8, 2048)
    assert cfg.search.batch == 0 and s.default_batch == 8
    assert (cfg.estimator.name, cfg.estimator.params, cfg.estimator.init) == ("zico", {"reduce": "mean"}, "fresh")
    assert isinstance(cfg, PipelineConfig)


def test_the_default_estimator_comes_whole_and_a_named_one_keeps_its_own_defaults(tmp_path):
    """The default (issue 18's rule: ZiCo, per-tensor mean, fresh weights) applies as a unit when the
    section names no estimator; naming one gives that estimator's own parameters and inherited
    weights, never the default's ``reduce: mean`` (which SiGeo also accepts and would silently change)."""
    from recnas.search.config import DEFAULT_ESTIMATOR

    p = _write(tmp_path / "p.yaml", {"estimator": {"batches": 2}})
    e = load_pipeline(p).estimator
    assert (e.name, e.params, e.init, e.batches) == (DEFAULT_ESTIMATOR["name"], {"reduce": "mean"}, "fresh", 2)
    e = load_pipeline(p, ["estimator.name=sigeo"]).estimator
    assert (e.name, e.params, e.init) == ("sigeo", {}, "inherit")
    e = load_pipeline(p, ["estimator.name=zico"]).estimator
    assert (e.name, e.params, e.init) == ("zico", {}, "inherit")
    e = load_pipeline(p, ["estimator.params={reduce: sum}"]).estimator
    assert (e.name, e.params, e.init) == ("zico", {"reduce": "sum"}, "fresh")
    e.params["reduce"] = "per_layer"  # the default's parameters are a copy per section
    assert DEFAULT_ESTIMATOR["params"] == {"reduce": "mean"} and load_pipeline(p).estimator.params == {"reduce": "mean"}


def test_cli_reports_a_bad_pipeline_in_one_line(tmp_path):
    p = _write(tmp_path / "p.yaml", {"search": {"budget": 4, "childern": 2}})
    r = subprocess.run([PY, "-m", "recnas", "search", str(p)], capture_output=True, text=True,
                       env=_env(), timeout=TIMEOUT)
    assert r.returncode == 2
    assert "recnas search: error:" in r.stderr and "'search.childern'" in r.stderr and "Traceback" not in r.stderr


# -- the loop: replay and cache -----------------------------------------------------------------


def test_loop_continues_a_cut_store_and_caches_repeats(tmp_path):
    """A real estimator (flops, fresh weights): a store cut after k records and continued equals
    the uninterrupted one, measured candidates are not measured again, and repeated architectures are
    recorded as cached with their first score."""
    from recnas.data.batch import random_batch
    from recnas.data.feature_map import DenseFeature, FeatureMap, SparseFeature
    from recnas.estimators import ScoringContext, make_estimator
    from recnas.study.evaluators import ProxyEvaluator
    from recnas.train.distributed import init_distributed

    fm = FeatureMap("t", tuple(DenseFeature(f"I{i}") for i in range(2)),
                    tuple(SparseFeature(f"C{i}", 50) for i in range(3)))
    ctx = ScoringContext(fm, batches=[random_batch(fm, 8)], init="fresh")
    cfg = load_pipeline(_write(tmp_path / "p.yaml", {}),
                        ["space=tiny", "search.population=6", "search.sample=3", "search.children=4"])
    space = SearchSpace.load("tiny")
    env = init_distributed()

    class Counting:
        name = "flops"

        def __init__(self):
            self.est, self.n = make_estimator("flops"), 0

        def get_params(self):
            return {}

        def score(self, specs, c):
            self.n += len(specs)
            return self.est.score(specs, c)

    def run(path: Path, budget: int, est) -> list[dict]:
        store = TrialStore.open(path, {"x": 1})
        ev = ProxyEvaluator(est, ctx, identity={})
        study = Study(store, space, measure=ev.measure, settings=ev.settings)
        search_loop(cfg.search.make(space), ev, study, budget, 4, env, progress=False)
        store.close()
        return [r for r in map(json.loads, path.read_text().splitlines()) if r["type"] == "trial"]

    full = run(tmp_path / "full.jsonl", 60, Counting())
    assert [r["index"] for r in full] == list(range(60))
    cached = [r for r in full if r["cached"]]
    assert cached, "evolution on the tiny space with a flops score should propose repeats"
    first = {}
    for r in full:
        first.setdefault(r["key"], r)
    for r in cached:
        assert r["score"] == first[r["key"]]["score"] and r["seconds"] == 0.0 and first[r["key"]]["index"] < r["index"]
    est_full = Counting()
    run(tmp_path / "again.jsonl", 60, est_full)
    assert est_full.n == len(first)  # each distinct architecture scored once

    # Cut mid-batch (after the 23rd measurement, 23 not a multiple of 4) with a partial line, and continue.
    lines = (tmp_path / "full.jsonl").read_text().splitlines(keepends=True)
    n_keep = [i for i, ln in enumerate(lines) if json.loads(ln)["type"] == "trial"][22] + 1
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(lines[:n_keep]) + lines[n_keep][:30])
    est = Counting()
    resumed = run(cut, 60, est)
    assert [(r["key"], r["score"], r["cached"]) for r in resumed] == [(r["key"], r["score"], r["cached"]) for r in full]
    assert est.n == len({r["key"] for r in full[23:] if not r["cached"]})

    # A bigger budget continues the same sequence (proposals do not depend on the budget).
    short = run(tmp_path / "short.jsonl", 30, Counting())
    longer = run(tmp_path / "short.jsonl", 60, Counting())
    assert [r["key"] for r in short] == [r["key"] for r in full[:30]]
    assert [r["key"] for r in longer] == [r["key"] for r in full]


def test_a_schema_1_journal_is_converted_once_and_continued(reference, workdir):
    """A run folder of recnas before the trial store (journal schema 1: header version 1, trial records
    without study/batch/measure) is converted in place on the next run, measures nothing again, and
    continues to a larger budget exactly as the uninterrupted run does."""
    cfg, result = reference
    old = workdir / "schema1"
    d = _pipeline(workdir / "cache", old, supernet={"reuse": str(result.run_dir)}, search={"budget": 12})
    fresh = run_search(load_pipeline(_write(workdir / "schema1.yaml", d)), progress=False)
    v1_header = {"type": "header", "version": 1, "config": {**json.loads(
        (old / JOURNAL_FILE).read_text().splitlines()[0])["config"]}}
    s = v1_header["config"]["search"]
    v1_header["config"]["search"] = {"strategy": s["strategy"], "seed": s["seed"], **s["params"]}
    v1 = [json.dumps(v1_header)] + [json.dumps({k: t[k] for k in ("type", "index", "key", "spec", "score", "seconds", "cached")})
                                    for t in fresh.trials]
    (old / JOURNAL_FILE).write_text("\n".join(v1) + "\n")
    again = run_search(load_pipeline(_write(workdir / "schema1.yaml", d)), progress=False)
    assert again.scored_now == 0 and (old / "journal.v1.jsonl").read_text() == "\n".join(v1) + "\n"
    assert json.loads((old / JOURNAL_FILE).read_text().splitlines()[0])["schema"] == 2
    d["search"]["budget"] = cfg.search.budget
    longer = run_search(load_pipeline(_write(workdir / "schema1.yaml", d)), progress=False)
    assert [(t["key"], t["score"]) for t in longer.trials] == [(t["key"], t["score"]) for t in result.trials]


# -- whole runs ---------------------------------------------------------------------------------


def test_report_files_and_sorted_top_k(reference):
    cfg, result = reference
    run = result.run_dir
    for name in ("pipeline.yaml", "data.json", "space.yaml", "supernet.json", JOURNAL_FILE, "report.md",
                 "results.csv", "top_k.csv", "retrain.csv", "score_distribution.png", "best_so_far.png", "top_k.png"):
        assert (run / name).is_file(), name
    for png in run.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert Path(json.loads((run / "data.json").read_text())["prepared"], "feature_map.json").exists()
    assert load_pipeline(run / "pipeline.yaml") == cfg  # the resolved config reads back the same

    rows = list(csv.DictReader(open(run / "results.csv")))
    assert len(rows) == cfg.search.budget == len(result.trials)
    best = [float(r["best_so_far"]) for r in rows]
    assert best == sorted(best) and best[-1] == max(float(r["score"]) for r in rows)
    top = list(csv.DictReader(open(run / "top_k.csv")))
    scores = [float(r["score"]) for r in top]
    assert len(top) == cfg.top_k and scores == sorted(scores, reverse=True)
    assert len({r["key"] for r in top}) == len(top) and scores[0] == best[-1]
    assert all(int(r["flops"]) > 0 and int(r["params"]) > int(r["dense_params"]) > 0 for r in top)

    retrain = list(csv.DictReader(open(run / "retrain.csv")))
    assert [r["key"] for r in retrain] == [r["key"] for r in top[:2]]
    assert all(0 < float(r["test_logloss"]) < 2 for r in retrain)
    md = (run / "report.md").read_text()
    assert top[0]["key"] in md and "Retrained from scratch" in md
    from recnas.models.layout import functional_key
    from recnas.space.spec import ArchSpec

    specs = {r["key"]: ArchSpec.from_json(r["spec"]) for r in rows}
    models = len({functional_key(s) for s in specs.values()})
    assert f"{len(specs)} distinct architectures building {models} distinct models" in md


def test_supernet_loads_from_both_run_paths(reference):
    from recnas.train.warmup import load_supernet

    run = reference[1].run_dir
    a, b = load_supernet(run), load_supernet(run / "supernet")
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all((sa[k] == sb[k]).all() for k in sa)


def test_rerun_scores_nothing_and_other_settings_are_refused(reference, workdir):
    cfg, result = reference
    d = yaml.safe_load((result.run_dir / "pipeline.yaml").read_text())
    again = run_search(load_pipeline(_write(workdir / "again.yaml", d)), resume=True, progress=False)
    assert again.scored_now == 0 and _trials(result.run_dir) == result.trials
    # the retrainings are trained measurements in the store: read back, not trained again
    records = [json.loads(x) for x in (result.run_dir / JOURNAL_FILE).read_text().splitlines()[1:]]
    retrained = [r for r in records if r.get("study") == "retrain"]
    assert len(retrained) == 2 and again.retrain == result.retrain
    assert [r["key"] for r in retrained] == [r["key"] for r in result.retrain]
    assert all(r["measure"] == "trained" and r["train_runs"] == 1 and r["score"] == -r["values"]["val_logloss"]
               for r in retrained)
    d["search"]["seed"] = 4
    with pytest.raises(JournalError, match=r"different configuration \(differs at search.seed: saved 3, now 4\)"):
        run_search(load_pipeline(_write(workdir / "other.yaml", d)), progress=False)
    with pytest.raises(FileNotFoundError, match="no search to continue"):
        d["output"] = str(workdir / "nothing-here")
        run_search(load_pipeline(_write(workdir / "none.yaml", d)), resume=True, progress=False)
    # The header pins the ops' version: candidates scored under other ops are never mixed in ...
    lines = (result.run_dir / "journal.jsonl").read_text().splitlines()
    header = json.loads(lines[0])
    assert header["config"]["ops_version"] >= 2
    # ... while keys added later are left out at their defaults, so older journals still resume.
    assert "max_loss" not in header["config"]["supernet"] and "synth_interaction_rows" not in header["config"]["data"]
    header["config"]["ops_version"] = 1
    old = workdir / "old-ops"
    old.mkdir()
    (old / "journal.jsonl").write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    d = yaml.safe_load((result.run_dir / "pipeline.yaml").read_text())
    d["output"] = str(old)
    with pytest.raises(JournalError, match=r"differs at ops_version"):
        run_search(load_pipeline(_write(workdir / "old-ops.yaml", d)), progress=False)


def test_killed_search_resumes_to_the_same_journal(reference, workdir):
    """A real `recnas search` subprocess, SIGKILLed right after its 7th measurement is recorded
    (fault point ``search.trial``), then rerun with --resume, ends with the reference run's journal
    (same keys, scores, order) and measures only what the store did not hold."""
    cfg, result = reference
    out = workdir / "killed"
    d = _pipeline(workdir / "cache", out, supernet={"reuse": str(result.run_dir)})
    p = _write(workdir / "killed.yaml", d)
    r = subprocess.run([PY, "-m", "recnas", "search", str(p), "--no-progress"], env={**_env(), "RECNAS_FAULT": "search.trial:7"},
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    killed = _trials(out)
    assert len(killed) == 7
    pending = [json.loads(x) for x in (out / JOURNAL_FILE).read_text().splitlines() if '"asked"' in x]
    assert len(pending) == 8  # two batches of 4 asked; the 8th proposal was asked, not measured

    r = subprocess.run([PY, "-m", "recnas", "search", str(p), "--resume", "--no-progress"], env=_env(),
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    resumed = _trials(out)
    assert [t["index"] for t in resumed] == list(range(cfg.search.budget))
    assert [(t["key"], t["score"], t["cached"]) for t in resumed] == [
        (t["key"], t["score"], t["cached"]) for t in result.trials
    ]
    assert resumed[:7] == killed  # the records before the kill are kept as they were
    records = [json.loads(x) for x in (out / JOURNAL_FILE).read_text().splitlines()[1:]]
    trials = [t for t in records if t["type"] == "trial"]
    assert len(trials) == cfg.search.budget  # nothing measured twice
    assert sum(t["type"] == "asked" and t["index"] < 8 for t in records) == 8  # nothing asked twice


def test_a_predictor_drives_an_oracle_search_end_to_end_and_resumes(workdir):
    """A pipeline file with the predictor strategy (ridge on the one-hot encoding) querying the
    train-from-scratch oracle: SIGKILLed right after its 5th training run is recorded (fault point
    ``oracle.run``), resumed, and equal to an uninterrupted run; every run was trained once."""
    def pipe(out):
        d = _pipeline(workdir / "cache", out, supernet={"fraction": 0.2},
                      oracle={"max_steps": 3, "batch_size": 128, "eval_batch_size": 512, "checkpoint_every": 2})
        d["search"] = {"strategy": "predictor", "params": {"predictor": "ridge", "initial": 4, "pool": 100},
                       "evaluator": "oracle", "budget": 10, "batch": 2, "seed": 0}
        return d
    ref = run_search(load_pipeline(_write(workdir / "oracle_ref.yaml", pipe(workdir / "oracle_ref"))), progress=False)
    assert [t["index"] for t in ref.trials] == list(range(10))
    for t in ref.trials:  # the score is minus the validation log loss of a real run; test metrics beside it
        assert t["measure"] == "trained" and t["score"] == -t["values"]["val_logloss"]
        assert 0.3 < t["values"]["test_logloss"] < 1.0 and t["train_runs"] == (0 if t["cached"] else 1)
    # after the 4 initial samples, each batch is the ridge model's best 2 of a pool: a fresh strategy
    # reading the store up to that batch proposes it again
    from recnas.search.strategies import make_strategy
    from recnas.study import Study, TrialStore
    space = SearchSpace.load("tiny")
    st = TrialStore.read(workdir / "oracle_ref" / JOURNAL_FILE)
    part = TrialStore.memory()
    for r in st.records:
        if r.get("index", 0) < 6:
            part._add(r)
    study = Study(part, space, measure="trained", settings=ref.trials[0]["settings"])
    strat = make_strategy("predictor", space, seed=0, predictor="ridge", initial=4, pool=100)
    assert [s.key() for s in strat.ask(study, 2)] == [t["key"] for t in ref.trials[6:8]] and strat.fits == 1

    out = workdir / "oracle_killed"
    p = _write(workdir / "oracle_killed.yaml", pipe(out))
    r = subprocess.run([PY, "-m", "recnas", "search", str(p), "--no-progress"],
                       env={**_env(), "RECNAS_FAULT": "oracle.run:5"}, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    assert len(_trials(out)) == 4  # the 5th run finished, its record was not written yet
    r = subprocess.run([PY, "-m", "recnas", "search", str(p), "--no-progress"], env=_env(),
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    resumed = _trials(out)
    assert [(t["key"], t["score"], t["cached"]) for t in resumed] == [(t["key"], t["score"], t["cached"]) for t in ref.trials]
    records = [json.loads(x) for x in (out / JOURNAL_FILE).read_text().splitlines()[1:]]
    assert sum(x["type"] == "trial" for x in records) == 10
    # the 5th run was finished before the kill: its checkpoint was found, so it was not trained again
    fifth = resumed[4]
    assert (out / "oracle" / f"{fifth['key']}-s0").is_dir()


def test_a_search_killed_in_the_warm_up_and_in_the_final_training_loses_nothing(workdir):
    """`recnas search` SIGKILLed at a warm-up checkpoint (``warmup.checkpoint``), rerun and SIGKILLed
    after the first model of the final training (``final.model``), then rerun to the end: the journal
    and final.csv equal an uninterrupted run's, the finished final model is read back, not retrained."""
    def pipe(out):
        return _pipeline(workdir / "cache", out, search={"budget": 8}, export={"top": 1},
                         final={"top": 1, "baselines": ["dlrm"], "batch_size": 128, "fraction": 0.2})
    ref = run_search(load_pipeline(_write(workdir / "stages_ref.yaml", pipe(workdir / "stages_ref"))), progress=False)
    out = workdir / "stages"
    p = _write(workdir / "stages.yaml", pipe(out))

    def run(fault=None):
        env = {**_env(), **({"RECNAS_FAULT": fault} if fault else {})}
        return subprocess.run([PY, "-m", "recnas", "search", str(p), "--no-progress"], env=env,
                              capture_output=True, text=True, timeout=TIMEOUT)

    r = run("warmup.checkpoint:2")
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    assert not (out / "supernet.json").exists() and not _trials(out)
    r = run("final.model:1")
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    assert len(_trials(out)) == 8 and not (out / "final.csv").exists()
    first = next((out / "final").glob("*/result.json")).parent / "train" / "checkpoints"
    stamp = {f: f.stat().st_mtime_ns for f in first.rglob("*") if f.is_file()}
    assert stamp
    r = run()
    assert r.returncode == 0, r.stderr[-3000:]
    assert [(t["key"], t["score"]) for t in _trials(out)] == [(t["key"], t["score"]) for t in ref.trials]
    assert (out / "final.csv").read_text() == (workdir / "stages_ref" / "final.csv").read_text()
    assert {f: f.stat().st_mtime_ns for f in first.rglob("*") if f.is_file()} == stamp  # not trained again
    # the final models are production measurements in the store, each recorded once; final.csv is their view
    recs = [json.loads(x) for x in (out / JOURNAL_FILE).read_text().splitlines()[1:]]
    final = [r for r in recs if r.get("study") == "final"]
    assert [r["key"] for r in final][1:] == ["baseline:dlrm"] and len(final) == 2
    assert [r["values"]["test_logloss"] for r in final] == [
        float(row["test_logloss"]) for row in csv.DictReader(open(out / "final.csv"))]


_VERIFY = """
from recnas.search.strategies import RandomSearch


class Verify(RandomSearch):
    \"\"\"Random search that, before each batch, trains its best candidate so far from scratch.\"\"\"

    name = "toy_verify"

    def ask(self, study, n):
        done = [t for t in study.history() if t.done]
        if done:
            study.query("oracle", [max(done, key=lambda t: (t.score, -t.index)).spec])
        return super().ask(study, n)
"""


def test_a_strategy_queries_the_oracle_through_the_store_and_a_kill_loses_no_run(reference, workdir, monkeypatch):
    """A strategy that queries the train-from-scratch oracle besides its estimator: every query is a
    trained record in the store; SIGKILLed right after its first query is recorded (fault point
    ``study.query``) and rerun, it ends equal to an uninterrupted run, no run trained twice."""
    from recnas.search.strategies import STRATEGIES

    cfg, result = reference
    mod = workdir / "toy_verify.py"
    mod.write_text(_VERIFY)
    script = workdir / "run_verify.py"
    script.write_text("import sys\nsys.path.insert(0, sys.argv[2])\nimport toy_verify  # noqa\n"
                      "from recnas.search.config import load_pipeline\nfrom recnas.search.runner import run_search\n"
                      "run_search(load_pipeline(sys.argv[1]), progress=False)\n")

    def pipe(out):
        d = _pipeline(workdir / "cache", out, supernet={"reuse": str(result.run_dir)},
                      estimator={"name": "flops", "params": {}},
                      oracle={"max_steps": 3, "batch_size": 128, "eval_batch_size": 512})
        d["search"] = {"strategy": "toy_verify", "budget": 12, "batch": 4, "seed": 0}
        return d

    monkeypatch.syspath_prepend(str(workdir))
    import toy_verify  # noqa: F401  (registers the strategy in this process too)
    try:
        ref = run_search(load_pipeline(_write(workdir / "verify_ref.yaml", pipe(workdir / "verify_ref"))), progress=False)

        def queries(run):
            recs = [json.loads(x) for x in (run / JOURNAL_FILE).read_text().splitlines()[1:]]
            return [r for r in recs if r.get("study") == "search:oracle"]

        q_ref = queries(ref.run_dir)
        assert len(q_ref) >= 1 and all(r["measure"] == "trained" and r["train_runs"] == 1 for r in q_ref)
        out = workdir / "verify_killed"
        p = _write(workdir / "verify_killed.yaml", pipe(out))
        cmd = [PY, str(script), str(p), str(workdir)]
        r = subprocess.run(cmd, env={**_env(), "RECNAS_FAULT": "study.query:1"}, capture_output=True, text=True, timeout=TIMEOUT)
        assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
        assert len(queries(out)) == 1
        r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
        assert r.returncode == 0, r.stderr[-3000:]
        assert [(t["key"], t["score"]) for t in _trials(out)] == [(t["key"], t["score"]) for t in ref.trials]
        assert [(q["key"], q["score"]) for q in queries(out)] == [(q["key"], q["score"]) for q in q_ref]
    finally:
        STRATEGIES.pop("toy_verify", None)
        sys.modules.pop("toy_verify", None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_match_one(workdir):
    """`torchrun --nproc-per-node 2 -m recnas search` (sharded warm-up, scoring split over 2 gloo
    ranks, retraining under DMP) writes one journal; a 1-process search with that supernet scores
    the same candidates in the same order (scores equal to float tolerance)."""
    out2 = workdir / "two"
    d = _pipeline(workdir / "cache", out2, retrain={"top": 1, "max_steps": 3, "batch_size": 64},
                  search={"budget": 16})
    p = _write(workdir / "two.yaml", d)
    cmd = [PY, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), "-m", "recnas", "search", str(p), "--no-progress"]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT * 2)
    assert r.returncode == 0, r.stderr[-4000:]
    two = _trials(out2)
    assert [t["index"] for t in two] == list(range(16))
    card = json.loads((out2 / "supernet.json").read_text())
    assert card["describe"]["world_size"] == 2
    assert (out2 / "retrain.csv").exists() and (out2 / "report.md").exists()

    d1 = _pipeline(workdir / "cache", workdir / "one", supernet={"reuse": str(out2)}, search={"budget": 16})
    one = run_search(load_pipeline(_write(workdir / "one.yaml", d1)), progress=False).trials
    assert [t["key"] for t in one] == [t["key"] for t in two]
    assert [t["score"] for t in one] == pytest.approx([t["score"] for t in two], rel=1e-9, abs=1e-9)


def test_an_oracle_search_trains_each_model_once_answering_twins_from_the_store(workdir):
    """A spec that differs from a measured one only in choices that do not reach the logit builds
    the same model: the train-from-scratch oracle answers it from the store (across batches) or from
    the batch's first occurrence, recording ``cached`` with ``values.twin_of``, and trains nothing;
    an estimator study still scores such specs on their own. A strategy's oracle query of a twin
    is answered the same way."""
    import numpy as np

    from recnas.models.layout import functional_key
    from recnas.search.strategies import STRATEGIES, RandomSearch
    from recnas.study import Study, TrialStore
    from twins import with_twin  # tests/twins.py

    space = SearchSpace.load("tiny")
    rng = np.random.default_rng(11)
    (a, ta), (d, td) = with_twin(space, rng), with_twin(space, rng)
    b, c = space.sample(rng), space.sample(rng)
    order = [a, b, ta, c, d, td]  # batches of 2: [a, b], [ta, c] (a twin of a stored run), [d, td] (within a batch)
    assert len({functional_key(s) for s in order}) == 4 and len({s.key() for s in order}) == 6

    class Twins(RandomSearch):
        name = "toy_twins"

        def _propose(self):
            return list(order)

    try:
        out = workdir / "twins"
        pipe = _pipeline(workdir / "cache", out, supernet={"fraction": 0.2},
                         oracle={"max_steps": 3, "batch_size": 128, "eval_batch_size": 512})
        pipe["search"] = {"strategy": "toy_twins", "evaluator": "oracle", "budget": 6, "batch": 2, "seed": 0}
        run_search(load_pipeline(_write(workdir / "twins.yaml", pipe)), progress=False)
        trials = _trials(out)
        assert [t["key"] for t in trials] == [s.key() for s in order]
        by = {t["key"]: t for t in trials}
        for twin, orig in ((ta, a), (td, d)):
            t, o = by[twin.key()], by[orig.key()]
            assert (t["cached"], t["train_runs"], t["score"]) == (True, 0, o["score"])
            assert t["values"]["twin_of"] == orig.key() and t["values"]["val_logloss"] == o["values"]["val_logloss"]
        assert sum(t["train_runs"] for t in trials) == 4
        assert sorted(p.name for p in (out / "oracle").iterdir()) == sorted(f"{s.key()}-s0" for s in (a, b, c, d))

        # a strategy's query: the twin of a trained architecture is answered from the store, not trained
        store = TrialStore.memory()
        store._add(by[a.key()])  # a's run only: ta has no record of its own here
        settings = by[a.key()]["settings"]

        class NeverTrain:
            measure, seed = "trained", 0

            def __init__(self):
                self.settings = settings

            def evaluate(self, specs):
                raise AssertionError(f"trained {[s.key() for s in specs]} again")

        study = Study(store, space, measure="trained", settings=settings, evaluators={"oracle": NeverTrain()})
        rec = study.query("oracle", [ta])[0]
        assert (rec["key"], rec["twin_of"], rec["cached"], rec["score"]) == (ta.key(), a.key(), True, by[a.key()]["score"])
        assert Study(store, space, measure="flops", settings="s").lookup(ta) is None  # estimators: no twins
    finally:
        STRATEGIES.pop("toy_twins", None)
