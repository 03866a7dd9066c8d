"""Paper Figure 4: what each view of an image looks like (crops, colour channels, frequency bands).

    python scripts/plot_views.py [--data-dir DIR] [--out DIR] [--width W] [--cutoff C] [--index I]

One held-out image cut by the code the image tasks train on (rine.tasks.images.ImageViews, with
the training images' channel statistics; no augmentation): CIFAR-10 when --data-dir
(default $RINE_DATA, else data/) holds cifar-10-batches-py/, otherwise scikit-learn's
bundled 8x8 digits (offline). Rows: the left and right crops of --width columns (default:
half the image, disjoint halves), the red and blue channels (CIFAR-10 only: the digits have
one channel, so they have no colour-channel view), and the low- and high-pass bands
(max(|kx|, |ky|) <= --cutoff, default 2). --index picks the held-out image (default: the
first car, as in the paper, or the first digit). Writes figure4.{png,pdf}.
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rine.errors import RineError  # noqa: E402
from rine.tasks.images import CIFAR_DIR, CifarTask, DigitsCropTask, ImageViews, default_data_dir  # noqa: E402
from rine.files import check_out_dir, save_figure_atomic  # noqa: E402

NO_CHANNELS = "no colour-channel view: the digits are greyscale (1 channel)"
OUTSIDE = "#f6d5c0"  # pale orange, in no image: the columns a crop does not see


def load(data_dir: str | None, width: int | None):
    """(dataset label, TaskData with the crop views) of CIFAR-10 if present, else the digits."""
    chosen = Path(data_dir or default_data_dir())
    if data_dir is not None and not chosen.is_dir():
        raise RineError(f"--data-dir {chosen} does not exist; give the folder that holds {CIFAR_DIR}/")
    if (chosen / CIFAR_DIR).exists():
        data = CifarTask("cifar_crop", view="crop", width=16 if width is None else width, data_dir=str(chosen)).setup(0)
        return "CIFAR-10", data
    print(f"CIFAR-10 not found under {chosen}/ ({CIFAR_DIR}/): drawing scikit-learn's bundled 8x8 digits instead")
    return "digits", DigitsCropTask("digits_crop", width=4 if width is None else width).setup(0)


def pick(data, index: int | None) -> int:
    n = len(data.heldout)
    if index is None:
        cars = [i for i, y in enumerate(data.heldout.y.tolist()) if data.class_names[y] == "automobile"]
        return cars[0] if cars else 0
    if not 0 <= index < n:
        raise RineError(f"--index {index} is out of range; the held-out split has {n} images (0..{n - 1})")
    return index


def views_of(data, image, cutoff: int) -> dict:
    """{row: (X1, X2) as [c, h, w] arrays in the normalised units the decoders see, or None}."""
    crop = data.views  # the task's own crop views
    stats = dict(mean=crop.mean.flatten().tolist(), std=crop.std.flatten().tolist(), image_shape=tuple(image.shape[1:]))
    rows = {"crops": crop}
    rows["channels"] = ImageViews("channels", pad=0, **stats) if image.shape[1] >= 3 else None
    rows["frequencies"] = ImageViews("freq", cutoff=cutoff, pad=0, **stats)
    return {name: None if v is None else [x[0].numpy() for x in v(image, train=False)] for name, v in rows.items()}


def shown(x: np.ndarray, mean: np.ndarray, std: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
    """A view back in pixel units [h, w, c] in [0, 1]: x·std + mean (or + offset, e.g. mid-grey)."""
    pixels = x * std[:, None, None] + (mean[:, None, None] if offset is None else offset)
    return np.clip(pixels.transpose(1, 2, 0), 0, 1)


def draw(dataset: str, data, index: int, width: int, cutoff: int, views: dict):
    image = data.heldout.sources[0][index].float().numpy() / 255.0  # [C, H, W]
    mean, std = data.views.mean.flatten().numpy(), data.views.std.flatten().numpy()
    channels, height, full = image.shape
    grey = dict(cmap="gray", vmin=0, vmax=1) if channels == 1 else {}

    def show(ax, pixels, title, extent=None):
        ax.imshow(pixels[..., 0] if channels == 1 and pixels.shape[-1] == 1 else pixels, extent=extent,
                  interpolation="nearest", **grey)
        ax.set_xlim(-0.5, full - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
        ax.set_title(title, fontsize=8)
        ax.set_facecolor(OUTSIDE)
        ax.set_xticks([])
        ax.set_yticks([])

    fig, axes = plt.subplots(3, 3, figsize=(5.4, 5.8), layout="constrained")
    label = data.class_names[int(data.heldout.y[index])]
    label = f"digit {label}" if dataset == "digits" else label
    original = image.transpose(1, 2, 0)
    for row in axes:
        show(row[0], original, f"image: {label}")

    x1, x2 = views["crops"]
    w = x1.shape[-1]  # crop_mode=crop: the real width-column crops, drawn where they lie
    show(axes[0, 1], shown(x1, mean, std), f"X1: first {width} columns", extent=(-0.5, w - 0.5, height - 0.5, -0.5))
    show(axes[0, 2], shown(x2, mean, std), f"X2: last {width} columns",
         extent=(full - w - 0.5, full - 0.5, height - 0.5, -0.5))

    if views["channels"] is None:
        for ax in axes[1, 1:]:
            ax.axis("off")
        note = axes[1, 1].text(1.1, 0.5, NO_CHANNELS.replace(": ", ":\n"), ha="center", va="center", fontsize=8,
                               transform=axes[1, 1].transAxes)
        note.set_in_layout(False)  # spans two panels: the layout keeps both columns as wide as the others
    else:
        for ax, x, channel, name in ((axes[1, 1], views["channels"][0], 0, "red"), (axes[1, 2], views["channels"][1], 2, "blue")):
            value = shown(x, mean[channel:channel + 1], std[channel:channel + 1])[..., 0]
            tinted = np.zeros((*value.shape, 3))
            tinted[..., channel] = value
            show(ax, tinted, f"X{1 if channel == 0 else 2}: {name} channel")

    low, high = views["frequencies"]
    show(axes[2, 1], shown(low, mean, std), f"X1: low-pass (max|k| ≤ {cutoff})")
    # The high band has zero mean: drawn around mid-grey, at the same scale as the image.
    show(axes[2, 2], shown(high, mean, std, offset=np.full((channels, 1, 1), 0.5)), "X2: high-pass (+ mid-grey)")

    for ax, title in zip(axes[:, 0], ("crops", "colour channels", "frequency bands")):
        ax.set_ylabel(title, fontsize=9)
    fig.suptitle(f"The views of one held-out {dataset} image ({height}x{full}), as the decoders see them\n"
                 "(pale orange: columns outside a crop)", fontsize=9)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder holding cifar-10-batches-py/ (default $RINE_DATA, else data/)")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "paper" / "figures"))
    parser.add_argument("--width", type=int, default=None, help="crop width (default: half the image)")
    parser.add_argument("--cutoff", type=int, default=2, help="low-pass radius of the frequency views (default 2)")
    parser.add_argument("--index", type=int, default=None, help="held-out image to draw (default: the first car)")
    args = parser.parse_args()
    try:
        out = check_out_dir(args.out)
        dataset, data = load(args.data_dir, args.width)
        index = pick(data, args.index)
        image = data.heldout.sources[0][index:index + 1]
        views = views_of(data, image, args.cutoff)
    except RineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    width = data.views.width
    label = data.class_names[int(data.heldout.y[index])]
    channels = "red vs blue channels" if views["channels"] is not None else NO_CHANNELS
    print(f"{dataset}: held-out image {index} ({label}); crops of {width} columns; {channels}; "
          f"low vs high pass (cutoff {args.cutoff})")
    fig = draw(dataset, data, index, width, args.cutoff, views)
    written = save_figure_atomic(fig, out / "figure4")
    print("-> " + ", ".join(map(str, written)))


if __name__ == "__main__":
    main()
