"""rine: the Redundant Information Neural Estimator.

    import rine
    result = rine.estimate_redundancy([x1, x2], y, beta=15, seeds=5)
    result.bits, result.ci, result.per_seed, result.usable, result.disagreement, result.to_frame()
    atoms = rine.decompose([x1, x2], y)

The API lives in rine.api; it is imported on first use so `import rine` stays light.
"""

_API = ("estimate_redundancy", "decompose", "Estimate", "RedundancyResult", "Decomposition", "DisagreementWarning",
        "InvalidEstimateWarning", "NegativeAtomWarning")
__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        from rine import api

        return getattr(api, name)
    raise AttributeError(f"module 'rine' has no attribute {name!r}")
