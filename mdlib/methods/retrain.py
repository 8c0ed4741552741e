"""Retrain (the gold standard) and Retrain-F.

Retrain builds a fresh model with f's `ModelConfig` (random initialisation, or the same
pretrained backbones when the config names them) and trains it from scratch on D_r only, with
the original recipe (`training.train` and a `TrainConfig`). It never sees D_f.

Retrain-F ("retrain-f", not a row of the paper) keeps f's encoders, re-initialises the fusion
module and head and trains only those on D_r with the same recipe. It is cheaper than Retrain but
not exact: the frozen encoders did see D_f.

Pass the recipe the original model was trained with, e.g.
`train_config=mdlib.pipeline.original.default_train_config(fast).to_dict()`; None uses
`TrainConfig()` (the library default), which is not the fast-mode recipe.
`result.history` is the per-epoch training log; `result.best` is a monitor row (D_f score,
P(true) on D_f and D_r, validation metric) of the retrained model.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..models import MultimodalModel
from ..training import TrainConfig, train
from .base import Method, UnlearnResult, register
from .dtd import check_after
from .neggrad import reference_row

FUSION_MODULES = ("image_to_fusion", "fusion", "head")


def fresh_model(like: MultimodalModel, seed: int) -> MultimodalModel:
    """A newly initialised model with `like`'s config and device, seeded (the caller's RNG state is kept)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MultimodalModel(like.config)
    return model.to(next(like.parameters()).device)


@dataclass
class RetrainConfig:
    """train_config: the fields of `TrainConfig` as a dict (None = `TrainConfig()` defaults)."""

    train_config: dict | None = None

    def validate(self) -> None:
        self.recipe()

    def recipe(self) -> TrainConfig:
        if self.train_config is None:
            return TrainConfig()
        if isinstance(self.train_config, TrainConfig):
            return self.train_config
        if not isinstance(self.train_config, dict):
            raise TypeError(f"train_config must be a dict of TrainConfig fields or None, got {self.train_config!r}")
        valid = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = set(self.train_config) - valid
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {sorted(unknown)} in train_config; valid: {sorted(valid)}")
        return TrainConfig(**self.train_config)


@register
class Retrain(Method):
    """Retrain ("retrain") and Retrain-F ("retrain-f")."""

    name = "retrain"
    Config = RetrainConfig
    needs_frozen = False

    def run(self, new, original, task, forget, retain, val, *, seed, progress) -> UnlearnResult:
        recipe = self.config.recipe()
        start = reference_row(new, task, forget, retain, val, seed)  # f itself, for the monitor's reference
        init = fresh_model(original, seed)
        if self.fusion_only:
            for name in FUSION_MODULES:
                getattr(new, name).load_state_dict(getattr(init, name).state_dict())
            model = new
        else:
            model = init
        self.freeze_all_but_trainable(model)
        try:
            history = train(model, task, retain, recipe, seed=seed, val=val, progress=progress)
        finally:
            for p in model.parameters():
                p.requires_grad_(True)
        rows = [start]
        best = check_after(model, task, forget, retain, val, seed, rows, len(history))
        notes = [f"trained {'the fusion module and head' if self.fusion_only else 'a new model'} from scratch on "
                 f"{len(retain)} examples of D_r for {recipe.epochs} epochs"]
        return UnlearnResult(model, self.full_name, {"train_config": recipe.to_dict()}, 0.0, history, best, notes)
