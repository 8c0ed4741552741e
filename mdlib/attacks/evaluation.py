"""How good is an attack, and how close is an unlearned model to Retrain? Pure functions of scores."""
from __future__ import annotations

import numpy as np

from ..metrics import auc

__all__ = ["roc", "best_threshold", "tpr_at_fpr", "attack_report", "forget_gap", "forget_quality"]


def _scores(members, non_members) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(members, dtype=np.float64).ravel()
    n = np.asarray(non_members, dtype=np.float64).ravel()
    if m.size == 0 or n.size == 0:
        raise ValueError("need scores of at least one member and one non-member")
    if not (np.isfinite(m).all() and np.isfinite(n).all()):
        raise ValueError("attack scores must be finite")
    return m, n


def _roc_with_thresholds(members, non_members) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.metrics import roc_curve

    m, n = _scores(members, non_members)
    return roc_curve(np.r_[np.ones(m.size), np.zeros(n.size)], np.r_[m, n], drop_intermediate=False)


def roc(members, non_members) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve (fpr, tpr) of "member if score >= threshold" over every threshold; higher score = member."""
    fpr, tpr, _ = _roc_with_thresholds(members, non_members)
    return fpr, tpr


def best_threshold(members, non_members) -> float:
    """The score threshold t whose attack "member if score >= t" maximises TPR - FPR (Youden's J).

    Among equally good thresholds, the largest. O((N + M) log(N + M))."""
    fpr, tpr, thresholds = _roc_with_thresholds(members, non_members)
    best = 1 + int(np.argmax((tpr - fpr)[1:]))  # index 0 is sklearn's "nobody is a member" (+inf)
    return float(thresholds[best])


def tpr_at_fpr(members, non_members, fpr: float) -> float:
    """The highest true-positive rate at a false-positive rate of at most `fpr` (fractions in [0, 1]).

    With fewer than 1 / fpr non-members the only such threshold admits no false positive at all.
    """
    if not 0 <= fpr <= 1:
        raise ValueError(f"fpr must lie in [0, 1], got {fpr}")
    f, t = roc(members, non_members)
    return float(t[f <= fpr + 1e-12].max())


def attack_report(members, non_members) -> dict[str, float]:
    """AUC, TPR at 1% and at 0.1% FPR, all in %, and `min_fpr` (%), the smallest non-zero FPR the
    non-members allow (100 / their number): a TPR at an FPR below it is a TPR at zero false positives."""
    m, n = _scores(members, non_members)
    return {"auc": 100 * auc(m, n), "tpr_at_1fpr": 100 * tpr_at_fpr(m, n, 0.01),
            "tpr_at_01fpr": 100 * tpr_at_fpr(m, n, 0.001), "min_fpr": 100 / n.size}


def forget_gap(d_f_method: float, d_f_retrain: float) -> float:
    """A method's D_f score minus Retrain's: 0 = forgets as much as retraining; < 0 = pushes D_f further down."""
    return float(d_f_method) - float(d_f_retrain)


def forget_quality(method_scores, retrain_scores) -> float:
    """p-value of a two-sample Kolmogorov-Smirnov test between per-example D_f scores under the method and
    under Retrain (the NeurIPS 2023 unlearning challenge's idea): near 1 = indistinguishable, near 0 = different."""
    from scipy.stats import ks_2samp

    a, b = _scores(method_scores, retrain_scores)
    return float(ks_2samp(a, b).pvalue)
