"""Retraining the best candidates of a search from scratch (``retrain.top > 0``), to confirm the order.

Each of the ``retrain.top`` best distinct architectures is trained from scratch by the
train-from-scratch evaluator (:class:`recnas.study.evaluators.TrainEvaluator`, the path the bench
build and the search's oracle use; TorchRec DMP, works under torchrun) into
``RUN_DIR/retrain/<key>-s<seed>/``. Each result is a ``trained`` measurement in the run's trial
store (``study: retrain``), so a rerun reads it back instead of training again, and an interrupted
run resumes from its checkpoint. ``RUN_DIR/retrain.csv`` is the view of those records.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

from recnas.search.config import PipelineConfig

__all__ = ["retrain_top", "RETRAIN_FILE"]

RETRAIN_FILE = "retrain.csv"
_FIELDS = ("rank", "index", "key", "score", "val_logloss", "val_auc", "test_logloss", "test_auc", "steps", "seconds")


def retrain_top(cfg: PipelineConfig, run_dir: Path, data_dir: Path, fm: Any, trials: list[dict[str, Any]],
                env: Any, progress: bool = True, store: Any = None) -> list[dict[str, Any]]:
    """Trains the top ``cfg.retrain.top`` architectures of ``trials`` from scratch (collective).

    ``store`` is the run's trial store (rank 0's file; a memory copy elsewhere): measurements found
    there are read back, new ones appended. Returns one dict per architecture, best score first:
    ``rank`` (1 = best score), ``index``, ``key``, ``score``, ``val_logloss``, ``val_auc``,
    ``test_logloss``, ``test_auc``, ``steps``, ``seconds``.
    """
    rt = cfg.retrain
    if rt.top == 0 or not trials:
        return []
    from recnas.data.loader import load_prepared
    from recnas.search.runner import top_trials
    from recnas.space import ArchSpec
    from recnas.study import TrialStore
    from recnas.study.evaluators import TrainEvaluator

    store = store if store is not None else TrialStore.memory()
    _, splits = load_prepared(data_dir)
    ev = TrainEvaluator(rt, rt.seed, data_dir, fm, splits, run_dir / "retrain",
                        data_identity=cfg.data.identity(), env=env)
    out: list[dict[str, Any]] = []
    for rank, t in enumerate(top_trials(trials, rt.top), start=1):
        spec = ArchSpec.from_dict(t["spec"])
        rec = store.lookup(t["key"], ev.measure, ev.settings, rt.seed)
        if rec is None:
            if progress and env.is_main:
                print(f"recnas search: retraining #{rank} ({t['key']}, score {t['score']:.4g}) from scratch",
                      file=sys.stderr)
            m = ev.evaluate([spec])[0]
            rec = store.add_trial(key=t["key"], spec=t["spec"], measure=ev.measure, settings=ev.settings, seed=rt.seed,
                                  score=m.score, study="retrain", values=m.values, seconds=m.seconds,
                                  train_runs=m.train_runs)
        v = rec["values"]
        out.append({
            "rank": rank, "index": t["index"], "key": t["key"], "score": t["score"],
            "val_logloss": v["val_logloss"], "val_auc": v["val_auc"],
            "test_logloss": v["test_logloss"], "test_auc": v["test_auc"],
            "steps": v["steps"], "seconds": v["train_seconds"],
        })
    if env.is_main:
        with open(run_dir / RETRAIN_FILE, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=_FIELDS)
            w.writeheader()
            w.writerows(out)
    return out
