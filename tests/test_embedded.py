"""task=embedded: pmf symbols as noisy points in R^d; the pmf's references must still apply."""

import math

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error

from rine.tasks.discrete import DiscreteTask
from rine.errors import RineError
from rine.info import gacs_korner_redundancy_bits, mutual_information_bits
from rine.config import compose_config
from rine.tasks.embedded import EmbeddedTask, fano_loss_bits, separability, symbol_points

CANONICAL = ["unq", "and", "rdnxor", "imperfectrdn"]


def _ids(rows: torch.Tensor) -> np.ndarray:
    """Each row's index among the distinct rows: the embedded point's identity."""
    return np.unique(rows.numpy(), axis=0, return_inverse=True)[1].ravel()


def _joint(columns: list[np.ndarray]) -> np.ndarray:
    """The empirical joint pmf of integer-coded columns (the last one is Y)."""
    table = np.zeros([c.max() + 1 for c in columns])
    np.add.at(table, tuple(columns), 1.0)
    return table / table.sum()


def _measures(table: np.ndarray) -> list[float]:
    n = table.ndim - 1
    return [*(mutual_information_bits(table, [i], [n]) for i in range(n)),
            mutual_information_bits(table, list(range(n)), [n]), gacs_korner_redundancy_bits(table)]


@pytest.mark.parametrize("pmf", ["rdnxor", "and"])
def test_without_noise_the_embedding_keeps_exactly_the_pmfs_information(pmf):
    embedded = EmbeddedTask("embedded", pmf, dim=16, noise=0.0, n_samples=2000).setup(seed=3)
    plain = DiscreteTask(pmf, pmf, n_samples=2000).setup(seed=3)  # task=pmf: the same samples
    assert torch.equal(embedded.train.y, plain.train.y) and torch.equal(embedded.heldout.y, plain.heldout.y)
    for split in ("train", "heldout"):
        points = [_ids(x) for x in getattr(embedded, split).sources]
        symbols = [x.argmax(1).numpy() for x in getattr(plain, split).sources]
        y = getattr(plain, split).y.numpy()
        for p, s in zip(points, symbols):  # injective: one point per symbol, one symbol per point
            assert len(set(zip(p, s))) == len(set(p)) == len(set(s)) >= 2
        # The same information in the points as in the symbols, computed exactly by rine.info.
        assert np.allclose(_measures(_joint([*points, y])), _measures(_joint([*symbols, y])), atol=1e-12)
    reference = dict(embedded.reference)
    assert reference.pop("embedding")["reference_is_exact"] is True
    assert reference == plain.reference  # task=pmf's exact references, unchanged


def test_samples_are_the_symbol_points_plus_gaussian_noise_of_the_given_std():
    task = EmbeddedTask("embedded", "rdnxor", dim=64, noise=0.3, n_samples=4000)
    data = task.setup(seed=0)
    symbols = DiscreteTask("rdnxor", "rdnxor", n_samples=4000).setup(seed=0).train.sources
    assert [tuple(x.shape) for x in data.train.sources] == [(3200, 64)] * 2 and data.train.sources[0].dtype == torch.float32
    for x, onehot, mu in zip(data.train.sources, symbols, task.points):
        residual = x.double() - torch.from_numpy(mu)[onehot.argmax(1)]
        assert abs(float(residual.mean())) < 0.003  # 204,800 draws: the mean's std is 0.0007
        assert float(residual.std()) == pytest.approx(0.3, rel=0.01)
    assert not torch.equal(data.train.sources[0], task.setup(seed=1).train.sources[0])  # the seed draws the noise
    again = task.setup(seed=0)
    assert all(torch.equal(a, b) for a, b in zip(data.train.sources, again.train.sources))


def test_the_embed_seed_draws_a_nonlinear_embedding_in_the_tanh_range():
    a, b = symbol_points([4, 4], 256, embed_seed=0), symbol_points([4, 4], 256, embed_seed=1)
    assert a[0].shape == (4, 256) and not np.allclose(a[0], b[0])
    values = np.concatenate([p.ravel() for p in a])
    assert np.abs(values).max() < 1 and 0.45 < values.std() < 0.8  # not saturated, not linear-small


def test_the_union_bound_covers_the_nearest_mean_decoders_error():
    # Three symbols at noise 1.5: the bound (worst symbol) against a Monte Carlo decoder.
    points = symbol_points([3], 8, embed_seed=0)
    noise = 1.5
    found = separability(points, noise)
    mu = points[0]
    rng = np.random.default_rng(0)
    error = []
    for s in range(3):
        x = mu[s] + noise * rng.standard_normal((40_000, 8))
        decoded = ((x[:, None, :] - mu[None]) ** 2).sum(-1).argmin(1)
        error.append((decoded != s).mean())
    assert 0.05 < max(error) <= found["symbol_error_bound"][0] + 0.005  # a bound, and not a vacuous one
    assert found["symbol_error_bound"][0] < 1.5 * max(error)  # measured 0.441 against 0.358
    pairs = np.sqrt(((mu[:, None] - mu[None]) ** 2).sum(-1))[np.triu_indices(3, 1)]
    assert found["min_distance"][0] == pytest.approx(pairs.min())


