"""The benchmark pipeline file (``pipelines/bench_*.yaml``), validated into frozen dataclasses.

One file drives both ``recnas bench build`` (ground truth: sample N architectures, train each from
scratch for every seed) and ``recnas bench compare`` (warm-up sweep, estimators, statistics, report).
Every section has defaults; an unknown or mistyped key is a :class:`~recnas.config.ConfigError`
naming the file and its dotted path; ``--set key=value`` overrides are applied before validation.

Example (``pipelines/bench_synth.yaml`` is a complete file)::

    data: {synth_rows: 40000, hash_size: 10000}
    space: nasrec_small
    num_archs: 60
    train: {epochs: 1, batch_size: 128, seeds: [0, 1], threads: 1, workers: 2}
    warmup: {fractions: [0.0, 0.01, 0.05, 0.1], batch_size: 64}
    scoring: {batches: 4, batch_size: 512, val_batches: 4}
    estimators:
      - {name: sigeo, params: {weights: public_criteo}}
      - {name: params}
      - {name: ridge}                 # a predictor: judged by the training-set-size sweep
    predictors: {train_fractions: [0.1, 0.2, 0.4], splits: 20, seed: 0}
    output: runs/bench_synth

    >>> cfg = load_bench("pipelines/bench_synth.yaml", ["num_archs=8"])  # doctest: +SKIP

``train.workers`` trains that many (architecture, seed) runs at once, each in its own process with
``train.threads`` torch threads; it changes only the wall time (every run is seeded), so it may be
set per machine from the command line: ``recnas bench build PIPELINE --set train.workers=4``.
``train.device`` (``auto``, ``cpu``, ``cuda``) says where those runs train; like the worker count
it is not part of the build signature (:class:`TrainSection`).

How an entry is scored follows the estimator's capability flags (class attributes of
:class:`recnas.estimators.Estimator`), never its name: ``needs_weights = False`` (a size proxy)
is scored once with ``init: none``; ``needs_supernet`` only with inherited weights; ``needs_fit``
(a predictor) is not scored on all architectures at all but fitted on part of the ground truth
and judged on the rest, in the ``predictors:`` sweep (:class:`PredictorSection`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recnas.config import ConfigError, apply_overrides, from_dict, load_yaml, to_dict
from recnas.lid.config import SplitConfig
from recnas.pipeline import DataConfig
from recnas.train.scratch import TrainRecipe
from recnas.train.trainer import DENSE_LR

__all__ = [
    "TrainSection",
    "EstimatorEntry",
    "WarmupSection",
    "ScoringSection",
    "AblationSection",
    "StatsSection",
    "PredictorSection",
    "BenchConfig",
    "load_bench",
    "build_signature",
    "INITS",
]

INITS = ("inherit", "fresh", "none")


@dataclass(frozen=True)
class TrainSection(TrainRecipe):
    """The ``train:`` section: how each sampled architecture is trained from scratch (ground truth).

    The fields of :class:`recnas.train.scratch.TrainRecipe` (``epochs``, ``max_steps``,
    ``batch_size``, ``fraction``, ``dense_lr``, ``table_lr``, ``lr_schedule``, ``lr_warmup``,
    ``eval_batch_size``, ``validate``, ``checkpoint_every``: the one training config that the
    search's retraining and oracle and ``recnas arch train`` use too), plus:

    Attributes:
        seeds: training seeds (model init and shuffle order); at least two, for the noise ceiling.
        threads: ``torch.set_num_threads`` for the build (0: leave torch's default); with
            ``workers > 1``, per worker.
        workers: number of (architecture, seed) runs trained at once, each in its own spawned
            process with ``threads`` torch threads (keep ``workers x threads`` within the cores;
            with ``threads: 0`` every worker takes torch's default, all of them). Results are
            identical to ``workers: 1`` because every run is seeded, so it is not part of the build
            signature: a build may be resumed with a different count.

        device: where the ground-truth runs train: ``auto`` (default: as ``RECNAS_DEVICE`` says,
            whose default is CUDA where available; :mod:`recnas.device`), ``cpu`` or ``cuda``. An
            explicit ``cuda`` on a host without usable CUDA stops ``bench build`` before any work
            with a one-line error (``pipelines/bench_gpu.yaml`` sets it, so the GPU tier never
            starts a CPU run of days by accident; ``--set train.device=cpu`` overrides); an explicit
            value that contradicts an explicit ``RECNAS_DEVICE`` is refused too. With ``workers >
            1`` on CUDA every worker trains on the same GPU (``cuda:0`` of the visible ones). The
            device is recorded in each row (``device`` column) and is not part of the build
            signature: a run is meant to give the same result on either, but CUDA and CPU rows
            are not bit-identical (other kernels, other summation orders), nor are two CUDA runs
            of one seed guaranteed to be (atomic adds in the GPU's embedding backward).

    ``validate: false`` skips each run's validation pass (the comparison reads only the test split;
    about a sixth of a run at 25k validation rows) and leaves ``val_logloss``/``val_auc`` NaN; it
    does not change any test result, so it is not part of the build signature either.
    """

    seeds: tuple[int, ...] = (0, 1)
    threads: int = 0
    workers: int = 1
    device: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.seeds) < 2:
            raise ValueError(f"train.seeds: at least two seeds are needed for the noise ceiling, got {list(self.seeds)}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"train.seeds: seeds must be distinct, got {list(self.seeds)}")
        if self.threads < 0:
            raise ValueError("train.threads must be >= 0")
        if self.workers < 1:
            raise ValueError(f"train.workers must be >= 1 (runs trained at once), got {self.workers}")
        from recnas.device import DEVICE_CHOICES

        if self.device not in DEVICE_CHOICES:
            raise ValueError(f"train.device: expected one of {', '.join(DEVICE_CHOICES)}, got {self.device!r}")

    def resolve_device(self, source: str = "pipeline") -> str:
        """``"cpu"`` or ``"cuda"`` for the ground-truth runs (see ``device``); a one-line
        ``ValueError`` naming ``source`` when an explicit ``cuda`` is not usable here or an explicit
        value contradicts an explicit ``RECNAS_DEVICE``."""
        import os

        from recnas.device import DEVICE_ENV, resolve_device

        if self.device == "auto":
            return resolve_device()
        env = os.environ.get(DEVICE_ENV, "").strip().lower()
        if env in ("cpu", "cuda") and env != self.device:
            raise ValueError(f"{source}: train.device {self.device!r} and {DEVICE_ENV}={env!r} disagree; "
                             "unset one of them or make them equal")
        return resolve_device(self.device, setting=f"{source}: train.device",
                              instead="train on CPU anyway with --set train.device=cpu")


@dataclass(frozen=True)
class EstimatorEntry:
    """One entry of the ``estimators:`` list.

    Attributes:
        name: a registered estimator (``recnas.estimators.ESTIMATORS``).
        params: its keyword parameters.
        inits: ``inherit`` (weights from the warmed-up supernet, scored at every warm-up fraction),
            ``fresh`` (seeded fresh weights, scored once), or ``none`` for the estimators that read
            no weights (``needs_weights = False``: ``params``, ``flops``, the predictors). Empty:
            the meaningful default for the estimator.
        label: the name shown in the report (default: ``name``).
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    inits: tuple[str, ...] = ()
    label: str | None = None

    def __post_init__(self) -> None:
        bad = [i for i in self.inits if i not in INITS]
        if bad:
            raise ValueError(f"inits: {bad[0]!r} is not one of {list(INITS)}")

    @property
    def display(self) -> str:
        return self.label or self.name

    @property
    def estimator_class(self) -> type[Any]:
        """The registered estimator class of ``name`` (its capability flags are class attributes)."""
        from recnas.estimators import ESTIMATORS, make_estimator

        cls = ESTIMATORS.get(self.name)
        if cls is None:
            make_estimator(self.name)  # raises, naming the known estimators
        return cls

    @property
    def needs_fit(self) -> bool:
        """A predictor: judged by the training-set-size sweep, not on all architectures."""
        return bool(self.estimator_class.needs_fit)

    def make(self) -> Any:
        """A new estimator of this entry (``make_estimator(name, **params)``)."""
        from recnas.estimators import make_estimator

        return make_estimator(self.name, **self.params)

    def resolved_inits(self) -> tuple[str, ...]:
        """``inits``, or the default from the estimator's capability flags: ``none`` when it reads no
        weights (``needs_weights = False``) or is a predictor (``needs_fit``: not scored in any
        context), ``inherit`` when it ``needs_supernet``, both ``inherit`` and ``fresh`` otherwise."""
        if self.inits:
            return self.inits
        cls = self.estimator_class
        if not cls.needs_weights or cls.needs_fit:
            return ("none",)
        if cls.needs_supernet:
            return ("inherit",)
        return ("inherit", "fresh")


def _default_estimators() -> tuple[EstimatorEntry, ...]:
    names = ["sigeo", "zico", "oneshot", "params", "flops", "grad_norm", "snip", "synflow", "fisher",
             "naswot", "jacob_cov"]
    return tuple(EstimatorEntry(n) for n in names)


@dataclass(frozen=True)
class WarmupSection:
    """The ``warmup:`` section: the supernet warm-up sweep of ``compare`` (NASRec's recipe).

    Attributes:
        fractions: fractions of the training split; 0 means no warm-up (the supernet's initial
            weights, seeded by ``seed``).
        batch_size, epochs: warm-up batch size and passes over the fraction.
        lr, table_lr: peak Adagrad lr of the dense weights and the tables.
        full_path_fraction: the full-path probability falls 1 -> 0 over this fraction of the steps.
        seed: supernet init and subnet sampling seed.
    """

    fractions: tuple[float, ...] = (0.0, 0.01, 0.05, 0.10)
    batch_size: int = 64
    epochs: int = 1
    lr: float = 0.12
    table_lr: float = 0.12
    full_path_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.fractions:
            raise ValueError("warmup.fractions: give at least one fraction (0 = no warm-up)")
        for f in self.fractions:
            if not 0.0 <= f <= 1.0:
                raise ValueError(f"warmup.fractions: {f} is not in [0, 1]")
        if len(set(self.fractions)) != len(self.fractions):
            raise ValueError(f"warmup.fractions: fractions must be distinct, got {list(self.fractions)}")
        if self.batch_size < 1 or self.epochs < 1:
            raise ValueError("warmup.batch_size and warmup.epochs must be >= 1")


@dataclass(frozen=True)
class ScoringSection:
    """The ``scoring:`` section: the minibatches every estimator scores with.

    Attributes:
        batches, batch_size: the gradient minibatches: the first ``batches x batch_size`` rows of
            the training split (SiGeo's protocol: 4 x 512).
        val_batches: validation minibatches of ``batch_size`` rows for the one-shot score.
        seed: seeds fresh initialisation (per architecture) and estimator randomness.
        threads: ``torch.set_num_threads`` while scoring (0: torch's default).
    """

    batches: int = 4
    batch_size: int = 512
    val_batches: int = 4
    seed: int = 0
    threads: int = 0

    def __post_init__(self) -> None:
        if self.batches < 2:
            raise ValueError(f"scoring.batches: ZiCo and SiGeo need at least 2 minibatches, got {self.batches}")
        if self.batch_size < 2 or self.val_batches < 1 or self.threads < 0:
            raise ValueError("scoring.batch_size must be >= 2, scoring.val_batches >= 1, scoring.threads >= 0")


@dataclass(frozen=True)
class AblationSection:
    """The ``sigeo_ablation:`` section: SiGeo's three terms, alone and combined.

    The raw terms (ZiCo, Fisher-Rao, training loss) are computed once per warm-up fraction, init and
    embeddings mode, then combined under every weight triple of ``combos``.

    Attributes:
        embeddings: SiGeo ``embeddings`` modes to compare (``none``: dense part only; ``rows``: the
            looked-up table rows enter too).
        inits: inits to ablate (``inherit`` at every fraction; ``fresh`` once).
        combos: name -> ``[l1, l2, l3]`` (score = l1 ZiCo + l2 Fisher-Rao - l3 loss).
    """

    embeddings: tuple[str, ...] = ("none", "rows")
    inits: tuple[str, ...] = ("inherit", "fresh")
    combos: dict[str, tuple[float, float, float]] = field(
        default_factory=lambda: {
            "l1 (ZiCo)": (1.0, 0.0, 0.0),
            "l2 (Fisher-Rao)": (0.0, 1.0, 0.0),
            "l3 (-loss)": (0.0, 0.0, 1.0),
            "l1+l2": (1.0, 1.0, 0.0),
            "l1+l3": (1.0, 0.0, 1.0),
            "l2+l3": (0.0, 1.0, 1.0),
            "l1+l2+l3": (1.0, 1.0, 1.0),
            "paper (1,50,1)": (1.0, 50.0, 1.0),
        }
    )

    def __post_init__(self) -> None:
        for e in self.embeddings:
            if e not in ("none", "rows"):
                raise ValueError(f"sigeo_ablation.embeddings: {e!r} is not one of ['none', 'rows']")
        for i in self.inits:
            if i not in ("inherit", "fresh"):
                raise ValueError(f"sigeo_ablation.inits: {i!r} is not one of ['inherit', 'fresh']")
        for name, w in self.combos.items():
            if not (isinstance(w, (list, tuple)) and len(w) == 3 and all(isinstance(x, (int, float)) for x in w)):
                raise ValueError(f"sigeo_ablation.combos.{name}: expected [l1, l2, l3], got {w!r}")


@dataclass(frozen=True)
class StatsSection:
    """The ``stats:`` section: how estimators are judged (``recnas.bench.stats``).

    Attributes:
        top_frac: the top fraction for top-k precision (10 %).
        n_boot, alpha, seed: bootstrap replicates over architectures, interval level, seed.
    """

    top_frac: float = 0.1
    n_boot: int = 1000
    alpha: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.top_frac <= 1.0:
            raise ValueError(f"stats.top_frac must be in (0, 1], got {self.top_frac}")
        if self.n_boot < 1 or not 0.0 < self.alpha < 1.0:
            raise ValueError("stats.n_boot must be >= 1 and stats.alpha in (0, 1)")


@dataclass(frozen=True)
class PredictorSection:
    """The ``predictors:`` section: the training-set-size sweep that judges predictors.

    An estimator entry with ``needs_fit`` (a predictor, e.g. ``{name: ridge}``) is fitted on part of
    the benchmark's architectures and judged on the rest: for every fraction of ``train_fractions``
    and each of ``splits`` seeded random splits, a fresh clone is fitted on ``round(fraction x
    num_archs)`` architectures (target: minus the seed-mean test log loss) and ranks the held-out
    others. Every other estimator is judged on the same held-out sets beside it.

    Attributes:
        train_fractions: fractions of ``num_archs`` used for training (each leaves at least two
            architectures on each side).
        splits: random splits per fraction (the protocol asks for at least 20).
        seed: seed of the splits (``sklearn.model_selection.ShuffleSplit``'s ``random_state``).
        workers: processes that fit the splits (1: in this process). Each split's fits are the same
            in any process, so the rows do not depend on it (timings aside); not part of any identity.
    """

    train_fractions: tuple[float, ...] = (0.1, 0.2, 0.4)
    splits: int = 20
    seed: int = 0
    workers: int = 1

    def __post_init__(self) -> None:
        if not self.train_fractions:
            raise ValueError("predictors.train_fractions: give at least one fraction")
        for f in self.train_fractions:
            if not 0.0 < f < 1.0:
                raise ValueError(f"predictors.train_fractions: {f} is not in (0, 1)")
        if len(set(self.train_fractions)) != len(self.train_fractions):
            raise ValueError(f"predictors.train_fractions: fractions must be distinct, got {list(self.train_fractions)}")
        if self.splits < 2:
            raise ValueError(f"predictors.splits must be >= 2 (a spread over splits), got {self.splits}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"predictors.seed must be in [0, 2**32), got {self.seed}")
        if self.workers < 1:
            raise ValueError(f"predictors.workers must be >= 1, got {self.workers}")

    def train_sizes(self, num_archs: int) -> tuple[int, ...]:
        """Training-set size of each fraction: ``round(fraction x num_archs)``."""
        return tuple(int(round(f * num_archs)) for f in self.train_fractions)


@dataclass(frozen=True)
class BenchConfig:
    """A whole benchmark pipeline (see the module docstring).

    Attributes:
        data: the data stage (``recnas.pipeline.DataConfig``).
        space: search space name or file.
        num_archs: architectures to sample (distinct by ``spec.key()``).
        sample_seed: seed of the architecture sampler.
        train: ground-truth training (``TrainSection``).
        estimators: the estimators to compare (``EstimatorEntry`` list).
        warmup: the warm-up sweep (``WarmupSection``).
        scoring: scoring minibatches (``ScoringSection``).
        sigeo_ablation: SiGeo term ablation (``AblationSection``).
        stats: statistics (``StatsSection``).
        predictors: the training-set-size sweep of the predictor entries (``PredictorSection``).
        split: a NAS-LID / GM-NAS split of the supernet at each warm-up fraction
            (:class:`recnas.lid.config.SplitConfig`; ``None``: no split). A section of its own
            rather than ``warmup.split``, so that the warm-up settings every cached inherited score
            is keyed by stay as they were.
        output: output folder (ground-truth table, warm-ups, report).
    """

    data: DataConfig = field(default_factory=lambda: DataConfig(synth_rows=20_000))
    space: str = "nasrec_small"
    num_archs: int = 60
    sample_seed: int = 0
    train: TrainSection = field(default_factory=TrainSection)
    estimators: tuple[EstimatorEntry, ...] = field(default_factory=_default_estimators)
    warmup: WarmupSection = field(default_factory=WarmupSection)
    scoring: ScoringSection = field(default_factory=ScoringSection)
    sigeo_ablation: AblationSection = field(default_factory=AblationSection)
    stats: StatsSection = field(default_factory=StatsSection)
    predictors: PredictorSection = field(default_factory=PredictorSection)
    split: SplitConfig | None = None
    output: str = "runs/bench"

    def __post_init__(self) -> None:
        if self.num_archs < 2:
            raise ValueError(f"num_archs must be >= 2 (a ranking needs two architectures), got {self.num_archs}")


def load_bench(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> BenchConfig:
    """Reads, overrides and validates a benchmark file; errors name the file and the dotted key."""
    d = apply_overrides(load_yaml(path), list(overrides))
    cfg = from_dict(BenchConfig, d, source=str(path))
    _check_estimators(cfg, str(path))
    _check_predictors(cfg, str(path))
    return cfg


def _check_predictors(cfg: BenchConfig, source: str) -> None:
    """With a predictor entry, every training fraction leaves at least two architectures to fit on
    and two to rank (without one, the section is not used and only its own checks apply)."""
    if not any(e.needs_fit for e in cfg.estimators):
        return
    for f, n_train in zip(cfg.predictors.train_fractions, cfg.predictors.train_sizes(cfg.num_archs)):
        if n_train < 2 or cfg.num_archs - n_train < 2:
            raise ConfigError(
                f"{source}: 'predictors.train_fractions': {f} of num_archs={cfg.num_archs} is {n_train} "
                f"training and {cfg.num_archs - n_train} held-out architectures; each side needs at least 2"
            )


def _check_estimators(cfg: BenchConfig, source: str) -> None:
    """Unknown estimator names/parameters and impossible inits fail before any work."""
    from recnas.estimators import make_estimator

    labels: set[str] = set()
    for i, e in enumerate(cfg.estimators):
        where = f"estimators[{i}]"
        try:
            est = make_estimator(e.name, **e.params)
            est.check_params()  # option values, before any work
        except ValueError as err:
            raise ConfigError(f"{source}: '{where}': {err}") from None
        inits = e.resolved_inits()
        if est.needs_fit and inits != ("none",):
            raise ConfigError(
                f"{source}: '{where}.inits': {e.name!r} is a predictor, fitted on measured architectures and "
                "judged by the predictors sweep; leave inits out"
            )
        if not est.needs_weights and inits != ("none",):
            raise ConfigError(f"{source}: '{where}.inits': {e.name!r} reads no weights; use [none] or leave it out")
        if est.needs_weights and "none" in inits:
            raise ConfigError(f"{source}: '{where}.inits': {e.name!r} needs weights; use inherit and/or fresh")
        if est.needs_supernet and "fresh" in inits:
            raise ConfigError(f"{source}: '{where}.inits': {e.name!r} scores inherited weights only; drop 'fresh'")
        if e.display in labels:
            raise ConfigError(f"{source}: '{where}.label': {e.display!r} is used twice; give each entry its own label")
        labels.add(e.display)


def build_signature(cfg: BenchConfig) -> dict[str, Any]:
    """What a ground-truth table depends on: rows of a table built under a different signature
    cannot be mixed in (``num_archs`` may grow: sampling is prefix-stable)."""
    data = cfg.data.identity()
    train = to_dict(cfg.train)
    for k in ("checkpoint_every", "threads", "workers", "seeds", "validate", "device"):
        train.pop(k)
    # keys added later enter only when set, so tables built before them keep their signature
    from recnas.identity import without_earlier
    from recnas.train.defaults import LEGACY_DENSE_EPS

    train = without_earlier(train, {"lr_schedule": "constant", "lr_warmup": 0.0, "dense_eps": LEGACY_DENSE_EPS})
    return {"data": data, "space": cfg.space, "sample_seed": cfg.sample_seed, "train": train}
