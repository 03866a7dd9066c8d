"""What results.json reports of a finished training, from its per-epoch history: the reported
figures (`summarize`) and the checks that say when a figure cannot be trusted (the agreement
constraint, the physical bounds). Both engines share it; it imports no framework, so a batched
run (rine.run) never pays Lightning's import (seconds).
"""

from __future__ import annotations

import math

from omegaconf import DictConfig, OmegaConf


def summarize(history: list[dict[str, float]], last_epochs: int, n_sources: int) -> dict:
    """The reported figures: the mean of the last `last_epochs` held-out epochs, and the final epoch."""
    tail = history[-last_epochs:]

    def mean(key: str) -> float | None:
        values = [h[key] for h in tail if h.get(key) is not None]
        return sum(values) / len(values) if values else None

    sources = [f"x{i + 1}" for i in range(n_sources)]
    final = history[-1]
    per_class_keys = sorted((k for k in final if k.startswith("val/redundancy_bits_class")),
                            key=lambda k: int(k.rpartition("class")[2]))
    per_class = [mean(k) for k in per_class_keys]
    return {
        # null, never NaN, for a class absent from the held-out split
        "per_class_redundancy_bits": [v if v is not None and math.isfinite(v) else None for v in per_class],
        "redundancy_bits": mean("val/redundancy_bits"),
        "redundancy_bits_final": final["val/redundancy_bits"],
        "redundancy_se_bits": mean("val/redundancy_se_bits"),
        "usable_info_bits": [mean(f"val/usable_info_bits_{s}") for s in sources],
        "usable_info_bits_final": [final[f"val/usable_info_bits_{s}"] for s in sources],
        "usable_info_se_bits": [mean(f"val/usable_info_se_bits_{s}") for s in sources],
        "usable_info_bits_train": [mean(f"train/usable_info_bits_{s}") for s in sources],
        "disagreement_tv": mean("val/disagreement_tv"),
        "disagreement_tv_final": final["val/disagreement_tv"],
        "disagreement_tv_train": mean("train/disagreement_tv"),
        "beta_final": final["beta"],
        "accuracy": [mean(f"val/acc_{s}") for s in sources],
        "reduction": f"mean of the last {len(tail)} epochs of the held-out curve",
        "curve": {
            "redundancy_bits": [h["val/redundancy_bits"] for h in history],
            "disagreement_tv": [h["val/disagreement_tv"] for h in history],
            "beta": [h["beta"] for h in history],
        },
    }


def early_stopped(history: list[dict[str, float]], n_sources: int, n_inner: int) -> dict:
    """The β = 0 figures under early stopping: each source's decoder read at the epoch where its
    usable information on the inner validation split (n_inner samples held out of training)
    peaked, the first such epoch on a tie. Replaces summarize's usable_info_bits (and their SEs,
    training-split values and accuracies) and redundancy_bits, which at β = 0 is their mean.

    redundancy_se_bits is the mean of the sources' SEs: the SE of their mean when their errors
    are fully correlated, an upper bound otherwise (decoders read at different epochs share no
    per-sample record to do better). The per-class figures mix epochs, so they are null; the
    disagreement figures stay the last epochs' (at β = 0 nothing is checked on them).
    """
    epochs = [max(range(len(history)), key=lambda e: history[e][f"inner/usable_info_bits_x{i + 1}"])
              for i in range(n_sources)]

    def read(key: str) -> list:
        return [history[e].get(key.format(i + 1)) for i, e in enumerate(epochs)]

    usable, errors = read("val/usable_info_bits_x{}"), read("val/usable_info_se_bits_x{}")
    return {
        "usable_info_bits": usable,
        "usable_info_se_bits": errors,
        "usable_info_bits_train": read("train/usable_info_bits_x{}"),
        "usable_info_bits_inner": read("inner/usable_info_bits_x{}"),
        "accuracy": read("val/acc_x{}"),
        "redundancy_bits": sum(usable) / n_sources,
        "redundancy_se_bits": sum(errors) / n_sources if None not in errors else None,
        "per_class_redundancy_bits": None,
        "early_stopping_epochs": [history[e].get("epoch", e) for e in epochs],
        "n_inner_validation": n_inner,
        "reduction": (f"each decoder at the epoch where its usable information on the inner validation split "
                      f"({n_inner} training samples held out) peaked (early stopping)"),
    }


