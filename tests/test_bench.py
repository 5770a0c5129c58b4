"""recnas bench: pipeline validation, ground-truth build (resumable, real subprocess kill), compare.

Everything runs for real on a tiny space and a few hundred synthetic Criteo-format rows: the data
stage, TorchRec training of every (architecture, seed), the supernet warm-up, every estimator.
"""

from __future__ import annotations

import dataclasses

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from benchkit import tiny_bench_pipeline
import yaml
from scipy import stats as sps

from recnas.bench.config import BenchConfig, build_signature, load_bench
from recnas.bench.groundtruth import COLUMNS, TABLE_FILE, build, read_table, sample_archs
from recnas.config import ConfigError
from recnas.space import SearchSpace

REPO = Path(__file__).resolve().parents[1]
N_ARCHS = 4


def _pipeline(tmp: Path, out: str, cache: Path, **extra) -> Path:
    return tiny_bench_pipeline(tmp, out, cache, num_archs=extra.pop("num_archs", N_ARCHS), checkpoint_every=4, **extra)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="module")
def built(work: Path) -> tuple[BenchConfig, pd.DataFrame]:
    """An uninterrupted build, in this process."""
    cfg = load_bench(_pipeline(work, "full", work / "cache"))
    return cfg, build(cfg, progress=False)


# -- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"train": {"epochz": 1}}, r"unknown key 'train.epochz'; allowed keys under 'train'"),
        ({"train": {"seeds": [0]}}, r"train.seeds: at least two seeds"),
        ({"train": {"workers": 0}}, r"'train': train.workers must be >= 1"),
        ({"num_archs": "many"}, r"'num_archs': expected an integer"),
        ({"estimators": [{"name": "params"}, {"name": "sigeo2"}]}, r"'estimators\[1\]': unknown estimator 'sigeo2'"),
        ({"estimators": [{"name": "sigeo", "params": {"lam": 1}}]}, r"'estimators\[0\]': .*unknown parameters \['lam'\]"),
        ({"estimators": [{"name": "oneshot", "inits": ["fresh"]}]}, r"'estimators\[0\].inits': 'oneshot' scores inherited"),
        ({"estimators": [{"name": "params", "inits": ["inherit"]}]}, r"'estimators\[0\].inits': 'params' reads no weights"),
        ({"warmup": {"fractions": [0.0, 1.5]}}, r"warmup.fractions: 1.5 is not in \[0, 1\]"),
        ({"sigeo_ablation": {"embeddings": ["all"]}}, r"sigeo_ablation.embeddings: 'all'"),
        ({"data": {"synth_rows": 10, "raw": ["x.txt"]}}, r"data: give exactly one of"),
    ],
)
def test_config_errors_name_the_file_and_key(tmp_path: Path, patch: dict, message: str) -> None:
    p = _pipeline(tmp_path, "cfg", tmp_path / "cache")
    d = yaml.safe_load(p.read_text())
    for k, v in patch.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) and isinstance(d.get(k), dict) else v
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError, match=message) as e:
        load_bench(p)
    assert str(p) in str(e.value)


def test_overrides_and_defaults(tmp_path: Path) -> None:
    p = _pipeline(tmp_path, "cfg", tmp_path / "cache")
    cfg = load_bench(p, ["num_archs=7", "train.seeds=[0, 1, 2]"])
    assert cfg.num_archs == 7 and cfg.train.seeds == (0, 1, 2)
    by_name = {e.name: e.resolved_inits() for e in cfg.estimators}
    assert by_name["params"] == ("none",) and by_name["oneshot"] == ("inherit",)
    assert by_name["sigeo"] == ("inherit", "fresh")
    with pytest.raises(ConfigError, match="unknown key 'trian'"):
        load_bench(p, ["trian.epochs=2"])
    # workers only changes the wall time: a build may resume with another count
    par = load_bench(p, ["train.workers=3"])
    assert cfg.train.workers == 1 and par.train.workers == 3
    assert build_signature(par) == build_signature(load_bench(p))


