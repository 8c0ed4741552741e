"""LiRA, the likelihood-ratio membership attack (Carlini et al., "Membership Inference Attacks
From First Principles", IEEE S&P 2022), with reference ("shadow") models.

K reference models are trained with the target's recipe on random halves of a population of
deletion units (by default D_train and D_test together), in complementary pairs, so every unit
is IN (trained on) for exactly K/2 models and OUT for the other K/2. For each example, the
logit-scaled confidence of its ground truth, phi = log p_y / (1 - p_y), is modelled by a Gaussian
over the IN models and one over the OUT models. A target model's phi on the example is then scored

    online:  log N(phi; mu_in, s_in^2) - log N(phi; mu_out, s_out^2)      (likelihood ratio)
    offline: (phi - mu_out) / s_out                                         (one-sided test, OUT models only)

higher = more likely a member. The per-example Gaussians are what makes LiRA strong: an example
that every model finds easy is not called a member just for being easy. With few reference
models (fewer than 64 in the paper) one global variance per side works better than per-example
variances (`fix_variance`, as in the authors' code).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.examples import ExampleSet, concat
from ..models import ModelConfig, MultimodalModel
from ..tasks.base import Task
from ..training import TrainConfig
from .features import contrastive_logits, true_logodds

__all__ = ["reference_splits", "ReferenceModels", "reference_models", "reference_seed", "LiRA", "STATISTICS"]

STATISTICS = ("logodds", "contrastive")


def reference_splits(units: np.ndarray, k: int, seed: int) -> np.ndarray:
    """IN masks (K, U) bool: model 2j trains on a random half of `units`, model 2j+1 on the other half."""
    if not isinstance(k, int) or k < 2 or k % 2:
        raise ValueError(f"the number of reference models must be an even int >= 2, got {k!r}")
    units = np.asarray(units)
    if len(units) < 2:
        raise ValueError("need at least two units to split into halves")
    rng = np.random.default_rng(seed)
    mask = np.zeros((k, len(units)), dtype=bool)
    for j in range(k // 2):
        mask[2 * j, rng.permutation(len(units))[: len(units) // 2]] = True
        mask[2 * j + 1] = ~mask[2 * j]
    return mask


def reference_seed(seed: int, j: int) -> int:
    """Seed of reference model j: distinct from the target's `seed`, so the attacker does not share its initialisation."""
    return 1000 * (seed + 1) + j


@dataclass
class ReferenceModels:
    """K models with the units each was trained on. units: (U,) sorted; in_mask: (K, U) bool."""

    models: list[MultimodalModel]
    units: np.ndarray
    in_mask: np.ndarray

    def __len__(self) -> int:
        return len(self.models)

    def trained_on(self, examples: ExampleSet) -> np.ndarray:
        """(K, N) bool: whether model k saw example n's unit. Every unit must belong to the population."""
        u = examples.fields["unit"].numpy()
        pos = np.clip(np.searchsorted(self.units, u), 0, len(self.units) - 1)
        missing = self.units[pos] != u
        if missing.any():
            raise ValueError(f"{int(missing.sum())} examples belong to units outside the reference models' population "
                             f"(e.g. unit {int(u[missing][0])}): LiRA can only score examples of that population")
        return self.in_mask[:, pos]


def reference_models(task: Task, k: int = 8, seed: int = 0, *, population: ExampleSet | None = None,
                     fast: bool = False, train_config: TrainConfig | None = None,
                     model_config: ModelConfig | None = None, device: str = "auto",
                     progress: bool = True) -> ReferenceModels:
    """Train (or load from the checkpoint cache) K reference models on halves of `population`.

    population defaults to D_train and D_test together, so that both the forget set and the test
    set are IN for half of the models; the recipe defaults to the original model's
    (`default_train_config(fast, task)`). Checkpoints are keyed by the exact units trained on (not by
    their labels: a population of relabelled examples needs its own MDLIB_DATA folder).
    """
    # The checkpoint cache lives in the pipeline layer (like Retrain's); imported here so that
    # notebooks get cached reference models from one call.
    from ..pipeline.original import default_train_config, train_or_load

    population = population if population is not None else concat([task.train, task.test], "population")
    units = population.units()
    mask = reference_splits(units, k, seed)
    cfg = train_config or default_train_config(fast, task)
    models = []
    for j in range(k):
        chosen = units[mask[j]]
        model, _ = train_or_load(task, population.with_units(chosen, f"reference {j}"), kind=f"reference{j}",
                                 seed=reference_seed(seed, j), train_config=cfg, model_config=model_config,
                                 device=device, progress=progress, retrain_units=chosen)
        models.append(model.eval())
    return ReferenceModels(models, units, mask)


