"""Regret curves of the search strategies, by tabular simulation over a benchmark's trained architectures.

``recnas bench regret PIPELINE [--from DIR]`` reads a finished benchmark (``build.json``, the table
``groundtruth.parquet`` or ``groundtruth.csv``, and for the estimator-driven searches the
comparison's ``scores.csv`` and ``results.csv``) and runs every search strategy ``repeats`` times
(strategy seed ``seed + repeat``) with the benchmark's architectures as the only candidates
(:class:`~recnas.search.tabular.TabularSpace`) and the table as the oracle. A strategy is the
registered one (:mod:`recnas.search.strategies`), unchanged, run through a
:class:`~recnas.study.Study` over an in-memory trial store.

**The oracle.** An architecture's ground truth is the mean over the build's seeds of its test log
loss; a query is charged the mean over those seeds of its recorded ``train_seconds`` (one training
run's time: the oracle is noise-free, as tabular NAS benchmarks answer with the mean) and one
training run.

**What a query is** (the x-axis of ``regret_queries.png``):

- Strategies searching on the ground truth (``random``, ``evolution``, ``weaknas``, ``bonas``,
  ``guided_evolution``): every *distinct* architecture they propose is one query, in proposal
  order. A proposal of an architecture already measured is answered from the study's store
  (no query, no seconds), as a live search does. A run stops at ``budget`` queries, or after
  ``max_proposals`` proposals (a strategy that only repeats itself; noted in ``regret_runs.csv``).
- Estimator-driven strategies (``evolution_sigeo``, ``evolution_oneshot``): regularized evolution
  on the proxy's committed score (a ``scores.csv`` column; higher = better) until it has scored
  ``proxy_budget`` distinct architectures, each charged the column's recorded seconds per
  architecture (``results.csv``; the supernet's warm-up is not charged). Then the scored
  architectures are trained in the proxy's order, best first (the search's final training): the
  q-th query is the q-th best by the proxy. Such a run makes at most ``proxy_budget`` queries;
  after that its best-so-far is held (``regret_runs.csv`` says how many it made).

**Seconds** (the x-axis of ``regret_seconds.png``): ``seconds`` = ``eval_seconds`` (the charged
training and proxy seconds, cumulative; for an estimator-driven run the whole proxy search is paid
before its first query) + ``strategy_seconds`` (the strategy's own measured time in ``ask``:
predictor fits, pools; cumulative). Only ``strategy_seconds`` depends on the machine.

Outputs (``out``): ``regret.csv`` (one row per query: ``strategy, repeat, seed, query, arch, key,
test_logloss, best_logloss, regret, eval_seconds, strategy_seconds, seconds``; regret = best so far
minus the table's best), ``regret_runs.csv`` (one row per run), ``regret_summary.csv`` (per
strategy, at several budgets in queries and in seconds: mean regret, 95 % t-interval over the
repeats clipped at 0, share of repeats that found the table's best), ``regret.md``,
``regret_queries.png`` and ``regret_seconds.png``.

Example::

    >>> import numpy as np
    >>> from recnas.bench.groundtruth import sample_archs
    >>> from recnas.space import SearchSpace
    >>> space = SearchSpace.load("tiny")
    >>> specs = sample_archs(space, 10, seed=0)
    >>> table = Table(space, specs, logloss=0.5 + 0.01 * np.arange(10), seconds=np.ones(10))
    >>> rows, run = simulate(table, REGISTRY["random"], seed=0, budget=10)
    >>> rows[-1]["regret"], run["queries"]
    (0.0, 10)
"""

from __future__ import annotations

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

from recnas.bench.parallel import first_here_rest_in_workers
from recnas.space import ArchSpec, SearchSpace

__all__ = ["Table", "RegretStrategy", "REGISTRY", "DEFAULT_STRATEGIES", "simulate", "run_regret", "regret_summary",
           "load_table", "write_regret", "query_table", "REGRET_FILE", "SUMMARY_FILE", "RUNS_FILE"]

REGRET_FILE = "regret.csv"
RUNS_FILE = "regret_runs.csv"
SUMMARY_FILE = "regret_summary.csv"
MD_FILE = "regret.md"
PLOTS = ("regret_queries.png", "regret_seconds.png")


