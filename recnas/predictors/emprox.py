"""EmProx: a sequence autoencoder's architecture embeddings and an inverse-distance weighted kNN.

EmProx (Franken et al., 2022) predicts an architecture's quality from the architectures near it in
an embedding space learned without labels:

1. **Tokens.** Each architecture is its choice sequence, :func:`recnas.space.features.tokenize`
   (``L = token_length(space)`` ids, 0 = padding).
2. **Autoencoder** (:class:`Seq2Seq`), trained on reconstruction only, on ``unlabelled``
   architectures sampled uniformly from the space (no labels, none of the measured ones needed).
   Encoder: token embedding (``embedding_dim`` = 32) -> dropout -> one-layer bidirectional LSTM
   (``hidden_size`` units a direction) -> linear projection to ``hidden_size`` -> L2 norm per
   position -> mean over positions -> L2 norm = the architecture's embedding ``(hidden_size,)``.
   Decoder: a one-layer LSTM started from (embedding, embedding), fed the previous token
   (teacher forcing in training, its own greedy output in :meth:`Seq2Seq.reconstruct`), with dot
   attention over the encoder's per-position outputs, then a linear layer to token logits.
   Adam (lr 1e-3, weight decay 1e-4), batch 100, gradient norm clipped at 5, dropout 0.1,
   50 epochs: the paper's settings.
3. **kNN.** :meth:`EmProx.fit` embeds the measured architectures once, with the final encoder, and
   :meth:`EmProx.predict` returns ``sum_j w_j y_j`` over the ``k`` nearest of them (Euclidean
   distance ``d_j`` between embeddings), ``w_j = (1/d_j) / sum_l (1/d_l)``; ``k`` defaults to
   the paper's best (60 on NAS-Bench-201) and is capped by the number of measured architectures.
   An architecture that was measured (the same token sequence), or whose embedding coincides with
   measured ones (``d = 0``), is predicted as the mean of their labels (exactly its label when
   measured once), where ``1/d`` is undefined.

The trained autoencoder is saved once per space and settings under ``cache_dir``
(``emprox-<space>-<digest>.pt``, the digest of the space's definition and every setting that
decides the weights) and reused by every later fit, in this process and others; ``cache_dir``
itself is where, not what, and is no part of the key.

What differs from the public code (and why): the neighbour pool is built once from the final
encoder in eval mode (the public code appends the dropout-perturbed embeddings of every training
batch of every epoch, so the pool holds ``epochs`` stale copies of each architecture); the
autoencoder is trained on unlabelled sampled architectures (the public code trains it on the
labelled ones only, so its embedding is refit for every training set); a zero distance does not
divide by zero; the encoder has no residual connection around the LSTM (the paper's description).

Example::

    >>> import numpy as np, tempfile
    >>> from recnas.estimators import make_estimator
    >>> from recnas.space import SearchSpace
    >>> space = SearchSpace.load("tiny")
    >>> specs = [space.sample(np.random.default_rng(i)) for i in range(20)]
    >>> y = np.array([float(s.blocks[0].dense_dim) for s in specs])
    >>> p = make_estimator("emprox", unlabelled=200, epochs=1, k=5, cache_dir=tempfile.mkdtemp())
    >>> p.fit(specs, y, space=space).predict(specs[:2]).tolist() == y[:2].tolist()
    True
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from recnas.predictors.base import Predictor

if TYPE_CHECKING:
    from recnas.space.space import SearchSpace

__all__ = ["EmProx", "Seq2Seq", "train_autoencoder", "load_or_train", "autoencoder_settings"]

#: bump when the network or its training changes, so older cache files are not reused.
FORMAT = 1

#: trained autoencoders of this process, by cache path.
_LOADED: dict[str, Seq2Seq] = {}


class Seq2Seq(nn.Module):
    """EmProx's sequence autoencoder (see the module docstring).

    ``tokens``: ``(B, L)`` int64 ids in ``0..vocab-1``; the decoder's start token is id ``vocab``.
    :meth:`encode` -> per-position outputs ``(B, L, H)`` and the embedding ``(B, H)`` (unit norm);
    :meth:`forward` -> teacher-forced logits ``(B, L, vocab)``; :meth:`reconstruct` -> greedy ids
    ``(B, L)``.
    """

    def __init__(self, vocab: int, embedding_dim: int = 32, hidden_size: int = 32, dropout: float = 0.1) -> None:
        super().__init__()
        self.vocab = vocab
        self.embed = nn.Embedding(vocab, embedding_dim)
        self.encoder = nn.LSTM(embedding_dim, hidden_size, batch_first=True, bidirectional=True)
        self.project = nn.Linear(2 * hidden_size, hidden_size)
        self.dec_embed = nn.Embedding(vocab + 1, hidden_size)
        self.decoder = nn.LSTM(hidden_size, hidden_size, batch_first=True)
        self.query = nn.Linear(hidden_size, hidden_size, bias=False)
        self.combine = nn.Linear(2 * hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, vocab)
        self.drop = nn.Dropout(dropout)

    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, _ = self.encoder(self.drop(self.embed(tokens)))
        per_pos = F.normalize(self.project(h), dim=-1)
        return per_pos, F.normalize(per_pos.mean(dim=1), dim=-1)

    def _logits(self, h: torch.Tensor, per_pos: torch.Tensor) -> torch.Tensor:
        att = torch.softmax(torch.bmm(self.query(h), per_pos.transpose(1, 2)), dim=-1)  # (B, T, L)
        context = torch.bmm(att, per_pos)
        return self.out(torch.tanh(self.combine(torch.cat([context, h], dim=-1))))

    def _start(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = emb.unsqueeze(0).contiguous()
        return e, e

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        per_pos, emb = self.encode(tokens)
        prev = torch.cat([torch.full_like(tokens[:, :1], self.vocab), tokens[:, :-1]], dim=1)
        h, _ = self.decoder(self.drop(self.dec_embed(prev)), self._start(emb))
        return self._logits(h, per_pos)

    @torch.no_grad()
    def reconstruct(self, tokens: torch.Tensor) -> torch.Tensor:
        per_pos, emb = self.encode(tokens)
        state = self._start(emb)
        prev = torch.full_like(tokens[:, :1], self.vocab)
        out = []
        for _ in range(tokens.shape[1]):
            h, state = self.decoder(self.drop(self.dec_embed(prev)), state)
            prev = self._logits(h, per_pos).argmax(dim=-1)
            out.append(prev)
        return torch.cat(out, dim=1)


def autoencoder_settings(space: SearchSpace, *, embedding_dim: int, hidden_size: int, dropout: float,
                         unlabelled: int, epochs: int, batch_size: int, lr: float, weight_decay: float,
                         grad_clip: float, seed: int) -> dict[str, Any]:
    """Everything that decides the trained autoencoder (the cache key's contents)."""
    return {"format": FORMAT, "space": space.to_dict(), "embedding_dim": embedding_dim, "hidden_size": hidden_size,
            "dropout": dropout, "unlabelled": unlabelled, "epochs": epochs, "batch_size": batch_size, "lr": lr,
            "weight_decay": weight_decay, "grad_clip": grad_clip, "seed": seed}


def _unlabelled(space: SearchSpace, n: int, seed: int) -> np.ndarray:
    """``n`` distinct architectures drawn uniformly from ``space`` (fewer if it has fewer), as tokens."""
    from recnas.space.features import tokens

    rng = np.random.default_rng([seed, 0xE3])
    seen: dict[str, Any] = {}
    for _ in range(20 * n):
        if len(seen) == n:
            break
        s = space.sample(rng)
        seen.setdefault(s.key(), s)
    return tokens(space, list(seen.values()))


def train_autoencoder(space: SearchSpace, settings: dict[str, Any], progress: bool = False) -> tuple[Any, dict[str, Any]]:
    """Trains the autoencoder on ``settings["unlabelled"]`` sampled architectures (reconstruction loss
    only); returns the module (eval mode) and a log ``{"loss": [per epoch], "seconds": ...}``."""
    import sys

    from recnas.space.features import vocab_size

    t0 = time.perf_counter()
    data = torch.from_numpy(_unlabelled(space, settings["unlabelled"], settings["seed"]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings["seed"])
        net = Seq2Seq(vocab_size(space), settings["embedding_dim"], settings["hidden_size"], settings["dropout"])
        opt = torch.optim.Adam(net.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
        gen = torch.Generator().manual_seed(settings["seed"])
        losses = []
        net.train()
        for epoch in range(settings["epochs"]):
            order = torch.randperm(len(data), generator=gen)
            total = 0.0
            for i in range(0, len(data), settings["batch_size"]):
                batch = data[order[i:i + settings["batch_size"]]]
                logits = net(batch)
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.reshape(-1))
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), settings["grad_clip"])
                opt.step()
                total += float(loss.detach()) * len(batch)
            losses.append(total / len(data))
            if progress:
                print(f"  emprox autoencoder: epoch {epoch + 1}/{settings['epochs']} loss {losses[-1]:.4f}",
                      file=sys.stderr, flush=True)
    net.eval()
    return net, {"loss": losses, "seconds": time.perf_counter() - t0, "architectures": len(data)}