def confidence(model: MultimodalModel, task: Task, examples: ExampleSet, statistic: str = "logodds") -> np.ndarray:
    """LiRA's per-example statistic (N,): `logodds` of the ground truth, or (retrieval) the `contrastive` logit."""
    if statistic == "logodds":
        return true_logodds(model, task, examples)
    if statistic == "contrastive":
        return contrastive_logits(model, task, examples)
    raise ValueError(f"unknown statistic {statistic!r}; choose one of {', '.join(STATISTICS)}")


@dataclass
class LiRA:
    """Per-example IN / OUT Gaussians of a statistic, for a fixed list of examples (see module doc).

    mean_in, mean_out, std_in, std_out: (N,); example_id: (N,) the examples they describe.
    """

    mean_in: np.ndarray
    mean_out: np.ndarray
    std_in: np.ndarray
    std_out: np.ndarray
    example_id: np.ndarray
    mode: str = "online"
    statistic: str = "logodds"

    @classmethod
    def fit(cls, references: ReferenceModels, task: Task, examples: ExampleSet, *, mode: str = "online",
            statistic: str = "logodds", fix_variance: bool | None = None) -> "LiRA":
        """Read every reference model's statistic on `examples` (K, N) and fit the Gaussians."""
        conf = np.stack([confidence(m, task, examples, statistic) for m in references.models])
        return cls.from_confidences(conf, references.trained_on(examples), examples.fields["example_id"].numpy(),
                                    mode=mode, statistic=statistic, fix_variance=fix_variance)

    @classmethod
    def from_confidences(cls, conf: np.ndarray, inside: np.ndarray, example_id: np.ndarray | None = None, *,
                         mode: str = "online", statistic: str = "logodds", fix_variance: bool | None = None) -> "LiRA":
        """Fit from reference statistics conf (K, N) and IN masks inside (K, N) bool.

        fix_variance=None: one global std per side when K < 64 (Carlini et al.), per-example stds otherwise.
        """
        if mode not in ("online", "offline"):
            raise ValueError(f"mode must be 'online' or 'offline', got {mode!r}")
        conf, inside = np.asarray(conf, dtype=np.float64), np.asarray(inside, dtype=bool)
        if conf.ndim != 2 or conf.shape != inside.shape:
            raise ValueError(f"conf and inside must both have shape (K, N), got {conf.shape} and {inside.shape}")
        if not np.isfinite(conf).all():
            raise ValueError("non-finite reference statistics: use the log-odds, not a probability that rounds to 1")
        n_in, n_out = inside.sum(0), (~inside).sum(0)
        if (n_out == 0).any() or (mode == "online" and (n_in == 0).any()):
            raise ValueError("every example needs OUT reference models (and IN ones for the online attack): "
                             "train more reference models or use their population")
        fix_variance = conf.shape[0] < 64 if fix_variance is None else fix_variance
        mean_in = np.where(n_in > 0, (conf * inside).sum(0) / np.maximum(n_in, 1), np.nan)
        mean_out = (conf * ~inside).sum(0) / n_out
        if fix_variance:
            std_in = np.full(conf.shape[1], conf[inside].std() if inside.any() else np.nan)
            std_out = np.full(conf.shape[1], conf[~inside].std())
        else:
            if (n_out < 2).any() or (mode == "online" and (n_in < 2).any()):
                raise ValueError("per-example variances need at least 2 IN and 2 OUT models per example; "
                                 "use fix_variance=True or more reference models")
            std_in = np.sqrt(((conf - mean_in) ** 2 * inside).sum(0) / np.maximum(n_in - 1, 1))
            std_out = np.sqrt(((conf - mean_out) ** 2 * ~inside).sum(0) / (n_out - 1))
        eps = 1e-6
        example_id = np.arange(conf.shape[1]) if example_id is None else np.asarray(example_id)
        return cls(mean_in, mean_out, std_in + eps, std_out + eps, example_id, mode, statistic)

    def score_confidences(self, phi: np.ndarray) -> np.ndarray:
        """Membership scores (N,) of a target's statistics phi (N,), in the fitted examples' order."""
        from scipy.stats import norm

        phi = np.asarray(phi, dtype=np.float64)
        if phi.shape != self.mean_out.shape:
            raise ValueError(f"phi must have shape {self.mean_out.shape} (one value per fitted example), got {phi.shape}")
        if self.mode == "offline":
            return (phi - self.mean_out) / self.std_out
        return norm.logpdf(phi, self.mean_in, self.std_in) - norm.logpdf(phi, self.mean_out, self.std_out)

    def score(self, model: MultimodalModel, task: Task, examples: ExampleSet) -> np.ndarray:
        """Membership scores (N,) of `model` on `examples`, which must be the examples LiRA was fitted on."""
        ids = examples.fields["example_id"].numpy()
        if ids.shape != self.example_id.shape or not np.array_equal(ids, self.example_id):
            raise ValueError("LiRA scores exactly the examples it was fitted on, in the same order; refit it on these")
        return self.score_confidences(confidence(model, task, examples, self.statistic))
