"""Redundancy measures of other PID definitions, through dit, with time budgets and a cache.

dit's optimisers can be slow (PID_GH: ~90 s on UNQ, no answer on RDNXOR within 25 min on
a 2-core CPU), so each measure runs in its own process with a time budget, and every
outcome (value, timeout or error) is cached on disk, keyed by the pmf's content. The
cache for the four canonical tasks ships in rine/reference_values.json and is made by
`make reference-values` (scripts/reference_values.py). Other pmfs are cached in
$RINE_CACHE_DIR (default ~/.cache/rine).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import queue
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from rine.files import cache_dir, write_json_atomic
from rine.pmf import JointPmf

SHIPPED_CACHE = Path(__file__).parent / "reference_values.json"

# results.json key -> dit class. I_min is Williams & Beer's measure (PID_WB).
DIT_MEASURES = {
    "i_gh": "PID_GH",
    "i_broja": "PID_BROJA",
    "i_mmi": "PID_MMI",
    "i_min": "PID_WB",
    "i_prec": "PID_Prec",
}
DIT_SEED = 0  # PID_GH starts its optimiser at random: seed it so the cache is reproducible
# Computed for a new pmf by default: exact and quick (milliseconds once dit is loaded). The
# optimisers I_GH and I∩^≺ can take minutes to hours: they are computed only when asked for.
FAST_MEASURES = ("i_broja", "i_mmi", "i_min")
# Address space of the child computing dit's measures: an optimiser once tried to allocate
# terabytes; past the cap it fails (reported as an error) instead of swapping the machine.
MEMORY_CAP_BYTES = 4 << 30


def user_cache_path() -> Path:
    return cache_dir() / "reference_values.json"


def pmf_key(pmf: JointPmf) -> str:
    """A content hash: the same distribution (symbols and probabilities) gives the same key."""
    payload = json.dumps(
        {
            "sources": pmf.source_symbols,
            "target": pmf.target_symbols,
            "p": np.round(pmf.table, 12).ravel().tolist(),
            "shape": pmf.table.shape,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _to_dit(pmf: JointPmf):
    import dit

    outcomes, probs = [], []
    for cell in zip(*np.nonzero(pmf.table)):
        symbols = [pmf.source_symbols[i][cell[i]] for i in range(pmf.n_sources)]
        outcomes.append((*symbols, pmf.target_symbols[cell[-1]]))
        probs.append(float(pmf.table[cell]))
    return dit.Distribution(outcomes, probs)


def _dit_worker(pmf: JointPmf, names: list[str], results: multiprocessing.Queue) -> None:
    """Computes each measure in turn and reports it as soon as it is done."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP_BYTES, MEMORY_CAP_BYTES))
    except (ImportError, ValueError, OSError):
        pass  # no cap where the platform has none (the time budget still holds)
    try:
        import dit.pid

        distribution = _to_dit(pmf)
    except ImportError as error:
        for name in names:
            results.put((name, "unavailable", f"{type(error).__name__}: {error}"))
        return
    n = pmf.n_sources
    bottom = tuple((i,) for i in range(n))  # {X1}{X2}...{Xn}: the full redundancy
    for name in names:
        try:
            np.random.seed(DIT_SEED)
            pid = getattr(dit.pid, DIT_MEASURES[name])(distribution, [[i] for i in range(n)], [n])
            results.put((name, "ok", float(pid.get_red(bottom))))
        except ImportError as error:  # e.g. PID_Prec's optional solver
            results.put((name, "unavailable", f"{type(error).__name__}: {error}"))
        except MemoryError:
            results.put((name, "error", f"needed more than the {MEMORY_CAP_BYTES >> 30} GiB memory cap"))
        except Exception as error:  # noqa: BLE001 - a solver failure is reported, not raised
            results.put((name, "error", f"{type(error).__name__}: {error}"))


@contextmanager
def _main_script_hidden():
    """Start a spawned child without re-running the parent's main script: spawn imports it in
    the child, so a user's script without an `if __name__ == "__main__":` guard would train
    again there (and crash). The worker needs nothing from it."""
    main = sys.modules.get("__main__")
    saved = {key: getattr(main, key) for key in ("__file__", "__spec__") if hasattr(main, key)}
    try:
        if "__file__" in saved:
            del main.__file__
        if "__spec__" in saved:
            main.__spec__ = None  # read by multiprocessing without a default
        yield
    finally:
        for key, value in saved.items():
            setattr(main, key, value)


