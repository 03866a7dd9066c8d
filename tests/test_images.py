"""Image tasks on a tiny CIFAR-10 written in the official python-pickle layout."""

import json
import pickle

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error

from rine.errors import RineError
from rine.tasks.images import CifarTask, ImageViews, load_cifar10
from rine.models import ResNet18
from rine.config import compose_config

from conftest import CIFAR_CLASSES as CLASSES


def _views(kind, **kwargs):
    return ImageViews(kind, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3], image_shape=(3, 32, 32), **kwargs)


def _images(n=6, seed=1):
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_loader_reads_the_official_layout(tiny_cifar):
    train_x, train_y, test_x, test_y, names = load_cifar10(tiny_cifar)
    assert train_x.shape == (20, 3, 32, 32) and train_x.dtype == torch.uint8
    assert test_x.shape == (9, 3, 32, 32) and names == CLASSES
    assert train_y.tolist() == [i % 10 for i in range(20)] and test_y.tolist() == list(range(9))
    flat = pickle.load((tiny_cifar / "cifar-10-batches-py" / "data_batch_2").open("rb"), encoding="latin1")["data"]
    # Image 1 of batch 2, green channel (offset 1024), row 5, column 7.
    assert train_x[5, 1, 5, 7].item() == flat[1, 1024 + 5 * 32 + 7]


def test_missing_data_says_both_ways_to_provide_it(tmp_path):
    with pytest.raises(RineError) as error:
        CifarTask("cifar_crop", "crop", width=16, data_dir=str(tmp_path))
    message = str(error.value)
    assert "\n" not in message
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "task.download=true" in message and "$RINE_DATA" in message


@pytest.mark.parametrize("width", [0, 33, -1, None, 2.5])
def test_width_out_of_range_is_a_one_line_error(width):
    with pytest.raises(RineError, match=r"^width=.* is invalid; the crop width must be an integer in 1\.\.32"):
        CifarTask("cifar_crop", "crop", width=width)


@pytest.mark.slow  # a train.py process each (~2.5 s of CPU); the messages are checked in-process above
@pytest.mark.parametrize("override, message", [("width=33", "error: width=33 is invalid"),
                                               ("task.data_dir=nowhere", "error: CIFAR-10 not found: nowhere/")])
def test_command_line_errors_are_one_line_and_write_nothing(tmp_path, script, override, message):
    proc = script("train.py", "task=cifar_crop", override, f"hydra.run.dir={tmp_path / 'r'}")
    assert assert_one_line_error(proc).startswith(message)
    assert not (tmp_path / "r" / "results.json").exists()


@pytest.mark.parametrize("width", [1, 12, 16, 32])
def test_crop_views_are_the_first_and_last_columns(width):
    views = _views("crop", width=width)
    images = _images()
    full = (images.float() / 255 - views.mean) / views.std
    x1, x2 = views(images, train=False)
    assert views.shapes == [(3, 32, width)] * 2 and x1.shape == x2.shape == (6, 3, 32, width)
    assert torch.equal(x1, full[..., :width]) and torch.equal(x2, full[..., 32 - width:])
    if width == 32:
        assert torch.equal(x1, x2)


def test_mask_mode_keeps_32_columns_and_zeroes_the_rest():
    views = _views("crop", width=12, mode="mask")
    images = _images()
    full = (images.float() / 255 - views.mean) / views.std
    x1, x2 = views(images, train=False)
    assert views.shapes == [(3, 32, 32)] * 2 and x1.shape == (6, 3, 32, 32)
    assert torch.equal(x1[..., :12], full[..., :12]) and (x1[..., 12:] == 0).all()
    assert torch.equal(x2[..., 20:], full[..., 20:]) and (x2[..., :20] == 0).all()


def test_channel_views_are_red_and_blue_single_channels():
    views = _views("channels")
    images = _images()
    full = (images.float() / 255 - views.mean) / views.std
    red, blue = views(images, train=False)
    assert views.shapes == [(1, 32, 32)] * 2
    assert torch.equal(red, full[:, 0:1]) and torch.equal(blue, full[:, 2:3])