def load_or_train(space: SearchSpace, settings: dict[str, Any], cache_dir: str | os.PathLike,
                  progress: bool = False) -> tuple[Any, Path]:
    """The trained autoencoder for ``settings``: from this process, else from ``cache_dir``, else
    trained and saved there (written to a temporary file and renamed, so a killed training leaves
    no file that could be taken for a finished one). Returns the module and its file."""
    import sys

    from recnas.identity import check_identity, digest
    from recnas.space.features import vocab_size

    path = Path(os.path.expandvars(os.path.expanduser(str(cache_dir)))) / f"emprox-{space.name}-{digest(settings)}.pt"
    key = str(path.resolve())
    if key in _LOADED:
        return _LOADED[key], path
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        check_identity(saved["settings"], settings, str(path))
        net = Seq2Seq(vocab_size(space), settings["embedding_dim"], settings["hidden_size"], settings["dropout"])
        net.load_state_dict(saved["state_dict"])
        net.eval()
    else:
        if progress:
            print(f"recnas: training the EmProx autoencoder for space {space.name!r} "
                  f"({settings['unlabelled']} architectures, {settings['epochs']} epochs) -> {path}",
                  file=sys.stderr, flush=True)
        net, log = train_autoencoder(space, settings, progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        torch.save({"settings": settings, "state_dict": net.state_dict(), "log": log}, tmp)
        os.replace(tmp, path)
    _LOADED[key] = net
    return net, path


def embed(net: Any, tokens: np.ndarray, batch: int = 1000) -> np.ndarray:
    """``(n, hidden_size)`` float64 embeddings of token rows (eval mode, no dropout)."""
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(tokens), batch):
            out.append(net.encode(torch.from_numpy(np.ascontiguousarray(tokens[i:i + batch])))[1].double().numpy())
    return np.concatenate(out) if out else np.zeros((0, net.project.out_features))