def compute_dit_measures(pmf: JointPmf, names: list[str], timeout_s: float,
                         budget_s: float | None = None) -> dict[str, dict]:
    """dit measures computed in a child process (memory-capped); each gets `timeout_s` seconds,
    and all of them together at most `budget_s` (None: no total), child start-up included.

    A measure that runs out of time is recorded as a timeout and the child is killed; the
    measures after it start again in a fresh child. Those the total budget leaves no time for
    are "not computed (budget)" (not cached: a later run with time may compute them).
    """
    entries: dict[str, dict] = {}
    pending = list(names)
    context = multiprocessing.get_context("spawn")
    deadline = None if budget_s is None else time.perf_counter() + budget_s
    while pending:
        if deadline is not None and time.perf_counter() >= deadline:
            entries.update({name: {"status": "not computed (budget)"} for name in pending})
            break
        results = context.Queue()
        worker = context.Process(target=_dit_worker, args=(pmf, pending, results), daemon=True)
        start = time.perf_counter()
        with _main_script_hidden():
            worker.start()
        startup_s = 15.0  # the first wait also covers the child's start-up and dit's import
        try:
            while pending:
                wait = timeout_s + startup_s
                if deadline is not None:
                    wait = min(wait, max(deadline - time.perf_counter(), 0.0))
                try:
                    name, status, value = results.get(timeout=wait)
                    startup_s = 0.0
                except queue.Empty:
                    if deadline is not None and time.perf_counter() >= deadline:
                        entries.update({name: {"status": "not computed (budget)"} for name in pending})
                        pending = []
                    else:
                        entries[pending.pop(0)] = {"status": "timeout", "timeout_s": timeout_s}
                    break
                entry = {"status": status, "seconds": round(time.perf_counter() - start, 2), "timeout_s": timeout_s}
                entry["value" if status == "ok" else "message"] = value
                entries[name] = entry
                pending.remove(name)
                start = time.perf_counter()
        finally:
            if worker.is_alive():
                worker.kill()
            worker.join()
    return entries


def _read_cache(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(path: Path, cache: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, cache)


def _needs_computing(entry: dict | None, timeout_s: float) -> bool:
    if entry is None or entry.get("status") == "not computed (budget)":
        return True
    # A timeout under a smaller budget than today's is worth another try.
    return entry["status"] == "timeout" and entry.get("timeout_s", 0) < timeout_s


def dit_references(
    pmf: JointPmf,
    timeout_s: float,
    measures: tuple[str, ...] = tuple(DIT_MEASURES),
    cache_path: Path | None = None,
    name: str | None = None,
    budget_s: float | None = None,
) -> dict[str, dict]:
    """{measure: entry} for every dit measure: cached values first (the shipped cache, then the
    user's); the missing ones among `measures` are computed (each within `timeout_s`, all within
    `budget_s`) and cached; the others are "not requested". timeout_s = 0 reads the caches only.
    """
    key = pmf_key(pmf)
    cache_path = cache_path or user_cache_path()
    shipped = _read_cache(SHIPPED_CACHE).get(key, {})
    cache = _read_cache(cache_path)
    known = {**cache.get(key, {}), **shipped}  # the shipped cache was made with the larger budget
    missing = [m for m in measures if timeout_s > 0 and _needs_computing(known.get(m), timeout_s)]
    if missing:
        known.update(compute_dit_measures(pmf, missing, timeout_s, budget_s))
        cache = _read_cache(cache_path)  # re-read: another run may have written meanwhile
        computed = {m: known[m] for m in missing if known[m]["status"] != "not computed (budget)"}
        cache[key] = {**cache.get(key, {}), **computed}
        if name:
            cache[key]["name"] = name
        _write_cache(cache_path, cache)
    return {m: known.get(m, {"status": "not computed" if m in measures else "not requested"}) for m in DIT_MEASURES}


def describe(entry: dict, digits: int = 3) -> str:
    """How a table prints a cached measure: the value, or n/a with the reason."""
    if entry.get("status") == "ok":
        return f"{entry['value']:.{digits}f}"
    return f"n/a ({entry.get('status', 'not computed')})"
