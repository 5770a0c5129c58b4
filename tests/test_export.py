"""recnas.export: export folders of searched architectures.

A real run folder (synthetic Criteo rows prepared to parquet, a tiny supernet warmed up for a few
steps with the recnas warm-up, a journal of scored specs) is exported; the artefact is loaded in a
fresh process that never imports recnas; damaged folders fail with errors naming the file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from recnas.data import ParquetBatchLoader, load_prepared, prepare_synthetic
from recnas.data.batch import make_batch
from recnas.data.feature_map import FeatureMap, SparseFeature
from recnas.export import (
    DLRMConfig,
    ExportError,
    build_model,
    export_architecture,
    export_run,
    load_export,
    rank_run,
)
from recnas.export.run import read_trials
from recnas.space import SearchSpace
from recnas.space.presets import PRESETS
from recnas.train.warmup import WarmupConfig, load_supernet, warmup

REPO = Path(__file__).resolve().parents[1]
SCORES = [0.3, 0.9, 0.1, 0.5, float("nan")]  # trial 5 repeats trial 0's spec with a better score


def _run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "recnas", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"},
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return prepare_synthetic(tmp_path_factory.mktemp("data") / "ds", 3000, hash_size=200)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data) -> Path:
    """A search run folder as ``recnas search`` lays it out: warmed-up supernet + journal."""
    run = tmp_path_factory.mktemp("run")
    fm, splits = load_prepared(data)
    loader = ParquetBatchLoader(splits["train"], fm, batch_size=256, shuffle=True)
    warmup(fm, SearchSpace.load("tiny"), loader, config=WarmupConfig(max_steps=4, progress=False), out_dir=run)
    space = SearchSpace.load("tiny")
    rng = np.random.default_rng(7)
    specs = []
    while len(specs) < 4:
        s = space.sample(rng)
        if s.key() not in {x.key() for x in specs}:
            specs.append(s)
    trials = [(specs[i % 4], s) for i, s in enumerate(SCORES)] + [(specs[0], 0.95)]
    with open(run / "journal.jsonl", "w") as f:
        f.write(json.dumps({"type": "header", "version": 1, "config": {"space": "tiny"}}) + "\n")
        for i, (spec, score) in enumerate(trials):
            f.write(json.dumps({"type": "trial", "index": i, "key": spec.key(), "spec": spec.to_dict(), "score": score}) + "\n")
    (run / "data.json").write_text(json.dumps({"prepared": str(data)}))
    (run / "pipeline.yaml").write_text("space: tiny\n")
    return run


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory) -> list[Path]:
    return export_run(run_dir, 2, tmp_path_factory.mktemp("exports") / "out")


def _test_rows(data: Path, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    fm, splits = load_prepared(data)
    b = next(iter(ParquetBatchLoader(splits["test"], fm, batch_size=n)))
    ids = b.sparse_features.values().view(fm.num_sparse, -1).t().contiguous()
    return b.dense_features, ids


def test_export_run_takes_top_distinct_architectures_by_score_with_inherited_weights(run_dir, exported):
    trials = read_trials(run_dir)
    best_key = trials[5]["key"]  # 0.95, the same architecture as trial 0
    second_key = trials[1]["key"]  # 0.9
    assert [p.name for p in exported] == [f"01-{best_key}", f"02-{second_key}"]
    index = json.loads((exported[0].parent / "index.json").read_text())["exports"]
    assert [(e["rank"], e["key"], e["score"]) for e in index] == [(1, best_key, 0.95), (2, second_key, 0.9)]

    net = load_supernet(run_dir)
    for p in exported:
        ex = load_export(p)
        ref = net.extract(ex.spec).state_dict()
        got = ex.model.state_dict()
        assert ref.keys() == got.keys()
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], rtol=0, atol=0, msg=k)
        m = ex.manifest
        assert m["meta"]["source"]["run_dir"] == str(run_dir.resolve())
        assert m["meta"]["score"] in (0.95, 0.9)
        assert m["model"]["num_params"] == ex.model.num_params()
        assert m["model"]["flops_per_example"] == ex.model.flops_per_example()
        assert {"recnas", "torch", "torchrec"} <= set(m["versions"])
        assert set(m["files"]) == {"spec.json", "feature_map.json", "weights.pt", "model.pt2"}
        assert m["signature"]["inputs"][1]["shape"] == ["B", ex.feature_map.num_sparse]


def test_nan_scores_are_not_exported_and_reported(run_dir, capsys):
    ranked = rank_run(run_dir)
    assert all(math.isfinite(t["score"]) for t in ranked)
    assert len(ranked) == 4  # 4 distinct specs; the NaN trial's spec also has a finite trial
    assert "1 candidate(s)" in capsys.readouterr().err


def test_retrained_candidates_rank_by_test_logloss(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    trials = read_trials(run)
    # retrained: trial 2 (score 0.1) beat trial 1 (score 0.9) on test log loss
    for rank, (t, ll) in enumerate([(trials[1], 0.47), (trials[2], 0.45)], start=1):
        d = run / "retrain" / f"{rank:02d}-{t['key']}"
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps({
            "test": {"logloss": ll, "auc": 0.7}, "val": {"logloss": ll, "auc": 0.7}, "describe": {"key": t["key"]},
        }))
    order = [t["key"] for t in rank_run(run)]
    assert order[:3] == [trials[2]["key"], trials[1]["key"], trials[5]["key"]]
    (run / "retrain" / f"01-{trials[1]['key']}" / "result.json").write_text(json.dumps({"test": None}))
    with pytest.raises(ValueError, match="01-.*result.json: a retraining result without test metrics"):
        rank_run(run)


_FRESH = textwrap.dedent(
    """
    import hashlib, json, sys
    from pathlib import Path
    import torch

    rows = torch.load(sys.argv[1], weights_only=True)
    out = {}
    for name, d in rows["exports"].items():
        d = Path(d)
        manifest = json.loads((d / "manifest.json").read_text())
        for f, entry in manifest["files"].items():
            assert hashlib.sha256((d / f).read_bytes()).hexdigest() == entry["sha256"], f
        model = torch.export.load(str(d / "model.pt2")).module()
        dense, ids = rows[name]
        out[name] = model(dense, ids)
        out[name + "/one"] = model(dense[:1], ids[:1])
        try:
            bad = ids.clone()
            bad[0, 0] = manifest["signature"]["inputs"][1]["num_embeddings"][0]
            model(dense, bad)
            out[name + "/oob"] = "accepted"
        except Exception as e:
            out[name + "/oob"] = type(e).__name__
    assert "recnas" not in sys.modules, "the artefact pulled recnas in"
    out["modules"] = sorted(m for m in sys.modules if m.split(".")[0] in ("recnas", "torchrec", "fbgemm_gpu"))
    torch.save(out, sys.argv[2])
    """
)


def test_artefact_predicts_in_a_fresh_process_without_recnas(data, exported, tmp_path):
    """model.pt2 loads with plain torch in a new interpreter (no recnas, no torchrec) and predicts
    exactly what recnas's own model predicts: a searched CTRModel, TorchRec's DLRM, and a model of a
    dataset without dense features."""
    dense, ids = _test_rows(data)
    ex = load_export(exported[0])
    rows = {"exports": {"ctr": str(exported[0])}, "ctr": (dense, ids)}
    want = {"ctr": ex.predict(dense, ids)}

    fm = ex.feature_map
    torch.manual_seed(0)
    dlrm = build_model(DLRMConfig(8, (16, 8), (16, 1)), fm)
    p = export_architecture(dlrm, DLRMConfig(8, (16, 8), (16, 1)), fm, tmp_path / "dlrm", {"what": "test"})
    rows["exports"]["dlrm"], rows["dlrm"] = str(p), (dense, ids)
    want["dlrm"] = load_export(p).predict(dense, ids)
    kjt = make_batch(dense, ids, torch.zeros(len(ids)), fm.sparse_names).sparse_features
    torch.testing.assert_close(want["dlrm"], torch.sigmoid(dlrm.eval()(dense, kjt)), rtol=0, atol=0)

    no_dense = FeatureMap("nodense", (), (SparseFeature("a", 20), SparseFeature("b", 30)))
    spec = PRESETS["dlrm"](SearchSpace.load("tiny"))
    torch.manual_seed(1)
    m = build_model(spec, no_dense)
    p = export_architecture(m, spec, no_dense, tmp_path / "nodense", {})
    nd_ids = torch.stack([torch.randint(0, 20, (9,)), torch.randint(0, 30, (9,))], dim=1)
    rows["exports"]["nodense"], rows["nodense"] = str(p), (torch.zeros(9, 0), nd_ids)
    want["nodense"] = load_export(p).predict(torch.zeros(9, 0), nd_ids)

    torch.save(rows, tmp_path / "rows.pt")
    script = tmp_path / "fresh.py"
    script.write_text(_FRESH)
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "rows.pt"), str(tmp_path / "preds.pt")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    got = torch.load(tmp_path / "preds.pt", weights_only=True)
    assert got["modules"] == []
    for name, w in want.items():
        assert w.shape == (len(rows[name][1]),) and torch.all((w > 0) & (w < 1))
        torch.testing.assert_close(got[name], w, rtol=1e-6, atol=1e-7, msg=name)
        torch.testing.assert_close(got[name + "/one"], w[:1], rtol=1e-6, atol=1e-7, msg=name)
        assert got[name + "/oob"] == "IndexError", name


@pytest.fixture
def copy(exported, tmp_path):
    def make() -> Path:
        d = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        shutil.copytree(exported[0], d)
        return d

    return make


def test_tampered_weights_fail_naming_the_file(copy):
    d = copy()
    raw = bytearray((d / "weights.pt").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (d / "weights.pt").write_bytes(bytes(raw))
    with pytest.raises(ExportError, match=r"weights\.pt: modified: its sha256"):
        load_export(d)


def test_truncated_artefact_fails_naming_the_file(copy):
    d = copy()
    raw = (d / "model.pt2").read_bytes()
    (d / "model.pt2").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(ExportError, match=r"model\.pt2: \d+ bytes, the manifest says \d+: the file is truncated"):
        load_export(d)


def test_edited_spec_fails_naming_the_file(copy):
    d = copy()
    spec = json.loads((d / "spec.json").read_text())
    spec["blocks"][0]["dense_dim"] = 8 if spec["blocks"][0]["dense_dim"] != 8 else 16
    (d / "spec.json").write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    with pytest.raises(ExportError, match=r"spec\.json: .*modified"):
        load_export(d)


def test_edited_spec_with_a_forged_checksum_fails_on_the_weights(copy):
    """Someone edits spec.json and updates the manifest: the weights no longer fit, named."""
    d = copy()
    spec = json.loads((d / "spec.json").read_text())
    spec["blocks"][-1]["dense_dim"] = 8 if spec["blocks"][-1]["dense_dim"] != 8 else 16
    (d / "spec.json").write_text(json.dumps(spec))
    m = json.loads((d / "manifest.json").read_text())
    m["files"]["spec.json"] = {"sha256": hashlib.sha256((d / "spec.json").read_bytes()).hexdigest(),
                               "bytes": (d / "spec.json").stat().st_size}
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ExportError, match=r"weights\.pt: does not match the architecture in spec\.json"):
        load_export(d)


def test_missing_or_damaged_manifest_and_missing_files(copy, tmp_path):
    d = copy()
    (d / "feature_map.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"feature_map\.json: missing from the export"):
        load_export(d)
    d = copy()
    (d / "manifest.json").write_text((d / "manifest.json").read_text()[:100])
    with pytest.raises(ExportError, match=r"manifest\.json: not valid JSON"):
        load_export(d)
    d = copy()
    (d / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"manifest\.json is missing"):
        load_export(d)
    with pytest.raises(FileNotFoundError, match="export folder not found"):
        load_export(tmp_path / "nothing")


def test_export_refuses_to_overwrite_a_folder_that_is_not_an_export(exported, tmp_path):
    ex = load_export(exported[0])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not an export folder"):
        export_architecture(ex.model, ex.spec, ex.feature_map, tmp_path / "mine", {})
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_cli_export_subprocess(run_dir, tmp_path):
    out = tmp_path / "cli"
    r = _run_cli("export", str(run_dir), "--top", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    best = read_trials(run_dir)[5]["key"]
    assert f"01-{best}" in r.stdout and "0.95" in r.stdout
    ex = load_export(out / f"01-{best}")
    assert ex.key == best and ex.meta["rank"] == 1
    assert "non-finite score" in r.stderr

    r = _run_cli("export", str(tmp_path / "missing"), "--top", "1")
    assert r.returncode == 2
    assert "journal.jsonl is missing" in r.stderr and "Traceback" not in r.stderr


# -- issue 17, item 3: size estimate, refusal, --force, full disk ----------------------------------


def _folder_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


def test_export_size_is_estimated_and_a_too_large_export_is_refused_unless_forced(run_dir, exported, tmp_path, monkeypatch):
    import argparse

    import recnas.export.run as export_run_mod
    from recnas.export.cli import run_export
    from recnas.export.run import estimate_export_bytes
    from recnas.train.warmup import load_supernet

    net = load_supernet(run_dir)
    for d in exported:  # the estimate bounds the real size from above, closely
        est, real = estimate_export_bytes(net, load_export(d).spec), _folder_bytes(d)
        assert real <= est <= 1.05 * real + (1 << 20), (real, est)
    need = sum(estimate_export_bytes(net, load_export(d).spec) for d in exported)
    monkeypatch.setattr(export_run_mod, "free_bytes", lambda folder: need - 1)
    out = tmp_path / "small-disk" / "out"
    args = argparse.Namespace(run_dir=run_dir, top=2, out=out, force=False)
    with pytest.raises(ValueError, match=r"2 export\(s\) need about .* MB free; export fewer \(--top\).* --force") as e:
        run_export(args)
    assert "\n" not in str(e.value)
    assert not out.exists()  # nothing written
    args.force = True
    assert run_export(args) == 0
    assert [load_export(p).key for p in sorted(out.glob("0*"))] == [load_export(p).key for p in exported]


def test_export_on_a_full_disk_leaves_whole_exports_only(run_dir, exported, tmp_path):
    import errno
    import resource
    import signal

    out = tmp_path / "out"
    export_run(run_dir, 1, out)  # an earlier export, kept whole
    before = {p.name: p.read_bytes() for p in (out / exported[0].name).iterdir()}
    stale = out / f".{exported[1].name}.tmp-999999999"  # a temporary folder of a killed export
    stale.mkdir()
    (stale / "weights.pt").write_bytes(b"partial")
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))  # a "disk" that takes 100 kB per file
    try:
        with pytest.raises(OSError) as e:
            export_run(run_dir, 2, out, force=True)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert e.value.errno in (errno.ENOSPC, errno.EFBIG) and "tmp" in str(e.value)
    assert sorted(p.name for p in out.iterdir()) == [exported[0].name, "index.json"]  # no partial folders
    assert {p.name: p.read_bytes() for p in (out / exported[0].name).iterdir()} == before
    load_export(out / exported[0].name)


def test_export_skips_a_spec_that_builds_the_same_model_as_a_better_one(run_dir, tmp_path, capsys):
    """Two specs differing only in an unread choice are one model: the export takes the next distinct
    one instead, lists the twin in index.json, and the CLI says so."""
    from recnas.cli import main
    from recnas.models.layout import functional_key

    from twins import with_twin  # tests/twins.py

    space = SearchSpace.load("tiny")
    rng = np.random.default_rng(3)
    a, twin = with_twin(space, rng)
    b = space.sample(rng)
    assert twin.key() != a.key() and functional_key(twin) == functional_key(a) != functional_key(b)
    net = load_supernet(run_dir)
    sa, st = net.extract(a).state_dict(), net.extract(twin).state_dict()
    assert sa.keys() == st.keys() and all(torch.equal(sa[k], st[k]) for k in sa)  # the same model

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    with open(run / "journal.jsonl", "w") as f:
        f.write(json.dumps({"type": "header", "version": 1, "config": {"space": "tiny"}}) + "\n")
        for i, (spec, score) in enumerate([(a, 0.9), (twin, 0.8), (b, 0.5)]):
            f.write(json.dumps({"type": "trial", "index": i, "key": spec.key(), "spec": spec.to_dict(), "score": score}) + "\n")
    paths = export_run(run, 2, tmp_path / "out")
    assert [p.name for p in paths] == [f"01-{a.key()}", f"02-{b.key()}"]
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["twins_skipped"] == [{"key": twin.key(), "trial_index": 1, "score": 0.8, "twin_of": a.key()}]
    capsys.readouterr()
    assert main(["export", str(run), "--top", "3", "--out", str(tmp_path / "out3")]) == 0
    out = capsys.readouterr().out
    assert f"skipped {twin.key()} (score 0.8): the same model as {a.key()}" in out
    assert "(the run has only 2 distinct scored model(s))" in out
