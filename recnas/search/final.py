"""Production training after a search (``final.top > 0``): the exported best architectures and the
baselines, trained the same way on the same data, so a user sees whether the search paid off.

Uses the export package's API (:func:`recnas.export.train_export`, :func:`recnas.export.train_baseline`):
each model trains into ``RUN_DIR/final/<name>/`` (resumable; a finished one is read back), and the
comparison goes to ``RUN_DIR/final.csv``.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

from recnas.faults import fault_point
from recnas.search.config import FinalConfig

__all__ = ["train_final", "FINAL_FILE"]

FINAL_FILE = "final.csv"
_FIELDS = ("model", "kind", "status", "epochs", "steps", "val_logloss", "val_auc", "test_logloss", "test_auc",
           "params", "flops_per_example")


def train_final(cfg: FinalConfig, run_dir: Path, exported: list[Path], data_dir: Path, env: Any,
                progress: bool = True, store: Any = None) -> list[dict[str, Any]]:
    """Trains ``exported[:cfg.top]`` and ``cfg.baselines`` (collective); returns one row each.

    Each finished model is a ``production`` measurement in the run's trial store (``study:
    final``; a searched model keyed by its architecture, a baseline by ``baseline:<name>``; the
    settings: the production config, the init and the data), so a rerun reads it back without
    touching the model's folder; ``final.csv`` is the view of those records.

    A model whose training diverges (NaN loss, or one above the trainer's ``max_loss``) gets a row
    with status ``diverged`` and no metrics, and the others still train: one unstable baseline must
    not cost the whole comparison. Its run folder keeps the checkpoint from before the bad step.
    """
    from recnas.export import ProdTrainConfig, train_baseline, train_export
    from recnas.train.loop import NonFiniteLossError

    from dataclasses import asdict

    from recnas.identity import digest
    from recnas.space import ArchSpec
    from recnas.study import TrialStore

    from recnas.train.scratch import RECIPE_FIELDS

    config = ProdTrainConfig(**{k: getattr(cfg, k) for k in RECIPE_FIELDS}, seed=cfg.seed, progress=progress)
    common = dict(config=config, resume=True)
    store = store if store is not None else TrialStore.memory()
    ident = {k: v for k, v in asdict(config).items() if k not in ("progress", "checkpoint_every", "on_nan", "max_loss")}
    settings = digest({"config": ident, "init": cfg.init, "data": str(Path(data_dir).resolve())})
    rows: list[dict[str, Any]] = []
    jobs: list[tuple[str, str, Any]] = [(f"searched #{i}", "search", p) for i, p in enumerate(exported[: cfg.top], 1)]
    jobs += [(b, "baseline", b) for b in cfg.baselines]
    for name, kind, what in jobs:
        if kind == "search":
            spec = ArchSpec.from_json((Path(what) / "spec.json").read_text())
            key, spec_d = spec.key(), spec.to_dict()
        else:
            key, spec_d = f"baseline:{what}", {"baseline": what}
        rec = store.lookup(key, "production", settings, cfg.seed)
        if rec is not None and rec["values"].get("model", "").startswith(name):
            rows.append(dict(rec["values"]))
            continue
        if progress and env.is_main:
            print(f"recnas search: final training of {name} ({cfg.epochs} epoch(s))", file=sys.stderr)
        try:
            if kind == "search":
                out = run_dir / "final" / Path(what).name
                r = train_export(Path(what), data_dir, out_dir=out, init=cfg.init, **common)
            else:
                out = run_dir / "final" / f"baseline-{what}"
                r = train_baseline(what, data_dir, out_dir=out, **common)
        except NonFiniteLossError as e:
            if env.is_main:
                print(f"recnas search: {name} diverged and is reported without metrics: {e}", file=sys.stderr)
            rows.append({"model": name, "kind": kind, "status": "diverged", "epochs": 0, "steps": e.step,
                         **{k: float("nan") for k in ("val_logloss", "val_auc", "test_logloss", "test_auc")},
                         "params": None, "flops_per_example": None})
            continue
        b = r.best
        rows.append({
            "model": f"{name} ({r.name})" if kind == "search" else name,
            "kind": kind,
            "status": r.status,
            "epochs": len(r.history),
            "steps": r.steps,
            "val_logloss": b.val_logloss if b else float("nan"),
            "val_auc": b.val_auc if b else float("nan"),
            "test_logloss": b.test_logloss if b else float("nan"),
            "test_auc": b.test_auc if b else float("nan"),
            "params": (r.model or {}).get("num_params"),
            "flops_per_example": (r.model or {}).get("flops_per_example"),
        })
        if r.status in ("completed", "early_stopped"):
            store.add_trial(key=key, spec=spec_d, measure="production", settings=settings, seed=cfg.seed,
                            score=-rows[-1]["val_logloss"], study="final", values=rows[-1], train_runs=1)
        fault_point("final.model")
    if env.is_main and rows:
        with open(run_dir / FINAL_FILE, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=_FIELDS)
            w.writeheader()
            w.writerows(rows)
        (run_dir / "final.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def format_final(rows: list[dict[str, Any]]) -> str:
    """A plain-text comparison table (the demo prints it)."""
    head = ("model", "test logloss", "test AUC", "val logloss", "val AUC", "params", "steps")
    body = [
        (r["model"] + ("" if r["status"] == "completed" else f" [{r['status']}]"), f"{r['test_logloss']:.5f}", f"{r['test_auc']:.4f}", f"{r['val_logloss']:.5f}",
         f"{r['val_auc']:.4f}", f"{r['params']:,}" if r["params"] is not None else "-", str(r["steps"]))
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([fmt(head), fmt(tuple("-" * w for w in widths)), *(fmt(b) for b in body)])