def constraint_check(summary: dict, cfg: DictConfig) -> dict:
    """Whether the decoders agree enough for I∩ to be a redundancy (the constraint D = 0).

    The test is on the held-out mean total variation between the decoders' predictions
    (the same scale for any K, whatever the penalty's form). β = 0 has no agreement term:
    the figure is then the decoders' mean usable information, and nothing is checked.
    The warning's advice depends on why the decoders still disagree.
    """
    if cfg.beta == 0:
        return {"constraint_met": None, "warning": None}
    tv, threshold = summary["disagreement_tv"], cfg.distance.warn_above
    if tv <= threshold:
        return {"constraint_met": True, "warning": None}
    problem = (f"the decoders still disagree (held-out mean total variation {tv:.3f} > "
               f"distance.warn_above={threshold:g}), so I∩ is not yet a redundancy")
    train_tv = summary.get("disagreement_tv_train")
    if train_tv is not None and train_tv <= threshold:
        advice = (f"they agree on the training split ({train_tv:.3f}) but not on held-out samples: "
                  "use more samples or smaller decoders (model.decoder.hidden)")
    elif cfg.beta_schedule != "constrained":
        advice = ("use beta_schedule=constrained (the default objective=constrained's), which raises β until they "
                  "agree (it needs an adaptive optimizer such as the default model=mlp), or raise beta (with SGD "
                  "moderately: it diverges at large β)")
    elif summary["beta_final"] >= cfg.beta * cfg.constraint.max_factor * (1 - cfg.gamma**summary["epochs"]) * 0.999:
        advice = (f"β reached its cap ({summary['beta_final']:.3g}): raise constraint.max_factor or beta, "
                  "and trainer.max_epochs")
    else:
        advice = "train longer (trainer.max_epochs) so that the constrained schedule can raise β further"
    return {"constraint_met": False, "warning": f"{problem}; {advice}"}


def bounds_check(outcome: dict, cfg: DictConfig) -> dict:
    """Flag an estimate outside what is physically possible (paper eq. 8 quantities, bits).

    For the true quantities I(Xi;Y) >= 0, I∩ >= 0 and I∩ <= min_i I(Xi;Y); held-out estimates
    may cross these by sampling noise, so each is checked with the tolerance
    max(report.bounds_tolerance_bits, 3 standard errors of its held-out mean). The upper bound
    is checked where I(Xi;Y) is known exactly (a known distribution). A usable information
    below 0 is explained by the training split's: memorising (above 0 there) or a failed
    training (below 0 there too). Returns {"valid": bool, "invalid_reasons": [str, ...]}.
    """
    floor = cfg.report.bounds_tolerance_bits

    def tolerance(se) -> float:
        return max(floor, 3 * se) if se is not None else floor

    reasons = []
    redundancy, se = outcome["redundancy_bits"], outcome.get("redundancy_se_bits")
    usable = outcome["usable_info_bits"]
    usable_se = outcome.get("usable_info_se_bits") or [None] * len(usable)
    train_usable = outcome.get("usable_info_bits_train") or [None] * len(usable)
    for i, (u, u_se, u_train) in enumerate(zip(usable, usable_se, train_usable)):
        if u < -tolerance(u_se):
            if u_train is not None and u_train < 0:
                cause = (f"it fits the training split no better (usable information there {u_train:.3g} bits): the "
                         "training failed, e.g. a beta or learning rate too large for the optimizer: lower beta "
                         "(or let beta_schedule=constrained raise it) or model.optimizer.lr")
            elif OmegaConf.select(cfg, "early_stopping.enabled", default=False):
                cause = ("its decoder memorises the training split even at its best epoch on the inner validation "
                         "split: too few samples for these sources; give more samples or smaller decoders "
                         "(model.decoder.hidden)")
            else:
                cause = ("its decoder memorises the training split, e.g. on high-dimensional sources or few samples, "
                         "most at beta=0: give more samples, or at beta=0 read each decoder before it memorises "
                         "with early_stopping.enabled=true")
            reasons.append(f"usable information of x{i + 1} is {u:.3g} bits, below 0 by more than {tolerance(u_se):.3g} "
                           f"({cause})")
    if redundancy < -tolerance(se):
        name = "I∩" if cfg.beta > 0 else "the mean usable information (β = 0)"
        reasons.append(f"{name} = {redundancy:.3g} bits is below 0 by more than {tolerance(se):.3g}")
    # (Not a bound: the decoders' own usable information. I∩ is their mean, so it exceeds the
    # least of them whenever their CEs differ, which agreeing decoders' can by a few hundredths
    # of a bit, and each is only a lower estimate of I(Xi;Y).)
    bounds = []
    mi_sources = (outcome.get("reference") or {}).get("mi_sources")
    if mi_sources:
        bounds.append(("min_i I(Xi;Y) of the distribution", min(mi_sources)))
        for i, (u, mi, u_se) in enumerate(zip(usable, mi_sources, usable_se)):
            if u > mi + tolerance(u_se):
                reasons.append(f"usable information of x{i + 1} ({u:.3g} bits) exceeds the exact "
                               f"I(X{i + 1};Y) = {mi:.3g} by more than {tolerance(u_se):.3g}")
    for name, bound in bounds:
        if redundancy > bound + tolerance(se):
            reasons.append(f"I∩ = {redundancy:.3g} bits exceeds {name} ({bound:.3g}) by more than {tolerance(se):.3g}")
    return {"valid": not reasons, "invalid_reasons": reasons}


