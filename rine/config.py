"""Configuration: compose it as train.py would, check it, and build the objects it names.

Every default lives in configs/ (the YAML); code reads the composed config and never
restates a default. `validate_config` is the one place every setting is checked, before a
run writes anything.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import inspect
import math
import re
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rine.errors import RineError
from rine.files import cache_dir, write_json_atomic

MODES = ("estimate", "pid")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def _on_gpu(accelerator: str) -> bool:
    import torch

    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def _mixed_precision(accelerator: str) -> str:
    """bf16 autocast where an accelerator trains (configs/trainer/image.yaml); plain 32 on a CPU."""
    return "bf16-mixed" if _on_gpu(accelerator) else "32-true"


def _job_dirname(overrides) -> str:
    """A sweep job's folder name from its overrides ('beta=5,seed=0,task=unq'), flat: a path
    value is shown by its file's stem and a short hash of the path as given, so
    `pmf_file=/abs/a.csv` gives 'pmf_file=a-1b2c3d', not nested folders, and two files of one
    name in different folders get different folders (the stem alone once gave both one)."""
    parts = []
    for override in sorted(str(o) for o in overrides):
        key, _, value = override.partition("=")
        if "/" in value:
            path = value.strip("'\"")
            value = f"{Path(path).stem}-{hashlib.sha256(path.encode()).hexdigest()[:6]}"
        parts.append(f"{key}={value}")
    return ",".join(parts)


OmegaConf.register_new_resolver("rine_precision", _mixed_precision, replace=True)
OmegaConf.register_new_resolver("rine_job_dirname", _job_dirname, replace=True)
# configs/trainer/ddp.yaml: torch's SyncBatchNorm runs on GPUs only.
OmegaConf.register_new_resolver("rine_on_gpu", _on_gpu, replace=True)


def compose_config(overrides: list[str] | None = None, return_hydra_config: bool = False) -> DictConfig:
    """The config train.py would see for these overrides (for scripts, tests, notebooks);
    with return_hydra_config, also its `hydra` node (e.g. an experiment's sweep params)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = list(overrides or [])
    if GlobalHydra.instance().is_initialized():  # inside train.py's Hydra app: its search path is configs/
        return compose(config_name="train", overrides=overrides, return_hydra_config=return_hydra_config)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=return_hydra_config)


