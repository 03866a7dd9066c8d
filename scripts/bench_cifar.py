"""Benchmark: RINE training speed with two ResNet-18 decoders on CIFAR-sized synthetic images.

    python scripts/bench_cifar.py [--batches N] [--warmup N] [--view crop|channels|freq] [override ...]

Random uint8 images stand in for CIFAR-10 (the speed does not depend on the pixels), so
it runs anywhere, without the data set. Everything else is the real training code: the
task config's model and trainer (task=cifar_crop width=16 by default: ResNet-18, batch
128, bf16 autocast and channels_last on a GPU, 32-bit on a CPU), views cut and augmented
per batch on the device, Lightning's fit loop with the module's training and held-out steps.
Times `--batches` training batches after `--warmup` untimed ones (and as many held-out
batches), then prints images/s and the projected seconds per epoch (50,000 training +
10,000 held-out images) and per 40-epoch run. On a CPU keep --batches small: a few batches
of a ResNet-18 already take a minute (and set model.eval_batch_size=128).
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402

from rine.config import build, compose_config  # noqa: E402
from rine.data import TensorBatches  # noqa: E402
from rine.console import fail, quiet_framework_output  # noqa: E402
from rine.tasks.images import image_task_data  # noqa: E402
from rine.training import build_estimator  # noqa: E402

CIFAR_TRAIN, CIFAR_TEST = 50_000, 10_000


class BatchClock(pl.Callback):
    """Wall time of the timed training and held-out batches (after the warm-up ones)."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.marks: dict[str, list[float]] = {"train": [], "val": []}

    def _mark(self, stage: str, module, batch_idx: int) -> None:
        if batch_idx >= self.warmup - 1:  # the end of the last warm-up batch starts the clock
            if module.device.type == "cuda":
                torch.cuda.synchronize(module.device)
            self.marks[stage].append(time.perf_counter())

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self._mark("train", module, batch_idx)

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        self._mark("val", module, batch_idx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20, help="timed batches per stage (default 20; use 3 on a CPU)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first (default 3)")
    parser.add_argument("--view", default="crop", choices=["crop", "channels", "freq"])
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. width=32 model.batch_size=256")
    args = parser.parse_args()
    if args.warmup < 1 or args.batches < 1:
        fail("--warmup and --batches must be at least 1")
    quiet_framework_output()
    task = {"crop": "cifar_crop", "channels": "cifar_channels", "freq": "cifar_freq"}[args.view]
    cfg = compose_config([f"task={task}", *args.overrides])
    if cfg.model.get("threads"):
        torch.set_num_threads(cfg.model.threads)
    pl.seed_everything(0, verbose=False)

    steps = args.warmup + args.batches
    batch, eval_batch = cfg.model.batch_size, cfg.model.eval_batch_size
    generator = torch.Generator().manual_seed(0)

    def images(n):
        return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)

    views = dict(kind=cfg.task.view, width=cfg.task.get("width"), mode=cfg.task.get("crop_mode", "crop"),
                 cutoff=cfg.task.get("cutoff", 2), pad=cfg.task.pad)
    data = image_task_data("synthetic", images(batch * steps), torch.arange(batch * steps) % 10,
                           images(eval_batch * steps), torch.arange(eval_batch * steps) % 10,
                           [str(c) for c in range(10)], views)
    module = build_estimator(cfg, data)  # the decoders and objective a run trains
    module.beta = float(cfg.beta)  # the agreement term's cost is part of every step
    clock = BatchClock(args.warmup)
    trainer = build(cfg.trainer, max_epochs=1, callbacks=[clock], logger=False, enable_checkpointing=False,
                    limit_train_batches=steps, limit_val_batches=steps, default_root_dir=str(ROOT / "outputs" / "bench"))
    device = trainer.strategy.root_device
    data.train, data.heldout = data.train.to(device), data.heldout.to(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"{task} width={cfg.get('width')}  device: {name}  precision: {cfg.trainer.precision}  "
          f"batch {batch} (held-out {eval_batch})  {args.batches} timed batches after {args.warmup} warm-up")
    trainer.fit(module, train_dataloaders=TensorBatches(data.train, batch, shuffle=True),
                val_dataloaders=TensorBatches(data.heldout, eval_batch, shuffle=False))

    train_ips = batch * args.batches / (clock.marks["train"][-1] - clock.marks["train"][0])
    val_ips = eval_batch * args.batches / (clock.marks["val"][-1] - clock.marks["val"][0])
    epoch_s = CIFAR_TRAIN / train_ips + CIFAR_TEST / val_ips
    epochs = cfg.trainer.max_epochs
    print(f"training: {train_ips:,.0f} images/s (two decoders, one optimizer step per batch)")
    print(f"held-out: {val_ips:,.0f} images/s")
    print(f"projected: {epoch_s:,.1f} s/epoch, {epoch_s * epochs / 60:,.1f} min for {epochs} epochs "
          f"(target: under 3 min on one H100/H200-class GPU)")


if __name__ == "__main__":
    main()
