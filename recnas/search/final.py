"""Production training after a search (``final.top > 0``): the exported best architectures and the
baselines, trained the same way on the same data, so a user sees whether the search paid off.

Uses the export package's API (:func:`recnas.export.train_export`, :func:`recnas.export.train_baseline`):
each model trains into ``RUN_DIR/final/<name>/`` (``<name>-seed<S>/`` for each of ``final.seeds``;
resumable; a finished one is read back), and the comparison goes to ``RUN_DIR/final.csv`` (one row per
model and seed). With several seeds, :func:`summarize_final` gives each model's mean and spread and its
paired difference from the first baseline.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

from recnas.faults import fault_point
from recnas.search.config import FinalConfig

__all__ = ["train_final", "summarize_final", "format_final", "status_suffix", "count_str", "mean_sd_str",
           "paired_str", "FINAL_FILE"]

FINAL_FILE = "final.csv"
_FIELDS = ("model", "kind", "seed", "status", "epochs", "steps", "val_logloss", "val_auc", "test_logloss", "test_auc",
           "params", "flops_per_example")
_METRICS = ("test_logloss", "test_auc", "val_logloss", "val_auc")


def train_final(cfg: FinalConfig, run_dir: Path, exported: list[Path], data_dir: Path, env: Any,
                progress: bool = True, store: Any = None) -> list[dict[str, Any]]:
    """Trains ``exported[:cfg.top]`` and ``cfg.baselines`` (collective), each with every seed of
    ``cfg.resolved_seeds()``; returns one row per model and seed (models in order, seeds inside).

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

    store = store if store is not None else TrialStore.memory()
    rows: list[dict[str, Any]] = []
    jobs: list[tuple[str, str, Any]] = [(f"searched #{i}", "search", p) for i, p in enumerate(exported[: cfg.top], 1)]
    jobs += [(b, "baseline", b) for b in cfg.baselines]
    for name, kind, what in jobs:
        if kind == "search":
            spec = ArchSpec.from_json((Path(what) / "spec.json").read_text())
            key, spec_d = spec.key(), spec.to_dict()
            folder = run_dir / "final" / Path(what).name
        else:
            key, spec_d = f"baseline:{what}", {"baseline": what}
            folder = run_dir / "final" / f"baseline-{what}"
        for seed in cfg.resolved_seeds():
            config = ProdTrainConfig(**{k: getattr(cfg, k) for k in RECIPE_FIELDS}, seed=seed, progress=progress)
            ident = {k: v for k, v in asdict(config).items() if k not in ("progress", "checkpoint_every", "on_nan", "max_loss")}
            settings = digest({"config": ident, "init": cfg.init, "data": str(Path(data_dir).resolve())})
            rec = store.lookup(key, "production", settings, seed)
            if rec is not None and rec["values"].get("model", "").startswith(name):
                rows.append({**rec["values"], "seed": seed})
                continue
            out = folder.with_name(f"{folder.name}-seed{seed}") if cfg.seeds else folder
            if progress and env.is_main:
                print(f"recnas search: final training of {name}" + (f", seed {seed}" if cfg.seeds else "")
                      + f" ({cfg.epochs} epoch(s))", file=sys.stderr)
            try:
                if kind == "search":
                    r = train_export(Path(what), data_dir, out_dir=out, init=cfg.init, config=config, resume=True)
                else:
                    r = train_baseline(what, data_dir, out_dir=out, config=config, resume=True)
            except NonFiniteLossError as e:
                if env.is_main:
                    print(f"recnas search: {name} (seed {seed}) diverged and is reported without metrics: {e}",
                          file=sys.stderr)
                rows.append({"model": name, "kind": kind, "seed": seed, "status": "diverged", "epochs": 0,
                             "steps": e.step, **{k: float("nan") for k in _METRICS},
                             "params": None, "flops_per_example": None})
                continue
            b = r.best
            rows.append({
                "model": f"{name} ({r.name})" if kind == "search" else name,
                "kind": kind,
                "seed": seed,
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
                store.add_trial(key=key, spec=spec_d, measure="production", settings=settings, seed=seed,
                                score=-rows[-1]["val_logloss"], study="final", values=rows[-1], train_runs=1)
            fault_point("final.model")
    if env.is_main and rows:
        with open(run_dir / FINAL_FILE, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=_FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        (run_dir / "final.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def summarize_final(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per model of :func:`train_final`'s rows (models in their order): ``seeds`` (runs with
    metrics), ``diverged`` (runs without), and for each metric its ``_mean`` and ``_sd`` (sample
    standard deviation; NaN with one run); ``params``, ``flops_per_example``, ``steps``. Beside the
    first baseline (``reference``): ``diff`` -- the mean paired difference of the test log loss over
    the seeds both completed (lower = this model better) -- and ``p``, the paired t-test's two-sided
    p-value (``scipy.stats.ttest_rel``; NaN under 2 pairs)."""
    import numpy as np
    from scipy import stats

    by: dict[str, list[dict[str, Any]]] = {}  # models in their order
    for r in rows:
        by.setdefault(r["model"], []).append(r)
    ref = next((m for m, runs in by.items() if runs[0]["kind"] == "baseline"), None)

    def ok(r: dict[str, Any]) -> bool:
        return r["status"] != "diverged" and r["test_logloss"] == r["test_logloss"]

    out = []
    for m in by:
        done = [r for r in by[m] if ok(r)]
        row: dict[str, Any] = {"model": m, "kind": by[m][0]["kind"], "seeds": len(done),
                               "diverged": len(by[m]) - len(done)}
        for k in _METRICS:
            v = np.array([r[k] for r in done], dtype=np.float64)
            row[f"{k}_mean"] = float(v.mean()) if v.size else float("nan")
            row[f"{k}_sd"] = float(v.std(ddof=1)) if v.size > 1 else float("nan")
        first = done[0] if done else by[m][0]
        row.update(params=first.get("params"), flops_per_example=first.get("flops_per_example"), steps=first.get("steps"))
        row["reference"], row["diff"], row["p"] = ref or "", float("nan"), float("nan")
        if ref is not None and m != ref:
            base = {r["seed"]: r["test_logloss"] for r in by[ref] if ok(r)}
            pairs = [(r["test_logloss"], base[r["seed"]]) for r in done if r["seed"] in base]
            if pairs:
                a, b = np.array(pairs, dtype=np.float64).T
                row["diff"] = float((a - b).mean())
                if len(pairs) > 1 and np.any(a - b != (a - b)[0]):
                    row["p"] = float(stats.ttest_rel(a, b).pvalue)
        out.append(row)
    return out


def status_suffix(r: dict[str, Any]) -> str:
    """`` [diverged]`` and the like after a model's name; nothing for a completed run."""
    return "" if r.get("status") == "completed" else f" [{r.get('status')}]"


def count_str(x: Any) -> str:
    """An integer with thousands separators, ``-`` when unknown (a diverged model's params)."""
    return "-" if x is None else f"{x:,}"


def mean_sd_str(r: dict[str, Any], metric: str, digits: int) -> str:
    """A :func:`summarize_final` row's ``metric`` as ``mean ± sd`` (the mean alone with one seed)."""
    sd = r[f"{metric}_sd"]
    return f"{r[f'{metric}_mean']:.{digits}f}" + ("" if sd != sd else f" ± {sd:.{digits}f}")


def paired_str(r: dict[str, Any]) -> str:
    """A :func:`summarize_final` row's paired difference from the reference, with the t-test's p
    where there is one; empty for the reference itself or without a common seed."""
    if r["diff"] != r["diff"]:
        return ""
    return f"{r['diff']:+.5f}" + ("" if r["p"] != r["p"] else f" (p {r['p']:.2f})")


def format_final(rows: list[dict[str, Any]]) -> str:
    """A plain-text comparison table (the demo prints it): one line per run, or with several seeds
    one line per model with mean ± sd over the seeds and the paired difference from the first baseline."""
    if len({r.get("seed") for r in rows}) > 1:
        summary = summarize_final(rows)
        ref = summary[0]["reference"] if summary else ""
        head = ("model", "seeds", "test logloss", "test AUC", "val logloss", f"vs {ref} (paired p)", "params")
        body = [
            (r["model"] + (f" [{r['diverged']} diverged]" if r["diverged"] else ""), str(r["seeds"]),
             mean_sd_str(r, "test_logloss", 5), mean_sd_str(r, "test_auc", 4), mean_sd_str(r, "val_logloss", 5),
             paired_str(r) or "-", count_str(r["params"]))
            for r in summary
        ]
    else:
        head = ("model", "test logloss", "test AUC", "val logloss", "val AUC", "params", "steps")
        body = [
            (r["model"] + status_suffix(r), f"{r['test_logloss']:.5f}", f"{r['test_auc']:.4f}", f"{r['val_logloss']:.5f}",
             f"{r['val_auc']:.4f}", count_str(r["params"]), str(r["steps"]))
            for r in rows
        ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([fmt(head), fmt(tuple("-" * w for w in widths)), *(fmt(b) for b in body)])
