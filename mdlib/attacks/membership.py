"""The paper's membership-inference attack (Table 3's MI ratio).

A shadow-style attack classifier (as in the first author's GNNDelete code) learns to tell the
original model's outputs on training examples (a sample of D_r, "members") from its outputs
on test examples ("non-members"). Applied to D_f, it says how much D_f still looks like
training data:

    MI ratio = mean P(member | D_f, f) / mean P(member | D_f, f')

Higher = D_f looks less like training data after unlearning; 1.0 = no change.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ..data.examples import ExampleSet
from ..metrics import auc
from ..models import MultimodalModel
from ..tasks.base import Task
from .features import attack_features, feature_names

__all__ = ["MembershipClassifier", "sample_units", "mi_ratio"]

CLASSIFIERS = ("logistic", "mlp")


def sample_units(examples: ExampleSet, n_examples: int, seed: int, name: str | None = None) -> ExampleSet:
    """Whole deletion units drawn at random (seeded) until they hold at least `n_examples` examples
    (all of `examples` if it is smaller). Units keep their examples together, as in D_f and D_test."""
    uniq, counts = np.unique(examples.fields["unit"].numpy(), return_counts=True)
    order = np.random.default_rng(seed).permutation(len(uniq))
    take = int(np.searchsorted(np.cumsum(counts[order]), n_examples)) + 1
    return examples.with_units(uniq[order[:take]], name or f"{examples.name} sample")


def _make_classifier(kind: str, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "logistic":
        clf = LogisticRegression(max_iter=2000, random_state=seed)
    elif kind == "mlp":
        clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=2000, random_state=seed)
    else:
        raise ValueError(f"unknown attack classifier {kind!r}; choose one of {', '.join(CLASSIFIERS)}")
    return make_pipeline(StandardScaler(), clf)


def _balance(x: np.ndarray, units: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    keep = np.sort(rng.permutation(len(x))[:n])
    return x[keep], units[keep]


@dataclass
class MembershipClassifier:
    """An attack classifier on `attack_features`, trained on the original model only.

    `val_auc` (x100): its AUC on held-out members vs non-members (whole units held out), i.e. how
    well membership can be read from f's outputs at all. 50 = not at all: then the MI ratio is noise.
    """

    classifier: object
    features: list[str]
    val_auc: float
    n_train: int
    seed: int

    @classmethod
    def fit(cls, model: MultimodalModel, task: Task, members: ExampleSet, non_members: ExampleSet, *,
            seed: int = 0, classifier: str = "logistic", val_fraction: float = 0.3) -> "MembershipClassifier":
        """Fit on f's features of `members` (label 1) vs `non_members` (label 0), balanced by subsampling
        the larger side; `val_fraction` of the units of each side are held out for `val_auc`."""
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
        overlap = np.intersect1d(members.units(), non_members.units())
        if overlap.size:
            raise ValueError(f"{overlap.size} units are both members and non-members")
        rng = np.random.default_rng(seed)
        xm, xn = attack_features(model, task, members), attack_features(model, task, non_members)
        um, un = members.fields["unit"].numpy(), non_members.fields["unit"].numpy()
        n = min(len(xm), len(xn))
        (xm, um), (xn, un) = _balance(xm, um, n, rng), _balance(xn, un, n, rng)
        x, y, u = np.concatenate([xm, xn]), np.r_[np.ones(n), np.zeros(n)], np.concatenate([um, un])
        held = np.zeros(len(x), dtype=bool)
        for side in (y == 1, y == 0):
            units = np.unique(u[side])
            chosen = rng.permutation(units)[:max(1, int(round(val_fraction * len(units))))]
            held |= side & np.isin(u, chosen)
        if len(np.unique(y[~held])) < 2 or len(np.unique(y[held])) < 2:
            raise ValueError("too few units to train and validate the attack: give more members and non-members")
        clf = _make_classifier(classifier, seed).fit(x[~held], y[~held])
        p = clf.predict_proba(x[held])[:, 1]
        val = 100 * auc(p[y[held] == 1], p[y[held] == 0])
        return cls(clf, feature_names(task), val, int((~held).sum()), seed)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """P(member) (N,) from features (N, F)."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != len(self.features):
            raise ValueError(f"features must have shape (N, {len(self.features)}) ({', '.join(self.features)}), "
                             f"got {features.shape}")
        return self.classifier.predict_proba(features)[:, 1]

    def member_probability(self, model: MultimodalModel, task: Task, examples: ExampleSet) -> np.ndarray:
        """P(member | example, model) (N,) for every example, read from `model`'s outputs."""
        return self.predict(attack_features(model, task, examples))


def mi_ratio(p_member_original, p_member_unlearned) -> float:
    """mean P(member | D_f, f) / mean P(member | D_f, f'): > 1 = D_f looks less like training data after unlearning
    (infinite, with a warning, when f' gives every D_f example P(member) = 0)."""
    a = np.asarray(p_member_original, dtype=np.float64)
    b = np.asarray(p_member_unlearned, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError("mi_ratio needs member probabilities of D_f under both models")
    if b.mean() <= 0:
        warnings.warn("the attack calls no D_f example a member under the unlearned model (mean P(member) = 0): "
                      "the MI ratio is infinite; such a model has usually collapsed (check its D_test)", stacklevel=2)
        return math.inf
    return float(a.mean() / b.mean())
