"""Scores the benchmark's architectures with every estimator and judges them against the ground truth.

``run_compare(cfg)``:

1. reads the ground-truth table of ``recnas bench build`` (every architecture x seed must be there);
2. scores the architectures once with every ``fresh`` (zero-shot) and weight-free estimator;
3. for each warm-up fraction: warms a supernet up (cached in ``OUTPUT/warmup/frac_<f>/``; 0 = the
   seeded initial weights, no warm-up) and scores with every ``inherit`` (sub-one-shot) estimator;
   the warm-up and the scoring batches are made by :mod:`recnas.study.context`, as in the search;
   with a ``split:`` section, also builds (or loads) the NAS-LID / GM-NAS split of each fraction
   above 0 at the single supernet's training steps (:func:`recnas.lid.bench.split_for_fraction`)
   and scores the same ``inherit`` estimators through it (rows of kind ``split``, context
   ``inherit <f>% <method> split L<levels>``; the split's facts go to ``split_warmup.json``);
4. computes SiGeo's three raw terms for each (fraction, init, embeddings mode) of the ablation and
   combines them under every weight triple (one gradient pass serves all combinations and the
   ``sigeo`` entries with the same options; the entries whose options differ only in the ZiCo
   term's ``scope`` / ``reduce`` or in ``loss_on`` share that pass too, each cached on its own);
5. judges every score vector with :func:`recnas.bench.stats.compare` against the seed-averaged test
   log loss (Spearman, Kendall, top-10 % precision, bootstrap intervals, noise ceiling, fraction
   of the ceiling, seconds) and writes ``results.csv``, ``scores.csv``, ``report.md`` and the plots;
6. judges every predictor entry (``needs_fit``) by the training-set-size sweep
   (:func:`predictor_sweep`): fitted on a seeded random part of the architectures, ranking the
   held-out rest, with every other estimator judged on the same held-out sets; writes ``sweep.csv``
   (one row per estimator x training fraction x split) and ``sweep_summary.csv``. Predictors are
   not in ``results.csv``: they are never judged on all N architectures. A predictor that learns
   from the proxies (``uses_scores``, e.g. ``zc_gbt``) reads the score vectors of step 5 (and
   SiGeo's raw terms) as features, by architecture key: label-free, so fair on held-out ones.
   The warm-ups' steps and seconds go to ``warmup.csv``.

``run_sweep(cfg)`` (``recnas bench sweep``) runs step 6 alone from a finished comparison's folder
(ground truth, ``results.csv`` and ``scores.csv``, e.g. a committed ``reports/`` folder), without
scoring anything again; ``run_report(cfg)`` (``recnas bench report``) rewrites ``report.md`` from
such a folder, with the sweep (``sweep_summary.csv``) and the regret curves (``regret/``) when
they are there.

Every score vector is cached in ``OUTPUT/scores/`` with the settings it was computed under, so a
killed compare resumes and a rerun with more estimators only computes what is new.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recnas.bench import stats
from recnas.bench.config import BenchConfig, PredictorSection
from recnas.bench.groundtruth import read_table, sample_archs, truth_matrix
from recnas.config import to_dict
from recnas.faults import fault_point
from recnas.space.space import SearchSpace
from recnas.space.spec import ArchSpec

__all__ = ["ScoreSet", "run_compare", "run_sweep", "run_report", "proxy_sets", "sigeo_term_combos", "ceiling_table",
           "judge", "predictor_sweep", "sweep_summary",
           "RESULTS_FILE", "SCORES_FILE", "SWEEP_FILE", "SWEEP_SUMMARY_FILE", "WARMUP_FILE", "SPLIT_FACTS_FILE"]

RESULTS_FILE = "results.csv"
WARMUP_FILE = "warmup.csv"
SPLIT_FACTS_FILE = "split_warmup.json"  # with a split: section only: the split's facts per warm-up fraction
SCORES_FILE = "scores.csv"
SWEEP_FILE = "sweep.csv"
SWEEP_SUMMARY_FILE = "sweep_summary.csv"
MAX_SEED_SPLITS = 1000  # ceiling_table averages over every split of the seeds up to this many, else this many random ones


@dataclass(frozen=True)
class ScoreSet:
    """One score vector to judge.

    Attributes:
        label: unique row name in the results (e.g. ``"sigeo | inherit | 10%"``).
        estimator: the estimator (or ablation combination) shown in tables.
        kind: ``estimator`` or ``sigeo_ablation``.
        init: ``inherit``, ``fresh`` or ``none``.
        fraction: the warm-up fraction (``nan`` for fresh / weight-free scores).
        scores: ``(n,)`` higher = predicted better.
        seconds: seconds spent scoring all ``n`` architectures (excluding the warm-up).
        embeddings: SiGeo's embeddings mode (ablation rows), else ``""``.
        failed: architectures whose score was not finite (ranked last).
    """

    label: str
    estimator: str
    kind: str
    init: str
    fraction: float
    scores: np.ndarray = field(repr=False)
    seconds: float
    embeddings: str = ""
    failed: int = 0


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _Cache:
    """Score vectors as per-architecture records of a trial store (``OUTPUT/scores/trials.jsonl``).

    Each architecture's score (or SiGeo's three terms) under some settings is one ``trial`` record
    (``study: bench scores``; measure: the estimator; settings: :func:`recnas.identity.digest` of the
    estimator's parameters and the scoring context; ``values.v``: the row; ``seconds``: its own
    scoring time), so a killed compare keeps every architecture it scored, and more architectures
    score only the new ones. ``OUTPUT/scores/<name>.json`` vectors of recnas before the store are
    taken in once (their seconds split evenly over the architectures).
    """

    def __init__(self, root: Path, specs: list[ArchSpec]) -> None:
        from recnas.study import TrialStore

        self.root = root
        self.specs = specs
        self.keys = [s.key() for s in specs]
        root.mkdir(parents=True, exist_ok=True)
        self.store = TrialStore.open(root / "trials.jsonl", {"kind": "bench scores"})

    def _legacy(self, name: str, settings: dict[str, Any]) -> np.ndarray | None:
        path = self.root / f"{name}.json"
        if not path.exists():
            return None
        saved = json.loads(path.read_text())
        if saved.get("settings") != json.loads(json.dumps({**settings, "keys": _digest(self.keys)}, default=str)):
            return None
        return np.asarray(saved["values"], dtype=np.float64), float(saved["seconds"])

    def get_or_compute(self, name: str, settings: dict[str, Any], one: Callable[[ArchSpec], Any],
                       width: int = 1) -> tuple[np.ndarray, float]:
        """``(n, width)`` rows of ``one(spec)`` for every architecture, and the seconds they took."""
        return self.get_or_compute_group([(name, settings)], lambda sp, _which: [one(sp)], width)[0]

    def get_or_compute_group(self, items: Sequence[tuple[str, dict[str, Any]]],
                             many: Callable[[ArchSpec, list[int]], Sequence[Any]],
                             width: int = 1) -> list[tuple[np.ndarray, float]]:
        """:meth:`get_or_compute` of several score vectors that one computation serves:
        ``many(spec, which)`` returns the rows of ``items[i]`` for each ``i`` in ``which`` (the items
        this architecture lacks), in that order. Each item is stored under its own settings, with the
        seconds of the computation that made it (what it would cost alone)."""
        from recnas.identity import digest

        keyed = [(str(settings.get("what", name)), digest(settings)) for name, settings in items]
        found = [[self.store.lookup(k, m, i) for k in self.keys] for m, i in keyed]
        for j, (name, settings) in enumerate(items):
            if all(r is None for r in found[j]):
                legacy = self._legacy(name, settings)
                if legacy is not None:
                    values, total = legacy
                    for spec, row in zip(self.specs, values.reshape(len(self.keys), width)):
                        self._put(spec, *keyed[j], row, total / len(self.keys))
                    found[j] = [self.store.lookup(k, *keyed[j]) for k in self.keys]
        for a, spec in enumerate(self.specs):
            which = [j for j in range(len(items)) if found[j][a] is None]
            if not which:
                continue
            t0 = time.perf_counter()
            rows = _per_spec(lambda sp: np.asarray(many(sp, which), dtype=np.float64), [spec], len(which) * width)[0]
            secs = time.perf_counter() - t0
            for j, row in zip(which, rows.reshape(len(which), width)):
                self._put(spec, *keyed[j], row, secs)
                found[j][a] = self.store.lookup(self.keys[a], *keyed[j])
        out = []
        for col in found:
            rows = np.array([[np.nan if v is None else v for v in r["values"]["v"]] for r in col], dtype=np.float64)
            out.append((rows, float(sum(r["seconds"] for r in col))))
        return out

    def _put(self, spec: ArchSpec, measure: str, ident: str, row: np.ndarray, seconds: float) -> None:
        v = [float(x) if np.isfinite(x) else None for x in np.asarray(row, dtype=np.float64).reshape(-1)]
        self.store.add_trial(key=spec.key(), spec=spec.to_dict(), measure=measure, settings=ident, seed=None,
                             score=v[0] if len(v) == 1 else None, study="bench scores", values={"v": v},
                             seconds=seconds)
        fault_point("bench.score")  # the score is durable in the store

    def close(self) -> None:
        self.store.close()


def _frac_name(f: float) -> str:
    return f"{100 * f:g}%"


def _supernet(cfg: BenchConfig, fraction: float, space: SearchSpace, fm: Any, splits: dict[str, Path],
              data_dir: Path, out: Path, progress: bool) -> tuple[Any, float, int]:
    """The supernet after warming up on ``fraction`` of the training rows, cached in
    ``OUTPUT/warmup/frac_<f>/`` (0: the seeded initial weights): :func:`recnas.study.context.warm_supernet`,
    the warm-up the search uses too. Returns ``(supernet, warm-up seconds, warm-up steps)``; the
    seconds are kept in ``warmup_info.json`` beside the cached warm-up."""
    from recnas.study.context import warm_supernet
    from recnas.train.warmup import WarmupConfig

    w = cfg.warmup
    config = WarmupConfig(epochs=w.epochs, lr=w.lr, table_lr=w.table_lr, full_path_fraction=w.full_path_fraction,
                          seed=w.seed, checkpoint_every=50, progress=False)
    run_dir = out / "warmup" / f"frac_{fraction:g}"
    got = warm_supernet(run_dir, fm, space, splits["train"], data_dir=data_dir, fraction=fraction,
                        batch_size=w.batch_size, config=config, section="warmup", fraction_key="warmup.fractions")
    if got.how == "initial":
        return got.supernet, 0.0, 0
    info_path = run_dir / "warmup_info.json"
    if got.how == "warmed":
        info_path.write_text(json.dumps({"seconds": got.seconds, "steps": got.steps, "rows": got.rows}) + "\n")
        if progress:
            print(f"  warm-up {_frac_name(fraction)}: {got.steps} steps of {w.batch_size} rows in {got.seconds:.1f} s",
                  file=sys.stderr, flush=True)
    info = json.loads(info_path.read_text()) if info_path.exists() else {"seconds": float("nan"), "steps": -1}
    return got.supernet, float(info["seconds"]), int(info["steps"])


def _per_spec(fn: Callable[[ArchSpec], Any], specs: list[ArchSpec], width: int) -> np.ndarray:
    """``fn`` on each spec -> ``(n, width)``; an architecture whose scoring raises an arithmetic error
    (e.g. ``log(0)`` in a proxy) gets NaN, reported as a failure and ranked last (see :func:`_fill`)."""
    rows = np.full((len(specs), width), np.nan)
    for i, sp in enumerate(specs):
        try:
            rows[i] = np.asarray(fn(sp), dtype=np.float64).reshape(width)
        except (ValueError, ArithmeticError) as e:
            print(f"  warning: scoring {sp.key()} failed: {e}", file=sys.stderr, flush=True)
    return rows


def _fill(scores: np.ndarray) -> tuple[np.ndarray, int]:
    """Non-finite scores (failed or NaN/inf architectures) -> below the lowest finite score (ranked
    last, tied); returns the filled scores and how many there were."""
    s = np.asarray(scores, dtype=np.float64).copy()
    bad = ~np.isfinite(s)
    if bad.any():
        finite = s[~bad]
        s[bad] = (finite.min() - 1.0) if finite.size else 0.0
    return s, int(bad.sum())


#: SiGeo's parameters that decide its raw terms (all but ``weights``), in this order
_SIGEO_OPTIONS = ("embeddings", "local_steps", "local_lr", "scope", "reduce", "loss_on")


def _sigeo_options(est: Any) -> tuple:
    """A SiGeo estimator's term-deciding options as a hashable tuple (``_SIGEO_OPTIONS`` order)."""
    p = est.get_params()
    return (p["embeddings"], int(p["local_steps"]), float(p["local_lr"]), p["scope"], p["reduce"], p["loss_on"])


