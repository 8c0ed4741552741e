"""Privacy evaluation of unlearning: membership-inference attacks and Retrain-referenced forgetting.

* `attack_features`: what an attacker reads per example (P(ground truth), loss, contrastive logit);
* `MembershipClassifier`, `mi_ratio`: the paper's attack and Table 3's MI ratio;
* `reference_models`, `LiRA`: a strong per-example attack with IN / OUT reference models;
* `attack_report`, `roc`, `best_threshold`, `forget_gap`, `forget_quality`: attack quality and distance to Retrain.
"""
from .evaluation import attack_report, best_threshold, forget_gap, forget_quality, roc, tpr_at_fpr
from .features import attack_features, contrastive_logits, example_losses, feature_names, true_logodds
from .lira import STATISTICS, LiRA, ReferenceModels, reference_models, reference_seed, reference_splits
from .membership import MembershipClassifier, mi_ratio, sample_units

__all__ = ["attack_features", "feature_names", "true_logodds", "contrastive_logits", "example_losses",
           "MembershipClassifier", "mi_ratio", "sample_units", "reference_splits", "reference_seed",
           "ReferenceModels", "reference_models", "LiRA", "STATISTICS", "attack_report", "roc", "best_threshold",
           "tpr_at_fpr", "forget_gap", "forget_quality"]
