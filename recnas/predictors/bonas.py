"""BONAS's surrogate: a GCN embedding of the architecture graph under Bayesian linear regression.

BONAS (NeurIPS 2020) models an architecture's score with a graph network whose last hidden state at
a global node is the feature vector of a Bayesian linear regression (BLR); the BLR's predictive
variance drives the acquisition (:func:`ucb`). Here:

1. **Graph.** :func:`recnas.space.features.graph`: the inputs, every block's dense and sparse op,
   the output, and a global node joined to every node in both directions; node features are the
   one-hot node type (op) and the one-hot widths and flags. The GCN aggregates over a node's
   inputs and itself: ``A_hat = D^-1 (A^T + I)`` (row-normalised, so the global node averages
   every node instead of summing them).
2. **GCN** (:class:`GCN`): ``layers`` (4) graph convolutions of ``width`` (64),
   ``H <- ReLU(A_hat H W + b)``; the embedding ``phi`` is the global node's row of the last layer,
   found by its node-type feature (not by its position), so ``phi`` does not depend on how the
   nodes are numbered. A linear head maps ``phi`` to a score.
3. **Targets.** BLR regresses ``t = logit(u)`` for ``u`` in (0, 1). BONAS's targets are
   accuracies; recnas scores are "higher = better" reals (minus a log loss, a proxy score), so
   ``target`` maps them to (0, 1) first:

   - ``minmax`` (default): ``u = (y - min + m) / (max - min + 2 m)``, ``m = margin * (max - min)``
     over the training targets (``margin`` 0.1: ``u`` in [0.083, 0.917], ``t`` in [-2.4, 2.4]).
     An affine map, so predictions map back to the units of ``y`` and may pass the best seen.
   - ``unit``: ``u = y``; the targets must already lie in (0, 1) (accuracy, AUC).

4. **Training, end to end** (as the paper): the GCN and its linear head are trained on the labelled
   architectures by MSE against the z-scored ``t`` (Adam, ``lr`` 1e-3, ``batch_size`` 128,
   ``epochs`` 100: the public code's settings); then the head is dropped and the BLR is fitted on
   the embeddings ``phi`` of the same architectures.
5. **BLR** (:class:`BayesianLinearRegression`): ``t = w^T phi + b + noise``, ``w ~ N(0, 1/alpha)``,
   noise ``N(0, 1/beta)``; alpha and beta maximise the evidence by a fixed-point iteration
   (``gamma = sum beta l_i / (alpha + beta l_i)`` over the eigenvalues ``l_i`` of ``Phi^T Phi``,
   ``alpha = gamma / |m_N|^2``, ``beta = (N - gamma) / SSE``), as scikit-learn's ``BayesianRidge``
   (whose ``lambda_`` is this alpha and ``alpha_`` this beta; its Gamma hyperpriors of 1e-6 are
   kept, so the two agree to rounding). Predictive ``mu = m_N^T phi + b``,
   ``sigma^2 = 1/beta + phi_c^T S_N phi_c`` (``phi_c`` centred by the training mean when
   ``fit_intercept``, as ``BayesianRidge`` does: the intercept is taken as known).
6. **Back to y.** With ``f ~ N(mu, sigma^2)`` (the latent logit), :func:`sigmoid_moments` gives
   ``E = E[sigmoid(f)] ~ sigmoid(kappa mu)``, ``kappa = 1 / sqrt(1 + pi sigma^2 / 8)`` (the probit
   approximation) and ``Var[sigmoid(f)] ~ E (1 - E) (1 - kappa)`` (the same approximation carried
   to the second moment). Against 80-point Gauss-Hermite quadrature over ``mu`` in [-3, 3] and
   ``sigma`` in [0, 2]: ``E`` within 0.0044, the std within 0.033. :meth:`BONAS.predict` is ``E``
   mapped back to the units of ``y``, :meth:`BONAS.predict_std` the std likewise, and
   :meth:`BONAS.ucb` BONAS's acquisition ``E + 0.5 * Std`` on the (0, 1) scale.

What differs from the public code (and why): the UCB's std comes from the predictive variance
(the public code writes ``sig ^ 2``, an XOR, a TypeError on floats; the second-moment
approximation it meant, ``sigmoid(x)^2 ~ sigmoid(a (x + c))``, gives a std of 0.09 to 0.16 at zero
variance, so it would rank by a bias rather than by the uncertainty);
the adjacency is row-normalised and the layers have no batch normalisation (in training mode it
made an architecture's embedding depend on the other architectures of its batch); the head is
linear on logit targets (the public code puts a sigmoid on it and fits the raw accuracy), so the
GCN learns the same quantity the BLR models; the loss is plain MSE (the public default weights it
by ``exp(y - 1)``); the BLR has an intercept (the public code has none) and Gamma(1e-6, 1e-6)
hyperpriors, to match ``BayesianRidge``.

Example::

    >>> import numpy as np
    >>> from recnas.estimators import make_estimator
    >>> from recnas.space import SearchSpace
    >>> space = SearchSpace.load("tiny")
    >>> specs = [space.sample(np.random.default_rng(i)) for i in range(30)]
    >>> y = np.array([float(s.blocks[0].dense_dim) for s in specs])
    >>> p = make_estimator("bonas", epochs=20).fit(specs, y, space=space)
    >>> p.predict(specs[:2]).shape, bool((p.predict_std(specs[:2]) > 0).all())
    ((2,), True)
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from recnas.predictors.base import Predictor

__all__ = ["BONAS", "GCN", "BayesianLinearRegression", "normalise_adjacency", "sigmoid_moments", "ucb"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))  # stable for any x


def sigmoid_moments(mu: Any, var: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(E, Var)`` of ``sigmoid(f)``, ``f ~ N(mu, var)``, by the probit approximation:
    ``E = sigmoid(kappa mu)``, ``kappa = 1 / sqrt(1 + pi var / 8)``, and
    ``Var = E (1 - E) (1 - kappa)``.

    The variance follows from ``sigmoid^2 = sigmoid - sigmoid'`` and ``E[sigmoid'(f)] = dE/dmu``
    (exact for a Gaussian), with ``E ~ sigmoid(kappa mu)``: ``E[sigmoid(f)^2] ~ E - kappa E (1 - E)``.
    It is 0 at ``var = 0`` and tends to ``E (1 - E)`` (a coin) as ``var`` grows.

    >>> e, v = sigmoid_moments([0.0, 0.0], [0.0, 1.0])
    >>> e.tolist(), v.round(4).tolist()
    ([0.5, 0.5], [0.0, 0.0381])
    """
    mu = np.asarray(mu, dtype=np.float64)
    var = np.maximum(np.asarray(var, dtype=np.float64), 0.0)
    kappa = 1.0 / np.sqrt(1.0 + math.pi / 8.0 * var)
    e = _sigmoid(kappa * mu)
    return e, e * (1.0 - e) * (1.0 - kappa)


