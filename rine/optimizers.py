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
from omegaconf import OmegaConf
from torch.optim.adam import adam
from torch.optim.adamw import adamw
from torch.optim.sgd import sgd

from rine.config import build

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


def build_optimizer(config, params: list[torch.Tensor]):
    """The optimizer `config` (model.optimizer, a partial torch.optim class) over `params`: a
    FunctionalOptimizer for SGD, Adam and AdamW with the options they take here, else the class."""
    plain = OmegaConf.to_container(config, resolve=True)
    target = str(plain.get("_target_", ""))
    options = {key: value for key, value in plain.items() if not key.startswith("_")}
    if target in _FUNCTIONAL:
        cls, update = _FUNCTIONAL[target]
        if set(options) <= _HANDLED[update] and not isinstance(options.get("lr", 0.0), torch.Tensor):
            defaults = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
                        if p.default is not inspect.Parameter.empty}
            return FunctionalOptimizer(params, update, {**defaults, **options})
    return build(config)(params)


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
