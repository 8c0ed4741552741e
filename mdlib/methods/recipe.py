"""The original model's training recipe, as the unlearning methods that reuse it need it.

`training.train` trains the original model f with `task.training_loss(model, batch, generator,
p_hard=..., p_minimal=..., kind_weights=..., mlm_weight=..., itm_pos_weight=...)`, the options
taken from a `TrainConfig`. A baseline that "trains on the original objective" (FineTune, the
descent of DtD) or "ascends the original objective" (NegGrad) must pass the same options: the
task's bare defaults are another objective (for retrieval: matched pairs weighted 1 instead of 4
in ITM, no ITC-hard negatives, no MLM).

The methods cannot import the pipeline (it sits above them), so the recipe comes from
`TrainConfig` itself: its defaults, which the full- and fast-mode recipes of every task share for
these options (they differ only in epochs, batch size, learning rate and warm-up).
"""
from __future__ import annotations

from ..training import TrainConfig

__all__ = ["original_loss_options", "original_learning_rate"]


def original_loss_options(config: TrainConfig | None = None, *, stage: str = "late") -> dict:
    """Keyword arguments of `task.training_loss` that `training.train` passes under `config`
    (`TrainConfig()` when None).

    stage: "late" (default) = the recipe after `hard_from` of the epochs, with ITC-hard negatives
    at rate `p_hard`: the stage f finished in, hence the objective an unlearning method continues
    from; "early" = the first stage (p_hard = 0).
    """
    if stage not in ("late", "early"):
        raise ValueError(f"stage must be 'late' or 'early', got {stage!r}")
    config = config or TrainConfig()
    return {"p_hard": config.p_hard if stage == "late" else 0.0, "p_minimal": config.p_minimal,
            "kind_weights": dict(config.kind_weights), "mlm_weight": config.mlm_weight,
            "itm_pos_weight": config.itm_pos_weight}


def original_learning_rate(config: TrainConfig | None = None) -> float:
    """The peak learning rate of the original's encoders under `config` (`TrainConfig()`: 6e-4; the
    fast-mode recipe uses 1e-3); its fusion module and head learn at `fusion_lr_mult` (2) x this."""
    return float((config or TrainConfig()).lr)
