"""Regenerate every paper table and figure that can be made here (make paper-figures).

    python scripts/paper_figures.py [--out DIR]

Canonical-task sweeps (Tables 1 and 6, Figure 3 on RDNXOR) are trained when missing by
`python train.py experiment=<name>`, whose default launcher trains each task's runs as one
batched computation (rine.batched): about a minute on a CPU. Runs already complete are
reused, so a second call trains nothing. Figure 4 (the views of an image) is drawn from
CIFAR-10 when data/ holds it, else from the bundled digits. Figures whose runs need CIFAR-10
or a GPU are drawn if their runs exist; otherwise the exact command that produces them is printed.
Outputs (PNG, PDF, Markdown, LaTeX, CSV) go to one folder, default outputs/paper/figures.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# (experiment config, sweep folder, scripts that draw from it). Table 6's runs include
# Table 1's (β = 15, same folder), so experiment=table1 would only find them complete.
CANONICAL = [
    ("table6", "outputs/paper/canonical", [["scripts/make_tables.py", "--runs", "outputs/paper/canonical"]]),
    ("figure3", "outputs/paper/figure3", [["scripts/plot_figure3.py", "--runs", "outputs/paper/figure3"]]),
]
# No training: the views of one image (CIFAR-10 if present, else the bundled digits).
VIEWS = [["scripts/plot_views.py"]]
# Need CIFAR-10 (and in practice a GPU): drawn only from runs that exist.
IMAGE = [
    ("figure1_left", "outputs/paper/figure1_left", [["scripts/plot_figure1.py", "left", "--runs", "outputs/paper/figure1_left"]]),
    ("figure1_right", "outputs/paper/figure1_right", [["scripts/plot_figure1.py", "right", "--runs", "outputs/paper/figure1_right"]]),
]


def call(args: list[str]) -> None:
    print("$ " + " ".join(args), flush=True)
    subprocess.run(args, cwd=ROOT, check=True)


def train_missing(experiment: str) -> None:
    """The experiment's multirun, as a user would start it: the batched launcher trains
    what is missing, each task's runs as one computation, and skips complete runs."""
    start = time.perf_counter()
    call([PYTHON, "train.py", f"experiment={experiment}"])
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
    draw(VIEWS, args.out)

    for experiment, runs, scripts in IMAGE:
        if any((ROOT / runs).rglob("results.json")):
            draw(scripts, args.out)
        else:
            print(f"{experiment}: no runs under {runs}; they need CIFAR-10 (and a GPU for sensible time):\n"
                  f"  python train.py experiment={experiment}")
    print(f"done -> {args.out}")


if __name__ == "__main__":
    main()
