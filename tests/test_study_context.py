"""recnas.study.context: the one warm-up and scoring-batch path of the search and the bench.

Runs for real on a few hundred synthetic Criteo-format rows and the tiny space: the scoring
batches are the split's first rows in file order, a finished warm-up is found (not redone) and
checked, the search's and the bench's warm-ups of the same recipe are the same supernet, and both
callers go through these functions.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from recnas.data.loader import ParquetBatchLoader, load_prepared
from recnas.pipeline import DataConfig, resolve_data
from recnas.space import SearchSpace
from recnas.study import context
from recnas.study.context import first_batches, scoring_batches, warm_supernet
from recnas.train.warmup import SUPERNET_FILE, WarmupConfig

SPACE = SearchSpace.load("tiny")
CONFIG = WarmupConfig(lr=0.05, table_lr=0.05, seed=2, checkpoint_every=3, progress=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, dict]:
    cache = tmp_path_factory.mktemp("ctx") / "cache"
    d = resolve_data(DataConfig(synth_rows=700, hash_size=50, cache=str(cache), name="tiny"), progress=False)
    fm, splits = load_prepared(d)
    return Path(d), fm, splits


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _stamps(d: Path) -> dict[Path, int]:
    return {f: f.stat().st_mtime_ns for f in d.rglob("*") if f.is_file()}


# -- scoring batches -------------------------------------------------------------------------------


def test_first_batches_are_the_splits_first_rows_in_file_order(data) -> None:
    _, fm, splits = data
    got = first_batches(splits["train"], fm, 3, 16, key="scoring.batches", size_key="scoring.batch_size")
    whole = next(iter(ParquetBatchLoader(splits["train"], fm, batch_size=48)))
    assert [b.labels.numel() for b in got] == [16, 16, 16]
    assert torch.equal(torch.cat([b.labels for b in got]), whole.labels)
    assert torch.equal(torch.cat([b.dense_features for b in got]), whole.dense_features)
    assert first_batches(splits["valid"], fm, 0, 16, key="x.val_batches", size_key="x.batch_size") == []
    train, valid = scoring_batches(splits, fm, batches=2, val_batches=0, batch_size=16, section="estimator")
    assert len(train) == 2 and valid == []
    assert torch.equal(train[1].labels, got[1].labels)


def test_too_few_rows_name_the_folder_the_batches_found_and_the_keys(data) -> None:
    _, fm, splits = data
    rows = ParquetBatchLoader(splits["valid"], fm).num_rows
    with pytest.raises(ValueError) as e:
        scoring_batches(splits, fm, batches=2, val_batches=rows // 32 + 1, batch_size=32, section="scoring")
    msg = str(e.value)
    assert msg.startswith(f"scoring: {splits['valid']} has rows for {rows // 32} full batches of 32, "
                          f"but scoring.val_batches={rows // 32 + 1}")
    assert "lower scoring.val_batches or scoring.batch_size" in msg


# -- the warmed-up supernet ------------------------------------------------------------------------


def test_fraction_zero_is_the_seeded_initial_supernet(data, tmp_path: Path) -> None:
    from recnas.models import Supernet

    d, fm, splits = data
    w = warm_supernet(tmp_path / "f0", fm, SPACE, splits["train"], data_dir=d, fraction=0.0, batch_size=32,
                      config=CONFIG, section="warmup")
    torch.manual_seed(CONFIG.seed)
    ref = Supernet(fm, SPACE, device=torch.device("cpu"))
    assert w.how == "initial" and w.path is None and w.steps == 0 and not (tmp_path / "f0").exists()
    assert _same_weights(w.supernet, ref)


def test_a_finished_warm_up_is_found_checked_and_not_redone(data, tmp_path: Path) -> None:
    d, fm, splits = data
    out = tmp_path / "w"
    kw = dict(data_dir=d, fraction=0.5, batch_size=32, section="warmup", fraction_key="warmup.fractions")
    first = warm_supernet(out, fm, SPACE, splits["train"], config=CONFIG, **kw)
    assert first.how == "warmed" and first.steps == first.rows // 32 > 0 and first.seconds > 0
    card = json.loads((out / SUPERNET_FILE).read_text())
    assert card["describe"]["fraction"] == 0.5 and card["describe"]["batch_size"] == 32
    stamps = _stamps(out)
    # progress and checkpoint settings may differ; nothing is written again
    again = warm_supernet(out, fm, SPACE, splits["train"], config=replace(CONFIG, checkpoint_every=7, progress=True), **kw)
    assert again.how == "found" and again.steps == first.steps and _stamps(out) == stamps
    assert _same_weights(first.supernet, again.supernet)
    # another recipe, fraction or space is refused, naming the card and each differing key
    with pytest.raises(ValueError, match=r"warmup: .*supernet\.json: was warmed up with other warm-up settings .*"
                                         r"config\.lr: saved 0\.05, now 0\.01.*delete .*w\)"):
        warm_supernet(out, fm, SPACE, splits["train"], config=replace(CONFIG, lr=0.01), **kw)
    with pytest.raises(ValueError, match=r"differs at fraction: saved 0\.5, now 0\.25"):
        warm_supernet(out, fm, SPACE, splits["train"], config=CONFIG, **{**kw, "fraction": 0.25})
    other = SearchSpace.from_dict({**SPACE.to_dict(), "name": "tiny2"})
    with pytest.raises(ValueError, match=r"different search space"):
        warm_supernet(out, fm, other, splits["train"], config=CONFIG, **kw)
    assert _stamps(out) == stamps


def test_reuse_copies_a_finished_warm_up_whatever_its_recipe(data, tmp_path: Path) -> None:
    d, fm, splits = data
    src = warm_supernet(tmp_path / "src", fm, SPACE, splits["train"], data_dir=d, fraction=0.5, batch_size=32,
                        config=CONFIG, section="supernet")
    kw = dict(data_dir=d, fraction=0.25, batch_size=64, config=replace(CONFIG, lr=0.01), section="supernet",
              reuse=str(tmp_path / "src"))
    got = warm_supernet(tmp_path / "run", fm, SPACE, splits["train"], **kw)
    card = json.loads((tmp_path / "run" / SUPERNET_FILE).read_text())
    assert got.how == "reused" and got.steps == src.steps and card["reused_from"] == str((tmp_path / "src" / SUPERNET_FILE).resolve())
    assert not (tmp_path / "run" / "checkpoints").exists() and _same_weights(got.supernet, src.supernet)
    assert warm_supernet(tmp_path / "run", fm, SPACE, splits["train"], **kw).how == "found"
    with pytest.raises(FileNotFoundError, match=r"supernet\.reuse: no warmed-up supernet at .*nothing"):
        warm_supernet(tmp_path / "run2", fm, SPACE, splits["train"], **{**kw, "reuse": str(tmp_path / "nothing")})


def test_a_fraction_without_a_full_batch_names_the_keys(data, tmp_path: Path) -> None:
    d, fm, splits = data
    with pytest.raises(ValueError, match=r"warmup: the warm-up fraction 0\.01 of .*train is \d+ rows, less than one "
                                         r"batch of warmup\.batch_size=64; raise warmup\.fractions or lower warmup\.batch_size"):
        warm_supernet(tmp_path / "x", fm, SPACE, splits["train"], data_dir=d, fraction=0.01, batch_size=64,
                      config=CONFIG, section="warmup", fraction_key="warmup.fractions")


def test_search_and_bench_warm_up_and_batch_through_this_module(data, tmp_path: Path, monkeypatch) -> None:
    """The search's ``_warm_up`` / ``_scoring_context`` and the bench's ``_supernet`` /
    ``run_compare`` call these functions, and the same recipe gives the same supernet either way."""
    from recnas.bench import compare
    from recnas.bench.config import BenchConfig, WarmupSection
    from recnas.search import runner
    from recnas.search.config import EstimatorConfig, PipelineConfig, SupernetConfig
    from recnas.train.distributed import init_distributed

    d, fm, splits = data
    calls: list[str] = []
    for name in ("warm_supernet", "scoring_batches"):
        real = getattr(context, name)
        monkeypatch.setattr(context, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))

    sn = SupernetConfig(fraction=0.5, batch_size=32, lr=0.05, table_lr=0.05, seed=2, checkpoint_every=0)
    cfg = PipelineConfig(supernet=sn, estimator=EstimatorConfig(name="sigeo", init="inherit", batches=2, batch_size=32), output=str(tmp_path / "run"))
    (tmp_path / "run").mkdir()
    runner._warm_up(cfg, tmp_path / "run", d, SPACE, fm, init_distributed(), progress=False)
    ctx = runner._scoring_context(cfg, tmp_path / "run", d, fm)
    assert calls == ["warm_supernet", "scoring_batches"]

    bench = BenchConfig(warmup=WarmupSection(fractions=(0.5,), batch_size=32, lr=0.05, table_lr=0.05, seed=2),
                        output=str(tmp_path / "bench"))
    net, seconds, steps = compare._supernet(bench, 0.5, SPACE, fm, splits, d, tmp_path / "bench", progress=False)
    assert calls[-1] == "warm_supernet" and seconds > 0 and steps > 0
    assert _same_weights(net, ctx.supernet)
    again = compare._supernet(bench, 0.5, SPACE, fm, splits, d, tmp_path / "bench", progress=False)
    assert again[1:] == (seconds, steps)  # found: the recorded warm-up, not a new one
    train = first_batches(splits["train"], fm, 2, 32, key="estimator.batches", size_key="estimator.batch_size")
    assert [torch.equal(a.labels, b.labels.cpu()) for a, b in zip(train, ctx.batches)] == [True, True]
