"""torch's SGD and Adam/AdamW updates for the batched engine, without torch.optim's classes.

Every torch.optim.Optimizer imports torch._dynamo the first time it adds a parameter group or
takes a step (~1.5 s, a fifth of a cold `python train.py`), for torch.compile, which this engine
never uses. The update here is torch's own: the functional form the classes call
(torch.optim.sgd.sgd, torch.optim.adam.adam / adamw.adamw) with the class's defaults; this
module only keeps the per-parameter state the class would keep. It gives the class's numbers
to the last bit (tests/test_batched.py). Any other optimizer, or an option the classes
handle specially (differentiable, capturable, a learning-rate tensor), is built as the class.
"""

from __future__ import annotations

import inspect

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.optim.adam import adam
from torch.optim.adamw import adamw
from torch.optim.sgd import sgd


# The class, its functional update, and the options that update takes (besides the class's own).
_FUNCTIONAL = {
    "torch.optim.SGD": (torch.optim.SGD, "sgd"),
    "torch.optim.Adam": (torch.optim.Adam, "adam"),
    "torch.optim.AdamW": (torch.optim.AdamW, "adamw"),
}
_HANDLED = {
    "sgd": {"lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize", "foreach", "fused"},
    "adam": {"lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "foreach", "fused"},
}
_HANDLED["adamw"] = _HANDLED["adam"]


def _functional_form(config) -> tuple[type, str, dict] | None:
    """(class, update, options with the class's defaults) when `config` trains without the class."""
    plain = OmegaConf.to_container(config, resolve=True)
    target = str(plain.get("_target_", ""))
    options = {key: value for key, value in plain.items() if not key.startswith("_")}
    if target not in _FUNCTIONAL:
        return None
    cls, update = _FUNCTIONAL[target]
    if not set(options) <= _HANDLED[update]:
        return None
    defaults = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    return cls, update, {**defaults, **options}


def build_optimizer(config, params: list[torch.Tensor]):
    """The optimizer `config` (model.optimizer, a partial torch.optim class) over `params`: a
    FunctionalOptimizer for SGD, Adam and AdamW with the options they take here, else the class."""
    functional = _functional_form(config)
    if functional is not None:
        _, update, options = functional
        return FunctionalOptimizer(params, update, options)
    return instantiate(config)(params)


def check_optimizer(config) -> None:
    """Raise RineError (one line) unless `config` (model.optimizer, whose _target_ imports:
    rine.config checks that first) is a torch.optim class this training can step, with values
    it accepts: for SGD/Adam/AdamW on the functional path, the checks their constructors make;
    for any other, the class itself, built on a dummy parameter and stepped once (its own
    checks, and e.g. SparseAdam's refusal of dense gradients)."""
    from hydra.utils import get_object

    from rine.errors import RineError

    target = config.get("_target_")
    examples = "e.g. torch.optim.AdamW (model=mlp), torch.optim.SGD (model=mlp_paper), torch.optim.Adam"
    optimizer = get_object(str(target))
    if not (isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer)):
        raise RineError(f"model.optimizer._target_={target} is not a torch.optim optimizer; {examples}")
    if config.get("maximize"):
        raise RineError("model.optimizer.maximize=true would ascend the loss rine minimises; remove it")
    functional = _functional_form(config)
    if functional is None:
        parameter = torch.zeros(2, requires_grad=True)
        parameter.grad = torch.ones(2)
        try:
            optimizer = instantiate(config)([parameter])
            optimizer.step()
        except TypeError as error:
            if "closure" in str(error):
                raise RineError(f"{target} needs a closure at every step (it re-evaluates the loss), which rine's "
                                f"training does not give; choose another optimizer, {examples}") from None
            raise RineError(f"model.optimizer ({target}) cannot be built: {error}") from None
        except (ValueError, RuntimeError) as error:
            raise RineError(f"model.optimizer ({target}) refuses its settings: {str(error).splitlines()[0]}") from None
        except InstantiationException as error:
            cause = error.__cause__ or error
            raise RineError(f"model.optimizer ({target}) refuses its settings: {str(cause).splitlines()[0]}") from None
        return
    _, update, o = functional

    def at_least_0(key) -> None:
        value = o.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise RineError(f"model.optimizer.{key}={value} is invalid; it must be a number >= 0")

    for key in ("weight_decay", "momentum", "dampening", "eps"):
        if key in o:
            at_least_0(key)
    if "betas" in o:
        betas = o["betas"]
        if (not isinstance(betas, (list, tuple)) or len(betas) != 2
                or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas)):
            raise RineError(f"model.optimizer.betas={betas} is invalid; give two numbers in [0, 1), e.g. [0.9,0.999]")
    if o.get("nesterov") and (o.get("momentum", 0) <= 0 or o.get("dampening", 0) != 0):
        raise RineError("model.optimizer.nesterov=true needs model.optimizer.momentum > 0 and dampening 0")
    if o.get("fused") and o.get("foreach"):
        raise RineError("model.optimizer.fused and foreach cannot both be true; remove one (~model.optimizer.foreach)")