@dataclass
class Table:
    """A benchmark as an oracle: ``specs`` of ``space``, their ground-truth ``logloss`` (lower =
    better), the ``seconds`` a query is charged, and proxies ``label -> (scores, seconds per
    architecture)`` (scores higher = better, in the order of ``specs``)."""

    space: SearchSpace
    specs: list[ArchSpec]
    logloss: np.ndarray
    seconds: np.ndarray
    proxies: dict[str, tuple[np.ndarray, float]] = field(default_factory=dict)
    seeds: int = 1
    #: the truth's own noise: the median over architectures of the standard error of the seed mean
    se: float | None = None

    def __post_init__(self) -> None:
        self.logloss = np.asarray(self.logloss, dtype=np.float64)
        self.seconds = np.asarray(self.seconds, dtype=np.float64)
        self.keys = [s.key() for s in self.specs]
        if len(set(self.keys)) != len(self.keys):
            raise ValueError("regret: the table lists an architecture twice")
        if self.logloss.shape != (len(self.specs),) or self.seconds.shape != (len(self.specs),):
            raise ValueError(f"regret: {len(self.specs)} architectures but {self.logloss.shape} log losses and "
                             f"{self.seconds.shape} seconds")
        if not np.isfinite(self.logloss).all():
            raise ValueError(f"regret: {int((~np.isfinite(self.logloss)).sum())} ground-truth log losses are not finite")
        self.arch = {k: i for i, k in enumerate(self.keys)}

    @property
    def best(self) -> float:
        return float(self.logloss.min())

    def truth(self) -> Any:
        from recnas.search.tabular import truth_evaluator

        return truth_evaluator(self.keys, self.logloss, self.seconds)

    def proxy(self, label: str) -> Any:
        from recnas.search.tabular import TableEvaluator

        if label not in self.proxies:
            raise KeyError(f"regret: no proxy column {label!r}; the table has {sorted(self.proxies)}")
        scores, secs = self.proxies[label]
        return TableEvaluator(dict(zip(self.keys, map(float, scores))), float(secs), f"tabular:{label}",
                              {"column": label, "table": self.keys})


@dataclass(frozen=True)
class RegretStrategy:
    """One entry of the simulation: ``strategy`` (registered name) with ``params``, searching on the
    ground truth, or on ``proxy`` (a key of :func:`proxy_columns`, e.g. ``sigeo``) when given.
    ``params`` may be a function of the table size (for pools sized to the table)."""

    label: str
    strategy: str
    params: Mapping[str, Any] | Callable[[int], dict[str, Any]] = field(default_factory=dict)
    proxy: str | None = None
    about: str = ""

    def resolved(self, n: int) -> dict[str, Any]:
        return dict(self.params(n) if callable(self.params) else self.params)


#: evolution's settings for a table of ~60 architectures (NASRec's 128 / 64 / 8 exceed the table)
EVOLUTION = {"population": 10, "sample": 5, "children": 5}
#: the EmProx autoencoder of the simulation: smaller than the paper's 10,000 x 50 epochs, so a fresh
#: machine trains it in about a minute (cached in data/cache/emprox afterwards)
EMPROX = {"k": 10, "unlabelled": 2000, "epochs": 20}

REGISTRY: dict[str, RegretStrategy] = {r.label: r for r in (
    RegretStrategy("random", "random", about="uniform over the table, no repeats"),
    RegretStrategy("evolution", "evolution", EVOLUTION, about="regularized evolution on the ground truth"),
    RegretStrategy("evolution_sigeo", "evolution", EVOLUTION, proxy="sigeo",
                   about="regularized evolution on SiGeo's score, then the scored ones trained best first"),
    RegretStrategy("evolution_oneshot", "evolution", EVOLUTION, proxy="oneshot",
                   about="regularized evolution on the one-shot score, then trained best first"),
    RegretStrategy("weaknas", "weaknas",
                   lambda n: {"predictor": "gbt", "initial": min(10, n), "pool": n, "top": min(10, n), "sample": 5},
                   about="WeakNAS, gbt weak predictor, the whole table as the pool"),
    RegretStrategy("bonas", "bonas",
                   lambda n: {"initial": min(10, n), "pool": n, "k": 5, "predictor_params": {"epochs": 50}},
                   about="BONAS, GCN + BLR surrogate (50 epochs a fit), UCB over the whole table"),
    RegretStrategy("guided_evolution", "guided_evolution",
                   {**EVOLUTION, "candidates": 20, "predictor": "emprox", "predictor_params": EMPROX},
                   about="regularized evolution, 20 children a generation scored by EmProx, the best 5 measured"),
)}
DEFAULT_STRATEGIES = ("random", "evolution", "evolution_sigeo", "evolution_oneshot", "weaknas", "bonas",
                      "guided_evolution")