class EmProx(Predictor):
    """EmProx: inverse-distance weighted kNN over a reconstruction-trained autoencoder's embeddings.

    Args:
        k: neighbours (the paper's best on NAS-Bench-201: 60); capped by the measured architectures.
        embedding_dim: token embedding width.
        hidden_size: LSTM units a direction, and the architecture embedding's width.
        dropout: dropout on the token embeddings (training only).
        unlabelled: sampled architectures the autoencoder is trained on.
        epochs, batch_size, lr, weight_decay, grad_clip: its training (Adam).
        seed: seed of the unlabelled sample, the initial weights and the batch order.
        cache_dir: folder of trained autoencoders (created when needed).
        progress: report the autoencoder's training on stderr.
        space: the search space (name or file) when ``fit`` is not given one.

    Learned state: ``net_`` (the autoencoder), ``cache_path_``, ``train_tokens_``,
    ``train_embeddings_`` ``(n, hidden_size)``, ``train_y_``.
    """

    name = "emprox"
    featurizer_kind = "tokens"

    def __init__(
        self,
        k: int = 60,
        embedding_dim: int = 32,
        hidden_size: int = 32,
        dropout: float = 0.1,
        unlabelled: int = 10000,
        epochs: int = 50,
        batch_size: int = 100,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        grad_clip: float = 5.0,
        seed: int = 0,
        cache_dir: str = "data/cache/emprox",
        progress: bool = False,
        space: Any = None,
    ) -> None:
        self.k = k
        self.embedding_dim = embedding_dim
        self.hidden_size = hidden_size
        self.dropout = dropout
        self.unlabelled = unlabelled
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.seed = seed
        self.cache_dir = cache_dir
        self.progress = progress
        self.space = space

    def autoencoder(self, space: SearchSpace | None = None) -> tuple[Any, Path]:
        """The trained autoencoder of ``space`` (trained and cached on first use) and its file."""
        if self.k < 1:
            raise ValueError(f"predictor 'emprox': k must be >= 1, got {self.k}")
        if self.unlabelled < 1 or self.epochs < 0 or self.batch_size < 1:
            raise ValueError(f"predictor 'emprox': unlabelled and batch_size must be >= 1 and epochs >= 0, got "
                             f"{self.unlabelled}, {self.batch_size}, {self.epochs}")
        sp = self._space(space)
        settings = autoencoder_settings(
            sp, embedding_dim=self.embedding_dim, hidden_size=self.hidden_size, dropout=self.dropout,
            unlabelled=self.unlabelled, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
            weight_decay=self.weight_decay, grad_clip=self.grad_clip, seed=self.seed)
        return load_or_train(sp, settings, self.cache_dir, self.progress)

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        self.net_, self.cache_path_ = self.autoencoder(self.space_)
        self.train_tokens_ = np.asarray(X, dtype=np.int64)
        self.train_embeddings_ = embed(self.net_, self.train_tokens_)
        self.train_y_ = y.copy()
        self._exact_: dict[bytes, list[float]] = {}
        for row, v in zip(self.train_tokens_, y):
            self._exact_.setdefault(row.tobytes(), []).append(float(v))

    def embed(self, specs: Any) -> np.ndarray:
        """``(n, hidden_size)`` embeddings of ``specs`` by the fitted autoencoder."""
        self._check_fitted("embed")
        return embed(self.net_, self.features(specs))

    def _predict(self, X: np.ndarray) -> np.ndarray:
        from scipy.spatial.distance import cdist

        X = np.asarray(X, dtype=np.int64)
        out = np.empty(len(X))
        k = min(self.k, len(self.train_y_))
        E = embed(self.net_, X)
        for start in range(0, len(X), 2048):
            D = cdist(E[start:start + 2048], self.train_embeddings_)
            near = np.argpartition(D, k - 1, axis=1)[:, :k] if k < D.shape[1] else np.broadcast_to(
                np.arange(D.shape[1]), D.shape)
            for r in range(len(D)):
                i = start + r
                exact = self._exact_.get(X[i].tobytes())
                if exact is not None:
                    out[i] = sum(exact) / len(exact)
                    continue
                d = D[r, near[r]]
                ys = self.train_y_[near[r]]
                zero = d <= 0.0
                if zero.any():
                    out[i] = float(ys[zero].mean())
                else:
                    w = 1.0 / d
                    out[i] = float(np.dot(w, ys) / w.sum())
        return out