class FunctionalOptimizer:
    """One parameter group updated by torch's functional SGD or Adam(W), as the class would.

    The parts of the Optimizer interface the batched engine uses: param_groups[0]["lr"] (decayed
    in place after every epoch), zero_grad(set_to_none=True), step(), state_dict() and
    load_state_dict() (its own format, for the group checkpoint).
    """

    def __init__(self, params: list[torch.Tensor], update: str, options: dict):
        self.params = list(params)
        self.update = update
        self.options = options
        self.param_groups = [{"params": self.params, "lr": options["lr"]}]
        if update == "sgd":
            self.momentum_buffers: list[torch.Tensor | None] = [None] * len(self.params)
        else:
            fused_or_capturable = bool(options.get("fused"))
            # As Adam._init_group: the step count is a float32 scalar tensor (on the parameter's device when fused).
            self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) if fused_or_capturable
                          else torch.tensor(0.0, dtype=torch.float32) for p in self.params]
            self.exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
            self.exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
            self.max_exp_avg_sqs = ([torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
                                    if options.get("amsgrad") else [])

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        o, lr = self.options, self.param_groups[0]["lr"]
        with_grad = [i for i, p in enumerate(self.params) if p.grad is not None]
        params = [self.params[i] for i in with_grad]
        grads = [self.params[i].grad for i in with_grad]
        if self.update == "sgd":
            buffers = [self.momentum_buffers[i] for i in with_grad]
            sgd(params, grads, buffers, weight_decay=o["weight_decay"], momentum=o["momentum"], lr=lr,
                dampening=o["dampening"], nesterov=o["nesterov"], maximize=o["maximize"], foreach=o["foreach"],
                fused=o["fused"])
            if o["momentum"] != 0:
                for i, buffer in zip(with_grad, buffers):
                    self.momentum_buffers[i] = buffer
            return
        update = adamw if self.update == "adamw" else adam
        beta1, beta2 = o["betas"]
        update(params, grads, [self.exp_avgs[i] for i in with_grad], [self.exp_avg_sqs[i] for i in with_grad],
               [self.max_exp_avg_sqs[i] for i in with_grad] if o["amsgrad"] else [],
               [self.steps[i] for i in with_grad], foreach=o["foreach"], fused=o["fused"], amsgrad=o["amsgrad"],
               beta1=beta1, beta2=beta2, lr=lr, weight_decay=o["weight_decay"], eps=o["eps"],
               maximize=o["maximize"])

    def state_dict(self) -> dict:
        state = {"update": self.update, "lr": self.param_groups[0]["lr"]}
        if self.update == "sgd":
            state["momentum_buffers"] = self.momentum_buffers
        else:
            state.update(steps=self.steps, exp_avgs=self.exp_avgs, exp_avg_sqs=self.exp_avg_sqs,
                         max_exp_avg_sqs=self.max_exp_avg_sqs)
        return state

    def load_state_dict(self, state: dict) -> None:
        if state.get("update") != self.update:
            raise ValueError(f"a {state.get('update')} optimizer state cannot resume a {self.update} optimizer")
        self.param_groups[0]["lr"] = state["lr"]
        if self.update == "sgd":
            self.momentum_buffers = list(state["momentum_buffers"])
        else:
            self.steps, self.exp_avgs = list(state["steps"]), list(state["exp_avgs"])
            self.exp_avg_sqs, self.max_exp_avg_sqs = list(state["exp_avg_sqs"]), list(state["max_exp_avg_sqs"])
