"""Other redundancy estimators, for comparing RINE against (scripts/bench_accuracy.py).

- `kmeans_broja`: cluster-then-exact, the "CVX" estimator of Liang et al. (NeurIPS 2023,
  "Quantifying & modeling multimodal interactions"): each source's samples are clustered with
  k-means, and an exact PID redundancy is computed on the empirical joint pmf of (cluster_1,
  ..., cluster_n, y). Liang et al. solve their own convex program; here dit's BROJA (the
  same definition of redundancy, Bertschinger et al. 2014) does the exact step.
- `gaussian_copula_mmi`: min_i I(X_i; Y) with each I(X_i; Y) the Gaussian-copula estimate
  of the `hoi` package (an optional dependency).

Both return bits and raise RineError when they cannot give a value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rine.errors import RineError
from rine.pmf import JointPmf

# k of the k-means step. Liang et al.'s code (github.com/pliang279/PID, `clustering(X, pca=False,
# n_components=5, n_clusters=20)`) clusters every modality into a fixed 20 clusters with sklearn's
# KMeans (optionally after L2-normalising and PCA to 5 components, off by default); their paper gives
# no data-driven rule. With 20 clusters a source, dit's BROJA optimiser on the 20 x 20 x 4 pmf of
# RDNXOR did not finish in 120 s on a 2-core CPU (measured; Liang et al. use their own convex
# solver), so k is chosen per source as the candidate with the best silhouette score (sampled),
# up to their 20: it finds the symbols when they are separable and keeps BROJA's alphabet small.
CVX_MAX_CLUSTERS = 20
K_CANDIDATES = (2, 3, 4, 6, 8, 12, 16, 20)
SILHOUETTE_SAMPLES = 2000  # silhouette is O(N^2): scored on a seeded subsample
# dit's BROJA on a larger alphabet can take minutes; past this it is reported, not waited for.
BROJA_TIMEOUT_S = 60.0
# Source alphabets (product of the sources' cluster counts) up to this size are solved in this
# process: a child process costs seconds of start-up and dit import, the solve milliseconds.
IN_PROCESS_ALPHABET = 64
BROJA_SOLVERS = ("auto", "cone", "admui")  # dit's solvers, tried in turn until one gives a value in range


def empirical_cluster_pmf(labels: Sequence[np.ndarray], y: np.ndarray) -> JointPmf:
    """The plug-in joint pmf of integer cluster labels (one int array [N] per source) and the
    target y (int array [N]); only the labels and classes that occur get a symbol."""
    columns = [np.unique(np.asarray(a), return_inverse=True) for a in [*labels, y]]
    shape = tuple(len(values) for values, _ in columns)
    table = np.zeros(shape)
    np.add.at(table, tuple(inverse for _, inverse in columns), 1.0)
    names = [tuple(str(v) for v in values) for values, _ in columns]
    return JointPmf(table / table.sum(), tuple(names[:-1]), names[-1])


def kmeans_labels(x: np.ndarray, k: int | None = None, seed: int = 0) -> np.ndarray:
    """sklearn KMeans labels [N] of samples x [N, ...] (flattened per sample): k clusters, or
    with k None the candidate k (K_CANDIDATES, at most the number of distinct samples) of the
    best silhouette score on SILHOUETTE_SAMPLES samples."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    distinct = len(np.unique(x[:20_000], axis=0))

    def fit(k: int) -> np.ndarray:
        return KMeans(n_clusters=min(k, distinct), random_state=seed, n_init="auto").fit_predict(x)

    if k is not None:
        return fit(k)
    if distinct < 2:
        return np.zeros(len(x), dtype=np.int64)
    best, best_score = None, -np.inf
    for k in [c for c in K_CANDIDATES if c <= min(distinct, CVX_MAX_CLUSTERS)] or [2]:
        labels = fit(k)
        if len(np.unique(labels)) < 2:
            continue
        score = silhouette_score(x, labels, sample_size=min(SILHOUETTE_SAMPLES, len(x)), random_state=seed)
        if score > best_score:
            best, best_score = labels, score
    return best if best is not None else np.zeros(len(x), dtype=np.int64)


