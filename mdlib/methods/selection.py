"""The checkpoint rule of the optimisation-based methods (`select="best"`): which step of a run to keep.

The default of `unlearn` (notebook 05 uses it). Table 1 does not use it: there every method reports its
final model and the setting is chosen across runs by `pipeline.protocol.selection_score`, a rule that reads
neither D_f's reported score nor Retrain.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from ..data.examples import ExampleSet
from ..metrics import d_f_score
from ..models import MultimodalModel
from ..tasks.base import Task

__all__ = ["Monitor"]


class Monitor:
    """Validation checks during unlearning and the choice of the checkpoint to keep.

    At each check: the D_f score on log-odds (D_f against `chunks` chunks of |D_f| retained examples), the
    mean P(true) on D_f and on that D_r sample, and a quick task metric on (up to
    `val_units` units of) the validation data. The kept checkpoint maximises

        (drop of the D_f score) - 100 |change of mean P(true) on D_r| - max(0, drop of the val metric - 1)

    i.e. forgetting D_f, not collapsing everything. The final report recomputes every metric
    in full; the monitor is kept small so that a check costs a second or two.
    """

    def __init__(self, task: Task, forget: ExampleSet, retain: ExampleSet, val: ExampleSet | None, seed: int,
                 chunks: int = 2, val_units: int = 100, state: Callable[[], dict] | None = None):
        self.task, self.forget, self.chunks = task, forget, chunks
        # what a kept checkpoint holds: the model's state (float32 masters in bfloat16 runs)
        self.state = state or (lambda: None)
        g = torch.Generator().manual_seed(seed)
        n = min(len(retain), chunks * len(forget))
        self.retain_sample = retain.subset(torch.randperm(len(retain), generator=g)[:n], "D_r sample")
        self.val = None if val is None else val.with_units(val.units()[:val_units], "val sample")
        self.seed = seed
        self.history: list[dict] = []
        self.best_score = -math.inf
        self.best_state: dict | None = None
        self.best_row: dict = {}

    def check(self, model: MultimodalModel, step: int, extra: dict | None = None) -> dict:
        # the D_f score ranks by log-odds (no float32 ties at P = 1); P(true) = sigmoid(log-odds) is reported
        lf, lr = self.task.true_logodds(model, self.forget), self.task.true_logodds(model, self.retain_sample)
        row = {"step": step, "d_f": d_f_score(lf, lr, n_chunks=self.chunks, seed=self.seed),
               "p_forget": float(_sigmoid(lf).mean()), "p_retain": float(_sigmoid(lr).mean())}
        if self.val is not None:
            row["val_d_test"] = self.task.quick_evaluate(model, self.val)
        row |= extra or {}
        if not self.history:
            self.start = row
        score = (self.start["d_f"] - row["d_f"]) - 100 * abs(row["p_retain"] - self.start["p_retain"])
        if self.val is not None:
            score -= max(0.0, self.start["val_d_test"] - row["val_d_test"] - 1.0)
        row["selection_score"] = score
        self.history.append(row)
        if score > self.best_score:
            self.best_score, self.best_row = score, row
            self.best_state = self.state() or {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.train()
        return row


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * x))  # = 1 / (1 + exp(-x)), without overflow