def outcome_of(history: list[dict], data, cfg: DictConfig) -> dict:
    """What results.json reports of a finished training, from its per-epoch history."""
    n_sources = len(data.train.sources) if data.views is None else len(data.views.shapes)
    summary = summarize(history, cfg.report.last_epochs, n_sources)
    stopped_early = data.inner is not None
    if stopped_early:  # (a β = 0 training: config.validate_config, rine.pid)
        summary.update(early_stopped(history, n_sources, len(data.inner)))
    outcome = {
        **summary,
        "h_y_bits": data.h_y_bits,
        "h_y_basis": data.h_y_basis,
        "reference": data.reference,
        "n_sources": n_sources,
        "n_classes": data.n_classes,
        "class_names": data.class_names,
        "source_names": data.source_names or [f"x{i + 1}" for i in range(n_sources)],
        "n_train": len(data.train),
        "n_heldout": len(data.heldout),
        "epochs": len(history),
    }
    outcome.update(constraint_check(outcome, cfg))
    outcome.update(bounds_check(outcome, cfg))
    # (Early stopping reads each decoder before it memorises: no memorisation check, but the gap
    # it leaves between the splits.)
    outcome.update(convergence_check(history, None if stopped_early else n_sources))
    if stopped_early and outcome["converged"] is not False:
        outcome.update(generalisation_check(outcome))
    if outcome["converged"] is not False:
        outcome.update(fixed_beta_check(cfg))
    return outcome


# A fixed β above this weighs agreement over prediction from the first step (the annealed and
# constrained schedules start β near 0). A fresh user's RDNXOR at fixed β 1e9: I∩ 0.09 of 1 bit,
# decoders at chance, agreeing; on x1 = x2 = y (2 bits): β 100 gave 1.54, 1,000 0.42, 1e4 0.11.
FIXED_BETA_LIMIT = 100


def fixed_beta_check(cfg: DictConfig) -> dict:
    """{"converged": False, "convergence_warning": ...} for beta_schedule=fixed with β above
    FIXED_BETA_LIMIT, whose decoders can agree by predicting little; else {}."""
    if cfg.beta_schedule != "fixed" or cfg.beta <= FIXED_BETA_LIMIT:
        return {}
    return {"converged": False, "convergence_warning": (
        f"a fixed β of {cfg.beta:g} weighs agreement over prediction from the first step, so the decoders can agree "
        "by predicting little and I∩ can be far below the redundancy; use beta_schedule=constrained (the default) "
        f"or annealed, or a fixed β of at most {FIXED_BETA_LIMIT}")}


