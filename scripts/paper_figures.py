"""Regenerate every paper table and figure that can be made here (make paper-figures).

    python scripts/paper_figures.py [--out DIR]

Canonical-task sweeps (Tables 1 and 6, Figure 3 on RDNXOR) are trained when missing, each
task's runs as one batched computation (rine.batched) into exactly the folders and with
exactly the configs that `python train.py experiment=<name>` uses: about a minute on a
CPU. Runs already complete are reused, by this script and by train.py alike, so a second
call trains nothing. Figures whose runs need CIFAR-10 or a GPU are drawn if
their runs exist; otherwise the exact command that produces them is printed.
Outputs (PNG, PDF, Markdown, LaTeX, CSV) go to one folder, default outputs/paper/figures.
"""

import argparse
import itertools
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable

# (experiment config, sweep folder, scripts that draw from it)
CANONICAL = [
    ("table6", "outputs/paper/canonical", []),
    ("table1", "outputs/paper/canonical", [["scripts/make_tables.py", "--runs", "outputs/paper/canonical"]]),
    ("figure3", "outputs/paper/figure3", [["scripts/plot_figure3.py", "--runs", "outputs/paper/figure3"]]),
]
# Need CIFAR-10 (and in practice a GPU): drawn only from runs that exist.
IMAGE = [
    ("figure1_left", "outputs/paper/figure1_left", [["scripts/plot_figure1.py", "left", "--runs", "outputs/paper/figure1_left"]]),
    ("figure1_right", "outputs/paper/figure1_right", [["scripts/plot_figure1.py", "right", "--runs", "outputs/paper/figure1_right"]]),
]


def call(args: list[str]) -> None:
    print("$ " + " ".join(args), flush=True)
    subprocess.run(args, cwd=ROOT, check=True)


def sweep_runs(experiment: str) -> list[tuple]:
    """(config, run dir) of every job of an experiment's multirun, as Hydra would make them."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from rine.run import CONFIG_DIR, compose_config

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        hydra_cfg = compose("train", overrides=[f"experiment={experiment}"], return_hydra_config=True).hydra
    params = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in hydra_cfg.sweeper.params.items()])
    axes = [[f"{o.key_or_group}={v}" for v in (o.sweep_string_iterator() if o.is_sweep_override()
                                                 else [o.get_value_element_as_str()])] for o in params]
    sweep = OmegaConf.to_container(hydra_cfg.sweep, resolve=False)  # subdir: a template per job
    runs = []
    for choice in itertools.product(*axes):
        cfg = compose_config([f"experiment={experiment}", *choice])
        job = OmegaConf.create({**OmegaConf.to_container(cfg, resolve=True), "_subdir": sweep["subdir"]})
        runs.append((cfg, ROOT / sweep["dir"] / job._subdir))
    return runs


def train_missing(experiment: str) -> None:
    from rine.batched import run_many
    from rine.run import format_summary, quiet_framework_output

    quiet_framework_output()
    runs = sweep_runs(experiment)
    start = time.perf_counter()
    print(f"{experiment}: {len(runs)} runs (complete ones are reused)", flush=True)
    for results in run_many([c for c, _ in runs], [d for _, d in runs]):
        print("  " + format_summary(results), flush=True)
    print(f"{experiment}: {time.perf_counter() - start:.1f} s", flush=True)


def draw(scripts: list[list[str]], out: str) -> None:
    for script in scripts:
        call([PYTHON, *script, "--out", out])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/paper/figures")
    args = parser.parse_args()

    for experiment, _, scripts in CANONICAL:
        train_missing(experiment)
        draw(scripts, args.out)

    for experiment, runs, scripts in IMAGE:
        command = f"python train.py experiment={experiment}"
        if not (ROOT / "configs" / "experiment" / f"{experiment}.yaml").exists():
            print(f"{experiment}: needs the CIFAR-10 tasks, which this version does not have yet.")
        elif any((ROOT / runs).rglob("results.json")):
            draw(scripts, args.out)
        else:
            print(f"{experiment}: no runs under {runs}; they need CIFAR-10 (and a GPU for sensible time):\n  {command}")
    print(f"done -> {args.out}")


if __name__ == "__main__":
    main()
