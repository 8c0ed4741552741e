"""One contract for every unlearning method, a registry by name, and the shared training loop.

    result = unlearn("multidelete", model, task, forget, retain, val, seed=0, lr=2e-5)
    result.model, result.history, result.seconds

A method takes the original model f, the forget set D_f, the retain set D_r and
validation data, plus its hyperparameters, and returns a new model f' (f is never
modified) and a log. Methods are picked by name: `methods.available()` lists them.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np
import torch

from ..data.examples import Batch, ExampleSet
from ..models import MultimodalModel
from ..precision import MasterWeights, attention_kernels, check_precision, resolve_precision
from ..tasks.base import Task
from ..training import adamw
from ..utils import progress_bar
from .frozen import FrozenModel
from .selection import Monitor

_REGISTRY: dict[str, tuple[type["Method"], bool]] = {}  # name -> (class, fusion_only)


def register(cls: type["Method"]) -> type["Method"]:
    """Class decorator: register a method under `cls.name` (and its fusion-only variant under `name-f`)."""
    _REGISTRY[cls.name] = (cls, False)
    if cls.has_fusion_variant:
        _REGISTRY[cls.name + "-f"] = (cls, True)
    return cls


def available() -> list[str]:
    """Names of all registered methods, e.g. ['multidelete', 'multidelete-f', ...]."""
    return sorted(_REGISTRY)


def get_method(name: str, task: Task | None = None, **hparams) -> "Method":
    """The method registered as `name`, configured with `hparams` (validated). With a `task`, its own
    defaults for the method (`Task.method_overrides(name)`) come first and `hparams` override them."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; available methods: {', '.join(available())}")
    cls, fusion_only = _REGISTRY[name]
    if task is not None:
        hparams = {**task.method_overrides(name), **hparams}
    return cls(fusion_only=fusion_only, **hparams)