def test_sampling_is_distinct_and_prefix_stable() -> None:
    space = SearchSpace.load("tiny")
    a = sample_archs(space, 12, seed=5)
    assert len({s.key() for s in a}) == 12
    assert [s.key() for s in sample_archs(space, 5, seed=5)] == [s.key() for s in a[:5]]
    assert [s.key() for s in sample_archs(space, 5, seed=6)] != [s.key() for s in a[:5]]


# -- build -----------------------------------------------------------------------------------------


def test_build_writes_one_sane_row_per_arch_and_seed(built: tuple[BenchConfig, pd.DataFrame]) -> None:
    cfg, df = built
    out = Path(cfg.output)
    assert len(df) == N_ARCHS * 2
    assert sorted(zip(df["arch"], df["seed"])) == [(i, s) for i in range(N_ARCHS) for s in (0, 1)]
    specs = sample_archs(SearchSpace.load("tiny"), N_ARCHS, 3)
    assert set(df["key"]) == {s.key() for s in specs}
    for col in ("val_logloss", "test_logloss"):
        assert ((df[col] > 0.05) & (df[col] < 1.5)).all(), df[col]
    assert (df["params"] > 0).all() and (df["flops"] > 0).all() and (df["params_total"] > df["params"]).all()
    assert (df["train_seconds"] > 0).all() and (df["steps"] == df["steps"].iloc[0]).all()
    # different seeds train different models
    piv = df.pivot(index="key", columns="seed", values="test_logloss")
    assert (piv[0] != piv[1]).any()
    # the table on disk is the one returned; per-run folders are gone
    pd.testing.assert_frame_equal(read_table(out), df)
    assert not (out / "runs").exists()


def test_a_row_is_the_trainers_result_for_that_architecture_and_seed(
    built: tuple[BenchConfig, pd.DataFrame], tmp_path: Path
) -> None:
    """Row (arch 1, seed 1) holds what the plain trainer gives for that spec and seed with the bench's
    settings, evaluated on the prepared test split -- not merely numbers in range."""
    from recnas.data.loader import ParquetBatchLoader, load_prepared
    from recnas.models import CTRModel
    from recnas.pipeline import resolve_data
    from recnas.train.trainer import TrainConfig, train

    cfg, df = built
    row = df[(df["arch"] == 1) & (df["seed"] == 1)].iloc[0]
    spec = sample_archs(SearchSpace.load("tiny"), N_ARCHS, 3)[1]
    assert row["key"] == spec.key()
    t = cfg.train
    fm, splits = load_prepared(resolve_data(cfg.data, progress=False))
    r = train(
        lambda device: CTRModel(fm, spec, device=device),
        ParquetBatchLoader(splits["train"], fm, batch_size=t.batch_size, shuffle=True, seed=1, drop_last=True,
                           fraction=t.fraction if t.fraction < 1.0 else None),
        config=TrainConfig(epochs=t.epochs, max_steps=t.max_steps, dense_lr=t.dense_lr, table_lr=t.table_lr,
                           lr_schedule=t.lr_schedule, lr_warmup=t.lr_warmup, seed=1, progress=False),
        out_dir=tmp_path / "run",
        test_loader=ParquetBatchLoader(splits["test"], fm, batch_size=t.eval_batch_size),
    )
    assert (r.steps, r.test.logloss, r.test.auc) == (row["steps"], row["test_logloss"], row["test_auc"])


def test_rebuild_trains_nothing_and_changed_settings_are_refused(built: tuple[BenchConfig, pd.DataFrame], work: Path) -> None:
    cfg, df = built
    again = build(cfg, progress=False)
    pd.testing.assert_frame_equal(again, df)  # finished_at included: no row was retrained
    changed = load_bench(_pipeline(work, "full", work / "cache", sample_seed=4))
    with pytest.raises(ValueError, match=r"built with different settings \(differs at sample_seed: saved \d+, now \d+\)"):
        build(changed, progress=False)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "recnas", "bench", *args]