@functools.lru_cache(maxsize=1)
def _default_config() -> dict:
    """The default config, unresolved, as a dict. Cached on disk (rine.files.cache_dir) under a
    hash of configs/ and Hydra's version: composing it costs ~0.2 s of every run's start."""
    import hydra

    digest = hashlib.sha256(hydra.__version__.encode())
    for path in sorted(CONFIG_DIR.rglob("*.yaml")):
        digest.update(str(path.relative_to(CONFIG_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    cached = cache_dir() / f"default-config-{digest.hexdigest()[:20]}.json"
    try:
        return json.loads(cached.read_text())
    except (OSError, ValueError):
        pass
    config = OmegaConf.to_container(compose_config([]), resolve=False)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(cached, config)
    except OSError:
        pass  # a read-only home: composed again next time
    return config


def build(config, **kwargs):
    """hydra.utils.instantiate, but a RineError raised by the target surfaces as itself."""
    try:
        return instantiate(config, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        while cause is not None and not isinstance(cause, RineError):
            cause = cause.__cause__
        if cause is None:
            raise
        raise cause from None


# ------------------------------------------------------------------ the command line

# Hydra's own flags that take a value (the next argument is not an override).
_VALUE_FLAGS = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--cfg", "-c",
                "--package", "-p", "--experimental-rerun"}
# Sections whose keys are the keyword arguments of the object they build: a key added there is
# checked against that object's signature (validate_config), not against the defaults.
_PASSED_THROUGH = ("task.", "model.decoder.", "model.optimizer.", "trainer.", "logger.", "hydra.")


def _flatten_keys(node, prefix: str = "") -> list[str]:
    if isinstance(node, dict) and node:
        keys = []
        for key, value in node.items():
            keys += [f"{prefix}{key}", *_flatten_keys(value, f"{prefix}{key}.")]
        return keys
    return []


def config_groups() -> list[str]:
    """The config groups (configs/<group>/: task, model, ...)."""
    return sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir())


def group_options(group: str) -> list[str]:
    """The options of one config group (its configs/<group>/*.yaml)."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


@functools.lru_cache(maxsize=16)
def known_settings(choices: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Every key of the composed default config (with these group choices), dotted: 'beta', 'task.name', ..."""
    # (Looked up only for an error message: a valid run never composes this second config.)
    cfg = _default_config() if not choices else OmegaConf.to_container(compose_config(list(choices)), resolve=False)
    return tuple(_flatten_keys(cfg)) + tuple(config_groups())


def closest_settings(key: str, known) -> str:
    """' (did you mean beta?)' for a misspelt key, '' when nothing is close."""
    last = key.rsplit(".", 1)[-1]
    found = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    found += [k for k in known if k.rsplit(".", 1)[-1] == last and k not in found and k != key]
    found = list(dict.fromkeys(found))  # 'task' is both a group and a key
    return f" (did you mean {' / '.join(found[:3])}?)" if found else ""


def _quoted(value: str) -> str:
    return value if re.fullmatch(r"[\w./:+-]*", value) else "'" + value.replace("'", "\\'") + "'"


def check_overrides(argv: list[str]) -> None:
    """The command line's overrides, checked before Hydra sees them (its errors are pages long):
    unparsable arguments, unknown group options, unknown or misspelt settings. Raises RineError
    with one line naming the argument and what to do.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob
    from hydra.errors import HydraException

    args, skip = [], False
    for arg in argv:
        if skip or arg.startswith("-"):
            skip = not skip and arg in _VALUE_FLAGS
            continue
        args.append(arg)
    multirun = any(arg in ("-m", "--multirun") for arg in argv)
    parser = OverridesParser.create()
    parsed = []
    for arg in args:
        try:
            parsed.append(parser.parse_override(arg))
        except HydraException:
            key, _, value = arg.partition("=")
            if "=" in value:
                raise RineError(f"cannot read the argument {arg!r}: its value contains '='; quote the value, "
                                f"e.g. {key}='\"{value}\"' (with the outer single quotes for the shell)") from None
            raise RineError(f"cannot read the argument {arg!r}; write key=value (values with spaces, commas or "
                            f"brackets in quotes), see README \"Running\"") from None
    if not parsed:
        return  # the default config: nothing of the user's to check (a compose costs ~0.2 s)
    groups = set(config_groups())
    first_job, choices = [], []
    for override in parsed:
        key = override.get_key_element()
        name = override.key_or_group
        if name.startswith("hydra"):
            if override.is_sweep_override():
                raise RineError(f"{override.input_line}: Hydra's own settings take one value in a sweep; sweep "
                                "rine's settings (task, beta, seed, ...) and give each hydra.* setting once")
            continue  # Hydra's own settings: Hydra checks them
        if isinstance(override.value(), Glob):  # glob(u*): a group's options matching it (Hydra's own filter)
            if name not in groups:
                raise RineError(f"{override.input_line}: glob() chooses among a config group's options "
                                f"({', '.join(sorted(groups))}); sweep {name} over a list of values instead")
            values = override.value().filter(group_options(name))
            if not values:
                raise RineError(f"{override.input_line} matches no {name}; choose among: "
                                f"{', '.join(group_options(name))}")
        elif override.is_sweep_override():
            values = list(override.sweep_string_iterator())
        else:
            values = [override.get_value_element_as_str()]
        if name in groups:
            known = group_options(name)
            for value in values:
                if value not in known and value != "null":
                    raise RineError(f"unknown {name} {value!r}; choose one of: {', '.join(known)}")
            choices.append(f"{key}={values[0]}")
        first_job.append(override.input_line if not override.is_sweep_override() else f"{key}={_quoted(values[0])}")
    swept = [override for override in parsed if override.is_sweep_override() and not override.key_or_group.startswith("hydra")]
    try:
        # (with Hydra's node when values are swept without -m: an experiment file may make it a multirun)
        composed = compose_config(first_job, return_hydra_config=bool(swept) and not multirun)
    except HydraException as error:
        raise composition_error(error, choices) from None
    if swept and not multirun and not str(composed.hydra.mode).endswith("MULTIRUN"):
        raise RineError(f"{swept[0].input_line} gives several values, which only a sweep trains: add -m "
                        f"(python train.py -m ...), or quote a value that holds a comma")
    # Shortcuts that fill in a task's setting, given on the command line for a task that does not
    # read them, would be ignored silently (`pmf_file=my.csv` without task=pmf trains RDNXOR).
    # (An experiment file may set width for a sweep over views of which only crops read it.)
    given = {override.key_or_group for override in parsed}
    if "experiment" in given:
        return  # an experiment file picks its tasks in its sweep, which this first job does not see
    task_text = json.dumps(OmegaConf.to_container(composed.task, resolve=False))
    for key, takers in (("width", "the image tasks (digits_crop, mnist_crop, cifar_crop, ...)"),
                        ("pmf_file", "task=pmf"), ("data_file", "task=arrays")):
        if key in given and composed.get(key) is not None and "${" + key + "}" not in task_text:
            raise RineError(f"{key}= is read only by {takers}; task={composed.task.name} does not read it: "
                            f"remove {key}= or choose such a task")


def uses_ddp(cfg: DictConfig) -> bool:
    """Whether the config trains one run over several processes (trainer=ddp)."""
    return "strategy" in cfg.trainer and "ddp" in str(cfg.trainer.strategy).lower()


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def inner_validation_fraction(cfg: DictConfig) -> float | None:
    """The fraction of the training split early stopping holds out (early_stopping); None: off."""
    return cfg.early_stopping.fraction if cfg.early_stopping.enabled else None


def constraint_control(cfg: DictConfig) -> "ConstraintControl":  # noqa: F821
    from rine.objective import ConstraintControl

    c = cfg.constraint
    return ConstraintControl(target=c.target, growth=c.growth, max_factor=c.max_factor, start_epoch=c.start_epoch)


def _is_int(value, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _check_known_keys(cfg: DictConfig) -> None:
    """A setting nothing reads is an error (e.g. +betaa=3 would silently train with the default β).

    Our own keys (top level, distance, constraint, report) must exist in the defaults; the keys
    of a section that builds an object (task, model.decoder, model.optimizer) must be keyword
    arguments of that object (trainer and logger keys are checked by Lightning when built).
    """
    base = _default_config()
    for key in cfg:
        if key not in base and key != "hydra":  # a sweep job's config carries Hydra's node
            raise RineError(f"unknown setting {key!r}{closest_settings(str(key), known_settings())}; nothing reads it")
    for section in ("distance", "constraint", "report", "early_stopping"):
        if not OmegaConf.is_dict(cfg[section]):  # e.g. early_stopping=true, for early_stopping.enabled=true
            keys = ", ".join(f"{section}.{key}" for key in base[section])
            raise RineError(f"{section}={cfg[section]} is invalid: {section} is a group of settings ({keys}); "
                            f"set one of them, e.g. {section}.{next(iter(base[section]))}=...")
        for key in cfg[section]:
            if key not in base[section]:
                name = f"{section}.{key}"
                raise RineError(f"unknown setting {name!r}{closest_settings(name, known_settings())}; nothing reads it")
    for section, node in (("task", cfg.task), ("model.decoder", cfg.model.decoder), ("model.optimizer", cfg.model.optimizer)):
        target = node.get("_target_")
        if not target:
            continue
        try:
            built = _object_at(target)
        except (ImportError, AttributeError, ValueError):
            raise RineError(f"{section}._target_={target} cannot be imported; check its spelling") from None
        try:
            parameters = inspect.signature(built).parameters
        except (ValueError, TypeError):
            continue  # no signature to check keys against
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            continue
        for key in node:
            if not str(key).startswith("_") and key not in parameters:
                accepted = [f"{section}.{p}" for p in parameters if p not in ("self", "input_shape", "n_classes", "params")]
                raise RineError(f"unknown setting '{section}.{key}'{closest_settings(f'{section}.{key}', accepted)}; "
                                f"{target} takes: {', '.join(accepted) or 'none'} (remove a setting it does not take "
                                f"with ~{section}.{key})")


def composition_error(error: Exception, choices: list[str]) -> RineError:
    """Hydra's refusal to compose overrides (pages long) as one line saying what to do.
    choices: the group overrides given (task=..., model=...), whose settings are suggested."""
    missing = re.search(r"Could not (?:override|delete|append to) '([^']+)'", str(error))
    if missing:
        name = missing.group(1)
        near = closest_settings(name, known_settings(tuple(choices)))
        if name.startswith(("task.", "model.decoder.", "model.optimizer.")):
            # Keyword arguments of the object a section builds: one the config leaves out is added with '+'.
            return RineError(f"unknown setting {name!r}{near}; or, if it is a keyword its class takes that the "
                             f"config leaves out, add it with a '+': +{name}=...")
        return RineError(f"unknown setting {name!r}{near}; list them with: python train.py --cfg job")
    return RineError(f"the arguments do not compose into a config: {str(error).splitlines()[0]}")


def _check_value_types(cfg: DictConfig) -> None:
    """A switch whose default is true/false takes true or false only (Python would read
    report.curves=maybe as true); a number given in quotes (beta="5") is named as text, which
    the checks of its value would show as a plain 5. torch's optimizer switches (fused) and
    Lightning's trainer switches may also be null, their own default."""
    def walk(defaults: dict, given, prefix: str = "") -> None:
        for key, default in defaults.items():
            if str(key).startswith("_") or not OmegaConf.is_dict(given) or key not in given:
                continue
            name, value = f"{prefix}{key}", given._get_node(key)._value()
            if isinstance(default, dict):
                walk(default, given[key], name + ".")
            elif isinstance(default, bool):
                # torch's optimizer switches (fused, foreach) and Lightning's may be null: their default
                may_be_null = name.startswith(("model.optimizer.", "trainer."))
                if isinstance(value, str) and value.lower() in ("true", "false"):
                    raise RineError(f"{name}={value!r} is text (it was quoted); write {name}={value.lower()} "
                                    "without quotes")
                if not isinstance(value, bool) and not (value is None and may_be_null):
                    shown = "null" if value is None else value
                    library = "torch" if name.startswith("model.optimizer.") else "Lightning"
                    raise RineError(f"{name}={shown} is invalid; use true or false"
                                    f"{f' (or null: {library} chooses)' if may_be_null else ''}")
            elif isinstance(default, (int, float)) and isinstance(value, str) and _reads_as_number(value):
                raise RineError(f"{name}={value!r} is text (it was quoted); write {name}={value} without quotes")

    walk({key: value for key, value in _default_config().items() if key != "hydra"}, cfg)


def _reads_as_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _object_at(path: str):
    """The object a dotted `_target_` path names (module attributes allowed, e.g. torch.optim.SGD).
    Raises ImportError or AttributeError; unlike hydra.utils.get_object, logs nothing."""
    import importlib

    parts = str(path).split(".")
    for split in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            found = getattr(found, name)
        return found
    raise ImportError(f"no module in {path!r}")


def validate_config(cfg: DictConfig) -> None:
    """Reject settings that would train something meaningless, before anything is written."""
    # (imported here: rine.objective imports torch, which a refused command line never needs)
    from rine.objective import BETA_SCHEDULES, DISTANCE_NORMALIZATIONS, DISTANCE_PAIRS

    from rine.optimizers import check_optimizer

    _check_known_keys(cfg)  # (first: an unimportable _target_, or a key its class does not take)
    _check_value_types(cfg)
    check_optimizer(cfg.model.optimizer)
    if cfg.mode not in MODES:
        raise RineError(f"mode={cfg.mode} is unknown; choose one of: {', '.join(MODES)}")
    if cfg.engine not in ("auto", "lightning"):
        raise RineError(f"engine={cfg.engine} is unknown; choose one of: auto, lightning")
    beta = cfg.beta
    if not _is_number(beta) or beta < 0:
        raise RineError(f"beta={beta} is invalid; the agreement weight must be a number >= 0")
    if cfg.beta_schedule not in BETA_SCHEDULES:
        raise RineError(f"beta_schedule={cfg.beta_schedule} is unknown; choose one of: {', '.join(BETA_SCHEDULES)}")
    gamma = cfg.gamma
    if cfg.beta_schedule != "fixed" and (not _is_number(gamma) or not 0 < gamma < 1):
        # gamma = 1 would keep β_t = β(1 − γ^t) at 0 for ever: a β = 0 run labelled β > 0.
        raise RineError(f"gamma={gamma} is invalid; the β annealing rate must be in (0, 1) (paper: 0.97)")
    epochs = cfg.trainer.max_epochs
    if not isinstance(epochs, int) or epochs < 1:
        raise RineError(f"trainer.max_epochs={epochs} is invalid; train for at least 1 epoch")
    precision = str(cfg.trainer.precision)
    if "16" in precision and "bf16" not in precision:
        raise RineError(f"trainer.precision={precision} is not supported; use 32 or bf16-mixed")
    if cfg.mode == "pid" and _is_number(beta) and beta == 0:
        # Its I∩ would be the decoders' mean usable information, which is no redundancy.
        raise RineError("mode=pid needs beta > 0: its redundancy atom is the I∩ of agreeing decoders (its per-source "
                        "trainings run at β = 0 by themselves); drop beta=0")
    if cfg.mode == "pid" and uses_ddp(cfg):
        # Lightning starts the other DDP processes once per script; pid trains several models.
        raise RineError("mode=pid cannot run under trainer=ddp; drop trainer=ddp for mode=pid")
    if not _is_int(cfg.seed) or cfg.seed >= 2**32:
        raise RineError(f"seed={cfg.seed} is invalid; use an integer from 0 to 2**32 - 1")
    model = cfg.model
    if not _is_int(model.batch_size, 2):
        raise RineError(f"model.batch_size={model.batch_size} is invalid; use an integer >= 2 "
                        "(BatchNorm needs two samples per batch)")
    if not _is_int(model.eval_batch_size, 1):
        raise RineError(f"model.eval_batch_size={model.eval_batch_size} is invalid; use an integer >= 1")
    if "lr" in model.optimizer and (not _is_number(model.optimizer.lr) or model.optimizer.lr <= 0):
        raise RineError(f"model.optimizer.lr={model.optimizer.lr} is invalid; use a learning rate > 0")
    if not _is_number(model.lr_decay) or not 0 < model.lr_decay <= 1:
        raise RineError(f"model.lr_decay={model.lr_decay} is invalid; use a factor in (0, 1]")
    hidden = model.decoder.get("hidden")
    if hidden is not None and (not OmegaConf.is_list(hidden) or not all(_is_int(h, 1) for h in hidden)):
        raise RineError(f"model.decoder.hidden={hidden} is invalid; give a list of layer widths >= 1, e.g. [64,64] "
                        "([] for a linear decoder)")
    if model.threads is not None and not _is_int(model.threads, 1):
        raise RineError(f"model.threads={model.threads} is invalid; use an integer >= 1, or null for torch's default")
    distance = cfg.distance
    if distance.pairs not in DISTANCE_PAIRS:
        raise RineError(f"distance.pairs={distance.pairs} is unknown; choose one of: {', '.join(DISTANCE_PAIRS)}")
    if distance.normalize not in DISTANCE_NORMALIZATIONS:
        raise RineError(f"distance.normalize={distance.normalize} is unknown; "
                        f"choose one of: {', '.join(DISTANCE_NORMALIZATIONS)}")
    if not _is_number(distance.smoothing) or distance.smoothing < 0:
        raise RineError(f"distance.smoothing={distance.smoothing} is invalid; use a number >= 0 (0: plain L1)")
    if not _is_number(distance.warn_above) or distance.warn_above < 0:
        raise RineError(f"distance.warn_above={distance.warn_above} is invalid; use a total variation distance >= 0")
    c = cfg.constraint
    for key, ok, need in (("target", _is_number(c.target) and 0 < c.target < 1, "in (0, 1)"),
                          ("growth", _is_number(c.growth) and c.growth > 1, "> 1"),
                          ("max_factor", _is_number(c.max_factor) and c.max_factor >= 1, ">= 1"),
                          ("start_epoch", isinstance(c.start_epoch, int) and c.start_epoch >= 0, "an integer >= 0")):
        if not ok:
            raise RineError(f"constraint.{key}={c[key]} is invalid; use a number {need}")
    if (cfg.beta_schedule == "constrained" and cfg.beta > 0
            and str(cfg.model.optimizer._target_).rsplit(".", 1)[-1] == "SGD"):
        raise RineError(
            "beta_schedule=constrained raises β until the decoders agree, which SGD does not survive "
            "(its step grows with β); use an adaptive optimizer such as the default model=mlp (AdamW), "
            "or objective=paper (β annealed as in the paper)"
        )
    stopping = cfg.early_stopping
    if not _is_number(stopping.fraction) or not 0 < stopping.fraction <= 0.5:
        raise RineError(f"early_stopping.fraction={stopping.fraction} is invalid; hold out a fraction in (0, 0.5] "
                        "of the training split (the rest trains), e.g. 0.1")
    if stopping.enabled and cfg.mode == "estimate" and cfg.beta > 0:
        raise RineError(f"early_stopping applies to beta=0 trainings (usable information); at beta={cfg.beta:g} the "
                        "agreement schedule decides when I∩ is read: drop early_stopping.enabled=true, or use beta=0 "
                        "or mode=pid (its per-source trainings)")
    if not isinstance(cfg.report.last_epochs, int) or cfg.report.last_epochs < 1:
        raise RineError(f"report.last_epochs={cfg.report.last_epochs} is invalid; average at least 1 epoch")
    if cfg.report.progress not in ("auto", "bar", "lines", "none"):
        raise RineError(f"report.progress={cfg.report.progress} is unknown; choose one of: auto, bar, lines, none")
    tolerance = cfg.report.bounds_tolerance_bits
    if not _is_number(tolerance) or tolerance < 0:
        raise RineError(f"report.bounds_tolerance_bits={tolerance} is invalid; use a number of bits >= 0")