def _sigeo_estimator(opts: tuple) -> Any:
    """The SiGeo estimator (default weights) of an option tuple of :func:`_sigeo_options`."""
    from recnas.estimators import SiGeo

    return SiGeo(**dict(zip(_SIGEO_OPTIONS, opts)))


def _score_all(cfg: BenchConfig, specs: list[ArchSpec], contexts: dict[tuple[str, float], Any],
               cache: _Cache, progress: bool, split: bool = False) -> list[ScoreSet]:
    """Every estimator entry and ablation combination in every context ``(init, fraction)``.

    With ``split``, the ``inherit`` contexts hold the split supernet of ``cfg.split`` at that
    fraction (:func:`recnas.lid.bench.split_for_fraction`): the inherited-weight entries are scored
    through it as score sets of kind ``split`` (context ``inherit <f>% <method> split L<levels>``,
    cached under the split settings too); the SiGeo ablation is not repeated there."""
    from recnas.estimators import SiGeo
    from recnas.estimators.sigeo import SIGEO_TERMS, shared_terms

    sets: list[ScoreSet] = []
    terms_memo: dict[tuple, tuple[np.ndarray, float]] = {}
    nan = float("nan")

    def ctx_name(init: str, frac: float) -> str:
        if init != "inherit":
            return init
        return f"inherit {_frac_name(frac)}" + (f" {cfg.split.method} split L{cfg.split.levels}" if split else "")

    def options(init: str) -> list[tuple]:
        """Every SiGeo option set (``_SIGEO_OPTIONS``, weights aside) scored in context ``init``."""
        opts: dict[tuple, None] = {}
        for e in cfg.estimators:
            if not e.needs_fit and init in e.resolved_inits():
                est = e.make()
                if isinstance(est, SiGeo):
                    opts[_sigeo_options(est)] = None
        if init in cfg.sigeo_ablation.inits and not split:
            for emb in cfg.sigeo_ablation.embeddings:
                opts[_sigeo_options(SiGeo(embeddings=emb))] = None
        return list(opts)

    def terms(opts: tuple, init: str, frac: float) -> tuple[np.ndarray, float]:
        if (opts, init, frac) not in terms_memo:
            # every option set of this context that takes the same gradients shares one pass
            # (SiGeo.gradient_key: embeddings, local steps, local lr); each is cached on its own
            group = [o for o in options(init) if _sigeo_estimator(o).gradient_key() == _sigeo_estimator(opts).gradient_key()
                     and (o, init, frac) not in terms_memo]
            if opts not in group:
                group.append(opts)
            ests = [_sigeo_estimator(o) for o in group]
            items = []
            for est in ests:
                settings = {"what": "sigeo_terms", "params": est.identity_params(), "ctx": ctx_settings(init, frac)}
                p = est.get_params()
                items.append((f"sigeo_terms-{p['embeddings']}-{p['local_steps']}-{init}-{frac:g}-{_digest(settings)}",
                              settings))

            def many(sp: ArchSpec, which: list[int]) -> list[list[float]]:
                got = shared_terms([ests[j] for j in which], sp, contexts[(init, frac)])
                return [[t[k] for k in SIGEO_TERMS] for t in got]

            for o, est, (rows, secs) in zip(group, ests, cache.get_or_compute_group(items, many, 3)):
                terms_memo[(o, init, frac)] = (rows, secs)
                if progress:
                    extra = {k: v for k, v in est.identity_params().items() if k in SiGeo.later_params}
                    print(f"  sigeo terms ({est.embeddings}, {est.local_steps} local steps"
                          f"{''.join(f', {k} {v}' for k, v in extra.items())}; {ctx_name(init, frac)}): {secs:.1f} s",
                          file=sys.stderr, flush=True)
        return terms_memo[(opts, init, frac)]

    def ctx_settings(init: str, frac: float) -> dict[str, Any]:
        s = {"init": init, "scoring": to_dict(cfg.scoring)}
        if init == "inherit":
            s.update(fraction=frac, warmup=to_dict(cfg.warmup))
            s["warmup"].pop("fractions")
            if split:
                s["split"] = cfg.split.identity()
        return s

    for init, frac in contexts:
        for e in cfg.estimators:
            if e.needs_fit or init not in e.resolved_inits():
                continue  # predictors are judged by the training-set-size sweep (predictor_sweep)
            fr = frac if init == "inherit" else nan
            label = f"{e.display} | {ctx_name(init, frac)}"
            est = e.make()
            if isinstance(est, SiGeo):
                # SiGeo's raw terms serve every weight preset: computed once per option set and
                # context (one gradient pass per gradient_key), shared with the ablation, combined per entry
                t, secs = terms(_sigeo_options(est), init, frac)
                scores = SiGeo.combine(t, est.weights)
            else:
                settings = {"what": e.name, "params": est.identity_params(), "ctx": ctx_settings(init, frac)}
                rows, secs = cache.get_or_compute(
                    f"{e.display}-{init}-{frac:g}-{_digest(settings)}".replace("/", "_").replace(" ", "_"),
                    settings, lambda sp, est=est, init=init, frac=frac: est.score([sp], contexts[(init, frac)]),
                )
                scores = rows[:, 0]
                if progress:
                    print(f"  {label}: {secs:.1f} s", file=sys.stderr, flush=True)
            scores, failed = _fill(scores)
            sets.append(ScoreSet(label, e.display, "split" if split else "estimator", init, fr, scores, secs,
                                 failed=failed))
        ab = cfg.sigeo_ablation
        if init in ab.inits and not split:
            for emb in ab.embeddings:
                t, secs = terms(_sigeo_options(SiGeo(embeddings=emb)), init, frac)
                for combo, w in ab.combos.items():
                    scores, failed = _fill(SiGeo.combine(t, w))
                    sets.append(ScoreSet(
                        f"sigeo[{combo}; emb={emb}] | {ctx_name(init, frac)}", f"sigeo {combo}", "sigeo_ablation",
                        init, frac if init == "inherit" else nan, scores, secs, emb, failed,
                    ))
    return sets