def _prepare(rs: RegretStrategy, params: dict[str, Any], space: SearchSpace) -> None:
    """Loads (or trains once, on the underlying space) what a strategy's predictor caches."""
    if params.get("predictor") == "emprox":
        from recnas.estimators import make_estimator

        make_estimator("emprox", **(params.get("predictor_params") or {})).autoencoder(space)


def _drive(strategy: Any, space: Any, ev: Any, distinct: int, max_proposals: int
           ) -> tuple[list[tuple[ArchSpec, Any, float]], int, float, bool]:
    """Asks ``strategy`` and measures with ``ev`` through a study until ``distinct`` architectures
    are measured or ``max_proposals`` proposals are made. Returns ``[(spec, measurement, the
    strategy's cumulative seconds when it was proposed)]`` in order, the proposals, the seconds,
    and whether ``distinct`` was reached."""
    from recnas.study import Study, TrialStore

    study = Study(TrialStore.memory(), space, measure=ev.measure, settings=ev.settings)
    out: list[tuple[ArchSpec, Any, float]] = []
    proposals, own = 0, 0.0
    while len(out) < distinct and proposals < max_proposals:
        t0 = time.perf_counter()
        specs = strategy.ask(study, strategy.default_batch)
        own += time.perf_counter() - t0
        if not specs:
            break
        proposals += len(specs)
        for t in study.ask_record(specs):
            if len(out) >= distinct:
                break
            rec = study.lookup(t.spec)
            if rec is not None:
                study.tell_record(t, rec["score"], cached=True, values=rec.get("values"))
                continue
            m = ev.evaluate([t.spec])[0]
            study.tell_record(t, m.score, seconds=m.seconds, values=m.values, train_runs=m.train_runs)
            out.append((t.spec, m, own))
    return out, proposals, own, len(out) >= distinct


def simulate(table: Table, rs: RegretStrategy, seed: int, budget: int, proxy_budget: int | None = None,
             max_proposals: int | None = None, neighbours: int = 5) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One run of ``rs`` (strategy seed ``seed``) over ``table``: the rows of its queries (module
    docstring) and a summary of the run (``queries``, ``proposals``, ``proxy_evaluations``,
    ``strategy_seconds``, ``stopped``)."""
    from recnas.search.strategies import make_strategy
    from recnas.search.tabular import TabularSpace

    n = len(table.specs)
    budget = min(int(budget), n)
    if budget < 1:
        raise ValueError(f"regret: budget must be >= 1, got {budget}")
    max_proposals = int(max_proposals or 20 * n)
    space = TabularSpace.of(table.space, table.specs, neighbours=neighbours)
    params = rs.resolved(n)
    _prepare(rs, params, table.space)
    strategy = make_strategy(rs.strategy, space, seed=seed, **params)
    truth = table.truth()
    run: dict[str, Any] = {"strategy": rs.label, "seed": seed}
    if rs.proxy is None:
        found, proposals, own, done = _drive(strategy, space, truth, budget, max_proposals)
        steps = [(s, m.seconds, t) for s, m, t in found]
        base = 0.0
        run.update(proposals=proposals, proxy_evaluations=0)
    else:
        ev = table.proxy(rs.proxy)
        pb = min(int(proxy_budget or n), n)
        scored, proposals, own, done = _drive(strategy, space, ev, pb, max_proposals)
        # the final training: the scored architectures best first by the proxy (stable: first scored first)
        order = sorted(range(len(scored)), key=lambda i: -scored[i][1].score if math.isfinite(scored[i][1].score)
                       else math.inf)
        base = float(sum(m.seconds for _, m, _ in scored))
        ranked = [scored[i][0] for i in order][:budget]
        steps = [(s, float(truth.evaluate([s])[0].seconds), own) for s in ranked]
        run.update(proposals=proposals, proxy_evaluations=len(scored))
    rows: list[dict[str, Any]] = []
    best, spent = math.inf, base
    for q, (spec, secs, own_t) in enumerate(steps, start=1):
        a = table.arch[spec.key()]
        ll = float(table.logloss[a])
        best = min(best, ll)
        spent += secs
        rows.append({"strategy": rs.label, "seed": seed, "query": q, "arch": a, "key": spec.key(), "test_logloss": ll,
                     "best_logloss": best, "regret": best - table.best, "eval_seconds": spent,
                     "strategy_seconds": own_t, "seconds": spent + own_t})
    reached = len(rows)
    run.update(queries=reached, strategy_seconds=own,
               stopped="budget" if reached >= budget else ("proxy_budget" if done else "max_proposals"))
    return rows, run


def _t_interval(v: np.ndarray, alpha: float = 0.05) -> tuple[float, float, float]:
    from scipy import stats

    v = v[np.isfinite(v)]
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if len(v) < 2 or float(v.std(ddof=1)) == 0.0:
        return m, m, m
    h = float(stats.t.ppf(1 - alpha / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return m, max(0.0, m - h), m + h


def _at(g: pd.DataFrame, col: str, x: float) -> float:
    """A run's regret at budget ``x`` on axis ``col``: that of its last query within it (NaN if none)."""
    r = g[g[col] <= x + 1e-9]
    return float(r["regret"].iloc[-1]) if len(r) else math.nan


