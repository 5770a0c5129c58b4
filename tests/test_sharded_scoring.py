"""Scoring through the TorchRec-sharded supernet (``estimator.sharded``, :mod:`recnas.study.sharded`).

Two gloo processes on 127.0.0.1 run a whole ``run_search`` on the tiny space (sharded warm-up,
scoring through the sharded tables by default), then build the sharded scoring context again and
score fixed candidates with several estimators; this process scores the same candidates with the
unsharded supernet (``load_supernet``). Scores agree to float tolerance, and each rank holds about
half of the tables.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml

from recnas.config import ConfigError

pytestmark = pytest.mark.distributed

#: (estimator, params) scored both ways; sigeo with embedding rows takes table-row gradients
ESTIMATORS = [
    ("oneshot", {}),
    ("sigeo", {}),
    ("sigeo", {"embeddings": "rows", "weights": "paper"}),
    ("zico", {"embeddings": "rows"}),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pipeline(cache: Path, out: Path, **estimator) -> dict:
    return {
        "data": {"synth_rows": 2000, "hash_size": 1000, "cache": str(cache)},
        "space": "tiny",
        "supernet": {"fraction": 0.4, "batch_size": 128, "checkpoint_every": 0},
        "estimator": {"name": "oneshot", "batches": 2, "batch_size": 128, "val_batches": 1, **estimator},
        "search": {"strategy": "random", "budget": 6, "seed": 3},
        "top_k": 3,
        "retrain": {"top": 0},
        "export": {"top": 0},
        "output": str(out),
    }


def _specs(n: int = 2):
    from recnas.space import SearchSpace

    space = SearchSpace.load("tiny")
    rng = np.random.default_rng(11)
    return [space.sample(rng) for _ in range(n)] + [space.largest(rng)]


def _score_all(ctx) -> dict[str, list[float]]:
    from recnas.estimators import make_estimator

    specs = _specs()
    out = {}
    for name, params in ESTIMATORS:
        est = make_estimator(name, **params)
        out[f"{name} {json.dumps(params, sort_keys=True)}"] = [float(x) for x in est.score(specs, ctx)]
    return out


def _worker(rank: int, port: int, pipeline: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    log = open(Path(out) / f"stderr{rank}.txt", "w")
    sys.stderr = log
    import torch.distributed as dist

    from recnas.data.loader import load_prepared
    from recnas.search.config import load_pipeline
    from recnas.search.runner import run_search
    from recnas.study.context import scoring_batches
    from recnas.study.sharded import sharded_scoring_context
    from recnas.train.distributed import init_distributed

    env = init_distributed()
    cfg = load_pipeline(pipeline)
    result = run_search(cfg, progress=True, env=env)
    report = {"trials": [[t["key"], t["score"], t["spec"]] for t in result.trials]}
    data_dir = json.loads((Path(cfg.output) / "data.json").read_text())["prepared"]
    fm, splits = load_prepared(data_dir)
    train, valid = scoring_batches(splits, fm, batches=2, val_batches=1, batch_size=128, section="estimator")
    ctx, sn = sharded_scoring_context(cfg.output, fm, train, valid, env)
    report.update(local=sn.local_table_bytes, full=sn.full_table_bytes, placement=sn.placement,
                  data=data_dir, scores=_score_all(ctx))
    Path(out, f"rank{rank}.json").write_text(json.dumps(report))
    log.flush()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("sharded")
    p = root / "pipeline.yaml"
    p.write_text(yaml.safe_dump(_pipeline(root / "cache", root / "run")))
    # spawn, as the other multi-process tests: a forked child of a pytest process that has run other
    # tests inherits locks held by that process's threads, and hung in DCP's save in the full suite
    mp.spawn(_worker, args=(_free_port(), str(p), str(root)), nprocs=2, join=True)
    return root, [json.loads((root / f"rank{r}.json").read_text()) for r in range(2)]


def test_two_rank_search_scores_through_sharded_tables_like_one_process(two_ranks):
    root, ranks = two_ranks
    from recnas.data.loader import load_prepared
    from recnas.estimators import ScoringContext, make_estimator
    from recnas.study.context import scoring_batches
    from recnas.train.warmup import load_supernet

    assert "scoring through the sharded supernet" in (root / "stderr0.txt").read_text()
    fm, splits = load_prepared(ranks[0]["data"])
    train, valid = scoring_batches(splits, fm, batches=2, val_batches=1, batch_size=128, section="estimator")
    ctx = ScoringContext(fm, train, valid, supernet=load_supernet(root / "run"), init="inherit",
                         device=torch.device("cpu"))
    # the search's journal (oneshot, scored on 2 ranks through the sharded tables) == one process
    from recnas.space import ArchSpec

    trials = ranks[0]["trials"]
    assert len(trials) == 6
    one = make_estimator("oneshot").score([ArchSpec.from_dict(t[2]) for t in trials], ctx)
    assert [t[1] for t in trials] == pytest.approx(list(one), rel=1e-6, abs=1e-7)
    # fixed candidates, several estimators (SiGeo / ZiCo with table-row gradients too), both ranks
    ref = _score_all(ctx)
    for r in ranks:
        assert set(r["scores"]) == set(ref)
        for k, v in ref.items():
            assert r["scores"][k] == pytest.approx(v, rel=1e-5, abs=1e-6), k


def test_each_rank_holds_about_half_of_the_tables(two_ranks):
    _, ranks = two_ranks
    full = ranks[0]["full"]
    assert full == ranks[1]["full"] > 0
    assert sum(r["local"] for r in ranks) == full  # every row on exactly one rank
    for r in ranks:
        assert 0.4 * full <= r["local"] <= 0.6 * full
    assert len(ranks[0]["placement"]) == 26 and ranks[0]["placement"] == ranks[1]["placement"]


def test_sharded_key_is_checked_and_not_part_of_the_identity(tmp_path):
    from recnas.search.config import journal_config, load_pipeline
    from recnas.space import SearchSpace

    def load(**est):
        p = tmp_path / "p.yaml"
        p.write_text(yaml.safe_dump(_pipeline(tmp_path / "cache", tmp_path / "run", **est)))
        return load_pipeline(p)

    with pytest.raises(ConfigError, match=r"estimator\.sharded: expected auto, true or false, got 'always'"):
        load(sharded="always")
    with pytest.raises(ConfigError, match=r"estimator\.sharded: true .* estimator\.init is 'fresh'"):
        load(sharded=True, init="fresh")
    space = SearchSpace.load("tiny").to_dict()
    headers = [journal_config(load(sharded=v), space) for v in ("auto", True, False)]
    assert headers[0] == headers[1] == headers[2] and "sharded" not in headers[0]["estimator"]


def test_when_scoring_is_sharded():
    from recnas.study.sharded import use_sharded

    assert use_sharded("auto", "inherit", 2) and not use_sharded("auto", "inherit", 1)
    assert not use_sharded("auto", "fresh", 2) and not use_sharded(False, "inherit", 2)
    assert use_sharded(True, "inherit", 1)
    with pytest.raises(ValueError, match=r"^estimator\.sharded: expected auto, true or false, got 'yes'$"):
        use_sharded("yes", "inherit", 2)


def test_ready_made_lookups_must_fit_the_batches():
    from recnas.data.batch import random_batch
    from recnas.data.feature_map import DenseFeature, FeatureMap, SparseFeature
    from recnas.estimators import ScoringContext
    from recnas.models import Supernet
    from recnas.space import SearchSpace

    fm = FeatureMap("x", dense=(DenseFeature("I1"),), sparse=(SparseFeature("C1", 50), SparseFeature("C2", 20)))
    net = Supernet(fm, SearchSpace.load("tiny")).eval()
    batches = [random_batch(fm, 16, torch.Generator().manual_seed(s)) for s in range(2)]
    with torch.no_grad():
        good = [net.sparse_arch(b.sparse_features) for b in batches]
    ctx = ScoringContext(fm, batches, supernet=net, device="cpu", lookups={"train": good, "val": []})
    spec = _specs(1)[0]
    assert all(torch.equal(a, b[..., : spec.embedding_dim]) for a, b in zip(ctx.embeddings("train", spec.embedding_dim), good))
    with pytest.raises(ValueError, match=r"lookups\['train'\]: 1 tensors for 2 batches"):
        ScoringContext(fm, batches, supernet=net, device="cpu", lookups={"train": good[:1]})
    with pytest.raises(ValueError, match=r"lookups\['train'\]\[0\]: shape \(16, 2, 4\), expected \(16, 2, 8\)"):
        ScoringContext(fm, batches, supernet=net, device="cpu", lookups={"train": [g[..., :4] for g in good]})