def judge(sets: list[ScoreSet], truth_logloss: np.ndarray, cfg: BenchConfig,
          ceilings: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per score set: :func:`recnas.bench.stats.compare`'s columns plus the set's facts.

    The fraction-of-ceiling columns divide by the average over every split of the seeds into
    halves when ``ceilings`` (:func:`ceiling_table`) has it (four or more seeds: the truth is a
    seed average, and that is its ceiling), else by the mean over seed pairs.
    """
    s = cfg.stats
    halves = None
    if ceilings is not None and "kind" in ceilings and (ceilings["kind"] == "all halves").any():
        r = ceilings[ceilings["kind"] == "all halves"].iloc[0]
        halves = {"spearman": float(r["spearman"]), "kendall": float(r["kendall"])}
    df = stats.compare(
        {x.label: x.scores for x in sets}, truth_logloss, seconds={x.label: x.seconds for x in sets},
        frac=s.top_frac, n_boot=s.n_boot, alpha=s.alpha, seed=s.seed, ceilings=halves,
    )
    n = truth_logloss.shape[0]
    facts = pd.DataFrame(
        [{"label": x.label, "estimator": x.estimator, "kind": x.kind, "init": x.init, "fraction": x.fraction,
          "embeddings": x.embeddings, "failed": x.failed} for x in sets]
    ).set_index("label")
    df.index.name = "label"
    df = facts.join(df.rename(columns={"estimator": "_est"}))
    df["seconds_per_arch"] = df["seconds"] / n
    return df.reset_index()


def _sweep_split(predictors: Mapping[str, Any], specs: Sequence[ArchSpec], truth: np.ndarray, seeds: int,
                 others: Sequence[ScoreSet], tr: np.ndarray, te: np.ndarray, base: dict[str, Any], top_frac: float,
                 space: SearchSpace | None) -> list[dict[str, Any]]:
    """One split of :func:`predictor_sweep`: every predictor fitted on ``tr`` and judged on ``te``,
    then every other score set on ``te``; the rows in that order."""
    n = len(truth)
    nan = float("nan")
    rows: list[dict[str, Any]] = []
    train_specs, test_specs = [specs[i] for i in tr], [specs[i] for i in te]
    for label, est in predictors.items():
        model = est.clone()
        t0 = time.perf_counter()
        model.fit(train_specs, truth[tr], space=space)
        t1 = time.perf_counter()
        pred = model.predict(test_specs)
        t2 = time.perf_counter()
        pred, failed = _fill(pred)
        rows.append({"label": label, "estimator": label, "kind": "predictor", "init": "none", "fraction": nan,
                     **base, **stats.ranking_stats(pred, truth[te], top_frac), "gt_runs": len(tr) * seeds,
                     "fit_seconds": t1 - t0, "query_seconds": t2 - t1, "failed": failed})
    for x in others:
        rows.append({"label": x.label, "estimator": x.estimator, "kind": x.kind, "init": x.init,
                     "fraction": x.fraction, **base, **stats.ranking_stats(x.scores[te], truth[te], top_frac),
                     "gt_runs": 0, "fit_seconds": 0.0, "query_seconds": x.seconds * len(te) / n,
                     "failed": int((~np.isfinite(x.scores[te])).sum())})
    return rows


def predictor_sweep(predictors: Mapping[str, Any], specs: Sequence[ArchSpec], truth_logloss: np.ndarray,
                    others: Sequence[ScoreSet], section: PredictorSection, top_frac: float = 0.1,
                    space: SearchSpace | None = None, progress: bool = False) -> pd.DataFrame:
    """The training-set-size sweep: predictors fitted on part of the ground truth, judged on the rest.

    For each fraction of ``section.train_fractions`` and each of ``section.splits`` seeded random
    splits (:func:`recnas.bench.stats.train_test_splits`, seed ``section.seed``), every predictor
    (an unfitted estimator with ``needs_fit``; a fresh clone per split) is fitted on the training
    architectures with ``y = -`` their seed-mean test log loss and ranks the held-out ones; every
    score vector of ``others`` (zero-cost / one-shot estimators, scored on all architectures) is
    restricted to the same held-out architectures. Both are judged by
    :func:`recnas.bench.stats.ranking_stats` on the held-out set only.

    Args:
        predictors: label -> unfitted predictor.
        specs: the benchmark's ``n`` architectures, in the order of ``truth_logloss``'s rows.
        truth_logloss: ``(n,)`` or ``(n, seeds)`` test log loss (lower = better).
        others: score sets judged on the same held-out sets (``n`` scores each).
        section: fractions, splits and seed.
        top_frac: the top fraction of the top-k precision.
        space: the search space handed to ``fit`` (the predictors' featurizers need it).

    Returns:
        One row per (estimator, training fraction, split): ``label``, ``estimator``, ``kind``
        (``predictor`` or the score set's kind), ``init``, ``fraction`` (warm-up; NaN where none),
        ``train_fraction``, ``split``, ``n_train``, ``n_test``, ``kendall``, ``spearman``, ``top``,
        ``gt_runs`` (ground-truth training runs consumed: ``n_train x seeds`` for a predictor, 0 for
        the others), ``fit_seconds``, ``query_seconds`` (a predictor's predict; another estimator's
        scoring seconds prorated to the held-out architectures), ``failed`` (non-finite
        predictions, ranked last). Rows are in a fixed order, and the same arguments give the same
        values (timings aside), with any ``section.workers``: the splits after the first run in
        that many worker processes (``joblib``), each fitting its own clones.
    """
    ll = np.asarray(truth_logloss, dtype=np.float64)
    ll = ll[:, None] if ll.ndim == 1 else ll
    n, seeds = ll.shape
    if len(specs) != n:
        raise ValueError(f"{len(specs)} architectures but {n} ground-truth rows")
    for x in others:
        if np.shape(x.scores) != (n,):
            raise ValueError(f"score set {x.label!r}: expected {n} scores, got shape {np.shape(x.scores)}")
    for label, est in predictors.items():
        if not getattr(est, "needs_fit", False):
            raise ValueError(f"{label!r} is not a predictor (needs_fit is False); judge it on all architectures")
    truth = -ll.mean(axis=1)
    from recnas.bench.parallel import first_here_rest_in_workers

    workers = getattr(section, "workers", 1)
    rows: list[dict[str, Any]] = []
    for frac, n_train in zip(section.train_fractions, section.train_sizes(n)):
        t_frac = time.perf_counter()
        jobs = [(predictors, specs, truth, seeds, others, np.asarray(tr), np.asarray(te),
                 {"train_fraction": frac, "split": j, "n_train": len(tr), "n_test": len(te)}, top_frac, space)
                for j, (tr, te) in enumerate(stats.train_test_splits(n, n_train, section.splits, section.seed))]
        for r in first_here_rest_in_workers(_sweep_split, jobs, workers):
            rows.extend(r)
        if progress:
            print(f"  predictors sweep: {100 * frac:g}% = {n_train} training architectures x {section.splits} splits "
                  f"in {time.perf_counter() - t_frac:.1f} s" + (f" ({workers} workers)" if workers > 1 else ""),
                  file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def sweep_summary(sweep: pd.DataFrame, alpha: float = 0.05, reference: str = "params | none") -> pd.DataFrame:
    """One row per (estimator, training fraction) of :func:`predictor_sweep`'s rows.

    Columns: the row's facts (``label`` .. ``n_test``, ``gt_runs``), ``splits``, and for each of
    ``kendall``, ``spearman``, ``top``: ``_mean``, ``_std`` and ``_lo`` / ``_hi`` (the ``alpha/2``
    and ``1 - alpha/2`` percentiles over the splits, :func:`recnas.bench.stats.summarize_splits`);
    mean ``fit_seconds`` and ``query_seconds``. A predictor's row also names the other estimator
    with the best mean held-out Kendall at that fraction (``best_other``, chosen after the fact,
    which favours it) and, paired by split, the mean Kendall difference (``kendall_diff``) and the
    share of splits on which the predictor ranks better (``better_share``); and the same against a
    fixed ``reference`` estimator chosen beforehand (the parameter count by default, the simplest
    proxy): ``reference``, ``reference_diff``, ``reference_better_share`` (NaN when it is absent).
    """
    rows = []
    for (label, frac), g in sweep.groupby(["label", "train_fraction"], sort=False):
        first = g.iloc[0]
        row: dict[str, Any] = {c: first[c] for c in ("label", "estimator", "kind", "init", "fraction",
                                                      "train_fraction", "n_train", "n_test", "gt_runs")}
        row["splits"] = len(g)
        for m in ("kendall", "spearman", "top"):
            sm = stats.summarize_splits(g[m].to_numpy(), alpha)
            for k in ("mean", "std", "lo", "hi"):
                row[f"{m}_{k}"] = sm[k]
        row["fit_seconds"] = float(g["fit_seconds"].mean())
        row["query_seconds"] = float(g["query_seconds"].mean())
        row["failed"] = int(g["failed"].max())
        rows.append(row)
    df = pd.DataFrame(rows)
    df["best_other"], df["kendall_diff"], df["better_share"] = "", np.nan, np.nan
    df["reference"], df["reference_diff"], df["reference_better_share"] = "", np.nan, np.nan

    def paired(label: str, other: str, frac: float) -> tuple[float, float]:
        at = sweep["train_fraction"] == frac
        b = sweep[(sweep["label"] == other) & at].set_index("split")["kendall"]
        p = sweep[(sweep["label"] == label) & at].set_index("split")["kendall"]
        d = (p - b.reindex(p.index)).dropna()
        return (float(d.mean()), float((d > 0).mean())) if len(d) else (np.nan, np.nan)

    for frac, g in df.groupby("train_fraction", sort=False):
        others = g[g["kind"] != "predictor"]
        has_ref = bool((others["label"] == reference).any())
        best = None
        if not (others.empty or others["kendall_mean"].isna().all()):
            best = others.loc[others["kendall_mean"].idxmax(), "label"]
        for i in g.index[g["kind"] == "predictor"]:
            if best is not None:
                df.at[i, "best_other"] = best
                df.at[i, "kendall_diff"], df.at[i, "better_share"] = paired(df.at[i, "label"], best, frac)
            if has_ref:
                df.at[i, "reference"] = reference
                df.at[i, "reference_diff"], df.at[i, "reference_better_share"] = paired(df.at[i, "label"], reference, frac)
    return df


def _seed_splits(k: int, m: int, n: int, seed: int) -> tuple[list[tuple[tuple[int, ...], tuple[int, ...]]], str]:
    """Disjoint (m seeds, n seeds) index pairs out of ``k``, each unordered pair once: all of them up to
    ``MAX_SEED_SPLITS``, else that many seeded random ones; and the words saying which."""
    from itertools import combinations

    count = math.comb(k, m) * math.comb(k - m, n) // (2 if m == n else 1)
    if count <= MAX_SEED_SPLITS:
        pairs = [(c, r) for c in combinations(range(k), m)
                 for r in combinations([i for i in range(k) if i not in c], n) if m != n or c < r]
        return pairs, f"all {len(pairs)}"
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(k) for _ in range(MAX_SEED_SPLITS)]
    return [(tuple(sorted(p[:m])), tuple(sorted(p[m:m + n]))) for p in perms], f"{MAX_SEED_SPLITS} random"


def ceiling_table(truth_logloss: np.ndarray, cfg: BenchConfig) -> pd.DataFrame:
    """The ground truth's agreement with itself, one row per comparison (column ``comparison``).

    Rows, in order: seed 0 vs seed 1 (the protocol's noise ceiling), every other pair of seeds,
    each with bootstrap intervals; with four or more seeds, the mean of the even-indexed seeds vs
    the mean of the odd-indexed ones (with intervals), then the average over *every* split of the
    seeds into two halves (``lo``/``hi`` there are the smallest and largest split, not a bootstrap).
    The halves measure what the benchmark is judged against: the reliability of a seed-averaged
    truth (two independent truths averaged over ``k // 2`` seeds each agree this well).
    Between them, for ``2 <= m < k / 2``, the average agreement of two means of ``m`` disjoint seeds
    (``disjoint means``): how the ceiling grows with the seeds averaged, to size a benchmark by.
    Column ``kind``: ``seed pair``, ``halves``, ``disjoint means`` or ``all halves``;
    ``seeds_per_side`` the seeds averaged on each side (1 for a pair).
    """
    s = cfg.stats
    seeds = cfg.train.seeds
    k = truth_logloss.shape[1]
    metrics = (("spearman", stats.spearman), ("kendall", stats.kendall))
    rows = []

    def add(name: str, kind: str, a: np.ndarray, b: np.ndarray, m: int = 1) -> None:
        row: dict[str, Any] = {"comparison": name, "kind": kind, "seeds_per_side": m}
        for mname, metric in metrics:
            row[mname] = metric(-a, -b)
            row[f"{mname}_lo"], row[f"{mname}_hi"] = stats.bootstrap_ci(
                metric, -a, -b, n_boot=s.n_boot, alpha=s.alpha, seed=s.seed
            )
        rows.append(row)

    add(f"seed {seeds[0]} vs seed {seeds[1]}", "seed pair", truth_logloss[:, 0], truth_logloss[:, 1])
    for i in range(k):
        for j in range(i + 1, k):
            if (i, j) != (0, 1):
                add(f"seed {seeds[i]} vs seed {seeds[j]}", "seed pair", truth_logloss[:, i], truth_logloss[:, j])
    def average(name: str, kind: str, pairs: list[tuple[tuple[int, ...], tuple[int, ...]]], m: int) -> None:
        per: dict[str, list[float]] = {mname: [] for mname, _ in metrics}
        for c, rest in pairs:
            a, b = truth_logloss[:, list(c)].mean(axis=1), truth_logloss[:, list(rest)].mean(axis=1)
            for mname, metric in metrics:
                per[mname].append(metric(-a, -b))
        row: dict[str, Any] = {"comparison": name, "kind": kind, "seeds_per_side": m}
        for mname, _ in metrics:
            v = np.asarray(per[mname])
            row[mname], row[f"{mname}_lo"], row[f"{mname}_hi"] = float(v.mean()), float(v.min()), float(v.max())
        rows.append(row)

    if k >= 4:
        even, odd = truth_logloss[:, 0::2].mean(axis=1), truth_logloss[:, 1::2].mean(axis=1)
        add(f"mean of seeds {list(seeds[0::2])} vs mean of {list(seeds[1::2])}", "halves", even, odd, k // 2)
        # agreement of two disjoint m-seed means (m = 2 .. up to the halves): how the ceiling grows
        # with the seeds averaged
        for m in range(2, (k - 1) // 2 + 1):
            pairs, which = _seed_splits(k, m, m, s.seed)
            average(f"mean of {m} seeds vs mean of {m} others: average over {which} disjoint pairs "
                    "(lo/hi: the extreme pairs)", "disjoint means", pairs, m)
        half = k // 2
        splits, which = _seed_splits(k, half, k - half, s.seed)
        average(f"mean of {half} seeds vs mean of the other {k - half}: average over {which} "
                "splits (lo/hi: the extreme splits)", "all halves", splits, half)
    return pd.DataFrame(rows)


def scoring_inputs(cfg: BenchConfig, progress: bool = True) -> tuple[Path, Any, dict[str, Path], list, list]:
    """The prepared data of a bench pipeline and its scoring batches (``scoring:`` section), with the
    scoring threads set: ``(data_dir, feature_map, splits, batches, val_batches)``."""
    import torch

    from recnas.data.loader import load_prepared
    from recnas.pipeline import resolve_data
    from recnas.study.context import scoring_batches

    data_dir = Path(resolve_data(cfg.data, progress=progress)).resolve()
    fm, splits = load_prepared(data_dir)
    if cfg.scoring.threads:
        torch.set_num_threads(cfg.scoring.threads)
    sc = cfg.scoring
    batches, val_batches = scoring_batches(splits, fm, batches=sc.batches, val_batches=sc.val_batches,
                                           batch_size=sc.batch_size, section="scoring")
    return data_dir, fm, splits, batches, val_batches


def fresh_stream(cfg: BenchConfig, fm: Any, splits: dict[str, Path]) -> Any:
    """The training rows after the scoring batches (:class:`recnas.study.context.FreshBatches`, the
    scoring batch size), one stream for all of a comparison's contexts: read lazily, once."""
    from recnas.study.context import FreshBatches

    sc = cfg.scoring
    return FreshBatches(splits["train"], fm, sc.batch_size, sc.batches, section="scoring")


def run_compare(cfg: BenchConfig, source: str = "pipeline", progress: bool = True,
                score_only: bool = False) -> Path | None:
    """Runs the comparison (see the module docstring); returns the path of ``report.md``.

    With ``score_only`` the ground truth is not read: every score is computed and cached (so this
    can run while ``build`` is still training) and ``None`` is returned; a later full run reuses them.
    """
    from recnas.bench.report import write_report
    from recnas.estimators import ScoringContext

    out = Path(cfg.output)
    space = SearchSpace.load(cfg.space)
    specs = sample_archs(space, cfg.num_archs, cfg.sample_seed)
    keys = [s.key() for s in specs]
    if not score_only:
        table = read_table(out)
        truth = truth_matrix(table, keys, cfg.train.seeds)
    data_dir, fm, splits, batches, val_batches = scoring_inputs(cfg, progress)
    sc = cfg.scoring
    rows = fresh_stream(cfg, fm, splits)  # oneshot finetune_rows: fresh reads it; shared by every context
    cache = _Cache(out / "scores", specs)

    if progress:
        print(f"recnas bench compare: {len(specs)} architectures x {len(cfg.train.seeds)} seeds; "
              f"warm-up fractions {[_frac_name(f) for f in cfg.warmup.fractions]}", file=sys.stderr, flush=True)
    sets: list[ScoreSet] = []
    warm_info = []
    split_info: list[dict[str, Any]] = []
    try:
        fresh = ScoringContext(fm, batches, val_batches, supernet=None, init="fresh", seed=sc.seed, device="cpu",
                               fresh_batches=rows)
        sets += _score_all(cfg, specs, {("fresh", 0.0): fresh, ("none", 0.0): fresh}, cache, progress)
        for frac in cfg.warmup.fractions:
            net, secs, steps = _supernet(cfg, frac, space, fm, splits, data_dir, out, progress)
            warm_info.append({"fraction": frac, "seconds": secs, "steps": steps})
            ctx = ScoringContext(fm, batches, val_batches, supernet=net, init="inherit", seed=sc.seed, device="cpu",
                                 fresh_batches=rows)
            sets += _score_all(cfg, specs, {("inherit", frac): ctx}, cache, progress)
            del net, ctx
            if cfg.split is not None and frac > 0:
                from recnas.lid.bench import split_for_fraction

                net, facts = split_for_fraction(cfg, frac, fm, space, splits, data_dir, out, progress)
                split_info.append(facts)
                ctx = ScoringContext(fm, batches, val_batches, supernet=net, init="inherit", seed=sc.seed,
                                     device="cpu", fresh_batches=rows)
                sets += _score_all(cfg, specs, {("inherit", frac): ctx}, cache, progress, split=True)
                del net, ctx
    finally:
        cache.close()

    if score_only:
        return None
    ceilings = ceiling_table(truth, cfg)
    results = judge(sets, truth, cfg, ceilings)
    scores = pd.DataFrame({"arch": range(len(specs)), "key": keys})
    for i, seed in enumerate(cfg.train.seeds):
        scores[f"test_logloss_seed{seed}"] = truth[:, i]
    scores["test_logloss_mean"] = truth.mean(axis=1)
    scores = pd.concat([scores, pd.DataFrame({x.label: x.scores for x in sets})], axis=1)
    results.to_csv(out / RESULTS_FILE, index=False)
    scores.to_csv(out / SCORES_FILE, index=False)
    ceilings.to_csv(out / "ceiling.csv", index=False)
    warm = pd.DataFrame(warm_info, columns=["fraction", "seconds", "steps"])
    warm.to_csv(out / WARMUP_FILE, index=False)
    split_facts = None
    if cfg.split is not None:
        split_facts = {"settings": to_dict(cfg.split), "fractions": split_info}
        (out / SPLIT_FACTS_FILE).write_text(json.dumps(split_facts, indent=1, default=str) + "\n")
    sweep = summary = None
    handed: list[str] = []
    if any(e.needs_fit for e in cfg.estimators):
        sweep, summary, handed = _run_predictor_sweep(cfg, specs, truth, sets, space, out, progress)
    return write_report(out, cfg, source, table, truth, results, scores, ceilings, warm,
                        sweep_summary=summary, proxy_columns=handed, split_facts=split_facts)


def sigeo_term_combos(cfg: BenchConfig) -> list[str]:
    """The SiGeo ablation's single-term combinations (``[1, 0, 0]``-like weights): SiGeo's three raw
    terms, as the ``estimator`` names of their score sets (``"sigeo l1 (ZiCo)"``, ...)."""
    return [f"sigeo {c}" for c, w in cfg.sigeo_ablation.combos.items() if sum(1 for x in w if x) == 1]


def proxy_sets(cfg: BenchConfig, sets: Sequence[ScoreSet]) -> list[ScoreSet]:
    """The label-free score vectors a proxy-feature predictor (``uses_scores``, e.g. ``zc_gbt``) reads:
    every estimator's score set (every context it was scored in, ``params`` and ``flops`` included)
    and SiGeo's three raw terms from the ablation (each embeddings mode and context)."""
    terms = set(sigeo_term_combos(cfg))
    return [x for x in sets if x.kind == "estimator" or (x.kind == "sigeo_ablation" and x.estimator in terms)]


def _run_predictor_sweep(cfg: BenchConfig, specs: list[ArchSpec], truth: np.ndarray, sets: Sequence[ScoreSet],
                         space: SearchSpace, out: Path, progress: bool) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """:func:`predictor_sweep` of the config's predictor entries against its other estimators
    (``kind == "estimator"``); writes ``sweep.csv`` and ``sweep_summary.csv`` into ``out``.

    A predictor whose class sets ``uses_scores`` and whose ``scores`` parameter is unset gets the
    bench's :func:`proxy_sets` as its :class:`recnas.predictors.ProxyTable` (cached scores, not
    recomputed; matched to architectures by key). They are label-free, so reading a held-out
    architecture's proxy scores at prediction is what every zero-cost estimator does when judged.
    Returns the sweep rows, their summary and the proxy columns handed over (empty when none was).
    """
    from recnas.predictors import ProxyTable

    predictors = {e.display: e.make() for e in cfg.estimators if e.needs_fit}
    others = [x for x in sets if x.kind == "estimator"]
    handed: list[str] = []
    feature_sets = proxy_sets(cfg, sets)
    table = ProxyTable.from_vectors([s.key() for s in specs], {x.label: x.scores for x in feature_sets},
                                    source="the bench's score vectors")
    for est in predictors.values():
        if getattr(type(est), "uses_scores", False) and est.get_params().get("scores") is None:
            est.set_params(scores=table)
            handed = table.columns
    sweep = predictor_sweep(predictors, specs, truth, others, cfg.predictors, cfg.stats.top_frac, space, progress)
    summary = sweep_summary(sweep, cfg.stats.alpha)
    out.mkdir(parents=True, exist_ok=True)
    sweep.to_csv(out / SWEEP_FILE, index=False)
    summary.to_csv(out / SWEEP_SUMMARY_FILE, index=False)
    return sweep, summary, handed


def read_built(cfg: BenchConfig, src: Path, source: str = "pipeline") -> pd.DataFrame:
    """The ground-truth table of a build folder (``build.json`` and ``groundtruth.parquet`` or
    ``.csv``; e.g. a ``reports/`` folder), after checking that it was built with ``cfg``'s settings;
    raises naming what is missing."""
    from recnas.bench.config import build_signature
    from recnas.bench.groundtruth import BUILD_FILE, TABLE_FILE, _check_signature

    if not (src / BUILD_FILE).is_file():
        raise FileNotFoundError(f"{src}: no {BUILD_FILE}; the ground truth's training settings are unknown")
    _check_signature(src, build_signature(cfg), source)
    if (src / TABLE_FILE).is_file():
        return read_table(src)
    if (src / "groundtruth.csv").is_file():
        return pd.read_csv(src / "groundtruth.csv")
    raise FileNotFoundError(f"{src}: neither {TABLE_FILE} nor groundtruth.csv is there")


def read_finished(cfg: BenchConfig, src: Path, source: str = "pipeline") -> pd.DataFrame:
    """:func:`read_built` of a finished comparison folder, which must also hold ``results.csv`` and
    ``scores.csv``; raises naming what is missing."""
    table = read_built(cfg, src, source)
    for name in (RESULTS_FILE, SCORES_FILE):
        if not (src / name).is_file():
            raise FileNotFoundError(f"{src}: no {name}; run `recnas bench compare` on this pipeline first")
    return table


def _finished_inputs(cfg: BenchConfig, src: Path, source: str
                     ) -> tuple[pd.DataFrame, SearchSpace, list[ArchSpec], np.ndarray, pd.DataFrame]:
    """A finished comparison's ground-truth table, space, architectures, truth matrix and
    ``scores.csv`` (checked to be this pipeline's architectures, in order) -- what ``sweep`` and
    ``report`` start from."""
    table = read_finished(cfg, src, source)
    space = SearchSpace.load(cfg.space)
    specs = sample_archs(space, cfg.num_archs, cfg.sample_seed)
    keys = [s.key() for s in specs]
    truth = truth_matrix(table, keys, cfg.train.seeds)
    scores = pd.read_csv(src / SCORES_FILE)
    if scores["key"].tolist() != keys:
        raise ValueError(f"{src / SCORES_FILE}: its architectures are not this pipeline's {len(keys)} architectures")
    return table, space, specs, truth, scores


def run_sweep(cfg: BenchConfig, source: str = "pipeline", from_dir: str | os.PathLike | None = None,
              out: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """The predictors' training-set-size sweep alone, from a finished comparison; returns ``sweep.md``.

    ``from_dir`` (default ``cfg.output``) holds the build's ``build.json`` (it must be this
    pipeline's build signature), its table (``groundtruth.parquet`` or ``groundtruth.csv``) and the
    comparison's ``results.csv`` and ``scores.csv``: the other estimators' score vectors are read
    from there, not recomputed (every row of ``kind == "estimator"``). Writes ``sweep.csv``,
    ``sweep_summary.csv``, ``sweep_kendall.png`` and ``sweep.md`` into ``out`` (default
    ``from_dir``); nothing else is written.
    """
    from recnas.bench.report import write_sweep

    src = Path(from_dir if from_dir is not None else cfg.output)
    dst = Path(out) if out is not None else src
    if not any(e.needs_fit for e in cfg.estimators):
        raise ValueError(f"{source}: no estimator entry is a predictor (needs_fit); add one, e.g. {{name: ridge}}")
    _, space, specs, truth, scores = _finished_inputs(cfg, src, source)
    sets = _finished_sets(cfg, src, scores)
    if progress:
        print(f"recnas bench sweep: {len(specs)} architectures x {len(cfg.train.seeds)} seeds from {src}; "
              f"{sum(x.kind == 'estimator' for x in sets)} score vectors; training fractions "
              f"{list(cfg.predictors.train_fractions)} x {cfg.predictors.splits} splits", file=sys.stderr, flush=True)
    sweep, summary, handed = _run_predictor_sweep(cfg, specs, truth, sets, space, dst, progress)
    return write_sweep(dst, cfg, source, summary, truth.shape, str(src), proxy_columns=handed)


def _finished_sets(cfg: BenchConfig, src: Path, scores: pd.DataFrame) -> list[ScoreSet]:
    """The score sets of a finished comparison: every ``results.csv`` row of kind ``estimator``, and
    the SiGeo ablation's single-term rows (features of ``uses_scores`` predictors, never judged in
    the sweep), their vectors read from ``scores.csv``."""
    results = pd.read_csv(src / RESULTS_FILE)
    terms = set(sigeo_term_combos(cfg))
    keep = (results["kind"] == "estimator") | ((results["kind"] == "sigeo_ablation") & results["estimator"].isin(terms))
    sets = []
    for r in results[keep].itertuples(index=False):
        if r.label not in scores.columns:
            raise ValueError(f"{src / SCORES_FILE}: no column {r.label!r} (a row of {RESULTS_FILE})")
        emb = r.embeddings if isinstance(r.embeddings, str) else ""
        sets.append(ScoreSet(r.label, r.estimator, r.kind, r.init, float(r.fraction),
                             scores[r.label].to_numpy(dtype=np.float64), float(r.seconds), emb, int(r.failed)))
    return sets


def _finished_sweep(cfg: BenchConfig, src: Path) -> tuple[pd.DataFrame | None, str | None]:
    """The sweep summary of a finished comparison folder (``sweep_summary.csv`` there, else in its
    ``sweep/``) and its plot's path relative to ``src`` (``None`` when the plot is not there)."""
    from recnas.bench.report import SWEEP_PLOT

    for sub in ("", "sweep"):
        d = src / sub if sub else src
        if (d / SWEEP_SUMMARY_FILE).is_file():
            summary = pd.read_csv(d / SWEEP_SUMMARY_FILE)
            wanted = [e.display for e in cfg.estimators if e.needs_fit]
            have = set(summary.loc[summary["kind"] == "predictor", "label"])
            lacking = [w for w in wanted if w not in have]
            if lacking:
                raise ValueError(f"{d / SWEEP_SUMMARY_FILE}: no sweep of the predictor entries {lacking}; run "
                                 f"`recnas bench sweep PIPELINE --from {src}{' --out ' + str(d) if sub else ''}` first")
            png = f"{sub}/{SWEEP_PLOT}" if sub else SWEEP_PLOT
            return summary, (png if (src / png).is_file() else None)
    return None, None


def run_report(cfg: BenchConfig, source: str = "pipeline", from_dir: str | os.PathLike | None = None) -> Path:
    """Rewrites ``report.md`` (and its plots) of a finished comparison from its files; scores and
    trains nothing (``recnas bench report``). Returns the report's path.

    ``from_dir`` (default ``cfg.output``) must hold what :func:`read_finished` needs; its
    ``ceiling.csv`` and ``warmup.csv`` are used when there (else the ceiling is recomputed from the
    ground truth and the warm-up's steps and seconds are shown as unknown). The predictors' sweep
    section comes from ``sweep_summary.csv`` (in the folder, else in its ``sweep/``), which must
    cover every predictor entry of the pipeline; the regret section from ``regret/`` when
    ``recnas bench regret`` wrote it there.
    """
    from recnas.bench.report import write_report

    src = Path(from_dir if from_dir is not None else cfg.output)
    table, space, specs, truth, scores = _finished_inputs(cfg, src, source)
    results = pd.read_csv(src / RESULTS_FILE)
    ceilings = pd.read_csv(src / "ceiling.csv") if (src / "ceiling.csv").is_file() else ceiling_table(truth, cfg)
    if "kind" not in ceilings:  # a ceiling.csv from before the column: seed pairs and seed-mean halves
        ceilings["kind"] = ["seed pair" if str(c).startswith("seed ") else "halves" for c in ceilings["comparison"]]
    if (src / WARMUP_FILE).is_file():
        warm = pd.read_csv(src / WARMUP_FILE)
    else:
        warm = pd.DataFrame({"fraction": list(cfg.warmup.fractions), "seconds": float("nan"), "steps": -1})
    summary, png = _finished_sweep(cfg, src) if any(e.needs_fit for e in cfg.estimators) else (None, None)
    handed: list[str] = []
    if summary is not None and any(getattr(e.estimator_class, "uses_scores", False) and "scores" not in e.params
                                   for e in cfg.estimators if e.needs_fit):
        handed = [x.label for x in proxy_sets(cfg, _finished_sets(cfg, src, scores))]
    split_facts = None
    if (src / SPLIT_FACTS_FILE).is_file():
        split_facts = json.loads((src / SPLIT_FACTS_FILE).read_text())
    return write_report(src, cfg, source, table, truth, results, scores, ceilings, warm,
                        sweep_summary=summary, proxy_columns=handed, sweep_png=png, split_facts=split_facts)
