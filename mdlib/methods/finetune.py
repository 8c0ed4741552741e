"""FineTune and FineTune-F: keep training f on D_r only, with a larger learning rate.

The "Fine-tune" baseline of Golatkar, Achille & Soatto, "Eternal Sunshine of the Spotless Net:
Selective Forgetting in Deep Networks" (CVPR 2020): continue training on the retained data D_r
with a slightly larger learning rate and rely on catastrophic forgetting to wash D_f out. It
never reads D_f (the shared loop loads D_f batches only to count steps, so that FineTune gets the
same number of steps as MultiDelete on the same |D_f|).

The objective is the original model's own, `task.training_loss` (for retrieval: ITC + ITM with
negatives, as ALBEF), on D_r batches of `retain_batch` examples.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

from ..tasks.base import Task
from .base import Method, MethodConfig, optimise, register


def check_loss_options(task: Task, options: dict | None) -> dict:
    """`options` as keyword arguments of `task.training_loss`, or a clear error naming the bad ones."""
    options = dict(options or {})
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
    """lr: larger than MultiDelete's 2e-5 on purpose (forgetting by interference).

    loss_options: keyword arguments of `task.training_loss` (e.g. {"p_hard": 0.5, "mlm_weight": 0.2}
    for the late-stage recipe of the original retrieval model); None = the task's defaults.
    """

    lr: float = 1e-4
    loss_options: dict | None = None

    def validate(self) -> None:
        super().validate()
        validate_options(self.loss_options)


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

        return optimise(self, new, None, task, forget, retain, val, seed=seed, progress=progress, loss_fn=retain_loss)
