"""NegGrad and NegGrad-F: gradient ascent on the original training loss over D_f.

NegGrad (as the MultiDelete paper describes it, after Golatkar et al. 2020) "optimizes the
original loss function of training f on D_f but reverses the direction of gradients". It reads
only D_f. The loss is the original model's own objective with the original recipe's options
(`recipe.original_loss_options()`: for retrieval ITC + ITM with minimal-pair and ITC-hard
negatives, matched pairs weighted 4 in ITM, MLM at weight 0.2), not the task's bare defaults,
so that what is ascended is what f descended.

Ascent has no natural end: the loss of D_f can grow without bound while the whole model
collapses, so a divergence guard stops the run when the model's grip on the retained data or the
validation metric slips too far, or when the D_f loss passes a bound; the reason goes to
`result.notes`.

What differs from the source and why: Golatkar et al. ascend for a fixed budget and publish the last
iterate; the divergence guard and the shared loop's checkpoint selection (`select`) are ours, because
an unbounded ascent otherwise ends in a collapsed model whatever D_f is. The rate is the shared loop's
(2e-5, as MultiDelete), far below the original's peak of 6e-4: a step size for ascent has no
counterpart in the original recipe, and it is the method's key hyperparameter to tune.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..data.examples import ExampleSet
from ..models import MultimodalModel
from ..tasks.base import Task
from .base import Method, MethodConfig, Monitor, optimise, register
from .finetune import check_loss_options, validate_options

OBJECTIVES = ("training", "example")


def reference_row(model: MultimodalModel, task: Task, forget: ExampleSet, retain: ExampleSet, val: ExampleSet | None,
                  seed: int) -> dict:
    """The monitor's row for `model` at step 0 (the same D_r and validation samples as `optimise` draws)."""
    return Monitor(task, forget, retain, val, seed).check(model, 0)


class DivergenceGuard:
    """`ascent_guard` for `optimise`: True (stop) when a monitor row shows the run diverging.

    Stops when mean P(true) on the monitor's D_r sample fell by more than `max_retain_drop` from
    `reference`, when the validation metric fell by more than `max_val_drop` points, when the
    logged D_f loss (`row[loss_key]`) exceeds `max_forget_loss`, or when `extra(row)` returns a
    reason. Any bound set to None is off. The reason is kept in `self.reason`.
    """

    def __init__(self, reference: dict, max_retain_drop: float | None = None, max_val_drop: float | None = None,
                 max_forget_loss: float | None = None, loss_key: str = "loss_forget",
                 extra: Callable[[dict], str | None] | None = None):
        self.reference, self.loss_key, self.extra = reference, loss_key, extra
        self.max_retain_drop, self.max_val_drop, self.max_forget_loss = max_retain_drop, max_val_drop, max_forget_loss
        self.reason: str | None = None

    def __call__(self, row: dict) -> bool:
        reasons = []
        ref = self.reference
        if self.max_retain_drop is not None and ref["p_retain"] - row["p_retain"] > self.max_retain_drop:
            reasons.append(f"mean P(true) on the D_r sample fell from {ref['p_retain']:.3f} to {row['p_retain']:.3f} "
                           f"(max_retain_drop={self.max_retain_drop})")
        if self.max_val_drop is not None and "val_d_test" in row and "val_d_test" in ref \
                and ref["val_d_test"] - row["val_d_test"] > self.max_val_drop:
            reasons.append(f"the validation metric fell from {ref['val_d_test']:.1f} to {row['val_d_test']:.1f} "
                           f"(max_val_drop={self.max_val_drop})")
        if self.max_forget_loss is not None and row.get(self.loss_key, -float("inf")) > self.max_forget_loss:
            reasons.append(f"the D_f loss reached {row[self.loss_key]:.3g} (max_forget_loss={self.max_forget_loss})")
        if self.extra is not None and (reason := self.extra(row)):
            reasons.append(reason)
        if reasons:
            self.reason = f"stopped at step {row['step']}: " + "; ".join(reasons)
            return True
        return False


def validate_guard(cfg) -> None:
    for name in ("max_retain_drop", "max_val_drop", "max_forget_loss"):
        v = getattr(cfg, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
            raise ValueError(f"{name} must be a positive number or None (no bound), got {v!r}")


@dataclass
class NegGradConfig(MethodConfig):
    """objective: "training" = the original objective `task.training_loss` on D_f batches (the paper's
    definition; for retrieval ITC + ITM with negatives), with `loss_options` (None = the original
    recipe's, `recipe.original_loss_options()`; {} = the task's bare defaults); "example" = the loss of
    D_f's own ground truth only, `task.example_loss` (what the D_f score reads).

    Divergence guard (None turns a bound off): max_retain_drop (absolute drop of mean P(true) on a
    D_r sample), max_val_drop (points of the validation metric), max_forget_loss (the D_f loss).
    """

    objective: str = "training"
    loss_options: dict | None = None
    max_retain_drop: float | None = 0.2
    max_val_drop: float | None = 20.0
    max_forget_loss: float | None = 50.0

    def validate(self) -> None:
        super().validate()
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        validate_options(self.loss_options)
        if self.loss_options and self.objective != "training":
            raise ValueError("loss_options only apply to objective='training'")
        validate_guard(self)


@register
class NegGrad(Method):
    """NegGrad ("neggrad") and NegGrad-F ("neggrad-f": the ascent moves only the fusion module and head)."""

    name = "neggrad"
    Config = NegGradConfig
    needs_frozen = False
    uses_retain = False

    def run(self, new, original, task, forget, retain, val, *, seed, progress):
        cfg = self.config
        options = check_loss_options(task, cfg.loss_options) if cfg.objective == "training" else {}
        if cfg.objective == "training" and len(forget.units()) < 2:
            raise ValueError("NegGrad's training objective compares pairs within a batch and needs at least two "
                             "deletion units in D_f; use objective='example'")

        def ascent_loss(model, frozen, task, forget_batch, retain_batch, generator):
            if cfg.objective == "training":
                loss, _ = task.training_loss(model, forget_batch, generator, **options)
            else:
                loss = task.example_loss(model, forget_batch).mean()
            return -loss, {"forget": loss.item()}

        guard = DivergenceGuard(reference_row(new, task, forget, retain, val, seed), cfg.max_retain_drop,
                                cfg.max_val_drop, cfg.max_forget_loss)
        result = optimise(self, new, None, task, forget, retain, val, seed=seed, progress=progress,
                          loss_fn=ascent_loss, ascent_guard=guard)
        if guard.reason:
            result.notes.append(f"divergence guard {guard.reason}")
        return result


def mean_example_loss(model: MultimodalModel, task: Task, examples: ExampleSet, batch_size: int = 256) -> float:
    """Mean `task.example_loss` over `examples` (no gradients), e.g. to check that an ascent went up."""
    model.eval()
    device = next(model.parameters()).device
    total, n = 0.0, 0
    with torch.no_grad():
        for batch in examples.batches(batch_size, device=device):
            losses = task.example_loss(model, batch)
            total, n = total + losses.sum().item(), n + len(losses)
    return total / max(n, 1)
