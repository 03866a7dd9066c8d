"""Recompute the cached dit redundancy measures of the canonical tasks (make reference-values).

    python scripts/reference_values.py [--timeout SECONDS] [--tasks unq and ...] [--force]

Writes rine/reference_values.json, which ships with the package so that runs and tables
never wait on dit. Each measure runs in its own process under the time budget; one that
runs out is stored as a timeout (tables print "n/a (timeout)") and retried only when a
later call gives a larger budget. Results are exact up to dit's optimiser tolerance;
PID_GH starts at random and is seeded (rine.references.DIT_SEED).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rine.pmf import load_pmf  # noqa: E402
from rine.references import DIT_MEASURES, SHIPPED_CACHE, describe, dit_references, pmf_key  # noqa: E402

CANONICAL = ("unq", "and", "rdnxor", "imperfectrdn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=300, help="seconds per measure and task (default 300)")
    parser.add_argument("--tasks", nargs="+", default=list(CANONICAL))
    parser.add_argument("--force", action="store_true", help="recompute even what is cached")
    args = parser.parse_args()
    if args.force and SHIPPED_CACHE.exists():
        SHIPPED_CACHE.unlink()
    print(f"{'task':<13} {'key':<17}" + "".join(f"{m:>16}" for m in DIT_MEASURES))
    for task in args.tasks:
        pmf = load_pmf(task)
        entries = dit_references(pmf, args.timeout, cache_path=SHIPPED_CACHE, name=task)
        cells = "".join(f"{describe(entries[m]):>16}" for m in DIT_MEASURES)
        print(f"{task:<13} {pmf_key(pmf):<17}{cells}", flush=True)
    print(f"-> {SHIPPED_CACHE}")


if __name__ == "__main__":
    main()
