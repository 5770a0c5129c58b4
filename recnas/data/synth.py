"""``recnas data synth``: raw Criteo / Avazu files whose labels come from a hidden teacher CTR model.

The file is written in exactly the raw layout ``recnas data prepare`` reads (Criteo ``train.txt``
TSV, Avazu ``train.csv``). Rows are generated in fixed-size chunks from seeded generators, so the
output is a pure function of ``(format, rows, seed, like, interaction_rows, teacher)`` and streams at
any size.

Generative model (documented in full in ``data/README.md``):

- categorical column ``j``: missing with probability ``m_j``, else a rank ``k in 1..K_j`` from a
  discretised bounded power law ``P(k) ~ k^-s_j`` (Zipf-like); the rank is written as a fixed
  pseudo-random 8-hex-digit value (a bijection of ``(j, k)``) or, for Avazu's integer columns, as an
  integer ``base_j + k``;
- dense column ``d``: missing with probability ``m_d``, else ``floor(exp(mu_d + sigma_d z)) + shift_d``
  (or a draw from quantiles fitted by ``--like``);
- label ``~ Bernoulli(sigmoid(b + first_order + pairwise + higher_order))``, see :class:`Teacher`;
  the ``v2`` teacher (``teacher="v2"``) adds a dense x categorical term, explicit cross-feature
  products and a deeper MLP term, so that architectures capture it to different degrees.

Example::

    >>> path = synth("criteo", 1000, "/tmp/x.txt", seed=0, progress=False)      # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from tqdm import tqdm

from recnas.data.encode import mix64
from recnas.data.formats import (
    AVAZU_COLUMNS,
    AVAZU_DERIVED,
    AVAZU_HEX,
    AVAZU_HOUR,
    CRITEO_DENSE,
    CRITEO_SPARSE,
    check_format,
    detect_layout,
    output_features,
)
from recnas.data.reader import MISSING, read_decoded

__all__ = [
    "CatSpec",
    "DenseSpec",
    "SynthProfile",
    "Teacher",
    "default_profile",
    "fit_profile",
    "generate",
    "synth",
    "SYNTH_CHUNK_ROWS",
    "TEACHERS",
]

SYNTH_CHUNK_ROWS = 1 << 14
TABLE_ROWS = 4096  # first-order parameters per categorical field (ranks beyond share rows: rank mod T)
INTERACTION_ROWS = 1000  # values with their own interaction embedding; rarer values share one
FM_RANK = 4
MLP_HIDDEN = 16
# Standard deviations of the three teacher terms on the calibration sample (logit units).
FIRST_ORDER_STD = 0.6
PAIRWISE_STD = 1.0
HIGHER_ORDER_STD = 0.6
CALIBRATION_ROWS = 1 << 14
# Teacher versions: v1 (the three terms above; the default, unchanged) and v2 (three more terms).
TEACHERS = ("v1", "v2")
# v2's extra terms and their standard deviations on the calibration sample (logit units).
DENSE_CAT_STD = 0.6  # sum over (field, dense) pairs of a_f[r_f] . g(x_d)
CROSS_STD = 0.6  # explicit products of 2 and 3 scalar features (dense values, scalar embeddings)
DEEP_STD = 0.4  # a two-hidden-layer ReLU MLP over embeddings and every dense feature
GATE_PAIRS = 4  # (categorical field, dense column) pairs of the dense x categorical term
CROSS_POOL = 6  # features of the cross term: up to 4 dense columns, categorical fields for the rest
CROSS_PAIRS = ((0, 1), (2, 3), (0, 4), (1, 5), (4, 5))  # with 4 dense: 2 dense-dense, 2 dense-cat, 1 cat-cat
CROSS_TRIPLES = ((0, 2, 4), (1, 2, 3))  # with 4 dense: dense-dense-cat, dense-dense-dense
CROSS_CLIP = 3.0  # the pool's features are z-scored on the calibration sample and clipped to +-3
DEEP_HIDDEN = (32, 16)


@dataclass(frozen=True)
class CatSpec:
    """One categorical column: ``name``, ``form`` (hex|int), ``cardinality`` K, Zipf exponent ``s``,
    ``missing`` rate, and ``base`` (integer columns write ``base + rank``)."""

    name: str
    form: str
    cardinality: int
    s: float
    missing: float
    base: int = 0


@dataclass(frozen=True)
class DenseSpec:
    """One integer (dense) column: missing rate and either log-normal parameters or quantiles."""

    name: str
    missing: float
    mu: float = 1.0
    sigma: float = 1.0
    shift: int = -1
    quantiles: tuple[float, ...] = ()


@dataclass(frozen=True)
class SynthProfile:
    """What the synthesiser draws: the columns of one format and the target click rate."""

    fmt: str
    sparse: tuple[CatSpec, ...]
    dense: tuple[DenseSpec, ...]
    ctr: float = 0.22


# Criteo-like marginals (rounded public summary figures of the Kaggle data: cardinalities capped at
# 1M, missing rates). No row of any dataset is used.
_CRITEO_CARD = (1460, 583, 1_000_000, 500_000, 305, 24, 12517, 633, 3, 93145, 5683, 1_000_000, 3194,
                27, 14992, 500_000, 10, 5652, 2173, 4, 1_000_000, 18, 15, 286181, 105, 142572)  # fmt: skip
_CRITEO_CAT_MISSING = (0, 0, .034, .034, 0, .12, 0, 0, 0, 0, 0, .034, 0, 0, 0, .034, 0, 0, .44, .44,
                       .034, .76, 0, .034, .44, .44)  # fmt: skip
_CRITEO_DENSE = (  # (missing, mu, sigma, shift)
    (.45, .3, 1.2, -1), (0, 2.0, 2.0, -4), (.21, 1.8, 1.5, -1), (.22, 1.5, 1.0, -1), (.03, 7.0, 2.3, -1),
    (.22, 2.5, 2.0, -1), (.04, 1.5, 1.6, -1), (.0005, 2.5, 1.2, -1), (.04, 3.0, 1.7, -1),
    (.45, .3, .8, -1), (.04, 1.0, 1.1, -1), (.76, .2, 1.0, -1), (.22, 1.7, 1.2, -1),
)  # fmt: skip
_AVAZU_SPEC = {  # name: (cardinality, s, base)
    "C1": (7, 2.5, 1000), "banner_pos": (7, 2.5, -1), "site_id": (4737, 1.3, 0),
    "site_domain": (7745, 1.3, 0), "site_category": (26, 1.8, 0), "app_id": (8552, 1.6, 0),
    "app_domain": (559, 1.8, 0), "app_category": (36, 2.0, 0), "device_id": (1_000_000, 1.9, 0),
    "device_ip": (1_000_000, 1.05, 0), "device_model": (8251, 1.1, 0), "device_type": (5, 2.5, -1),
    "device_conn_type": (4, 2.5, -1), "C14": (2626, 1.1, 15000), "C15": (8, 2.5, 200),
    "C16": (9, 2.5, 20), "C17": (435, 1.2, 1000), "C18": (4, 1.5, -1), "C19": (68, 1.3, 30),
    "C20": (172, 1.3, 100000), "C21": (60, 1.3, 0),
}  # fmt: skip


def default_profile(fmt: str) -> SynthProfile:
    """The built-in profile of ``fmt`` (no data needed)."""
    check_format(fmt)
    if fmt == "avazu":
        sparse = tuple(
            CatSpec(c, "hex" if c in AVAZU_HEX else "int", k, s, 0.0, base)
            for c, (k, s, base) in _AVAZU_SPEC.items()
        )
        return SynthProfile("avazu", sparse, (), ctr=0.17)
    sparse = tuple(
        CatSpec(n, "hex", k, 1.05 + 0.1 * (j % 3), m)
        for j, (n, k, m) in enumerate(zip(CRITEO_SPARSE, _CRITEO_CARD, _CRITEO_CAT_MISSING))
    )
    dense = tuple(DenseSpec(n, m, mu, sg, sh) for n, (m, mu, sg, sh) in zip(CRITEO_DENSE, _CRITEO_DENSE))
    return SynthProfile(fmt, sparse, dense, ctr=0.22)


# ------------------------------------------------------------------------------------------------
# sampling


def _bounded_power_cdf(x: np.ndarray, k: int, s: float) -> np.ndarray:
    """CDF at ``x`` of the continuous power law on ``[1, k + 1)`` with density ``~ x^-s``."""
    if abs(s - 1.0) < 1e-9:
        return np.log(x) / math.log(k + 1)
    return (np.power(x, 1 - s) - 1) / ((k + 1) ** (1 - s) - 1)


def _sample_ranks(u: np.ndarray, k: int, s: float) -> np.ndarray:
    """Inverse-CDF sample of ranks ``1..k`` with ``P(rank) = F(rank + 1) - F(rank)``."""
    if abs(s - 1.0) < 1e-9:
        x = np.exp(u * math.log(k + 1))
    else:
        x = np.power(u * ((k + 1) ** (1 - s) - 1) + 1, 1 / (1 - s))
    return np.clip(np.floor(x), 1, k).astype(np.int64)


def _hex_code(ranks: np.ndarray, column: int) -> np.ndarray:
    """A fixed bijection ``rank -> 32-bit value`` per column (a 32-bit mix keyed by the column)."""
    x = (ranks.astype(np.uint64) + np.uint64(column * 0x9E3779B1)) & np.uint64(0xFFFFFFFF)
    for mult in (0x7FEB352D, 0x846CA68B):
        x ^= x >> np.uint64(16)
        x = (x * np.uint64(mult)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(16)
    return x


_HEX_CHARS = b"0123456789abcdef"
# byte -> its two hex characters as one little-endian uint16 (first character in the low byte)
_HEX_PAIRS = np.array([_HEX_CHARS[b >> 4] | (_HEX_CHARS[b & 15] << 8) for b in range(256)], dtype=np.uint16)


def _hex_strings(values: np.ndarray, missing: np.ndarray) -> pa.Array:
    """uint32 values -> arrow strings of 8 lowercase hex digits (null where ``missing``)."""
    n = values.size
    keep = ~missing
    be = values[keep].astype(">u4").view(np.uint8)  # 4 bytes per value, most significant first
    data = _HEX_PAIRS[be].tobytes()
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(keep * np.int32(8), out=offsets[1:])
    validity = pa.py_buffer(np.packbits(keep, bitorder="little").tobytes()) if missing.any() else None
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data), validity)


def _sample_dense(spec: DenseSpec, rng: np.random.Generator, n: int) -> np.ndarray:
    if spec.quantiles:
        q = np.asarray(spec.quantiles)
        x = np.floor(np.interp(rng.random(n) * (q.size - 1), np.arange(q.size), q))
    else:
        z = rng.standard_normal(n)
        x = np.floor(np.exp(np.minimum(spec.mu + spec.sigma * z, 30.0))) + spec.shift
    x[rng.random(n) < spec.missing] = np.nan
    return x


# ------------------------------------------------------------------------------------------------
# teacher


class Teacher:
    """The hidden CTR model that labels synthetic rows.

    ``logit = b + sum_j w_j[t_j] + sum_d a_d x_d                            (first order)
            + FM over the embeddings v_j[t_j] (rank 4) of the fields in P    (pairwise)
            + c . tanh(W [v_j[t_j] for j in H; x_D] + e)                      (higher order)``

    where ``t_j = (rank_j - 1) mod 4096`` (a separate row for "missing"), the embeddings ``v``, ``u``
    are indexed by the rank for the 1,000 most frequent values of a field and share one "rare" row
    beyond (and one "missing" row), ``x_d`` is the standardised ``log1p(max(raw, 0))`` of dense column
    ``d`` (0 when missing), ``P`` and ``H`` are seeded subsets of the fields (about half and a quarter
    of them), and every parameter is a seeded Gaussian draw. Each of the three terms is rescaled to a
    fixed standard deviation (0.6 / 1.0 / 0.6) on a calibration sample, and ``b`` is set by bisection
    so that the mean click probability equals the profile's ``ctr``.

    ``version="v2"`` adds three terms, each rescaled likewise (to 0.6 / 0.6 / 0.4), on top of the
    same three (the same parameters; only ``b`` and the mixture change)::

        + sum_{(f,d) in G} a_f[r_f] . (tanh(beta_fd x_d + gamma_fd) - tanh(gamma_fd))   (dense x cat)
        + sum_{(i,j)} w_ij z_i z_j + sum_{(i,j,k)} w_ijk z_i z_j z_k                   (cross products)
        + c2 . relu(W2 relu(W1 [q_j[r_j] for j in E; x] + e1) + e2)                     (deep)

    with ``r_f`` the interaction index, ``a_f[r]`` rank-4 embeddings and ``beta, gamma`` 4-vectors
    per pair, ``z`` a pool of 6 scalar features (4 dense ``x_d`` and 2 scalar embeddings ``s_f[r_f]``
    on Criteo; 6 scalar embeddings on Avazu, which has no dense column and so no dense x categorical
    term; each z-scored on the calibration sample and clipped to +-3), 5 pairwise and 2 three-way
    products of the pool, and ``E`` a random quarter of the
    fields. v2's parameters come from a generator of their own, so v1 is unaffected by it.

    Args:
        profile: the columns being generated.
        seed: the teacher's seed (the same seed as the rows by default).
        interaction_rows: how many of each field's most frequent values carry their own interaction
            embedding (the rest share one "rare" row). Fewer rows make the pairwise and higher-order
            terms learnable from fewer training rows: with the default 1,000 a NASRec-Small model
            trained on 40k rows learns little beyond the first-order term.
        version: ``v1`` (default) or ``v2`` (see above).
    """

    def __init__(self, profile: SynthProfile, seed: int, interaction_rows: int = INTERACTION_ROWS,
                 version: str = "v1") -> None:
        if interaction_rows < 1:
            raise ValueError(f"interaction_rows must be >= 1, got {interaction_rows}")
        if version not in TEACHERS:
            raise ValueError(f"teacher must be one of {', '.join(TEACHERS)}, got {version!r}")
        self.interaction_rows = interaction_rows
        self.version = version
        rng = np.random.default_rng([seed, 7919])
        ns, nd = len(profile.sparse), len(profile.dense)
        self.profile = profile
        importance = rng.gamma(2.0, 0.5, ns)
        self.w = (rng.standard_normal((ns, TABLE_ROWS + 1)) * importance[:, None]).astype(np.float32)
        self.a = rng.standard_normal(nd) * 0.5
        self.pair_fields = np.sort(rng.choice(ns, size=max(2, ns // 2), replace=False))
        self.v = rng.standard_normal((len(self.pair_fields), interaction_rows + 2, FM_RANK)).astype(np.float32)
        self.v_sq = (self.v * self.v).sum(axis=2)  # (P, T + 1): squared norms for the FM diagonal
        self.high_fields = np.sort(rng.choice(ns, size=max(2, ns // 4), replace=False))
        self.u = rng.standard_normal((len(self.high_fields), interaction_rows + 2, FM_RANK)).astype(np.float32)
        self.high_dense = np.sort(rng.choice(nd, size=min(nd, 4), replace=False)) if nd else np.zeros(0, int)
        width = len(self.high_fields) * FM_RANK + len(self.high_dense)
        self.W = (rng.standard_normal((width, MLP_HIDDEN)) * (1.5 / math.sqrt(width))).astype(np.float32)
        self.e = rng.standard_normal(MLP_HIDDEN) * 0.5
        self.c = rng.standard_normal(MLP_HIDDEN)
        if version == "v2":
            self._init_v2(profile, seed)
        self.dense_mean = np.zeros(nd)
        self.dense_std = np.ones(nd)
        self.scale = np.ones(len(self.term_stds))
        self.bias = 0.0
        # calibration on a fixed sample of the same generator
        ranks, dense = _draw_features(profile, np.random.default_rng([seed, 104729]), CALIBRATION_ROWS)
        xd = np.log1p(np.maximum(np.nan_to_num(dense, nan=0.0), 0.0))
        self.dense_mean = xd.mean(axis=1) if nd else self.dense_mean
        self.dense_std = xd.std(axis=1) + 1e-6 if nd else self.dense_std
        if version == "v2":
            raw = self._cross_pool(self._interaction_index(ranks), self._standardise(dense))
            self.cross_mean = raw.mean(axis=1, keepdims=True)
            self.cross_std = raw.std(axis=1, keepdims=True) + np.float32(1e-6)
        parts = self.terms(ranks, dense)
        if version == "v1":
            self.scale = np.array([FIRST_ORDER_STD, PAIRWISE_STD, HIGHER_ORDER_STD]) / (parts.std(axis=1) + 1e-12)
        else:  # a term that is identically 0 (no dense column: no dense x categorical term) stays 0
            sd = parts.std(axis=1)
            self.scale = np.where(sd > 1e-9, self.term_stds / np.maximum(sd, 1e-9), 0.0)
        z = (parts * self.scale[:, None]).sum(axis=0)
        lo, hi = -20.0, 20.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if _sigmoid(z + mid).mean() < profile.ctr:
                lo = mid
            else:
                hi = mid
        self.bias = (lo + hi) / 2

    @property
    def term_names(self) -> tuple[str, ...]:
        """The names of the rows of :meth:`terms`."""
        v1 = ("first_order", "pairwise", "higher_order")
        return v1 if self.version == "v1" else v1 + ("dense_x_cat", "cross", "deep")

    @property
    def term_stds(self) -> np.ndarray:
        """Each term's standard deviation on the calibration sample after scaling (logit units)."""
        v1 = [FIRST_ORDER_STD, PAIRWISE_STD, HIGHER_ORDER_STD]
        return np.array(v1 if self.version == "v1" else v1 + [DENSE_CAT_STD, CROSS_STD, DEEP_STD])

    def _init_v2(self, profile: SynthProfile, seed: int) -> None:
        """v2's parameters, from their own generator (v1's draws stay as they were)."""
        rng = np.random.default_rng([seed, 7919, 2])
        ns, nd = len(profile.sparse), len(profile.dense)
        rows = self.interaction_rows + 2
        # dense x categorical: GATE_PAIRS (field, dense column) pairs, a rank-4 gate per value
        self.gate_fields = rng.choice(ns, size=GATE_PAIRS, replace=ns < GATE_PAIRS)
        self.gate_dense = rng.choice(nd, size=GATE_PAIRS, replace=nd < GATE_PAIRS) if nd else np.zeros(0, int)
        self.gate = rng.standard_normal((GATE_PAIRS, rows, FM_RANK)).astype(np.float32)
        self.gate_beta = (rng.standard_normal((GATE_PAIRS, FM_RANK)) * 1.5).astype(np.float32)
        self.gate_gamma = (rng.standard_normal((GATE_PAIRS, FM_RANK)) * 0.5).astype(np.float32)
        # cross products over a pool of scalar features: dense columns first, then scalar embeddings
        # (dense columns missing in over half the rows would make the products spiky: avoided if possible)
        n_dense = min(nd, 4)
        often = np.array([d for d in range(nd) if profile.dense[d].missing <= 0.5], dtype=np.int64)
        pick = often if often.size >= n_dense else np.arange(nd)
        self.cross_dense = np.sort(rng.choice(pick, size=n_dense, replace=False)) if n_dense else np.zeros(0, int)
        n_cat = CROSS_POOL - n_dense
        self.cross_fields = rng.choice(ns, size=n_cat, replace=ns < n_cat)
        self.cross_s = rng.standard_normal((n_cat, rows)).astype(np.float32)
        self.cross_w2 = rng.standard_normal(len(CROSS_PAIRS)).astype(np.float32)
        self.cross_w3 = rng.standard_normal(len(CROSS_TRIPLES)).astype(np.float32)
        self.cross_mean = np.zeros((CROSS_POOL, 1), dtype=np.float32)  # z-scores on the calibration sample
        self.cross_std = np.ones((CROSS_POOL, 1), dtype=np.float32)
        # deep: two ReLU layers over embeddings of a quarter of the fields and every dense column
        self.deep_fields = np.sort(rng.choice(ns, size=max(2, ns // 4), replace=ns < 2))
        self.q = rng.standard_normal((len(self.deep_fields), rows, FM_RANK)).astype(np.float32)
        width = len(self.deep_fields) * FM_RANK + nd
        h1, h2 = DEEP_HIDDEN
        self.W1 = (rng.standard_normal((width, h1)) * math.sqrt(2.0 / width)).astype(np.float32)
        self.e1 = (rng.standard_normal(h1) * 0.5).astype(np.float32)
        self.W2 = (rng.standard_normal((h1, h2)) * math.sqrt(2.0 / h1)).astype(np.float32)
        self.e2 = (rng.standard_normal(h2) * 0.5).astype(np.float32)
        self.c2 = rng.standard_normal(h2).astype(np.float32)

    def _cross_pool(self, ti: np.ndarray, xd: np.ndarray) -> np.ndarray:
        """``(CROSS_POOL, n)`` raw features of the cross term: dense values, then scalar embeddings."""
        pool = [xd[d] for d in self.cross_dense]
        pool += [self.cross_s[i].take(ti[f]) for i, f in enumerate(self.cross_fields)]
        return np.stack(pool)

    def _interaction_index(self, ranks: np.ndarray) -> np.ndarray:
        k = self.interaction_rows
        return np.where(ranks > 0, np.minimum(ranks - 1, k), k + 1)

    def _standardise(self, dense: np.ndarray) -> np.ndarray:
        missing = np.isnan(dense)
        xd = (np.log1p(np.maximum(np.where(missing, 0.0, dense), 0.0)) - self.dense_mean[:, None])
        xd = (xd / self.dense_std[:, None]).astype(np.float32)
        xd[missing] = 0.0
        return xd

    def _v2_terms(self, ti: np.ndarray, xd: np.ndarray) -> np.ndarray:
        """``(3, n)`` unscaled dense x categorical, cross and deep terms (``ti`` interaction indices,
        ``xd`` standardised dense values)."""
        n = ti.shape[1]
        dense_cat = np.zeros(n, dtype=np.float32)
        if xd.shape[0]:
            for p, (f, d) in enumerate(zip(self.gate_fields, self.gate_dense)):
                g = np.tanh(np.outer(xd[d], self.gate_beta[p]) + self.gate_gamma[p]) - np.tanh(self.gate_gamma[p])
                dense_cat += (self.gate[p].take(ti[f], axis=0) * g).sum(axis=1)
        pool = np.clip((self._cross_pool(ti, xd) - self.cross_mean) / self.cross_std, -CROSS_CLIP, CROSS_CLIP)
        cross = np.zeros(n, dtype=np.float32)
        for w, (i, j) in zip(self.cross_w2, CROSS_PAIRS):
            cross += w * pool[i] * pool[j]
        for w, (i, j, k) in zip(self.cross_w3, CROSS_TRIPLES):
            cross += w * pool[i] * pool[j] * pool[k]
        din = np.concatenate([self.q[i].take(ti[j], axis=0) for i, j in enumerate(self.deep_fields)] + [xd.T], axis=1)
        h = np.maximum(din @ self.W1 + self.e1, 0.0)
        deep = np.maximum(h @ self.W2 + self.e2, 0.0) @ self.c2
        return np.stack([dense_cat, cross, deep])

    def terms(self, ranks: np.ndarray, dense: np.ndarray) -> np.ndarray:
        """``(3, n)`` unscaled first-order, pairwise and higher-order terms (``(6, n)`` for v2, with
        the dense x categorical, cross and deep terms after them; see :attr:`term_names`).

        Args:
            ranks: ``(num_sparse, n)`` int64 ranks, 0 = missing.
            dense: ``(num_dense, n)`` float64 raw values, NaN = missing.
        """
        t = np.where(ranks > 0, (ranks - 1) % TABLE_ROWS, TABLE_ROWS)
        # interaction index: the interaction_rows most frequent values, then "rare", then "missing"
        k = self.interaction_rows
        ti = np.where(ranks > 0, np.minimum(ranks - 1, k), k + 1)
        n = ranks.shape[1]
        missing = np.isnan(dense)
        xd = (np.log1p(np.maximum(np.where(missing, 0.0, dense), 0.0)) - self.dense_mean[:, None])
        xd = (xd / self.dense_std[:, None]).astype(np.float32)
        xd[missing] = 0.0
        offsets = (np.arange(ranks.shape[0]) * (TABLE_ROWS + 1))[:, None]
        first = self.w.ravel().take(t + offsets).sum(axis=0, dtype=np.float32)
        if dense.shape[0]:
            first += self.a.astype(np.float32) @ xd
        s = np.zeros((n, FM_RANK), dtype=np.float32)
        diag = np.zeros(n, dtype=np.float32)
        for i, j in enumerate(self.pair_fields):
            s += self.v[i].take(ti[j], axis=0)
            diag += self.v_sq[i].take(ti[j])
        pair = 0.5 * ((s * s).sum(axis=1) - diag)
        hin = [self.u[i].take(ti[j], axis=0) for i, j in enumerate(self.high_fields)]
        hin = np.concatenate(hin + [xd[self.high_dense].T], axis=1)  # (n, width)
        high = np.tanh(hin @ self.W + self.e.astype(np.float32)) @ self.c.astype(np.float32)
        if self.version == "v2":
            return np.concatenate([np.stack([first, pair, high]), self._v2_terms(ti, xd)]).astype(np.float64)
        return np.stack([first, pair, high]).astype(np.float64)

    def logits(self, ranks: np.ndarray, dense: np.ndarray) -> np.ndarray:
        """``(n,)`` teacher logits of rows given as ranks (``(num_sparse, n)``) and raw dense values."""
        return self.bias + (self.terms(ranks, dense) * self.scale[:, None]).sum(axis=0)

    def first_order_logits(self, ranks: np.ndarray, dense: np.ndarray) -> np.ndarray:
        """The logits with every term but the first-order one removed (for tests and docs)."""
        return self.bias + self.terms(ranks, dense)[0] * self.scale[0]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _draw_features(profile: SynthProfile, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    ranks = np.empty((len(profile.sparse), n), dtype=np.int64)
    for j, c in enumerate(profile.sparse):
        r = _sample_ranks(rng.random(n), c.cardinality, c.s)
        if c.missing > 0:
            r[rng.random(n) < c.missing] = 0
        ranks[j] = r
    dense = np.empty((len(profile.dense), n), dtype=np.float64)
    for j, d in enumerate(profile.dense):
        dense[j] = _sample_dense(d, rng, n)
    return ranks, dense


def generate(profile: SynthProfile, teacher: Teacher, seed: int, chunk: int, n: int, keep: int | None = None):
    """Rows of chunk number ``chunk`` (``n`` rows drawn, the first ``keep`` returned):
    ``(ranks, dense, prob, label)``.

    ``ranks`` ``(num_sparse, keep)`` (0 = missing), ``dense`` ``(num_dense, keep)`` raw values (NaN =
    missing), ``prob`` the teacher's click probability and ``label`` a Bernoulli draw of it. Drawing
    whole chunks makes a shorter file a prefix of a longer one with the same seed.
    """
    rng = np.random.default_rng([seed, 1, chunk])
    ranks, dense = _draw_features(profile, rng, n)
    u = rng.random(n)
    k = n if keep is None else keep
    ranks, dense, u = ranks[:, :k], dense[:, :k], u[:k]
    prob = _sigmoid(teacher.logits(ranks, dense))
    label = (u < prob).astype(np.int8)
    return ranks, dense, prob, label


# ------------------------------------------------------------------------------------------------
# --like


def _expected_distinct(k: int, s: float, n: int) -> float:
    """Expected distinct ranks in ``n`` draws of :func:`_sample_ranks` with ``(k, s)``."""
    exact = min(k, 2000)
    r = np.arange(1, exact + 1, dtype=np.float64)
    p = _bounded_power_cdf(r + 1, k, s) - _bounded_power_cdf(r, k, s)
    total = float((1 - np.power(1 - p, n)).sum())
    if k > exact:
        edges = np.unique(np.geomspace(exact + 1, k + 1, 2000).astype(np.int64))
        a, b = edges[:-1].astype(np.float64), edges[1:].astype(np.float64)
        pm = (_bounded_power_cdf(b, k, s) - _bounded_power_cdf(a, k, s)) / (b - a)
        total += float(((b - a) * (1 - np.power(1 - pm, n))).sum())
    return total


def _fit_cat(name: str, form: str, codes: np.ndarray) -> CatSpec:
    present = codes[codes != MISSING]
    missing = 1.0 - present.size / max(codes.size, 1)
    if present.size == 0:
        return CatSpec(name, form, 2, 1.0, 1.0)
    _, counts = np.unique(present, return_counts=True)
    counts = np.sort(counts)[::-1]
    distinct = counts.size
    top = counts[: min(50, distinct)]
    top = top[top >= 2]
    if top.size >= 3:
        slope = np.polyfit(np.log(np.arange(1, top.size + 1)), np.log(top), 1)[0]
        s = float(np.clip(-slope, 0.3, 3.0))
    else:
        s = 1.0
    n = present.size
    lo, hi = distinct, 1 << 31
    if _expected_distinct(hi, s, n) < distinct:
        k = hi
    else:
        for _ in range(40):  # bisection on log K for E[distinct values] = observed
            mid = int(math.sqrt(lo * hi))
            if mid <= lo or mid >= hi:
                break
            if _expected_distinct(mid, s, n) < distinct:
                lo = mid
            else:
                hi = mid
        k = hi
    base = int(present.min()) - 1 if form == "int" else 0
    return CatSpec(name, form, int(max(k, distinct, 2)), s, float(missing), base)


def fit_profile(fmt: str, sample: str | Path) -> SynthProfile:
    """Fits a profile to a raw sample file at run time: per-column missing rates, cardinality and
    skew of the categoricals, the dense value distributions (101 quantiles) and the label rate.

    Nothing derived from the sample is stored by recnas; only the synthetic rows drawn from the fit.
    """
    layout = detect_layout(fmt, sample)
    if fmt == "criteo-1tb":
        fmt = "criteo"
    labels, dense, codes = [], [], []
    for d in read_decoded(sample, layout, prefetch=False):
        good = d.bad == 0
        labels.append(d.label[good])
        dense.append(d.dense[:, good])
        codes.append(d.codes[:, good])
    label = np.concatenate(labels)
    dense_all = np.concatenate(dense, axis=1)
    codes_all = np.concatenate(codes, axis=1)
    if label.size == 0:
        raise ValueError(f"--like {sample}: no usable rows")
    base = default_profile(fmt)
    _, sparse_names = output_features(fmt)
    forms = dict(layout.output_sparse)
    sparse = []
    for j, name in enumerate(sparse_names):
        if name in layout.derived:
            continue  # derived from the synthetic date-hour column, not drawn
        sparse.append(_fit_cat(name, forms[name], codes_all[j]))
    dense_specs = []
    for j, spec in enumerate(base.dense):
        x = dense_all[j]
        ok = x[~np.isnan(x)]
        if ok.size == 0:
            dense_specs.append(replace(spec, missing=1.0))
            continue
        q = tuple(float(v) for v in np.quantile(ok, np.linspace(0, 1, 101)))
        dense_specs.append(replace(spec, missing=float(1 - ok.size / x.size), quantiles=q))
    ctr = float(np.nanmean(label)) if not np.isnan(label).all() else base.ctr
    return SynthProfile(fmt, tuple(sparse), tuple(dense_specs), ctr=min(max(ctr, 0.01), 0.99))


# ------------------------------------------------------------------------------------------------
# writing


def _avazu_hour_ranks(start: int, n: int, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time-ordered hours over 10 days from 2014-10-21: ``(YYMMDDHH, hour of day, weekday)``."""
    hour_index = (np.arange(start, start + n, dtype=np.int64) * 240) // max(rows, 1)
    day, hh = hour_index // 24, hour_index % 24
    dd = 21 + day  # Oct 21..30, 2014
    weekday = (1 + day) % 7  # 2014-10-21 was a Tuesday (Monday = 0)
    return 14100000 + dd * 100 + hh, hh, weekday


def _avazu_teacher_profile(profile: SynthProfile) -> SynthProfile:
    """The teacher of Avazu also sees hour of day and weekday as categorical fields."""
    hour_of_day, weekday = AVAZU_DERIVED
    extra = (CatSpec(hour_of_day, "int", 24, 0.0, 0.0), CatSpec(weekday, "int", 7, 0.0, 0.0))
    return replace(profile, sparse=extra + profile.sparse)


def synth(
    fmt: str,
    rows: int,
    out: str | Path,
    *,
    like: str | Path | None = None,
    seed: int = 0,
    interaction_rows: int = INTERACTION_ROWS,
    teacher: str = "v1",
    progress: bool = True,
    chunk_rows: int = SYNTH_CHUNK_ROWS,
) -> Path:
    """Writes ``rows`` synthetic rows of ``fmt`` (``criteo`` or ``avazu``) to ``out`` (gzip if it
    ends in ``.gz``); returns ``out``. Deterministic in ``(fmt, rows, seed, like, interaction_rows,
    teacher)``.

    Args:
        fmt: ``criteo`` (Kaggle ``train.txt`` TSV) or ``avazu`` (``train.csv`` with header).
        rows: number of data rows.
        out: output file.
        like: a raw sample of the same format whose marginals and label rate are fitted.
        seed: seed of the teacher and the rows.
        interaction_rows: the teacher's interaction vocabulary per field (see :class:`Teacher`).
        teacher: the teacher's version, ``v1`` (default) or ``v2`` (see :class:`Teacher`).
        progress: tqdm progress bar on stderr.
    """
    if fmt not in ("criteo", "avazu"):
        raise ValueError(f"synth --format must be criteo or avazu, got {fmt!r}")
    if rows < 1:
        raise ValueError(f"--rows must be >= 1, got {rows}")
    if teacher not in TEACHERS:
        raise ValueError(f"synth --teacher must be one of {', '.join(TEACHERS)}, got {teacher!r}")
    profile = fit_profile(fmt, like) if like is not None else default_profile(fmt)
    teacher_profile = _avazu_teacher_profile(profile) if fmt == "avazu" else profile
    model = Teacher(teacher_profile, seed, interaction_rows, version=teacher)
    return _write(profile, model, rows, Path(out), seed, progress, chunk_rows)


def _write(profile: SynthProfile, teacher: Teacher, rows: int, out: Path, seed: int, progress: bool,
           chunk_rows: int) -> Path:
    fmt = profile.fmt
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    sink = pa.OSFile(str(tmp), "wb")
    stream = pa.CompressedOutputStream(sink, "gzip") if out.name.endswith(".gz") else sink
    bar = tqdm(total=rows, desc=f"synth {fmt}", unit=" rows", unit_scale=True, disable=not progress,
               file=sys.stderr, dynamic_ncols=True, mininterval=0.5)  # fmt: skip
    delim = "," if fmt == "avazu" else "\t"
    opts = pacsv.WriteOptions(include_header=False, delimiter=delim, quoting_style="none")
    try:
        # CSV writing (pyarrow, GIL released) overlaps with drawing the next chunk.
        with bar, concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            if fmt == "avazu":
                stream.write((",".join(AVAZU_COLUMNS) + "\n").encode())
            pending = None
            for c, start in enumerate(range(0, rows, chunk_rows)):
                n = min(chunk_rows, rows - start)
                if fmt == "avazu":
                    table = _avazu_chunk(profile, teacher, seed, c, start, n, rows, chunk_rows)
                else:
                    table = _criteo_chunk(profile, teacher, seed, c, n, chunk_rows)
                if pending is not None:
                    pending.result()
                pending = pool.submit(pacsv.write_csv, table, stream, opts)
                bar.update(n)
            if pending is not None:
                pending.result()
    finally:
        stream.close()
        if stream is not sink:
            sink.close()
    tmp.replace(out)
    return out


def _cat_array(spec: CatSpec, j: int, ranks: np.ndarray) -> pa.Array:
    missing = ranks == 0
    if spec.form == "hex":
        return _hex_strings(_hex_code(ranks, j), missing)
    return pa.array(spec.base + ranks, mask=missing)


def _criteo_chunk(profile: SynthProfile, teacher: Teacher, seed: int, c: int, n: int, chunk_rows: int) -> pa.Table:
    ranks, dense, _, label = generate(profile, teacher, seed, c, chunk_rows, keep=n)
    cols = {"label": pa.array(label)}
    for j, spec in enumerate(profile.dense):
        missing = np.isnan(dense[j])
        cols[spec.name] = pa.array(np.where(missing, 0.0, dense[j]).astype(np.int64), mask=missing)
    for j, spec in enumerate(profile.sparse):
        cols[spec.name] = _cat_array(spec, j, ranks[j])
    return pa.table(cols)


def _avazu_chunk(profile, teacher, seed, c, start, n, rows, chunk_rows) -> pa.Table:
    hour, hh, wd = _avazu_hour_ranks(start, n, rows)
    rng = np.random.default_rng([seed, 1, c])
    ranks, _ = _draw_features(profile, rng, chunk_rows)
    ranks, u = ranks[:, :n], rng.random(chunk_rows)[:n]
    all_ranks = np.concatenate([np.stack([hh + 1, wd + 1]), ranks])
    prob = _sigmoid(teacher.logits(all_ranks, np.empty((0, n))))
    label = (u < prob).astype(np.int8)
    ids = mix64(np.arange(start + 1, start + n + 1, dtype=np.uint64) ^ np.uint64(seed))
    cols = {"id": pa.array(ids), "click": pa.array(label), AVAZU_HOUR: pa.array(hour)}
    for j, spec in enumerate(profile.sparse):
        cols[spec.name] = _cat_array(spec, j, ranks[j])
    return pa.table({name: cols[name] for name in AVAZU_COLUMNS})