def test_fano_bound():
    assert fano_loss_bits(0.0, 4) == 0 and fano_loss_bits(0.75, 4) == 2.0 and fano_loss_bits(0.5, 1) == 0
    assert fano_loss_bits(0.5, 2) == pytest.approx(1.0)
    assert fano_loss_bits(1e-3, 4) == pytest.approx(-(1e-3 * math.log2(1e-3) + 0.999 * math.log2(0.999)) + 1e-3 * math.log2(3))


@pytest.mark.parametrize("dim", [256, 1024])
@pytest.mark.parametrize("pmf", CANONICAL)
def test_default_noise_keeps_the_symbols_separable(pmf, dim):
    cfg = compose_config(["task=embedded", f"task.pmf={pmf}", f"task.dim={dim}"])
    task = EmbeddedTask(**{k: v for k, v in cfg.task.items() if k != "_target_"})
    embedding = task.embedding
    assert embedding["noise"] == cfg.task.noise > 0 and embedding["reference_is_exact"] is True
    assert max(embedding["symbol_error_bound"]) < 1e-6 and max(embedding["information_loss_bound_bits"]) < 1e-4


def test_large_noise_makes_the_references_upper_bounds():
    task = EmbeddedTask("embedded", "rdnxor", dim=16, noise=5.0)
    embedding = task.embedding
    assert embedding["reference_is_exact"] is False and max(embedding["symbol_error_bound"]) > 0.1
    assert "only upper bounds" in embedding["note"] and "\n" not in embedding["note"]
    assert all(0 < loss <= 2 for loss in embedding["information_loss_bound_bits"])  # at most log2(4) bits


@pytest.mark.parametrize("kwargs, message", [({"dim": 0}, r"task\.dim=0 is invalid"),
                                             ({"noise": -1.0}, r"task\.noise=-1\.0 is invalid"),
                                             ({"pmf": "nosuch"}, r"pmf file not found")])
def test_bad_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(RineError, match=message):
        EmbeddedTask(**{"name": "embedded", "pmf": "rdnxor", **kwargs})


@pytest.mark.slow  # a train.py process (~2.5 s of CPU); test_bad_settings_are_one_line_errors checks the message in-process
def test_command_line_error_is_one_line_and_writes_nothing(tmp_path, script):
    proc = script("train.py", "task=embedded", "task.noise=-1", f"hydra.run.dir={tmp_path / 'r'}")
    assert assert_one_line_error(proc) == "error: task.noise=-1 is invalid; the noise std must be a number >= 0"
    assert not (tmp_path / "r" / "results.json").exists()


@pytest.mark.slow  # 10 epochs of 64-dimensional inputs: ~3 s of CPU
def test_a_short_run_lands_near_the_truth(train_run):
    # RDNXOR in 64 dimensions, 10 epochs (~3 s). Measured (seeds 0-2): 0.987, 0.987, 0.988 bits;
    # the truth is I∧ = 1 bit. The held-out CE of 2,000 samples moves I∩ by ~0.01 between
    # seeds and recipes; 0.05 bits is a margin no broken embedding or penalty would meet
    # (unseparated symbols give ~0, an unconstrained pair the same 1 bit with a larger D).
    results, _ = train_run("task=embedded", "task.dim=64", "trainer.max_epochs=10", "seed=0")
    reference = results["reference"]
    assert reference["embedding"]["dim"] == 64 and reference["embedding"]["reference_is_exact"] is True
    assert reference["i_wedge"] == 1.0 and reference["i_broja"] == pytest.approx(1.0, abs=1e-5)
    assert 1.0 - 0.05 < results["redundancy_bits"] < 1.0 + 0.02
    assert all(0.95 < u < 1.02 for u in results["usable_info_bits"])
    assert results["constraint_met"]


def test_a_sweep_trains_batched(tmp_path):
    from rine.run import run_many

    cfgs = [compose_config(["task=embedded", "task.dim=32", "trainer.max_epochs=2", f"seed={s}"]) for s in (0, 1)]
    results = run_many(cfgs, [tmp_path / "s0", tmp_path / "s1"])
    assert [r["batched_with"] for r in results] == [2, 2] and [r["status"] for r in results] == ["complete"] * 2
    assert results[0]["reference"]["embedding"] == results[1]["reference"]["embedding"]
    assert results[0]["redundancy_bits"] != results[1]["redundancy_bits"] and results[0]["redundancy_bits"] > 0.5


def test_embedded_runs_of_different_pmfs_batch_together_but_not_of_different_dims():
    from rine.batched import batch_key
    from rine.config import build

    def key(*overrides):
        cfg = compose_config(["task=embedded", *overrides])
        return batch_key(cfg, build(cfg.task))

    assert key("task.pmf=rdnxor", "task.dim=8") == key("task.pmf=unq", "task.dim=8", "seed=2", "beta=0")
    assert key("task.pmf=rdnxor", "task.dim=8") != key("task.pmf=rdnxor", "task.dim=16")
