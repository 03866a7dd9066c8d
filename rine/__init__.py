"""rine: the Redundant Information Neural Estimator (Kleinman et al., ICLR 2021).

    import rine
    result = rine.estimate_redundancy({"left": x1, "right": x2}, y, beta=15, seeds=5)
    result.bits, result.ci, result.per_seed, result.usable, result.disagreement, result.to_frame()
    atoms = rine.decompose([x1, x2], y)
    exact = rine.estimate_pmf(table)          # a DataFrame (x1..xn, y, p) or a dit.Distribution
    runs = rine.load_runs("outputs/multiruns")  # logged runs, one row each

The API lives in rine.api; it is imported on first use so `import rine` stays light.
"""

_API = ("estimate_redundancy", "estimate_pmf", "decompose", "decompose_pmf", "load_runs", "Estimate",
        "RedundancyResult", "Decomposition", "DisagreementWarning", "InvalidEstimateWarning", "NegativeAtomWarning",
        "NotConvergedWarning")
__all__ = list(_API)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rine")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"


__version__ = _version()


def __getattr__(name: str):
    if name in _API:
        from rine import api

        return getattr(api, name)
    raise AttributeError(f"module 'rine' has no attribute {name!r}")


def __dir__() -> list[str]:
    # The lazily imported API too, for tab completion in notebooks.
    return sorted(set(globals()) | set(_API))
