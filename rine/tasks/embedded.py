"""task=embedded: a finite pmf whose source symbols are points in R^d, observed with noise.

Each symbol s of source i gets a fixed random code c_{i,s} ~ N(0, I_h), passed through a
fixed random 2-layer tanh network (weights and codes drawn from `embed_seed`) to a point
μ_{i,s} in R^d; a sample of source i is μ_{i,S_i} + N(0, noise² I_d). The symbols, labels
and exact references are those of task=pmf with the same pmf and seed (rine.data.DiscreteTask).

When the reference holds. Y → S_i → X_i is a Markov chain, so I(X_i; Y) ≤ I(S_i; Y): noise
can only remove information (data processing). It removes at most H(S_i | X_i) ≤
h(P_e) + P_e log2(|S_i| − 1) bits (Fano), P_e the error of the best symbol decoder. The
nearest-mean decoder errs on a pair of points at distance δ with probability Φ(−δ / 2σ),
and a union bound over the other symbols bounds P_e. With noise 0 the map symbol → point
is injective (continuous random codes), so the embedded sources carry exactly the pmf's
information.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from rine.data import TaskData
from rine.errors import RineError
from rine.tasks.discrete import DiscreteTask

HIDDEN = 64  # width of the codes and of the network's hidden layer
# tanh(Z), Z ~ N(0, 1), has variance 0.394: this gain gives the second layer unit-variance
# pre-activations too, so both tanh layers work in their nonlinear range without saturating.
TANH_GAIN = 1 / math.sqrt(0.394)
# A symbol error bound above this makes the pmf's values only upper bounds. At 1e-3 the
# information lost is at most h(1e-3) + 1e-3 log2(3) = 0.013 bits per source (Fano, 4 symbols).
EXACT_BELOW = 1e-3
NOISE_STREAM = 0x5EED  # the noise draws' own stream of the run's seed, apart from the sampling


def symbol_points(n_symbols: Sequence[int], dim: int, embed_seed: int, hidden: int = HIDDEN) -> list[np.ndarray]:
    """The fixed point μ_{i,s} of every symbol: one float64 array [n_symbols[i], dim] per source.

    μ = tanh(W2 · tanh(W1 · c)), c ~ N(0, I_hidden), W1 [hidden, hidden] and W2 [hidden, dim]
    with N(0, 1/hidden) entries (W2 times TANH_GAIN), all drawn from `embed_seed`. One network
    serves every source; each source draws its own codes.
    """
    rng = np.random.default_rng(embed_seed)
    w1 = rng.standard_normal((hidden, hidden)) / math.sqrt(hidden)
    w2 = rng.standard_normal((hidden, dim)) * (TANH_GAIN / math.sqrt(hidden))
    return [np.tanh(np.tanh(rng.standard_normal((n, hidden)) @ w1) @ w2) for n in n_symbols]


def fano_loss_bits(error: float, n_symbols: int) -> float:
    """Fano's bound on H(S | X) for a symbol S of n_symbols values decoded from X with this
    error probability: h(P_e) + P_e log2(n − 1) bits, capped at log2 n (reached at P_e = 1 − 1/n)."""
    if n_symbols < 2 or error <= 0:
        return 0.0
    if error >= (n_symbols - 1) / n_symbols:
        return math.log2(n_symbols)
    return -(error * math.log2(error) + (1 - error) * math.log2(1 - error)) + error * math.log2(n_symbols - 1)


def separability(points: Sequence[np.ndarray], noise: float) -> dict:
    """Per source: the minimum distance between its symbols' points, a union bound on the
    nearest-mean decoder's symbol error under N(0, noise² I) (the worst symbol's
    Σ_{s'} Φ(−δ_{ss'} / 2·noise), capped at 1), and Fano's bound on the bits that error can
    cost, h(P_e) + P_e log2(|S| − 1) (capped at log2 |S|). Lists in source order; a source
    with a single symbol has min_distance None and nothing to lose.
    """
    distances, bounds, losses = [], [], []
    for mu in points:
        n = len(mu)
        delta = np.sqrt(((mu[:, None, :] - mu[None, :, :]) ** 2).sum(-1))
        off_diagonal = ~np.eye(n, dtype=bool)
        if noise > 0:
            pair_error = 0.5 * np.vectorize(math.erfc)(delta / (2 * noise * math.sqrt(2)))  # Φ(−δ/2σ)
        else:
            pair_error = (delta == 0).astype(float)  # no noise: only coinciding points are confused
        bound = min(1.0, float((pair_error * off_diagonal).sum(1).max())) if n > 1 else 0.0
        distances.append(float(delta[off_diagonal].min()) if n > 1 else None)
        bounds.append(bound)
        losses.append(fano_loss_bits(bound, n))
    return {"min_distance": distances, "symbol_error_bound": bounds, "information_loss_bound_bits": losses}


class EmbeddedTask:
    """A pmf (`pmf`: a shipped table's name or a CSV path) with each source's symbols embedded
    in R^`dim` plus N(0, `noise`²) per coordinate; sources are float tensors [N, dim].

    The samples (drawn with the run's seed) and the exact references are task=pmf's; the
    embedding comes from `embed_seed`. `reference["embedding"]` reports per source the
    minimum distance between symbol points, the symbol error bound, the information it can
    cost (bits) and `reference_is_exact`: false when some bound exceeds 1e-3, and then the
    pmf's values are only upper bounds on the embedded sources' information.
    Raises RineError for a bad pmf, dim < 1 or noise < 0.
    """

    def __init__(self, name: str | None, pmf: str | None, dim: int = 256, noise: float = 0.5, embed_seed: int = 0,
                 n_samples: int = 10_000, holdout_fraction: float = 0.2, true_redundancy: list[str] | None = None,
                 reference_timeout_s: float = 10.0, reference_measures: list[str] | None = None):
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise RineError(f"task.dim={dim} is invalid; the embedding dimension must be an integer >= 1")
        if not isinstance(noise, (int, float)) or isinstance(noise, bool) or not math.isfinite(noise) or noise < 0:
            raise RineError(f"task.noise={noise} is invalid; the noise std must be a number >= 0")
        if not isinstance(embed_seed, int) or isinstance(embed_seed, bool):
            raise RineError(f"task.embed_seed={embed_seed} is invalid; use an integer")
        self.discrete = DiscreteTask(name, pmf, n_samples, holdout_fraction, true_redundancy, reference_timeout_s,
                                     reference_measures)
        self.name, self.pmf_file = self.discrete.name, self.discrete.pmf_file
        self.source_files = self.discrete.source_files
        self.dim, self.noise, self.embed_seed = dim, float(noise), embed_seed
        self.points = symbol_points([len(s) for s in self.discrete.pmf.source_symbols], dim, embed_seed)
        self.embedding = self._describe()

    @property
    def pmf(self):
        """The pmf of the symbols (rine.pmf.JointPmf): runs of different pmfs with the same number
        of sources batch together on it (rine.batched.batch_key), as task=pmf's do."""
        return self.discrete.pmf

    def _describe(self) -> dict:
        found = separability(self.points, self.noise)
        exact = all(b <= EXACT_BELOW for b in found["symbol_error_bound"])
        if exact:
            note = (f"symbols separable (every symbol error bound <= {EXACT_BELOW:g}): the embedded sources carry "
                    "the pmf's information, less at most information_loss_bound_bits each, so the references apply")
        else:
            worst = max(found["symbol_error_bound"])
            note = (f"noise {self.noise:g} makes symbols confusable (symbol error bound up to {worst:.3g}): the pmf's "
                    "values are only upper bounds on the embedded sources' information (data processing: noise "
                    "only removes it); lower task.noise or raise task.dim")
        return {"dim": self.dim, "noise": self.noise, "embed_seed": self.embed_seed, "hidden": HIDDEN, **found,
                "reference_is_exact": exact, "note": note}

    def embed(self, symbols: Sequence[torch.Tensor], rng: np.random.Generator) -> list[torch.Tensor]:
        """Integer symbols [N] per source -> float32 points plus noise, [N, dim] per source."""
        out = []
        for s, mu in zip(symbols, self.points):
            x = torch.from_numpy(mu.astype(np.float32))[s]
            if self.noise > 0:
                x += self.noise * torch.from_numpy(rng.standard_normal(x.shape, dtype=np.float32))
            out.append(x)
        return out

    def setup(self, seed: int) -> TaskData:
        data = self.discrete.setup(seed)  # one-hot sources, labels and the pmf's references
        rng = np.random.default_rng([NOISE_STREAM, seed])
        for split in (data.train, data.heldout):
            split.sources = self.embed([onehot.argmax(1) for onehot in split.sources], rng)
        data.reference = {**data.reference, "embedding": self.embedding}
        return data