@pytest.mark.parametrize("cutoff", [0, 2, 5])
def test_frequency_views_split_the_spectrum_and_sum_to_the_image(cutoff):
    views = _views("freq", cutoff=cutoff)
    images = _images()
    full = (images.float() / 255 - views.mean) / views.std
    low, high = views(images, train=False)
    assert low.dtype == high.dtype == torch.float32 and low.shape == (6, 3, 32, 32)
    torch.testing.assert_close(low + high, full, atol=1e-5, rtol=0)
    k = torch.fft.fftfreq(32, 1 / 32).abs()
    inside = torch.maximum(k[:, None], k[None, :]) <= cutoff
    assert int(inside.sum()) == (2 * cutoff + 1) ** 2
    assert torch.fft.fft2(low)[..., ~inside].abs().max() < 1e-3  # nothing above the cutoff
    assert torch.fft.fft2(high)[..., inside].abs().max() < 1e-3  # nothing at or below it
    assert high.abs().mean() > 0.1 and low.abs().mean() > 0.01  # both bands carry signal


def test_augmentation_is_a_padded_random_crop_drawn_per_view():
    torch.manual_seed(0)
    views = _views("crop", width=32)  # identical views: any difference is the augmentation
    images = _images(n=16)
    clean = views.cut(images)[0]
    x1, x2 = views(images, train=True)
    padded = torch.nn.functional.pad(clean, (4, 4, 4, 4))
    for augmented in (x1, x2):
        assert augmented.shape == clean.shape
        for i in range(16):  # each image is some 32x32 window of its zero-padded original
            assert any(torch.equal(augmented[i], padded[i, :, dy:dy + 32, dx:dx + 32])
                       for dy in range(9) for dx in range(9))
    differs = [not torch.equal(x1[i], x2[i]) for i in range(16)]
    assert sum(differs) >= 12  # independent offsets: equal only by chance (1/81 each)


def test_resnet18_takes_any_channel_count_and_crop_width():
    torch.manual_seed(0)
    for shape in [(3, 32, 1), (1, 32, 32), (3, 32, 20)]:
        net = ResNet18(shape, n_classes=10).eval()
        assert net(torch.randn(2, *shape)).shape == (2, 10)
    net = ResNet18((3, 32, 32), 10).net
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, torch.nn.Identity)


def test_cifar_command_selects_resnet18_and_the_paper_defaults():
    cfg = compose_config(["task=cifar_crop", "width=20", "beta=50"])
    assert (cfg.task.name, cfg.width, cfg.beta, cfg.beta_schedule) == ("cifar_crop", 20, 50, "annealed")
    assert cfg.model.decoder._target_ == "rine.models.ResNet18" and cfg.trainer.max_epochs == 40
    opt = cfg.model.optimizer
    assert (opt.momentum, opt.weight_decay, cfg.model.lr_decay, cfg.model.batch_size) == (0.9, 0.005, 0.97, 128)
    assert cfg.trainer.precision == ("bf16-mixed" if torch.cuda.is_available() else "32-true")
    canonical = compose_config(["task=unq"])  # canonical tasks keep their defaults
    assert canonical.model.decoder._target_ == "rine.models.MLP" and canonical.trainer.max_epochs == 30
    assert canonical.beta == 15


# One image task trains in make test-fast; the other two (~3.5 s of CPU each) in make test.
@pytest.mark.parametrize("task, extra", [("cifar_crop", ["width=8"]),
                                         pytest.param("cifar_channels", [], marks=pytest.mark.slow),
                                         pytest.param("cifar_freq", [], marks=pytest.mark.slow)])
def test_a_few_training_steps_write_per_class_results(train_run, tiny_cifar, task, extra):
    results, run_dir = train_run(
        f"task={task}", *extra, f"task.data_dir={tiny_cifar}", "trainer.max_epochs=1",
        "model.batch_size=8", "model.eval_batch_size=5", "report.last_epochs=1", name=task,
    )
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["status"] == "complete" and on_disk["task"] == task
    assert (on_disk["n_train"], on_disk["n_heldout"], on_disk["n_classes"]) == (20, 9, 10)
    assert on_disk["class_names"] == CLASSES
    per_class = on_disk["per_class_redundancy_bits"]
    # 'truck' is absent from the held-out split: null, and the others are numbers.
    assert len(per_class) == 10 and per_class[9] is None
    assert all(isinstance(v, float) for v in per_class[:9])
    assert on_disk["h_y_bits"] == pytest.approx(np.log2(10))