# With early stopping, a decoder read at its best epoch whose training-split usable information
# is still this far above its held-out one had too few samples: its figure is a loose lower bound.
# (The bench's early-stopped β = 0 runs, d 2 to 1,024, n 10,000: at most 0.06.)
GENERALISATION_GAP_BITS = 0.2


def generalisation_check(outcome: dict) -> dict:
    """For early-stopped figures: {"converged": False, "convergence_warning": ...} when a
    source's usable information on the training split (that epoch's mean) exceeds its held-out
    one by more than GENERALISATION_GAP_BITS; else {}."""
    gaps = [(i, train, held_out) for i, (train, held_out) in
            enumerate(zip(outcome.get("usable_info_bits_train") or [], outcome["usable_info_bits"]))
            if train is not None and train - held_out > GENERALISATION_GAP_BITS]
    if not gaps:
        return {}
    named = "; ".join(f"x{i + 1} {train:.3f} bits there, {held_out:.3f} held out" for i, train, held_out in gaps)
    return {"converged": False, "convergence_warning": (
        f"even at its best epoch on the inner validation split, a decoder fits the training split far better "
        f"({named}): too few samples for these sources, so the figure is a loose lower bound; more samples or "
        "smaller decoders (model.decoder.hidden) would raise it")}


CONVERGENCE_RISE_BITS = 0.01
# At β = 0 nothing but memorisation lowers a decoder's held-out usable information as it trains.
MEMORISATION_DROP_BITS = 0.05


def convergence_check(history: list[dict], n_sources: int | None = None) -> dict:
    """Whether the held-out figure had settled. Two ways it had not:

    - still rising: the mean of the last 3 epochs of the held-out I∩ against the mean of 3
      epochs two thirds in. A rise above 0.01 bits means training stopped short (too few
      steps: small data, a fixed β, a low lr) and the figure is low by at least that much.
    - memorising (β = 0 runs, every row's beta 0, with `n_sources` given): a source's held-out
      usable information H(Y) − CE_i, mean of the last 3 epochs, more than 0.05 bits below its
      best epoch. Without the agreement penalty only overfitting lowers it (its held-out CE
      grows as the decoder fits the training split's noise), so the figure is a loose lower
      bound. (With β > 0 the penalty lowers it by design.)

    Returns {"converged": bool | None (under 9 epochs: not judged), "convergence_warning": str | None}.
    """
    curve = [row["val/redundancy_bits"] for row in history]
    if len(curve) < 9:
        return {"converged": None, "convergence_warning": None}
    steps = history[-1].get("step")
    if n_sources and all(row.get("beta") == 0 for row in history):
        falls, best_epochs = [], []
        for i in range(n_sources):
            usable = [row[f"val/usable_info_bits_x{i + 1}"] for row in history]
            best = max(range(len(usable)), key=usable.__getitem__)
            drop = usable[best] - sum(usable[-3:]) / 3
            if drop > MEMORISATION_DROP_BITS:
                falls.append(f"x{i + 1} fell {drop:.3f} bits from its best epoch "
                             f"({usable[best]:.3f} bits at epoch {history[best].get('epoch', best)})")
                best_epochs.append(best)
        if falls:
            return {"converged": False, "convergence_warning": (
                f"the held-out usable information of {'; of '.join(falls)}: "
                f"{'its decoder memorises' if len(falls) == 1 else 'their decoders memorise'} the training split, "
                "so the figure is low: use early_stopping.enabled=true (reads each decoder at its best epoch on an "
                "inner validation split), give more samples, or train fewer epochs "
                f"(trainer.max_epochs={max(max(best_epochs) + 1, 3)})")}
    middle = int(2 * len(curve) / 3)
    rise = sum(curve[-3:]) / 3 - sum(curve[middle - 1: middle + 2]) / 3
    if rise <= CONVERGENCE_RISE_BITS:
        return {"converged": True, "convergence_warning": None}
    return {"converged": False, "convergence_warning": (
        f"the held-out figure was still rising ({rise:+.3f} bits over the last third of training"
        f"{f', {steps} steps in all' if steps else ''}), so the estimate is low: train longer "
        "(trainer.max_epochs; small data gives few steps per epoch)")}
