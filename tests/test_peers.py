"""benchmarks/peers.py in a real subprocess: deepctr-torch models beside a recnas baseline on one tiny
synthetic prepared folder (same rows on both sides), and the one-line error without deepctr-torch."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "peers.py"
ENV = dict(os.environ, PYTHONWARNINGS="ignore")


def _run(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env or ENV)  # fmt: skip


def _deepctr_missing() -> str | None:
    for mod in ("deepctr_torch", "requests"):  # deepctr_torch imports requests without declaring it
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed (the optional peers extra: pip install -e '.[peers]'; CI installs only .[test])"
    return None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("peers")
    r = _run("-m", "recnas", "data", "synth", "--format", "criteo", "--rows", "3000", "--out", "raw.txt",
             "--seed", "3", "--quiet", cwd=d)  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = _run("-m", "recnas", "data", "prepare", "--format", "criteo", "--input", "raw.txt", "--out", "prep",
             "--hash-size", "1000", "--split", "0.8", "0.1", "0.1", "--quiet", cwd=d)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return d / "prep"


@pytest.mark.skipif(_deepctr_missing() is not None, reason=_deepctr_missing() or "")
def test_peers_same_rows_and_table(tiny, tmp_path):
    out = tmp_path / "peers.csv"
    r = _run(str(SCRIPT), str(tiny), "--models", "deepfm", "wdl", "--baselines", "dlrm", "--seeds", "0",
             "--epochs", "1", "--batch-size", "256", "--threads", "1", "--out", str(out), cwd=REPO)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr

    written = json.loads((tiny / "stats.json").read_text())["rows_written"]
    m = written["train"] // 256 * 256
    assert 0 < m < written["train"]  # the tiny split has a partial last batch, which both sides leave out
    expected = (m, written["valid"], written["test"])
    assert f"the first {m:,} of the split's {written['train']:,}" in r.stdout
    assert "yields the same rows as deepctr-torch is given: train yes, valid yes, test yes" in r.stdout
    rows_line = next(line for line in r.stdout.splitlines() if line.startswith("rows "))
    side = "train {} valid {} test {}".format(*expected)
    assert rows_line == f"rows  deepctr-torch: {side} | recnas: {side} | same rows: yes"

    # the printed table: one row per model, with finite metrics
    table = {line.split("  ")[0]: line for line in r.stdout.splitlines()
             if line.startswith(("deepctr-torch ", "recnas "))}  # fmt: skip
    assert set(table) == {"deepctr-torch DeepFM", "deepctr-torch WDL", "recnas DLRM"}
    for line in table.values():
        cells = line.split()
        assert "-" not in cells[-4:] and all(0 < float(c) < 1 for c in cells[-4:-1])

    runs = list(csv.DictReader(out.open()))
    assert sorted((x["library"], x["name"]) for x in runs) == [
        ("deepctr-torch", "deepfm"), ("deepctr-torch", "wdl"), ("recnas", "dlrm")]
    for x in runs:
        assert x["status"] == "ok" and x["seed"] == "0"
        assert (int(x["train_rows"]), int(x["val_rows"]), int(x["test_rows"])) == expected
        assert int(x["steps"]) == m // 256
        assert 0 < float(x["test_logloss"]) < 1 and 0 < float(x["test_auc"]) < 1
    summary = list(csv.DictReader(out.with_name("peers_summary.csv").open()))
    assert {s["model"] for s in summary} == set(table) and all(s["seeds"] == "1" for s in summary)

    # --from-csv: the runs split over two CSVs (as two processes would write them) merge to the same table
    text = out.read_text().splitlines()
    head, body = text[0], text[1:]
    parts = [tmp_path / "a.csv", tmp_path / "b.csv"]
    parts[0].write_text("\n".join([head, *(x for x in body if x.startswith("deepctr"))]) + "\n")
    parts[1].write_text("\n".join([head, *(x for x in body if x.startswith("recnas"))]) + "\n")
    r2 = _run(str(SCRIPT), str(tiny), "--from-csv", *map(str, parts), "--out", str(tmp_path / "merged.csv"), cwd=REPO)
    assert r2.returncode == 0, r2.stdout + r2.stderr
    table2 = [line for line in r2.stdout.splitlines() if line.startswith(("deepctr-torch ", "recnas "))]
    assert table2 == [line for line in r.stdout.splitlines() if line.startswith(("deepctr-torch ", "recnas "))]
    assert rows_line in r2.stdout.splitlines()
    assert sorted(csv.DictReader((tmp_path / "merged.csv").open()), key=str) == sorted(runs, key=str)


def test_without_deepctr_one_line_error(tiny, tmp_path):
    # a deepctr_torch package that fails to import shadows any installed one
    shim = tmp_path / "shim" / "deepctr_torch"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('deepctr_torch (test shim)', name='deepctr_torch')\n")
    env = dict(ENV, PYTHONPATH=os.pathsep.join([str(shim.parent), ENV.get("PYTHONPATH", "")]))
    r = _run(str(SCRIPT), str(tiny), "--models", "deepfm", "--baselines", "dlrm", "--seeds", "0", cwd=REPO, env=env)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "deepctr_torch is not installed" in lines[0] and "pip install -e '.[peers]'" in lines[0]
    assert r.stdout == ""


@pytest.fixture(scope="module")
def tiny_export(tiny, tmp_path_factory) -> Path:
    """An export of a tiny-space architecture (seeded, untrained weights) for the prepared folder."""
    import torch

    from recnas.data import load_prepared
    from recnas.export import build_model, export_architecture
    from recnas.space import SearchSpace
    from recnas.space.presets import PRESETS

    fm, _ = load_prepared(tiny)
    spec = PRESETS["deepfm"](SearchSpace.load("tiny"))
    torch.manual_seed(0)
    return export_architecture(build_model(spec, fm), spec, fm, tmp_path_factory.mktemp("export") / "arch", {"score": 1.0})


@pytest.mark.skipif(_deepctr_missing() is not None, reason=_deepctr_missing() or "")
def test_peers_fraction_and_exports_same_rows(tiny, tiny_export, tmp_path):
    """--fraction F: both sides train on the whole batches of the first round(F x N) rows (the rows
    recnas's fraction: F keeps); --exports trains an export beside them on those rows."""
    out = tmp_path / "peers.csv"
    r = _run(str(SCRIPT), str(tiny), "--models", "wdl", "--baselines", "--exports", f"searched={tiny_export}",
             "--fraction", "0.5", "--seeds", "0", "--batch-size", "256", "--threads", "1", "--out", str(out),
             cwd=REPO)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    written = json.loads((tiny / "stats.json").read_text())["rows_written"]
    k = round(0.5 * written["train"])
    m = k // 256 * 256
    assert 0 < m < k < written["train"]
    assert f"the first {m:,} of the split's {written['train']:,} (fraction 0.5 keeps the first {k:,})" in r.stdout
    assert "yields the same rows as deepctr-torch is given: train yes, valid yes, test yes" in r.stdout
    side = "train {} valid {} test {}".format(m, written["valid"], written["test"])
    assert f"rows  deepctr-torch: {side} | recnas: {side} | same rows: yes" in r.stdout.splitlines()
    runs = {x["model"]: x for x in csv.DictReader(out.open())}
    assert set(runs) == {"deepctr-torch WDL", "recnas searched"}
    assert runs["recnas searched"]["name"] == f"export:{tiny_export}"
    for x in runs.values():
        assert x["status"] == "ok" and int(x["train_rows"]) == m and int(x["steps"]) == m // 256
        assert 0 < float(x["test_logloss"]) < 1

    # the merge checks the rows against the same fraction: without it the counts disagree
    r2 = _run(str(SCRIPT), str(tiny), "--from-csv", str(out), cwd=REPO)
    assert r2.returncode == 1 and "same rows: NO" in r2.stdout
    r3 = _run(str(SCRIPT), str(tiny), "--from-csv", str(out), "--fraction", "0.5", cwd=REPO)
    assert r3.returncode == 0 and "same rows: yes" in r3.stdout


def test_peers_bad_fraction_and_export(tiny, tmp_path):
    r = _run(str(SCRIPT), str(tiny), "--baselines", "dlrm", "--fraction", "1.5", cwd=REPO)
    assert r.returncode == 2 and "--fraction must be in (0, 1], got 1.5" in r.stderr
    r = _run(str(SCRIPT), str(tiny), "--exports", str(tmp_path), cwd=REPO)
    assert r.returncode == 2 and f"{tmp_path} is not an export folder (no manifest.json)" in r.stderr


def test_peers_welch_table(tmp_path):
    """benchmarks/peers_welch.py: the best deepctr-torch model is the default reference; Welch's p and
    the paired p agree with scipy on the CSV's numbers; an unknown reference is a one-line error."""
    from scipy import stats

    fields = ["model", "library", "name", "seed", "status", "epochs", "batch_size", "train_rows", "val_rows", "test_rows",
              "steps", "val_logloss", "val_auc", "test_logloss", "test_auc", "train_seconds", "params", "settings"]
    ll = {"deepctr-torch DeepFM": [0.480, 0.482, 0.481], "deepctr-torch WDL": [0.490, 0.491, 0.489],
          "recnas A": [0.485, 0.495, 0.487], "recnas B": [0.484, 0.492, 0.486]}
    runs = tmp_path / "runs.csv"
    with runs.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for m, xs in ll.items():
            for s, x in enumerate(xs):
                w.writerow({"model": m, "library": m.split()[0], "name": m, "seed": s, "status": "ok", "epochs": 1,
                            "batch_size": 512, "train_rows": 1, "val_rows": 1, "test_rows": 1, "steps": 1,
                            "val_logloss": x, "val_auc": 0.7, "test_logloss": x, "test_auc": 0.7 - x / 10,
                            "train_seconds": 1, "params": 1, "settings": ""})
    r = _run(str(REPO / "benchmarks" / "peers_welch.py"), str(runs), "--paired-against", "recnas A", "--md", cwd=REPO)
    assert r.returncode == 0, r.stderr
    lines = {line.split(" | ")[0].strip("| "): line for line in r.stdout.splitlines()[2:]}
    assert list(lines) == ["deepctr-torch DeepFM", "recnas B", "recnas A", "deepctr-torch WDL"]  # by test log loss
    assert "vs deepctr-torch DeepFM: log loss (Welch p)" in r.stdout.splitlines()[0]
    p = stats.ttest_ind(ll["recnas B"], ll["deepctr-torch DeepFM"], equal_var=False).pvalue
    assert f"(p {p:.2f})" in lines["recnas B"]
    pp = stats.ttest_rel(ll["recnas B"], ll["recnas A"]).pvalue
    assert f"(p {pp:.3f}, 3 seeds)" in lines["recnas B"]
    r = _run(str(REPO / "benchmarks" / "peers_welch.py"), str(runs), "--against", "nope", cwd=REPO)
    assert r.returncode == 2 and "--against 'nope' is not a model" in r.stderr
