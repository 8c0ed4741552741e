"""FineTune and FineTune-F: keep training f on D_r only, with the original's objective and learning rate.

The "Fine-tune" baseline of Golatkar, Achille & Soatto, "Eternal Sunshine of the Spotless Net:
Selective Forgetting in Deep Networks" (CVPR 2020), Section 5 (baselines): continue training the
trained model on the retained data D_r with its training objective, at a slightly large learning
rate, and rely on catastrophic forgetting to wash D_f out. (The SCRUB code of Kurmanji et al. 2023,
which reimplements the baseline, runs `finetune(model, retain_loader, lr=0.01, epochs=10)`: plain
SGD on the training cross-entropy for 10 epochs of D_r.) It never reads D_f; the shared loop loads
D_f batches only to pace its steps.

Here, by default:

* the objective is the original model's own: `task.training_loss` with the original recipe's
  options (`recipe.original_loss_options()`: for retrieval ITC + ITM with minimal-pair and
  ITC-hard negatives, matched pairs weighted 4 in ITM, MLM at weight 0.2), on D_r batches;
* the learning rate is the original's peak rate (`TrainConfig().lr` = 6e-4; the fast-mode
  recipe peaks at 1e-3), constant, with the original's weight decay (0.02) and clipping (5);
* the budget is `retain_epochs` = 1 pass over D_r's examples (every retained pair once, in
  batches of `retain_batch`): in fast mode 60 steps, about 12% of the steps that trained f.

What differs from the source and why: one epoch instead of 10 (the comparison caps every method
at a fraction of Retrain's cost; `retain_epochs` is the budget knob); AdamW at one rate for every
parameter instead of the original's two rates (fusion and head at 2x) and cosine schedule (the
shared loop has one optimiser; the rate is a grid parameter); the shared loop's checkpoint
selection (`select`) applies, where Golatkar et al. publish the last iterate (select="last").
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

from ..tasks.base import Task
from .base import Method, MethodConfig, optimise, register
from .recipe import original_learning_rate, original_loss_options


def check_loss_options(task: Task, options: dict | None) -> dict:
    """`options` as keyword arguments of `task.training_loss` (None = the original recipe's,
    `recipe.original_loss_options()`), or a clear error naming the bad ones."""
    options = original_loss_options() if options is None else dict(options)
    try:
        inspect.signature(task.training_loss).bind(None, None, None, **options)
    except TypeError as e:
        valid = [p for p in inspect.signature(task.training_loss).parameters
                 if p not in ("model", "batch", "generator")]
        raise ValueError(f"loss_options {sorted(options)} do not fit {type(task).__name__}.training_loss ({e}); "
                         f"its options are {valid}") from e
    return options


def validate_options(value, name: str = "loss_options") -> None:
    """An optional dict of keyword arguments (checked against the task when the method runs)."""
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict of keyword arguments of task.training_loss or None, got {value!r}")


@dataclass
class FineTuneConfig(MethodConfig):
    """lr: the original's peak learning rate (forgetting by interference needs a rate at least that
    of the end of training). retain_epochs: the budget, in passes over D_r's examples (None = the
    shared loop's `epochs` passes over D_f, as MultiDelete). loss_options: keyword arguments of
    `task.training_loss`; None = the original recipe's (`recipe.original_loss_options()`), {} = the
    task's bare defaults.
    """

    lr: float = original_learning_rate()
    retain_epochs: float | None = 1.0
    loss_options: dict | None = None

    def validate(self) -> None:
        super().validate()
        validate_options(self.loss_options)
        v = self.retain_epochs
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0):
            raise ValueError(f"retain_epochs must be a positive number or None, got {v!r}")


def loop_epochs_for(cfg: MethodConfig, n_forget: int, n_retain: int, retain_epochs: float) -> int:
    """Epochs of the shared loop (passes over D_f, as `optimise` paces them) that take at least
    `retain_epochs` x |D_r| / retain_batch steps."""
    steps_per_epoch = max(1, n_forget // cfg.forget_batch) if n_forget >= 2 * cfg.forget_batch else 1
    return max(1, math.ceil(retain_epochs * n_retain / cfg.retain_batch / steps_per_epoch))


@register
class FineTune(Method):
    """FineTune ("finetune") and FineTune-F ("finetune-f": only the fusion module and head move)."""

    name = "finetune"
    Config = FineTuneConfig
    needs_frozen = False

    def run(self, new, original, task, forget, retain, val, *, seed, progress):
        options = check_loss_options(task, self.config.loss_options)

        def retain_loss(model, frozen, task, forget_batch, retain_batch, generator):
            return task.training_loss(model, retain_batch, generator, **options)

        cfg = self.config
        epochs = None if cfg.retain_epochs is None else loop_epochs_for(cfg, len(forget), len(retain),
                                                                        cfg.retain_epochs)
        return optimise(self, new, None, task, forget, retain, val, seed=seed, progress=progress, loss_fn=retain_loss,
                        epochs=epochs)