def query_budgets(budget: int) -> list[int]:
    return sorted({b for b in (1, 5, 10, 15, 20, 30, 40, 50, 60, 80, 100) if b < budget} | {budget})


def seconds_budgets(table: Table) -> list[float]:
    """Fractions 5, 10, 25, 50, 100 % of the seconds of training the whole table once."""
    total = float(table.seconds.sum())
    return [f * total for f in (0.05, 0.1, 0.25, 0.5, 1.0)]


def regret_summary(rows: pd.DataFrame, qb: Sequence[int], sb: Sequence[float]) -> pd.DataFrame:
    """Per strategy and budget (``axis`` ``queries`` or ``seconds``): ``repeats``, ``defined`` (runs
    with a query within the budget), ``mean`` regret, its 95 % t-interval ``lo`` / ``hi`` (clipped at
    0), ``found_best`` (share of the defined runs at regret 0) and ``mean_best_logloss``."""
    out = []
    for strategy, gs in rows.groupby("strategy", sort=False):
        runs = [g.sort_values("query") for _, g in gs.groupby("repeat")]
        for axis, col, budgets in (("queries", "query", qb), ("seconds", "seconds", sb)):
            for b in budgets:
                v = np.array([_at(g, col, b) for g in runs])
                m, lo, hi = _t_interval(v)
                ok = np.isfinite(v)
                bl = np.array([float(g[g[col] <= b + 1e-9]["best_logloss"].iloc[-1]) if ok[i] else math.nan
                               for i, g in enumerate(runs)])
                out.append({"strategy": strategy, "axis": axis, "budget": b, "repeats": len(runs),
                            "defined": int(ok.sum()), "mean": m, "lo": lo, "hi": hi,
                            "found_best": float((v[ok] == 0).mean()) if ok.any() else math.nan,
                            "mean_best_logloss": float(np.nanmean(bl)) if ok.any() else math.nan})
    return pd.DataFrame(out)