def test_import_takes_an_earlier_builds_rows_as_finished(built: tuple[BenchConfig, pd.DataFrame], work: Path) -> None:
    """`build --import DIR` (DIR as a reports/ folder keeps it: build.json + groundtruth.csv) adds those
    rows and trains only the rest; rows of other settings or other architectures are refused by name."""
    import shutil

    from recnas.bench.groundtruth import BUILD_FILE, import_rows

    cfg, reference = built
    src = work / "report_copy"
    src.mkdir()
    shutil.copy(Path(cfg.output) / BUILD_FILE, src / BUILD_FILE)
    kept = reference[~((reference["arch"] == 0) & (reference["seed"] == 1))].drop(columns=["finished_at"])
    kept.to_csv(src / "groundtruth.csv", index=False)
    p = _pipeline(work, "imported", work / "cache")
    r = subprocess.run(_cli("build", str(p), "--import", str(src)), cwd=REPO, capture_output=True, text=True,
                       timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert f"imported {len(reference) - 1} rows from {src}" in r.stderr
    assert f"{len(reference) - 1} of {len(reference)} (architecture, seed) rows done, 1 to train" in r.stderr
    got = read_table(work / "imported")
    cols = ["arch", "key", "seed", "test_logloss", "val_auc", "flops"]
    pd.testing.assert_frame_equal(got[cols], reference[cols])  # the retrained row reproduces too
    assert got["finished_at"].isna().sum() == len(reference) - 1
    assert import_rows(load_bench(p), src) == 0  # nothing new a second time

    other = load_bench(_pipeline(work, "imported2", work / "cache", sample_seed=4))
    with pytest.raises(ValueError, match=r"build.json: was built with different settings \(differs at sample_seed: saved \d+, now \d+\)"):
        import_rows(other, src)
    bad = work / "report_bad"
    bad.mkdir()
    with pytest.raises(FileNotFoundError, match="no build.json"):
        import_rows(load_bench(p), bad)
    shutil.copy(src / BUILD_FILE, bad / BUILD_FILE)
    wrong = kept.copy()
    wrong.loc[wrong.index[2], "arch"] = (int(wrong["arch"].iloc[2]) + 1) % N_ARCHS
    wrong.to_csv(bad / "groundtruth.csv", index=False)
    with pytest.raises(ValueError, match=r"groundtruth.csv:4: architecture \d \(\w+\) is not this pipeline's"):
        import_rows(load_bench(p), bad)
    beyond = kept.copy()
    beyond.loc[beyond.index[2], "arch"] = N_ARCHS
    beyond.to_csv(bad / "groundtruth.csv", index=False)
    with pytest.raises(ValueError, match=rf"groundtruth.csv:4: architecture index {N_ARCHS} is outside this "
                                         rf"pipeline's num_archs {N_ARCHS} \(0-{N_ARCHS - 1}\)"):
        import_rows(load_bench(p), bad)
    pd.concat([kept, kept.iloc[:1]]).to_csv(bad / "groundtruth.csv", index=False)
    with pytest.raises(ValueError, match=r"architecture 0 seed 0 appears more than once"):
        import_rows(load_bench(p), bad)


# Every column but the timings: runs are seeded and use one thread, so a run in a worker process
# (or resumed from a checkpoint) must give the bit-identical losses of the same run in this process.
SAME_COLUMNS = [c for c in COLUMNS if c not in ("train_seconds", "samples_per_s", "finished_at")]


def _checkpoints_per_run(steps: int, every: int, start: int = 0) -> int:
    """Checkpoints a run of ``steps`` steps writes from step ``start``: every ``every`` steps before
    the last, then the final one."""
    return len(range(start - start % every + every, steps, every)) + 1


def test_killed_build_resumes_without_retraining(built: tuple[BenchConfig, pd.DataFrame], work: Path) -> None:
    """Killed (SIGKILL at a fault point, recnas.faults) right after the 3rd row is recorded, then
    after the 4th run's first checkpoint; each resume keeps every finished row and checkpoint, and
    the result is the uninterrupted build's, bit for bit."""
    _, reference = built
    p = _pipeline(work, "killed", work / "cache")
    out = work / "killed"
    every = 4  # train.checkpoint_every of _pipeline
    steps = int(reference["steps"].iloc[0])
    per_run = _checkpoints_per_run(steps, every)
    assert steps > every, "each run must checkpoint before its end for this test"

    def run(fault: str | None) -> subprocess.CompletedProcess:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        env.pop("RECNAS_FAULT", None)
        if fault:
            env["RECNAS_FAULT"] = fault
        return subprocess.run(_cli("build", str(p), "--no-progress"), cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=300)

    # 1. killed right after the 3rd row was written (before its run folder was removed)
    r = run("bench.row:3")
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    first = read_table(out)
    pd.testing.assert_frame_equal(first[SAME_COLUMNS], reference[SAME_COLUMNS].iloc[:3], check_exact=True)
    runs = out / "runs"
    key1 = reference["key"].iloc[2]
    assert [d.name for d in runs.iterdir()] == [f"0001-{key1}-s0"]  # the 3rd row's folder, left behind

    # 2. resumed, killed right after the 4th run's first checkpoint: no row retrained, the stale
    #    folder removed, the 4th run's checkpoint at step `every` kept for the next resume
    r = run("train.checkpoint:1")
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    pd.testing.assert_frame_equal(read_table(out), first)  # finished_at too: nothing retrained
    (left,) = runs.iterdir()
    assert left.name == f"0001-{key1}-s1"
    assert (left / "checkpoints" / "LATEST").read_text().strip() == f"step_{every:08d}"

    # 3. resumed to the end. Armed one checkpoint past what a resume writes (the rest of the 4th run
    #    from step `every`, then the whole runs after it): had the 4th run restarted from step 0 it would write
    #    one more checkpoint and be killed.
    n = len(reference)
    rest = _checkpoints_per_run(steps, every, start=every) + (n - 4) * per_run
    r = run(f"train.checkpoint:{rest + 1}")
    assert r.returncode == 0, r.stderr[-3000:]
    after = read_table(out)
    pd.testing.assert_frame_equal(after.iloc[:3], first)
    pd.testing.assert_frame_equal(after[SAME_COLUMNS], reference[SAME_COLUMNS], check_exact=True)
    assert not runs.exists()


def test_parallel_workers_give_the_sequential_rows(built: tuple[BenchConfig, pd.DataFrame], work: Path) -> None:
    cfg, reference = built  # workers 1
    n = 2  # the first 2 architectures of the same sampler (prefix-stable)
    par = load_bench(_pipeline(work, "par", work / "cache", num_archs=n), ["train.workers=2"])
    df = build(par, progress=False)
    pd.testing.assert_frame_equal(read_table(par.output), df)
    assert [(int(a), int(s)) for a, s in zip(df["arch"], df["seed"])] == [(i, s) for i in range(n) for s in (0, 1)]
    expected = reference[reference["arch"] < n].reset_index(drop=True)
    pd.testing.assert_frame_equal(df[SAME_COLUMNS], expected[SAME_COLUMNS], check_exact=True)
    assert not (Path(par.output) / "runs").exists()


def test_build_without_validation_gives_the_same_test_rows_and_nan_validation(
    built: tuple[BenchConfig, pd.DataFrame], work: Path
) -> None:
    cfg, reference = built
    n = 2
    novalid = load_bench(_pipeline(work, "novalid", work / "cache", num_archs=n), ["train.validate=false"])
    df = build(novalid, progress=False)
    assert df["val_logloss"].isna().all() and df["val_auc"].isna().all()
    same = [c for c in SAME_COLUMNS if not c.startswith("val_")]
    expected = reference[reference["arch"] < n].reset_index(drop=True)
    pd.testing.assert_frame_equal(df[same], expected[same], check_exact=True)
    # not part of the build signature: the same build resumes with validation back on
    grown = load_bench(_pipeline(work, "novalid", work / "cache", num_archs=n + 1))
    df2 = build(grown, progress=False)
    assert df2.loc[df2["arch"] < n, "val_logloss"].isna().all() and df2.loc[df2["arch"] == n, "val_logloss"].notna().all()
    pd.testing.assert_frame_equal(df2[df2["arch"] < n].reset_index(drop=True), df)


def test_parallel_failure_keeps_the_finished_runs_and_names_the_failed_one(
    built: tuple[BenchConfig, pd.DataFrame], work: Path
) -> None:
    _, reference = built
    cfg = load_bench(_pipeline(work, "par_fail", work / "cache", num_archs=2), ["train.workers=2"])
    out = Path(cfg.output)
    out.mkdir()
    reference[reference["arch"] == 0].to_parquet(out / TABLE_FILE, index=False)  # arch 0 is done
    key = reference.loc[reference["arch"] == 1, "key"].iloc[0]
    bad = out / "runs" / f"0001-{key}-s0" / "checkpoints"  # a run whose resume fails at once
    bad.mkdir(parents=True)
    (bad / "LATEST").write_text("step_missing\n")
    with pytest.raises(FileNotFoundError, match=rf"^arch 1 {key} seed 0: .*names step_missing"):
        build(cfg, progress=False)
    # the run in progress beside it finished and was recorded
    df = read_table(out)
    assert [(int(a), int(s)) for a, s in zip(df["arch"], df["seed"])] == [(0, 0), (0, 1), (1, 1)]
    expected = reference[reference["arch"] < 2].drop(index=reference.index[(reference["arch"] == 1) & (reference["seed"] == 0)])
    pd.testing.assert_frame_equal(df[SAME_COLUMNS], expected[SAME_COLUMNS].reset_index(drop=True), check_exact=True)


def test_worker_errors_reach_the_parent_even_if_they_do_not_pickle() -> None:
    import pickle

    from recnas.bench.groundtruth import _sendable
    from recnas.train.loop import NonFiniteLossError

    diverged = NonFiniteLossError("training loss non-finite (nan) at step 2", step=2, checkpoint=None)
    with pytest.raises(TypeError):  # what would break the worker pool
        pickle.loads(pickle.dumps(diverged))
    sent = pickle.loads(pickle.dumps(_sendable(diverged)))
    assert type(sent) is RuntimeError and str(sent) == "NonFiniteLossError: training loss non-finite (nan) at step 2"
    plain = FileNotFoundError("no such file")
    assert _sendable(plain) is plain


def test_cli_bad_pipeline_is_one_line_exit_2(tmp_path: Path) -> None:
    p = _pipeline(tmp_path, "bad", tmp_path / "cache", train={"seedz": [0, 1]})
    r = subprocess.run(_cli("build", str(p)), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert f"recnas bench: error: {p}: unknown key 'train.seedz'" in r.stderr
    assert "Traceback" not in r.stderr


# -- compare ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compared(built: tuple[BenchConfig, pd.DataFrame]) -> tuple[BenchConfig, Path]:
    from recnas.bench.compare import run_compare

    cfg, _ = built
    return cfg, run_compare(cfg, progress=False)


def test_compare_writes_report_csv_and_pngs_with_every_estimator(compared: tuple[BenchConfig, Path]) -> None:
    cfg, report = compared
    out = Path(cfg.output)
    text = report.read_text()
    res = pd.read_csv(out / "results.csv")
    est = res[res["kind"] == "estimator"]
    expected = set()
    for e in cfg.estimators:
        for init in e.resolved_inits():
            if init == "inherit":
                expected |= {(e.name, "inherit", f) for f in cfg.warmup.fractions}
            else:
                expected.add((e.name, init, None))
    got = {(r.estimator, r.init, None if np.isnan(r.fraction) else r.fraction) for r in est.itertuples()}
    assert got == expected
    for e in cfg.estimators:
        assert f"| {e.name} |" in text
    # ablation: every combination for every embeddings mode, inherit at each fraction and fresh
    abl = res[res["kind"] == "sigeo_ablation"]
    assert len(abl) == len(cfg.sigeo_ablation.combos) * 2 * (len(cfg.warmup.fractions) + 1)
    assert "## Noise ceiling" in text and "seed 0 vs seed 1" in text
    assert np.isfinite(res[["kendall", "spearman", "top", "seconds"]].to_numpy()).all()
    assert (res["seconds"] > 0).all()
    assert res["kendall_ceiling"].nunique() == 1
    for png in ("rank_scatter.png", "warmup_sweep_kendall.png", "warmup_sweep_spearman.png", "ceiling_scatter.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert f"]({png})" in text


def test_compare_statistics_agree_with_scipy(compared: tuple[BenchConfig, Path]) -> None:
    cfg, _ = compared
    out = Path(cfg.output)
    res = pd.read_csv(out / "results.csv").set_index("label")
    sc = pd.read_csv(out / "scores.csv")
    truth = -sc["test_logloss_mean"].to_numpy()
    s0, s1 = sc["test_logloss_seed0"].to_numpy(), sc["test_logloss_seed1"].to_numpy()
    np.testing.assert_allclose(sc["test_logloss_mean"], (s0 + s1) / 2)
    ceiling = sps.kendalltau(s0, s1).statistic
    np.testing.assert_allclose(res["kendall_ceiling"], ceiling, atol=1e-12)
    ceil_csv = pd.read_csv(out / "ceiling.csv")
    assert ceil_csv["kendall"].iloc[0] == pytest.approx(ceiling)
    checked = 0
    for label, row in res.iterrows():
        p = sc[label].to_numpy()
        if np.ptp(p) == 0:
            continue
        assert row["kendall"] == pytest.approx(sps.kendalltau(p, truth).statistic, abs=1e-12), label
        assert row["spearman"] == pytest.approx(sps.spearmanr(p, truth).statistic, abs=1e-12), label
        # a fraction of a zero ceiling is undefined: NaN (bench.stats)
        frac = row["kendall"] / ceiling if ceiling else float("nan")
        assert row["kendall_frac"] == pytest.approx(frac, nan_ok=True), label
        checked += 1
    assert checked >= len(res) // 2
    # the ZiCo estimator and SiGeo's l1-only term are the same statistic
    zico = res[(res["estimator"] == "zico") & (res["init"] == "fresh")]["kendall"].iloc[0]
    l1 = res[(res["estimator"] == "sigeo l1 (ZiCo)") & (res["init"] == "fresh") & (res["embeddings"] == "none")]["kendall"].iloc[0]
    assert zico == pytest.approx(l1)


def test_compare_rerun_uses_cached_scores(compared: tuple[BenchConfig, Path]) -> None:
    from recnas.bench.compare import run_compare

    cfg, _ = compared
    out = Path(cfg.output)
    before = pd.read_csv(out / "results.csv")
    store = out / "scores" / "trials.jsonl"
    records = store.read_text().splitlines()
    assert len(records) > 1
    run_compare(cfg, progress=False)
    # no architecture was scored again (every score is a record of the store), and the numbers are the same
    assert store.read_text().splitlines() == records
    after = pd.read_csv(out / "results.csv")
    pd.testing.assert_frame_equal(before, after)


def test_a_compare_cut_short_keeps_every_architecture_it_scored(compared: tuple[BenchConfig, Path], tmp_path: Path) -> None:
    """Score vectors are per-architecture records: a store cut after some records (a kill) is
    completed by scoring only the missing architectures, to the same vectors; a compare folder of
    recnas before the store (scores/*.json vectors) is taken in without scoring anything."""
    import json as _json
    import shutil

    from recnas.bench.compare import run_compare

    cfg, _ = compared
    out = Path(cfg.output)
    full = (out / "scores" / "trials.jsonl").read_text().splitlines(keepends=True)
    cut = tmp_path / "cut"
    shutil.copytree(out, cut)
    (cut / "scores" / "trials.jsonl").write_text("".join(full[: len(full) // 2]) + full[len(full) // 2][:20])
    cfg_cut = dataclasses.replace(cfg, output=str(cut))
    run_compare(cfg_cut, progress=False)
    got = [_json.loads(x) for x in (cut / "scores" / "trials.jsonl").read_text().splitlines()[1:]]
    want = [_json.loads(x) for x in full[1:]]
    key = lambda r: (r["key"], r["measure"], r["settings"])  # noqa: E731
    assert len(got) == len(want) and {key(r): r["values"] for r in got} == {key(r): r["values"] for r in want}
    pd.testing.assert_frame_equal(pd.read_csv(cut / "scores.csv"), pd.read_csv(out / "scores.csv"))


def test_compare_without_ground_truth_says_what_is_missing(work: Path) -> None:
    from recnas.bench.compare import run_compare

    cfg = load_bench(_pipeline(work, "empty", work / "cache", num_archs=2,
                               estimators=[{"name": "params"}, {"name": "sigeo"}]))
    assert run_compare(cfg, progress=False, score_only=True) is None  # scores need no ground truth
    assert len((work / "empty" / "scores" / "trials.jsonl").read_text().splitlines()) >= 1 + 3 * 2
    with pytest.raises(ValueError, match=r"lacks 4 of 4 \(architecture, seed\) rows .* run `recnas bench build`"):
        run_compare(cfg, progress=False)


def test_table_reads_are_consistent_while_the_build_replaces_it(tmp_path: Path) -> None:
    """A reader polling the table (as a monitor or this suite's kill test does) never sees a torn
    file: the build replaces it atomically, and read_table opens it once (a path let pyarrow open it
    twice, and ~7 % of such reads failed with 'Page was smaller than expected')."""
    import threading

    from recnas.bench.groundtruth import _write_table

    df = pd.DataFrame({"a": range(2000), "b": ["x" * 20] * 2000})
    _write_table(tmp_path, df)
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            _write_table(tmp_path, df.iloc[: 1000 + i % 1000])
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        lengths = [len(read_table(tmp_path)) for _ in range(300)]
    finally:
        stop.set()
        t.join()
    assert all(1000 <= n <= 2000 for n in lengths)


def test_report_with_many_seeds_uses_the_halves_ceiling(tmp_path: Path) -> None:
    """With 8 seeds the report condenses the 28 seed pairs, shows the halves rows, and divides by
    the average over every split into halves (report built from known score vectors, no training)."""
    from recnas.bench.compare import ScoreSet, ceiling_table, judge
    from recnas.bench.report import write_report

    cfg = load_bench(_pipeline(tmp_path, "many", tmp_path / "cache",
                               train={"epochs": 1, "batch_size": 32, "seeds": list(range(8))}))
    rng = np.random.default_rng(0)
    n = 20
    quality = rng.normal(size=n)
    truth = 0.48 + 0.001 * (quality[:, None] + rng.normal(size=(n, 8)))
    sets = [ScoreSet(f"good | inherit {f:g}", "good", "estimator", "inherit", f, quality + rng.normal(size=n), 2.0)
            for f in cfg.warmup.fractions]
    sets.append(ScoreSet("params | none", "params", "estimator", "none", float("nan"), rng.normal(size=n), 0.1))
    ceilings = ceiling_table(truth, cfg)
    results = judge(sets, truth, cfg, ceilings)
    scores = pd.DataFrame({x.label: x.scores for x in sets})
    table = pd.DataFrame({"train_seconds": np.full(n * 8, 3.0), "test_auc": np.full(n * 8, 0.7)})
    warm = pd.DataFrame({"fraction": cfg.warmup.fractions, "steps": [-1, 5], "seconds": [0.0, 1.0]})
    out = tmp_path / "many_out"
    out.mkdir()
    text = write_report(out, cfg, "many.yaml", table, truth, results, scores, ceilings, warm).read_text()
    every = ceilings[ceilings["kind"] == "all halves"].iloc[0]
    assert "all 35 splits" in every["comparison"]
    assert f"`Kendall / ceiling` divides by {every['kendall']:.3f}: the average over every split" in text
    assert "all 28 seed pairs: mean" in text and "seed 2 vs seed 5" not in text
    assert "mean of seeds [0, 2, 4, 6] vs mean of [1, 3, 5, 7]" in text
    assert "mean of 2 seeds vs mean of 2 others: average over all 210 disjoint pairs" in text
    assert "mean of 3 seeds vs mean of 3 others: average over all 280 disjoint pairs" in text
    np.testing.assert_allclose(results["kendall_frac"], results["kendall"] / every["kendall"])
    for png in ("rank_scatter.png", "warmup_sweep_kendall.png", "ceiling_scatter.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


# -- ceiling projection (recnas bench ceiling) -----------------------------------------------------


def test_variance_components_agree_with_scipy_anova_and_projection_has_its_limits() -> None:
    from recnas.bench.ceiling import projected_kendall, variance_components

    rng = np.random.default_rng(3)
    y = rng.normal(0, 0.004, (30, 1)) + rng.normal(0, 0.002, (30, 3))
    vc = variance_components(y)
    # one-way ANOVA: F = MSB / MSW, MSW = sigma_seed^2, MSB = k sigma_arch^2 + sigma_seed^2
    f = sps.f_oneway(*y).statistic  # groups = architectures
    assert (3 * vc.sigma_arch ** 2 + vc.sigma_seed ** 2) / vc.sigma_seed ** 2 == pytest.approx(f, rel=1e-9)
    assert vc.sigma_seed ** 2 == pytest.approx(np.mean(np.var(y, axis=1, ddof=1)), rel=1e-12)
    noiseless = dataclasses.replace(vc, sigma_seed=0.0)
    assert projected_kendall(noiseless, 40, 1, sims=5) == (1.0, 1.0, 1.0)
    pure_noise = dataclasses.replace(vc, sigma_arch=0.0)
    assert abs(projected_kendall(pure_noise, 40, 1, sims=300)[0]) < 0.03
    curve = [projected_kendall(vc, 40, m, sims=300)[0] for m in (1, 2, 4, 8)]
    assert curve == sorted(curve) and curve[0] > 0.2
    with pytest.raises(ValueError, match="need >= 2 architectures x >= 2 seeds"):
        variance_components(y[:, :1])


def test_bench_ceiling_cli_reports_the_built_rows(built: tuple[BenchConfig, pd.DataFrame], work: Path) -> None:
    from recnas.bench.ceiling import CEILING_CSV, CEILING_MD, complete_truth
    from recnas.cli import main

    cfg, table = built
    y, keys, seeds = complete_truth(table)
    assert y.shape == (N_ARCHS, len(cfg.train.seeds)) and seeds == list(cfg.train.seeds)
    assert main(["bench", "ceiling", str(work / "full.yaml"), "--max-seeds", "3"]) == 0
    proj = pd.read_csv(Path(cfg.output) / CEILING_CSV)
    assert list(proj["seeds_per_truth"]) == [1, 2, 3] and (proj["n_archs"] == cfg.num_archs).all()
    text = (Path(cfg.output) / CEILING_MD).read_text()
    measured = sps.kendalltau(y[:, 0], y[:, 1]).statistic
    assert f"| {measured:.3f} |" in text
