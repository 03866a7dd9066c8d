"""The inputs that once fooled rine, under the default objective and under the paper's setting.

    python scripts/trust_cases.py [--seeds N] [--out DIR] [override ...]

Writes each case's pmf or .npz to --out, trains it (seeds 0..N−1) with the default settings
and with the paper's (`objective=paper model=mlp_paper`), and prints one row per case and
setting: the truth, I∩ (mean over seeds), the held-out disagreement (mean total variation),
whether the constraint was met and the estimate valid. README "The agreement constraint"
quotes its output.
"""

import argparse
import itertools
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

SETTINGS = {"default": [], "paper": ["objective=paper", "model=mlp_paper"]}


def copy_gate(folder: Path, symbols: int) -> Path:
    letters = "abcdefgh"[:symbols]
    path = folder / f"copy{symbols**2}.csv"
    rows = [f"{a},{b},{a}{b},1/{symbols**2}" for a, b in itertools.product(letters, letters)]
    path.write_text("x1,x2,y,p\n" + "\n".join(rows) + "\n")
    return path


def cases(folder: Path) -> list[tuple[str, float, list[str]]]:
    """(name, true redundancy in bits, train.py overrides)."""
    same64 = folder / "same64.csv"
    same64.write_text("x1,x2,y,p\n" + "\n".join(f"s{i},s{i},s{i},1/64" for i in range(64)) + "\n")
    constant = folder / "constant.csv"
    constant.write_text("x1,x2,y,p\nzero,0,0,1/2\nzero,1,1,1/2\n")
    rng = np.random.default_rng(0)
    y = (rng.random(20_000) < 0.01).astype(int)
    rare = folder / "constant_rare.npz"
    np.savez(rare, x1=np.ones(len(y)), x2=y.astype(float), y=y)
    pmf = ["task=pmf", "task.reference_timeout_s=0"]
    return [
        ("unq (K=4)", 0.0, ["task=unq"]),
        ("rdnxor (K=4)", 1.0, ["task=rdnxor"]),
        ("copy gate K=16", 0.0, [*pmf, f"pmf_file={copy_gate(folder, 4)}"]),
        ("copy gate K=36", 0.0, [*pmf, f"pmf_file={copy_gate(folder, 6)}"]),
        ("copy gate K=64", 0.0, [*pmf, f"pmf_file={copy_gate(folder, 8)}"]),
        ("X1=X2=Y, K=64", 6.0, [*pmf, f"pmf_file={same64}"]),
        ("constant x1 (pmf)", 0.0, [*pmf, f"pmf_file={constant}"]),
        ("constant x1, 1% class (arrays)", 0.0, ["task=arrays", f"data_file={rare}"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "outputs" / "trust_cases"))
    parser.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. trainer.max_epochs=15")
    args = parser.parse_args()
    from rine.config import compose_config
    from rine.console import quiet_framework_output
    from rine.run import run

    quiet_framework_output()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{'case':<32} {'setting':<8} {'truth':>6} {'I∩':>8} {'TV':>6}  constraint  valid  seconds")
    for name, truth, overrides in cases(out):
        for setting, extra in SETTINGS.items():
            start = time.perf_counter()
            results = []
            for seed in range(args.seeds):
                slug = re.sub(r"\W+", "_", name).strip("_")
                folder = out / "runs" / f"{slug}_{setting}_seed{seed}"
                results.append(run(compose_config([*overrides, *extra, f"seed={seed}", *args.overrides]), folder))
            bits = np.mean([r["redundancy_bits"] for r in results])
            tv = np.mean([r["disagreement_tv"] for r in results])
            met = "met" if all(r["constraint_met"] for r in results) else "NOT met"
            valid = "yes" if all(r["valid"] for r in results) else "NO"
            print(f"{name:<32} {setting:<8} {truth:>6.2f} {bits:>8.3f} {tv:>6.3f}  {met:<10}  {valid:<5}  "
                  f"{time.perf_counter() - start:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