def run_regret(table: Table, strategies: Sequence[str] = DEFAULT_STRATEGIES, repeats: int = 10, seed: int = 0,
               budget: int | None = None, proxy_budget: int | None = None, max_proposals: int | None = None,
               registry: Mapping[str, RegretStrategy] | None = None, progress: bool = False, neighbours: int = 5,
               workers: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every strategy ``repeats`` times (seeds ``seed .. seed + repeats - 1``): the query rows
    (:data:`REGRET_FILE`'s columns, with ``repeat``) and the runs (:data:`RUNS_FILE`).

    ``workers > 1``: each strategy's first repeat runs here (what its predictor caches on first use,
    e.g. EmProx's autoencoder, is made once) and the others in that many ``joblib`` worker processes,
    each with this process's torch thread count; every row but the measured ``strategy_seconds`` (and
    the ``seconds`` that add it) is the one a single process gives."""
    reg = dict(registry or REGISTRY)
    unknown = [s for s in strategies if s not in reg]
    if unknown:
        raise ValueError(f"regret: unknown strategies {unknown}; known: {sorted(reg)}")
    if repeats < 1:
        raise ValueError(f"regret: repeats must be >= 1, got {repeats}")
    if workers < 1:
        raise ValueError(f"regret: workers must be >= 1, got {workers}")
    n = len(table.specs)
    budget = min(int(budget or n), n)
    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for name in strategies:
        rs = reg[name]
        if rs.proxy is not None and rs.proxy not in table.proxies:
            raise ValueError(f"regret: strategy {name!r} searches on proxy {rs.proxy!r}, which the table lacks "
                             f"(it has {sorted(table.proxies)}); run `recnas bench compare` first")
        t0 = time.perf_counter()
        jobs = [(table, rs, seed + r, budget, proxy_budget, max_proposals, neighbours) for r in range(repeats)]
        for r, (rr, run) in enumerate(first_here_rest_in_workers(simulate, jobs, workers)):
            rows += [{**x, "repeat": r} for x in rr]
            runs.append({**run, "repeat": r})
        if progress:
            last = [x for x in runs if x["strategy"] == name]
            print(f"recnas bench regret: {name}: {repeats} repeats in {time.perf_counter() - t0:.1f} s; "
                  f"queries {sorted({x['queries'] for x in last})}", file=sys.stderr, flush=True)
    cols = ["strategy", "repeat", "seed", "query", "arch", "key", "test_logloss", "best_logloss", "regret",
            "eval_seconds", "strategy_seconds", "seconds"]
    run_cols = ["strategy", "repeat", "seed", "queries", "proposals", "proxy_evaluations", "strategy_seconds", "stopped"]
    return pd.DataFrame(rows, columns=cols), pd.DataFrame(runs, columns=run_cols)


# -- reading a benchmark --------------------------------------------------------------------------


def proxy_columns(cfg: Any) -> dict[str, str]:
    """The ``scores.csv`` columns the estimator-driven searches read: the most-warmed supernet's
    SiGeo and one-shot scores (``sigeo | inherit 10%`` for warm-ups up to 10 %)."""
    from recnas.bench.compare import _frac_name

    frac = _frac_name(max(cfg.warmup.fractions))
    return {"sigeo": f"sigeo | inherit {frac}", "oneshot": f"oneshot | inherit {frac}"}


def load_table(cfg: Any, src: str | os.PathLike, source: str = "pipeline",
               columns: Mapping[str, str] | None = None) -> Table:
    """The benchmark of ``cfg`` in ``src`` as a :class:`Table`: the build's architectures, the
    seed-mean test log loss and train seconds of every architecture (all of ``cfg.train.seeds``
    must be there), and, where ``src`` holds a comparison (``scores.csv`` and ``results.csv``),
    the proxies of ``columns`` (default :func:`proxy_columns`) with their seconds per architecture."""
    from recnas.bench.compare import RESULTS_FILE, SCORES_FILE, read_built
    from recnas.bench.groundtruth import sample_archs, truth_matrix

    src = Path(src)
    df = read_built(cfg, src, source)
    space = SearchSpace.load(cfg.space)
    specs = sample_archs(space, cfg.num_archs, cfg.sample_seed)
    keys = [s.key() for s in specs]
    seeds = tuple(cfg.train.seeds)
    per_seed = truth_matrix(df, keys, seeds)
    ll = per_seed.mean(axis=1)
    se = float(np.median(per_seed.std(axis=1, ddof=1) / math.sqrt(len(seeds)))) if len(seeds) > 1 else None
    secs = truth_matrix(df, keys, seeds, column="train_seconds").mean(axis=1)
    proxies: dict[str, tuple[np.ndarray, float]] = {}
    if (src / SCORES_FILE).is_file() and (src / RESULTS_FILE).is_file():
        scores = pd.read_csv(src / SCORES_FILE)
        if scores["key"].tolist() != keys:
            raise ValueError(f"{src / SCORES_FILE}: its architectures are not this pipeline's {len(keys)} architectures")
        results = pd.read_csv(src / RESULTS_FILE).set_index("label")
        for name, col in (columns or proxy_columns(cfg)).items():
            if col in scores.columns and col in results.index:
                proxies[name] = (scores[col].to_numpy(dtype=np.float64), float(results.at[col, "seconds_per_arch"]))
    return Table(space, specs, ll, secs, proxies, seeds=len(seeds), se=se)


# -- report -----------------------------------------------------------------------------------------


def _curves(rows: pd.DataFrame, budget: int) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per strategy: queries 1..budget, mean regret, lo, hi (a run's last value held past its end)."""
    out = {}
    q = np.arange(1, budget + 1)
    for s, gs in rows.groupby("strategy", sort=False):
        mat = []
        for _, g in gs.groupby("repeat"):
            v = g.sort_values("query")["regret"].to_numpy()
            mat.append(np.concatenate([v, np.full(budget - len(v), v[-1] if len(v) else np.nan)])[:budget])
        M = np.array(mat)
        stats = np.array([_t_interval(M[:, j]) for j in range(budget)])
        out[s] = (q, stats[:, 0], stats[:, 1], stats[:, 2])
    return out


def _seconds_curves(rows: pd.DataFrame, grid: np.ndarray) -> dict[str, tuple[np.ndarray, ...]]:
    out = {}
    for s, gs in rows.groupby("strategy", sort=False):
        runs = [g.sort_values("query") for _, g in gs.groupby("repeat")]
        M = np.array([[_at(g, "seconds", x) for x in grid] for g in runs])
        ok = np.isfinite(M).all(axis=0)  # only where every repeat has made a query
        stats = np.array([_t_interval(M[:, j]) if ok[j] else (math.nan,) * 3 for j in range(len(grid))])
        out[s] = (grid[ok], stats[ok, 0], stats[ok, 1], stats[ok, 2])
    return out


def plot_regret(rows: pd.DataFrame, budget: int, out: Path, se: float | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s, (q, m, lo, hi) in _curves(rows, budget).items():
        (line,) = ax.plot(q, 1e3 * m, label=s, lw=1.5)
        ax.fill_between(q, 1e3 * lo, 1e3 * hi, color=line.get_color(), alpha=0.15, lw=0)
    if se:
        ax.axhline(1e3 * se, color="grey", ls=":", lw=1, label="the truth's standard error (median)")
    ax.set_xlabel("ground-truth queries")
    ax.set_ylabel("regret (test log loss above the table's best, x1e-3)")
    ax.set_title("best found so far: mean and 95 % interval over repeats")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / PLOTS[0], dpi=80)
    plt.close(fig)

    lo_s = max(float(rows["seconds"].min()), 1e-3)
    grid = np.geomspace(lo_s, float(rows["seconds"].max()), 200)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s, (x, m, lo, hi) in _seconds_curves(rows, grid).items():
        if len(x):
            (line,) = ax.step(x, 1e3 * m, where="post", label=s, lw=1.5)
            ax.fill_between(x, 1e3 * lo, 1e3 * hi, color=line.get_color(), alpha=0.15, lw=0, step="post")
    if se:
        ax.axhline(1e3 * se, color="grey", ls=":", lw=1, label="the truth's standard error (median)")
    ax.set_xscale("log")
    ax.set_xlabel("seconds (recorded training + proxy seconds + the strategy's own time)")
    ax.set_ylabel("regret (x1e-3)")
    ax.set_title("best found so far against seconds (drawn once every repeat has a query)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / PLOTS[1], dpi=80)
    plt.close(fig)


def _fmt(m: float, lo: float, hi: float) -> str:
    if not math.isfinite(m):
        return "--"
    return f"{1e3 * m:.2f} [{1e3 * lo:.2f}, {1e3 * hi:.2f}]"


def query_table(summary: pd.DataFrame, strategies: Sequence[str] | None = None) -> list[str]:
    """The markdown table of :func:`regret_summary`'s regrets against ground-truth queries: one row per
    strategy (``strategies``, default: in the summary's order), one column per query budget."""
    q = summary[summary["axis"] == "queries"]
    qb = sorted(int(b) for b in q["budget"].unique())
    L = ["| strategy | " + " | ".join(f"q = {b}" for b in qb) + " |", "|---|" + "---|" * len(qb)]
    for s in strategies or list(dict.fromkeys(q["strategy"])):
        g = q[q["strategy"] == s].set_index("budget")
        L.append(f"| {s} | " + " | ".join(f"{_fmt(g.at[b, 'mean'], g.at[b, 'lo'], g.at[b, 'hi'])}; found "
                                          f"{g.at[b, 'found_best']:.0%}" for b in qb) + " |")
    return L


def write_regret(out: str | os.PathLike, table: Table, rows: pd.DataFrame, runs: pd.DataFrame, *, budget: int,
                 repeats: int, seed: int, proxy_budget: int | None, strategies: Sequence[str], command: str,
                 seconds: float, registry: Mapping[str, RegretStrategy] | None = None) -> Path:
    """Writes the CSVs, the plots and ``regret.md`` into ``out``; returns ``regret.md``'s path."""
    reg = dict(registry or REGISTRY)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    qb, sb = query_budgets(budget), seconds_budgets(table)
    summary = regret_summary(rows, qb, sb)
    rows.to_csv(out / REGRET_FILE, index=False)
    runs.to_csv(out / RUNS_FILE, index=False)
    summary.to_csv(out / SUMMARY_FILE, index=False)
    plot_regret(rows, budget, out, table.se)
    n = len(table.specs)
    ll = np.sort(table.logloss)
    L = ["# Regret curves: tabular simulation over the benchmark's architectures", "",
         f"Command: `{command}` ({seconds / 60:.1f} minutes).", "",
         f"- Oracle: {n} architectures, each answered with its {table.seeds}-seed mean test log loss; best "
         f"{ll[0]:.5f}, second {ll[1] if n > 1 else math.nan:.5f}, median {float(np.median(ll)):.5f}, worst {ll[-1]:.5f}. "
         f"A query is charged the architecture's mean recorded training seconds (the table: {table.seconds.sum():.0f} s "
         f"to train every architecture once)."
         + (f" The truth's own noise: median standard error of an architecture's seed mean {1e3 * table.se:.2f}e-3 "
            "(dotted in the plots); regrets below it are within the truth's noise." if table.se else ""),
         f"- {repeats} repeats per strategy (strategy seeds {seed}..{seed + repeats - 1}), budget {budget} queries"
         + (f"; estimator-driven searches score {min(proxy_budget or n, n)} distinct architectures by the proxy, then "
            "train them best first" if any(reg[s].proxy for s in strategies) else "") + ".",
         "- Regret = best test log loss found so far minus the table's best, shown x1e-3; mean [95 % t-interval over "
         "the repeats, clipped at 0]; \"found\" = share of repeats at regret 0 (the table's best found).",
         "- Queries: every distinct architecture a strategy measures on the ground truth; a repeated proposal is "
         "answered from the study's store, free. Seconds = charged training (+ proxy) seconds + the strategy's own "
         "measured time (machine-dependent).", "",
         "| strategy | what | settings |", "|---|---|---|"]
    for s in strategies:
        rs = reg[s]
        proxy = f"; proxy column `{rs.proxy}`" if rs.proxy else ""
        L.append(f"| {s} | {rs.about}{proxy} | `{rs.resolved(n)}` |")
    L += ["", "## Regret against ground-truth queries", "", *query_table(summary, strategies)]
    total = float(table.seconds.sum())
    L += ["", "## Regret against seconds", "",
          "Budgets as shares of the seconds to train the whole table once. Where not every repeat has made a query by "
          "then, the count of those that have is given and the mean is over them (\"--\": none has).", "",
          "| strategy | " + " | ".join(f"{b / total:.0%} ({b:.0f} s)" for b in sb) + " |", "|---|" + "---|" * len(sb)]
    for s in strategies:
        g = summary[(summary.strategy == s) & (summary.axis == "seconds")].set_index("budget")
        cells = []
        for b in sb:
            d = int(g.at[b, "defined"])
            cells.append(_fmt(g.at[b, "mean"], g.at[b, "lo"], g.at[b, "hi"]) + (f" ({d}/{repeats} runs)" if d < repeats
                                                                                   else ""))
        L.append(f"| {s} | " + " | ".join(cells) + " |")
    L += ["", "## Runs", "", "| strategy | queries made | proposals | proxy evaluations | strategy seconds (mean) | stopped by |",
          "|---|---|---|---|---|---|"]
    for s in strategies:
        g = runs[runs.strategy == s]
        L.append(f"| {s} | {g.queries.min()}-{g.queries.max()} | {g.proposals.mean():.0f} | "
                 f"{g.proxy_evaluations.mean():.0f} | {g.strategy_seconds.mean():.2f} | "
                 f"{', '.join(sorted(set(g.stopped)))} |")
    L += ["", f"![regret against queries]({PLOTS[0]})", "", f"![regret against seconds]({PLOTS[1]})", ""]
    md = out / MD_FILE
    md.write_text("\n".join(L))
    return md