def kmeans_broja(sources: Sequence[np.ndarray], y: np.ndarray, k: int | None = None, seed: int = 0,
                 timeout_s: float = BROJA_TIMEOUT_S) -> float:
    """Cluster-then-exact redundancy in bits: k-means (k clusters, None: by silhouette, see
    kmeans_labels; sklearn, `seed`) on each
    source's samples [N, ...], then dit's BROJA redundancy of the empirical pmf of (clusters, y).

    y: int array [N]. Raises RineError when dit's optimiser fails or exceeds timeout_s seconds.
    """
    pmf = empirical_cluster_pmf([kmeans_labels(x, k, seed) for x in sources], np.asarray(y))
    return broja_bits(pmf, timeout_s)


def broja_bits(pmf: JointPmf, timeout_s: float = BROJA_TIMEOUT_S) -> float:
    """dit's BROJA redundancy (bits) of `pmf`: in this process for small alphabets (dit answers in
    milliseconds), else in a child process with a time budget (rine.references).
    Raises RineError when the optimiser fails or runs out of time."""
    from rine.references import DIT_SEED, _to_dit, compute_dit_measures

    alphabet = "x".join(map(str, pmf.table.shape))
    ceiling = min(pmf.exact_measures()["mi_sources"])  # BROJA's redundancy lies in [0, min_i I(X_i; Y)]

    def plausible(value: float) -> bool:
        return -1e-4 <= value <= ceiling + 1e-4

    if np.prod(pmf.table.shape[:-1]) <= IN_PROCESS_ALPHABET:
        import dit.pid

        n = pmf.n_sources
        sources, bottom = [[i] for i in range(n)], tuple((i,) for i in range(n))
        # dit's default solver (SLSQP) was seen to return −0.18 bits on an empirical AND pmf (plug-in
        # frequencies of 8,000 samples), where its exponential-cone and alternating solvers agree on
        # 0.31: a value outside BROJA's range is solved again by those.
        for method in BROJA_SOLVERS:
            np.random.seed(DIT_SEED)
            try:
                value = float(dit.pid.PID_BROJA(_to_dit(pmf), sources, [n], method=method).get_red(bottom))
            except Exception:  # noqa: BLE001 - a solver failure: the next solver tries
                continue
            if plausible(value):
                return value
        raise RineError(f"dit's BROJA solvers (SLSQP, cone, alternating) all failed on the {alphabet} cluster pmf")
    entry = compute_dit_measures(pmf, ["i_broja"], timeout_s)["i_broja"]
    if entry.get("status") != "ok":
        raise RineError(f"dit's BROJA on the {alphabet} cluster pmf gave no value: "
                        f"{entry.get('message') or entry.get('status')}")
    value = float(entry["value"])
    if not plausible(value):
        raise RineError(f"dit's BROJA optimiser failed on the {alphabet} cluster pmf: {value:.3f} bits, outside "
                        f"[0, min_i I(Xi;Y) = {ceiling:.3f}]")
    return value


def hoi_available() -> str | None:
    """None when the `hoi` package imports, else why not (one line)."""
    try:
        import hoi.core.mi  # noqa: F401
    except Exception as error:  # noqa: BLE001 - an ImportError or a broken jax install alike
        return f"the hoi package is not usable ({type(error).__name__}: {error}); pip install hoi"
    return None


def gaussian_copula_mmi(sources: Sequence[np.ndarray], y: np.ndarray) -> float:
    """MMI redundancy min_i I(X_i; Y) in bits, each I(X_i; Y) hoi's Gaussian-copula estimate
    (hoi.core.mi.mi_gc, bias-corrected, copula-normalised) of the multivariate source
    [N, ...] (flattened per sample) against y [N].

    hoi's own RedundancyMMI takes one scalar per source, so it is applied here source by
    source with the same estimator and the same minimum. y is discrete: the copula
    transform ranks it with ties broken by order, as hoi does for any target.
    Raises RineError without hoi, or when a source's covariance is singular (e.g. fewer
    samples than features).
    """
    problem = hoi_available()
    if problem:
        raise RineError(problem)
    import jax

    jax.config.update("jax_enable_x64", True)  # float32 Cholesky of a 1,000-d covariance loses the determinant
    from hoi.core.mi import mi_gc

    target = np.asarray(y, dtype=np.float64)[None, :]
    values = []
    for x in sources:
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1).T  # [features, N], as hoi wants
        value = float(mi_gc(x, target, True, True))
        if not np.isfinite(value):  # a singular covariance: Cholesky gives NaN
            raise RineError(f"hoi's Gaussian-copula estimate is undefined (NaN): the covariance of {x.shape[0]} "
                            f"features from {x.shape[1]} samples is singular")
        values.append(value)
    return min(values)
