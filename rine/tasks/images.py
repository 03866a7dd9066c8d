"""Image tasks: two views of the same image (crops, colour channels, frequency bands).

Images are decoded once into a uint8 tensor [N, C, H, W]; the splits hold only that tensor
and the labels. `ImageViews` cuts, normalises and augments the sources from a batch of raw
images on whatever device the batch is on (the estimator calls it after moving the batch),
so on an accelerator nothing but indices crosses the bus and no DataLoader workers are needed.
The CPU path is the same code.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rine.data import Split, TaskData, empirical_entropy_bits
from rine.errors import RineError
from rine.unpickle import UnpickleRefused, load_plain_pickle

CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST_FILE = "test_batch"
CIFAR_META_FILE = "batches.meta"
CIFAR_MAX_BYTES = 256 * 2**20  # larger files are refused unread; an official batch file is 31 MB
CIFAR_VIEWS = ("crop", "channels", "freq")
CROP_MODES = ("crop", "mask")


def default_data_dir() -> str:
    return os.environ.get("RINE_DATA") or "data"


class ImageViews(nn.Module):
    """Raw uint8 images [B, C, H, W] -> the list of sources, each [B, c, h, w] float.

    kind="crop": X1 = the first `width` columns, X2 = the last `width` columns. mode="crop"
      feeds the real H x width crop; mode="mask" keeps H x W and zeroes the other columns
      (after normalisation, so zero is the mean pixel), as the authors' code did.
    kind="channels": X1 = red, X2 = blue, one channel each.
    kind="freq": X1 = low-pass, X2 = high-pass of the normalised image via a 2-D FFT mask:
      the low band keeps the frequencies with max(|kx|, |ky|) <= cutoff (a square of side
      2*cutoff + 1 around DC; cutoff=2 is the authors' 5x5 mask), the high band the rest,
      so low + high is the image up to float error.
    Training batches are augmented per view independently: pad `pad` zeros on every side
    and take a random crop of the original size (pad=0: no augmentation).
    """

    def __init__(self, kind: str, mean, std, image_shape, width: int | None = None,
                 mode: str = "crop", cutoff: int = 2, pad: int = 4):
        super().__init__()
        channels, height, full_width = image_shape
        self.kind, self.width, self.mode, self.pad = kind, width, mode, pad
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        if kind == "crop":
            check_width(width, full_width)
            if mode not in CROP_MODES:
                raise RineError(f"task.crop_mode={mode!r} is unknown; choose crop (real crop) or mask (zero-masked)")
            shape = (channels, height, width if mode == "crop" else full_width)
            self.shapes = [shape, shape]
        elif kind == "channels":
            if channels < 3:
                raise RineError(f"the channels views need colour images; these have {channels} channel(s)")
            self.shapes = [(1, height, full_width)] * 2
        elif kind == "freq":
            if not isinstance(cutoff, int) or not 0 <= cutoff < min(height, full_width) // 2:
                raise RineError(f"task.cutoff={cutoff} is invalid; use an integer in 0..{min(height, full_width) // 2 - 1}")
            ky = torch.fft.fftfreq(height, 1 / height).abs()
            kx = torch.fft.fftfreq(full_width, 1 / full_width).abs()
            low = (torch.maximum(ky[:, None], kx[None, :]) <= cutoff).float()
            self.register_buffer("low_mask", low, persistent=False)
            self.shapes = [(channels, height, full_width)] * 2
        else:
            raise RineError(f"task.view={kind!r} is unknown; choose one of: {', '.join(CIFAR_VIEWS)}")

    def cut(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The un-augmented sources of a batch of raw uint8 images."""
        x = (images.float() / 255.0 - self.mean) / self.std
        if self.kind == "crop":
            w, full = self.width, x.shape[-1]
            if self.mode == "crop":
                return [x[..., :w], x[..., full - w:]]
            keep = torch.arange(full, device=x.device)
            return [x * (keep < w), x * (keep >= full - w)]
        if self.kind == "channels":
            return [x[:, 0:1], x[:, 2:3]]
        spectrum = torch.fft.fft2(x)
        low = torch.fft.ifft2(spectrum * self.low_mask).real
        high = torch.fft.ifft2(spectrum * (1 - self.low_mask)).real
        return [low, high]

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """Pad with zeros and take one random crop of the original size per image, in one gather."""
        b, _, h, w = x.shape
        padded = nn.functional.pad(x, (self.pad,) * 4)
        dy = torch.randint(0, 2 * self.pad + 1, (b, 1, 1), device=x.device)
        dx = torch.randint(0, 2 * self.pad + 1, (b, 1, 1), device=x.device)
        rows = dy + torch.arange(h, device=x.device).view(1, h, 1)
        cols = dx + torch.arange(w, device=x.device).view(1, 1, w)
        batch = torch.arange(b, device=x.device).view(b, 1, 1)
        return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # [B, C, h, w]

    def forward(self, images: torch.Tensor, train: bool) -> list[torch.Tensor]:
        views = self.cut(images)
        if train and self.pad > 0:
            views = [self.augment(v) for v in views]  # independent offsets per view
        if images.device.type != "cpu":
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        return views


def check_width(width, full_width: int) -> None:
    if not isinstance(width, int) or isinstance(width, bool) or not 1 <= width <= full_width:
        raise RineError(
            f"width={width} is invalid; the crop width must be an integer in 1..{full_width} "
            f"({full_width // 2}: disjoint halves, {full_width}: identical views)"
        )


def _not_cifar(path: Path, reason: str) -> RineError:
    return RineError(
        f"{path}: not a CIFAR-10 batch file ({reason}); replace {path.parent}/ with the folder unpacked "
        "from the official cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html)"
    )


def _read_cifar_pickle(path: Path):
    """The object in one CIFAR-10 file, read by load_plain_pickle; RineError for anything unreadable."""
    try:
        if path.stat().st_size > CIFAR_MAX_BYTES:
            raise _not_cifar(path, f"{path.stat().st_size / 2**20:.0f} MB, larger than any CIFAR-10 file")
        return load_plain_pickle(path.read_bytes())
    except UnpickleRefused as error:
        raise _not_cifar(path, str(error)) from None
    except OSError as error:
        raise RineError(f"{path}: cannot be read ({error.strerror or type(error).__name__})") from None
    except RineError:
        raise
    except Exception as error:  # whatever bytes made the unpickler raise, the file is no CIFAR
        raise _not_cifar(path, f"unreadable pickle data ({type(error).__name__})") from None


def _str_keys(obj, path: Path, what: str) -> dict:
    if not isinstance(obj, dict):
        raise _not_cifar(path, f"holds a {type(obj).__name__}, not the dict of {what}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_labels(labels, n: int, path: Path) -> np.ndarray:
    """The 'labels' entry as int64 [n] in 0..9 (the official files hold a list of int)."""
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu":
        values = labels.tolist()
    elif isinstance(labels, (list, tuple)) and all(type(v) is int for v in labels):
        values = labels
    else:
        raise _not_cifar(path, "'labels' is not a list of integers")
    if len(values) != n:
        raise _not_cifar(path, f"{len(values)} labels for {n} images")
    outside = next((v for v in values if not 0 <= v <= 9), None)
    if outside is not None:
        raise _not_cifar(path, f"a label outside 0..9: {str(outside)[:20]}")
    return np.array(values, dtype=np.int64)


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, 3, 32, 32] and labels int64 [N] (in 0..9) of one official batch file.

    The structure is checked in full ('data' uint8 [N, 3072], 'labels' N integers in 0..9),
    so a wrong file is refused whole, never half used. Raises RineError.
    """
    path = Path(path)
    batch = _str_keys(_read_cifar_pickle(path), path, "'data' and 'labels'")
    data = batch.get("data")
    if not isinstance(data, np.ndarray):
        raise _not_cifar(path, "no 'data' array")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[0] == 0 or data.shape[1] != 3 * 32 * 32:
        raise _not_cifar(path, f"'data' is {data.dtype} {list(data.shape)}, not uint8 [N, 3072]")
    if "labels" not in batch:
        hint = ", only 'fine_labels': CIFAR-100?" if "fine_labels" in batch else ""
        raise _not_cifar(path, f"no 'labels'{hint}")
    labels = _cifar_labels(batch["labels"], len(data), path)
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar_meta(path: str | Path) -> list[str]:
    """The 10 class names of batches.meta ('label_names'). Raises RineError."""
    path = Path(path)
    meta = _str_keys(_read_cifar_pickle(path), path, "'label_names'")
    names = meta.get("label_names")
    if not isinstance(names, (list, tuple)) or len(names) != 10 or not all(isinstance(n, (str, bytes)) for n in names):
        raise _not_cifar(path, "no 'label_names' list of 10 class names")
    return [n.decode("latin1") if isinstance(n, bytes) else n for n in names]


def require_cifar10(data_dir: str | Path) -> None:
    """One line naming both ways to provide CIFAR-10 when any of its files is missing."""
    folder = Path(data_dir) / CIFAR_DIR
    missing = [n for n in (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE, CIFAR_META_FILE) if not (folder / n).is_file()]
    if missing:
        raise RineError(
            f"CIFAR-10 not found: {folder} lacks {', '.join(missing)}; put the official python version "
            f"(cifar-10-python.tar.gz, unpacked) under {data_dir}/ (or point task.data_dir / $RINE_DATA at it), "
            "or add task.download=true to fetch it"
        )


def download_cifar10(data_dir: str | Path) -> None:
    """Fetch and unpack the official archive into data_dir with torchvision's MD5-checked downloader.

    Only the archive is handled here (torchvision's CIFAR10 dataset would also unpickle the
    batches with plain pickle). Raises RineError in one line when that fails (no network, an
    interrupted or corrupt download, whose partial archive is removed, or an archive that does
    not unpack), saying where to put the files by hand.
    """
    import http.client
    import urllib.error

    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity, download_and_extract_archive

    data_dir = Path(data_dir)
    archive = data_dir / CIFAR10.filename
    try:
        download_and_extract_archive(CIFAR10.url, str(data_dir), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5)
        return
    except Exception as error:  # urllib, socket, http.client, tarfile, torchvision's MD5 check
        failure = error
    reason = " ".join(str(getattr(failure, "reason", None) or failure).split())[:160] or type(failure).__name__
    if isinstance(failure, (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException)):
        reason += "; no network?"
    complete = False
    with contextlib.suppress(OSError):
        complete = check_integrity(str(archive), CIFAR10.tgz_md5)
        if archive.is_file() and not complete:
            archive.unlink()  # an interrupted download: a later attempt must not mistake it for the data
            reason += f"; removed the incomplete {archive.name}"
    what = f"unpacking {archive}" if complete else f"downloading CIFAR-10 from {CIFAR10.url}"
    raise RineError(
        f"{what} failed ({reason}); put the official cifar-10-python.tar.gz, unpacked, so that "
        f"{data_dir / CIFAR_DIR}/ holds data_batch_1..5, test_batch and batches.meta (or point "
        "task.data_dir / $RINE_DATA at a folder holding cifar-10-batches-py/), and run without task.download"
    )


def load_cifar10(data_dir: str | Path, download: bool = False):
    """(train images, train labels, test images, test labels, class names); images uint8 [N, 3, 32, 32].

    The official python version's files, read with load_plain_pickle (nothing in them is run) and
    checked in full. Raises RineError for missing files, a failed download or a file that is
    not a CIFAR-10 batch file.
    """
    data_dir = Path(data_dir)
    folder = data_dir / CIFAR_DIR
    if download:
        try:
            require_cifar10(data_dir)
        except RineError:
            download_cifar10(data_dir)
    require_cifar10(data_dir)

    def read(names):
        batches = [read_cifar_batch(folder / name) for name in names]
        images = np.concatenate([images for images, _ in batches])
        labels = np.concatenate([labels for _, labels in batches])
        return torch.from_numpy(images), torch.from_numpy(labels)

    train_x, train_y = read(CIFAR_TRAIN_FILES)
    test_x, test_y = read([CIFAR_TEST_FILE])
    return train_x, train_y, test_x, test_y, read_cifar_meta(folder / CIFAR_META_FILE)


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the training images in [0, 1] (in chunks: no 600 MB float copy)."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    square = torch.zeros_like(total)
    for chunk in images.split(4096):
        x = chunk.double() / 255.0
        total += x.sum((0, 2, 3))
        square += (x * x).sum((0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (square / count - mean**2).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()


def image_task_data(name, train_x, train_y, test_x, test_y, class_names, views_kwargs) -> TaskData:
    mean, std = channel_stats(train_x)
    views = ImageViews(mean=mean, std=std, image_shape=tuple(train_x.shape[1:]), **views_kwargs)
    n_classes = len(class_names)
    return TaskData(
        name=name,
        train=Split([train_x], train_y),
        heldout=Split([test_x], test_y),
        n_classes=n_classes,
        # The training labels' entropy: log2(10) exactly for CIFAR-10's balanced classes.
        h_y_bits=empirical_entropy_bits(train_y, n_classes),
        h_y_basis="empirical",
        class_names=list(class_names),
        views=views,
    )


class CifarTask:
    """CIFAR-10 (train 50,000 / held-out = the official 10,000 test images) seen through two views.

    view: crop | channels | freq (see ImageViews); width: crop width 1..32; crop_mode: crop |
    mask; cutoff: the frequency views' low-pass radius; pad: augmentation padding (0: none).
    data_dir holds cifar-10-batches-py/ (default data/ or $RINE_DATA); download=true fetches it.
    n_train / n_heldout: use only the first N images of a split (quick checks); null: all.
    """

    in_memory = False  # sources are cut from the images batch by batch (views): never batched

    def __init__(self, name: str, view: str, width: int | None = None, crop_mode: str = "crop",
                 cutoff: int = 2, pad: int = 4, data_dir: str | None = None, download: bool = False,
                 n_train: int | None = None, n_heldout: int | None = None):
        self.name = name
        self.views_kwargs = dict(kind=view, width=width, mode=crop_mode, cutoff=cutoff, pad=pad)
        # Checks the view settings (e.g. the width) before any data is read or anything written.
        ImageViews(mean=[0.0] * 3, std=[1.0] * 3, image_shape=(3, 32, 32), **self.views_kwargs)
        self.data_dir = data_dir or default_data_dir()
        self.download = download
        if not download:  # missing data stops the run before its folder is written
            require_cifar10(self.data_dir)
        folder = Path(self.data_dir) / CIFAR_DIR
        # hashed: a complete run is reused only for the same images
        self.source_files = [] if download else [folder / n for n in (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE, CIFAR_META_FILE)]
        self.n_train, self.n_heldout = n_train, n_heldout

    def setup(self, seed: int) -> TaskData:
        train_x, train_y, test_x, test_y, class_names = load_cifar10(self.data_dir, self.download)
        train = slice(None, self.n_train)
        heldout = slice(None, self.n_heldout)
        return image_task_data(self.name, train_x[train], train_y[train], test_x[heldout], test_y[heldout],
                                class_names, self.views_kwargs)


class DigitsCropTask:
    """scikit-learn's bundled 8x8 digits (1,797 real images, offline), left/right crops of `width` 1..8.

    A seeded split: `holdout_fraction` of the images are held out. Pixels 0..16 are stored as
    uint8 scaled to 0..255 so that the CIFAR views code applies unchanged; pad=0: no augmentation.
    """

    in_memory = False  # sources are cut from the images batch by batch (views): never batched

    def __init__(self, name: str, width: int | None, holdout_fraction: float = 0.2,
                 crop_mode: str = "crop", pad: int = 0):
        check_width(width, 8)
        if not 0 < holdout_fraction < 1:
            raise RineError(f"task.holdout_fraction={holdout_fraction} must be in (0, 1)")
        self.name = name
        self.holdout_fraction = holdout_fraction
        self.views_kwargs = dict(kind="crop", width=width, mode=crop_mode, pad=pad)
        self.source_files = []  # the images ship inside scikit-learn

    def setup(self, seed: int) -> TaskData:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.from_numpy(np.round(digits.images * (255 / 16)).astype(np.uint8))[:, None]  # [N, 1, 8, 8]
        labels = torch.from_numpy(digits.target.astype(np.int64))
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
        n_heldout = math.ceil(len(labels) * self.holdout_fraction)
        train, heldout = order[n_heldout:], order[:n_heldout]
        return image_task_data(self.name, images[train], labels[train], images[heldout], labels[heldout],
                                [str(d) for d in range(10)], self.views_kwargs)