@dataclass
class MethodConfig:
    """Hyperparameters shared by the optimisation-based methods."""

    epochs: int = 8
    lr: float = 2e-5
    weight_decay: float = 0.02
    forget_batch: int = 32
    retain_batch: int = 32
    min_steps: int = 30  # at least this many steps: a small D_f gets more epochs (0 = exactly `epochs`)
    eval_every: int = 0  # steps between validation checks; 0 = once per epoch
    select: str = "best"  # "best": keep the best checkpoint on validation (the paper); "last": keep the last
    grad_clip: float = 5.0
    precision: str = "auto"  # "auto", "fp32" or "bf16" (bfloat16 weights and activations, see mdlib.precision)

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            expected = f.type if isinstance(f.type, str) else f.type.__name__
            if expected == "int" and (not isinstance(v, int) or isinstance(v, bool)):
                raise TypeError(f"{f.name} must be an int, got {v!r} ({type(v).__name__})")
            if expected == "float" and (not isinstance(v, (int, float)) or isinstance(v, bool)):
                raise TypeError(f"{f.name} must be a number, got {v!r} ({type(v).__name__})")
            if expected == "bool" and not isinstance(v, bool):
                raise TypeError(f"{f.name} must be True or False, got {v!r}")
        for name in ("epochs", "forget_batch", "retain_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0 or self.eval_every < 0 or self.grad_clip < 0 or self.min_steps < 0:
            raise ValueError("weight_decay, eval_every, grad_clip and min_steps must be non-negative")
        if self.select not in ("best", "last"):
            raise ValueError(f"select must be 'best' or 'last', got {self.select!r}")
        check_precision(self.precision)


@dataclass
class UnlearnResult:
    """What every method returns: the unlearned model f', a log of the run and its wall time."""

    model: MultimodalModel
    method: str
    config: dict
    seconds: float
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Method:
    """Base class. Subclasses set `name`, `Config`, and implement `run` (or `loss` for the shared loop)."""

    name: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    # Defaults that differ between the full method and its "-F" variant, e.g. {"fusion": {"lr": 2e-4}};
    # hyperparameters passed by the caller always win.
    variant_defaults: ClassVar[dict[str, dict]] = {}
    has_fusion_variant: ClassVar[bool] = True
    uses_retain: ClassVar[bool] = True

    def __init__(self, fusion_only: bool = False, **hparams):
        valid = {f.name for f in dataclasses.fields(self.Config)}
        unknown = set(hparams) - valid
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {sorted(unknown)} for {self.name!r}; valid: {sorted(valid)}")
        self.config = self.Config(**(self.variant_defaults.get("fusion" if fusion_only else "full", {}) | hparams))
        self.config.validate()
        self.fusion_only = fusion_only

    @property
    def full_name(self) -> str:
        return self.name + ("-f" if self.fusion_only else "")

    def __repr__(self) -> str:
        return f"{self.full_name}({dataclasses.asdict(self.config)})"

    # -- the contract ------------------------------------------------------------------------
    def unlearn(self, model: MultimodalModel, task: Task, forget: ExampleSet, retain: ExampleSet,
                val: ExampleSet | None = None, *, seed: int = 0, progress: bool = True,
                history: bool = True) -> UnlearnResult:
        """Return f' (a new model) unlearned from `model` on `forget`, keeping `retain`.

        `history=False` skips the validation checks whose only use is the log: those of a run that keeps its
        last step and has no divergence guard. f' is the same; `result.history` then holds only the last
        step's number, and `result.seconds` no longer includes the checks (the protocol of Table 1 runs so)."""
        if len(forget) == 0:
            raise ValueError("the forget set is empty: nothing to unlearn")
        if self.uses_retain and len(retain) == 0:
            raise ValueError("the retain set is empty")
        overlap = np.intersect1d(forget.units(), retain.units())
        if overlap.size:
            raise ValueError(f"{overlap.size} deletion units are in both the forget and the retain set")
        torch.manual_seed(seed)
        self.log_checks = history
        new = copy.deepcopy(model)
        start = time.perf_counter()
        result = self.run(new, model, task, forget, retain, val, seed=seed, progress=progress)
        result.seconds = time.perf_counter() - start
        if self.fusion_only:
            _check_encoders_unchanged(model, result.model)
        return result

    def run(self, new: MultimodalModel, original: MultimodalModel, task: Task, forget: ExampleSet,
            retain: ExampleSet, val: ExampleSet | None, *, seed: int, progress: bool) -> UnlearnResult:
        """Default: the shared loop over D_f with D_r batches alongside, minimising `self.loss`."""
        frozen = FrozenModel(original, task, dtype=self.compute_dtype(original)) if self.needs_frozen else None
        return optimise(self, new, frozen, task, forget, retain, val, seed=seed, progress=progress)

    needs_frozen: ClassVar[bool] = True
    log_checks: bool = True  # set by `unlearn(history=...)`: run the validation checks that only log

    def compute_dtype(self, model: MultimodalModel) -> torch.dtype:
        """The dtype this method's steps run in on `model`'s device (its `precision` setting)."""
        return resolve_precision(getattr(self.config, "precision", "fp32"), next(model.parameters()).device)

    def trainable_parameters(self, model: MultimodalModel) -> list[torch.nn.Parameter]:
        return list(model.fusion_parameters()) if self.fusion_only else list(model.parameters())

    def freeze_all_but_trainable(self, model: MultimodalModel) -> list[torch.nn.Parameter]:
        """Let only `trainable_parameters` require gradients (the rest keep no grad); returns them."""
        params = self.trainable_parameters(model)
        trainable = {id(p) for p in params}
        for p in model.parameters():
            p.requires_grad_(id(p) in trainable)
        return params

    def loss(self, model: MultimodalModel, frozen: FrozenModel | None, task: Task, forget_batch: Batch,
             retain_batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError


def _check_encoders_unchanged(original: MultimodalModel, new: MultimodalModel) -> None:
    for (name, a), b in zip(original.named_parameters(), new.parameters()):
        if name.startswith(("image_encoder", "text_encoder", "image_proj", "text_proj", "logit_scale")) and not torch.equal(a, b):
            raise AssertionError(f"a fusion-only method changed encoder parameter {name}")


def optimise(method: Method, model: MultimodalModel, frozen: FrozenModel | None, task: Task, forget: ExampleSet,
             retain: ExampleSet, val: ExampleSet | None, *, seed: int, progress: bool,
             loss_fn: Callable | None = None, epochs: int | None = None, lr: float | None = None,
             ascent_guard: Callable[[float], bool] | None = None) -> UnlearnResult:
    """The loop shared by the optimisation-based methods.

    One epoch = one pass over D_f in batches of `forget_batch`; each step also draws a batch of
    `retain_batch` examples of D_r (cycling through a shuffled D_r). A small D_f gets extra epochs so
    that the run takes at least `min_steps` steps; validation checks come once per epoch (at most 6). Only the method's
    trainable parameters move (the fusion module and head for "-F" variants).
    """
    cfg = method.config
    loss_fn = loss_fn or method.loss
    epochs = cfg.epochs if epochs is None else epochs
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    params = method.freeze_all_but_trainable(model)
    dtype = method.compute_dtype(model)
    masters = MasterWeights(model, params, dtype)
    opt = adamw(masters.masters(params), lr=cfg.lr if lr is None else lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(forget) // cfg.forget_batch) if len(forget) >= 2 * cfg.forget_batch else 1
    epochs = max(epochs, math.ceil(cfg.min_steps / steps_per_epoch))
    total = epochs * steps_per_epoch
    eval_every = cfg.eval_every or max(steps_per_epoch, total // 6)
    # a check that nothing reads (no "best" to pick, no guard, no log wanted) is skipped: it never changes f'
    checks = cfg.select == "best" or ascent_guard is not None or method.log_checks
    monitor = Monitor(task, forget, retain, val, seed, state=masters.float32_state if masters.active else None)
    notes: list[str] = []
    step, stop = 0, False
    bar = progress_bar(total=total, desc=method.full_name, disable=not progress, leave=False)
    try:
        with attention_kernels(dtype, device):
            if checks:
                monitor.check(model, 0)
            retain_order, retain_pos = torch.randperm(len(retain), generator=g), 0
            model.train()
            for _ in range(epochs):
                for f_idx in torch.randperm(len(forget), generator=g).tensor_split(steps_per_epoch):
                    fb = forget.batch(f_idx, device)
                    rb = None
                    if method.uses_retain:
                        if retain_pos + cfg.retain_batch > len(retain_order):
                            retain_order, retain_pos = torch.randperm(len(retain), generator=g), 0
                        rb = retain.batch(retain_order[retain_pos:retain_pos + cfg.retain_batch], device)
                        retain_pos += cfg.retain_batch
                    loss, logs = loss_fn(model, frozen, task, fb, rb, g)
                    if not torch.isfinite(loss):
                        notes.append(f"non-finite loss at step {step}: stopped")
                        stop = True
                        break
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    masters.step(opt, cfg.grad_clip)
                    step += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
                    if checks and (step % eval_every == 0 or step == total):
                        row = monitor.check(model, step, {f"loss_{k}": v for k, v in logs.items()})
                        if ascent_guard is not None and ascent_guard(row):
                            notes.append(f"divergence guard stopped the run at step {step}")
                            stop = True
                            break
                if stop:
                    break
    finally:
        bar.close()
        masters.restore()
    if cfg.select == "best" and monitor.best_state is not None:
        model.load_state_dict(monitor.best_state)
        if monitor.best_row.get("step") == 0 and step > 0:
            notes.append("no checkpoint improved on the original by the selection rule (forgetting without losing "
                         "retained data or validation performance): the original weights were kept; "
                         "select='last' keeps the last step instead")
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    history = monitor.history if checks else [{"step": step}]
    return UnlearnResult(model, method.full_name, dataclasses.asdict(cfg), 0.0, history,
                         monitor.best_row if cfg.select == "best" else history[-1], notes)


def unlearn(name: str, model: MultimodalModel, task: Task, forget: ExampleSet, retain: ExampleSet,
            val: ExampleSet | None = None, *, seed: int = 0, progress: bool = True, history: bool = True,
            **hparams) -> UnlearnResult:
    """Run the method registered as `name` on `task` with `hparams` (over the task's own defaults, see
    `get_method`): the one entry point of notebooks and runner."""
    return get_method(name, task, **hparams).unlearn(model, task, forget, retain, val, seed=seed, progress=progress,
                                                     history=history)