def ucb(mu: Any, var: Any, kappa: float = 0.5) -> np.ndarray:
    """BONAS's acquisition: ``E + kappa * Std`` of ``sigmoid(f)``, ``f ~ N(mu, var)``
    (:func:`sigmoid_moments`; the paper's ``kappa`` is 0.5)."""
    e, v = sigmoid_moments(mu, var)
    return e + kappa * np.sqrt(v)


# ---------------------------------------------------------------------- Bayesian linear regression


class BayesianLinearRegression:
    """Bayesian linear regression with evidence-maximised precisions (see the module docstring).

    Args:
        fit_intercept: centre ``Phi`` and ``t`` on their training means (the intercept is then
            ``mean(t) - mean(Phi) m_N``), as ``BayesianRidge(fit_intercept=True)``.
        max_iter, tol: fixed-point iterations; stop when the posterior mean moves less than ``tol``
            (sum of absolute changes), as ``BayesianRidge``.
        alpha_1, alpha_2: Gamma hyperprior (shape, rate) of the noise precision ``beta``.
        lambda_1, lambda_2: Gamma hyperprior of the weight precision ``alpha`` (all four 0:
            plain evidence maximisation; 1e-6, ``BayesianRidge``'s default, changes next to nothing).

    Learned: ``alpha_`` (weights), ``beta_`` (noise), ``coef_`` (``m_N``), ``intercept_``,
    ``sigma_`` (``S_N``), ``offset_`` (the mean of ``Phi``, zeros without intercept), ``n_iter_``.
    """

    def __init__(self, fit_intercept: bool = True, max_iter: int = 300, tol: float = 1e-3,
                 alpha_1: float = 1e-6, alpha_2: float = 1e-6, lambda_1: float = 1e-6,
                 lambda_2: float = 1e-6) -> None:
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.alpha_1, self.alpha_2, self.lambda_1, self.lambda_2 = alpha_1, alpha_2, lambda_1, lambda_2

    def fit(self, Phi: Any, t: Any) -> BayesianLinearRegression:
        Phi = np.asarray(Phi, dtype=np.float64)
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        n, d = Phi.shape
        if n != len(t) or n < 1:
            raise ValueError(f"BayesianLinearRegression: {n} rows of features but {len(t)} targets")
        t_var = float(t.var())
        self.offset_ = Phi.mean(axis=0) if self.fit_intercept else np.zeros(d)
        t_off = float(t.mean()) if self.fit_intercept else 0.0
        X, y = Phi - self.offset_, t - t_off
        evals, V = np.linalg.eigh(X.T @ X)
        evals = np.where(evals > evals.max(initial=0.0) * 1e-12, evals, 0.0)
        proj = V.T @ (X.T @ y)
        beta = 1.0 / (t_var + np.finfo(np.float64).eps)
        alpha = 1.0

        def mean(alpha: float, beta: float) -> tuple[np.ndarray, float]:
            m = V @ (proj / (evals + alpha / beta))
            return m, float(np.sum((y - X @ m) ** 2))

        m_old = None
        for it in range(self.max_iter):
            m, sse = mean(alpha, beta)
            gamma = float(np.sum(beta * evals / (alpha + beta * evals)))
            alpha = (gamma + 2 * self.lambda_1) / (float(np.sum(m ** 2)) + 2 * self.lambda_2)
            beta = (n - gamma + 2 * self.alpha_1) / (sse + 2 * self.alpha_2)
            if it != 0 and float(np.sum(np.abs(m_old - m))) < self.tol:
                break
            m_old = m
        self.n_iter_ = it + 1
        self.alpha_, self.beta_ = float(alpha), float(beta)
        self.coef_, _ = mean(alpha, beta)
        self.sigma_ = (V / (beta * evals + alpha)) @ V.T
        self.intercept_ = t_off - float(self.offset_ @ self.coef_)
        return self

    def predict(self, Phi: Any) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and variance ``(n,), (n,)`` of ``t`` (the noise ``1/beta`` included)."""
        Phi = np.asarray(Phi, dtype=np.float64)
        Xc = Phi - self.offset_
        var = 1.0 / self.beta_ + np.einsum("ij,jk,ik->i", Xc, self.sigma_, Xc)
        return Phi @ self.coef_ + self.intercept_, var


# ---------------------------------------------------------------------- GCN


def normalise_adjacency(A: Any) -> torch.Tensor:
    """``(B, V, V)`` ``D^-1 (A^T + I)``: row ``v`` averages ``v`` and the nodes that feed it
    (``A[u, v] = 1``: ``u`` feeds ``v``, as :func:`recnas.space.features.graph` writes it)."""
    A = torch.as_tensor(A, dtype=torch.float32)
    M = A.transpose(-1, -2) + torch.eye(A.shape[-1], dtype=A.dtype)
    return M / M.sum(dim=-1, keepdim=True)


class GCN(nn.Module):
    """``layers`` graph convolutions of ``width`` units (ReLU); the embedding is the global node's
    last hidden state, picked by node-type column ``global_column`` of the node features; a
    linear head maps it to a score.

    ``embed(A_hat, X)``: ``(B, V, V)``, ``(B, V, F)`` -> ``(B, width)``; ``forward`` -> ``(B,)``.
    """

    def __init__(self, in_features: int, global_column: int, width: int = 64, layers: int = 4) -> None:
        super().__init__()
        self.global_column = global_column
        self.convs = nn.ModuleList(nn.Linear(in_features if i == 0 else width, width) for i in range(layers))
        self.head = nn.Linear(width, 1)

    def embed(self, A_hat: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        H = X
        for conv in self.convs:
            H = F.relu(torch.bmm(A_hat, conv(H)))
        g = X[..., self.global_column]  # (B, V): 1 at the global node
        return torch.einsum("bv,bvw->bw", g, H)

    def forward(self, A_hat: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(A_hat, X)).squeeze(-1)


# ---------------------------------------------------------------------- the predictor


class BONAS(Predictor):
    """BONAS's surrogate: GCN embedding + Bayesian linear regression on logit targets (module docstring).

    Args:
        width, layers: the GCN (64, 4: the paper's).
        epochs, lr, batch_size, weight_decay: its training (Adam; the public code's 100, 1e-3, 128, 0).
        target: ``minmax`` (scores of any scale, mapped to (0, 1) with ``margin``) or ``unit``
            (scores already in (0, 1)).
        margin: ``minmax``'s margin, a fraction of the training targets' range.
        fit_intercept, max_iter, tol: the BLR (:class:`BayesianLinearRegression`).
        seed: initial weights and batch order.
        space: the search space (name or file) when ``fit`` is not given one.

    Learned state: ``net_`` (the GCN, eval mode), ``blr_``, ``lo_`` / ``span_`` (the ``minmax``
    map: ``u = (y - lo_) / span_``), ``loss_`` (training MSE per epoch), ``fit_seconds_``.
    """

    name = "bonas"
    featurizer_kind = "graph"
    provides_std = True

    def __init__(
        self,
        width: int = 64,
        layers: int = 4,
        epochs: int = 100,
        lr: float = 1e-3,
        batch_size: int = 128,
        weight_decay: float = 0.0,
        target: str = "minmax",
        margin: float = 0.1,
        fit_intercept: bool = True,
        max_iter: int = 300,
        tol: float = 1e-3,
        seed: int = 0,
        space: Any = None,
    ) -> None:
        self.width = width
        self.layers = layers
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.target = target
        self.margin = margin
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.seed = seed
        self.space = space

    # -- targets -----------------------------------------------------------------------------------
    def _to_unit(self, y: np.ndarray) -> np.ndarray:
        if self.target == "unit":
            if not ((y > 0) & (y < 1)).all():
                raise ValueError("predictor 'bonas': target='unit' needs every score in (0, 1); "
                                 f"got [{y.min():.4g}, {y.max():.4g}] (use target='minmax')")
            self.lo_, self.span_ = 0.0, 1.0
        elif self.target == "minmax":
            if not self.margin > 0:
                raise ValueError(f"predictor 'bonas': margin must be > 0, got {self.margin}")
            r = float(y.max() - y.min()) or 1.0
            self.lo_, self.span_ = float(y.min()) - self.margin * r, r * (1.0 + 2.0 * self.margin)
        else:
            raise ValueError(f"predictor 'bonas': unknown target {self.target!r}; known: ['minmax', 'unit']")
        return (y - self.lo_) / self.span_

    # -- fit / predict -----------------------------------------------------------------------------
    def _graph_tensors(self, X: tuple[np.ndarray, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        A, feats = X
        return normalise_adjacency(A), torch.as_tensor(np.asarray(feats), dtype=torch.float32)

    def _embed(self, X: tuple[np.ndarray, np.ndarray], batch: int = 2048) -> np.ndarray:
        A_hat, feats = self._graph_tensors(X)
        out = []
        self.net_.eval()
        with torch.no_grad():
            for i in range(0, len(feats), batch):
                out.append(self.net_.embed(A_hat[i:i + batch], feats[i:i + batch]).double().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.width))

    def _fit(self, X: tuple[np.ndarray, np.ndarray], y: np.ndarray) -> None:
        from recnas.space.features import graph_node_types

        if self.width < 1 or self.layers < 1 or self.epochs < 0 or self.batch_size < 1:
            raise ValueError(f"predictor 'bonas': width, layers, batch_size must be >= 1 and epochs >= 0, got "
                             f"{self.width}, {self.layers}, {self.batch_size}, {self.epochs}")
        t0 = time.perf_counter()
        u = self._to_unit(y)
        t = np.log(u) - np.log1p(-u)
        z = torch.as_tensor((t - t.mean()) / (t.std() or 1.0), dtype=torch.float32)
        A_hat, feats = self._graph_tensors(X)
        global_column = graph_node_types(self.space_).index("global")
        self.loss_: list[float] = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = GCN(feats.shape[-1], global_column, self.width, self.layers)
            opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            gen = torch.Generator().manual_seed(self.seed)
            net.train()
            for _ in range(self.epochs):
                order = torch.randperm(len(z), generator=gen)
                total = 0.0
                for i in range(0, len(z), self.batch_size):
                    b = order[i:i + self.batch_size]
                    loss = F.mse_loss(net(A_hat[b], feats[b]), z[b])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(b)
                self.loss_.append(total / len(z))
        net.eval()
        self.net_ = net
        self.blr_ = BayesianLinearRegression(self.fit_intercept, self.max_iter, self.tol).fit(self._embed(X), t)
        self.fit_seconds_ = time.perf_counter() - t0

    def _latent(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        return self.blr_.predict(self._embed(X))

    def _predict(self, X: Any) -> np.ndarray:
        e, _ = sigmoid_moments(*self._latent(X))
        return e * self.span_ + self.lo_

    def _predict_std(self, X: Any) -> np.ndarray:
        _, v = sigmoid_moments(*self._latent(X))
        return np.sqrt(v) * self.span_

    def latent(self, specs: Any) -> tuple[np.ndarray, np.ndarray]:
        """The BLR's predictive mean and variance of ``logit(u)``, ``(n,), (n,)``."""
        self._check_fitted("predict")
        if not len(specs):
            return np.zeros(0), np.zeros(0)
        return self._latent(self.features(specs))

    def embed(self, specs: Any) -> np.ndarray:
        """``(n, width)`` GCN embeddings (the global node's last hidden state)."""
        self._check_fitted("embed")
        return self._embed(self.features(specs))

    def ucb(self, specs: Any, kappa: float = 0.5) -> np.ndarray:
        """BONAS's acquisition ``E + kappa * Std`` of ``sigmoid(f)`` (:func:`ucb`), on the (0, 1) scale."""
        return ucb(*self.latent(specs), kappa=kappa)
