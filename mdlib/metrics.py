"""Task metrics and the D_f score, as pure functions of tensors (no model inside)."""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["recall_at_k", "auc", "d_f_score", "accuracy", "binary_accuracy", "mean_interval"]


def recall_at_k(scores: torch.Tensor, text_to_image: torch.Tensor, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Retrieval recall (in %) from a score matrix.

    scores: (N_img, N_txt), higher = better match; text_to_image: (N_txt,) the image each text describes.
    Text retrieval (TR): an image is a hit at k if any of its texts is in its top k.
    Image retrieval (IR): a text is a hit at k if its image is in its top k.
    Returns tr_r{k}, ir_r{k}, tr_mean, ir_mean and r_mean (the mean of all six, Flickr30K's "RSUM / 6").
    """
    n_img, n_txt = scores.shape
    if text_to_image.shape != (n_txt,):
        raise ValueError(f"text_to_image must have shape ({n_txt},), got {tuple(text_to_image.shape)}")
    out: dict[str, float] = {}
    # TR: rank of the best-ranked true text for each image.
    order = scores.argsort(dim=1, descending=True)
    hit = text_to_image[order] == torch.arange(n_img, device=scores.device)[:, None]
    tr_rank = hit.float().argmax(dim=1)
    # IR: rank of the true image for each text.
    order_t = scores.t().argsort(dim=1, descending=True)
    ir_rank = (order_t == text_to_image[:, None]).float().argmax(dim=1)
    for k in ks:
        out[f"tr_r{k}"] = 100 * (tr_rank < k).float().mean().item()
        out[f"ir_r{k}"] = 100 * (ir_rank < k).float().mean().item()
    out["tr_mean"] = float(np.mean([out[f"tr_r{k}"] for k in ks]))
    out["ir_mean"] = float(np.mean([out[f"ir_r{k}"] for k in ks]))
    out["r_mean"] = (out["tr_mean"] + out["ir_mean"]) / 2
    return out


def auc(positive: torch.Tensor | np.ndarray, negative: torch.Tensor | np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counting 1/2 (Mann-Whitney U / n_pos n_neg)."""
    pos = np.asarray(positive, dtype=np.float64).ravel()
    neg = np.asarray(negative, dtype=np.float64).ravel()
    if pos.size == 0 or neg.size == 0:
        raise ValueError("auc needs at least one positive and one negative score")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (pos.size * neg.size))


def d_f_score(forget_scores, retain_scores, n_chunks: int = 5, seed: int = 0) -> float:
    """The paper's D_f score (x100), computed like the authors' released code.

    Draw `n_chunks` disjoint random chunks of |D_f| scores from D_r (all of D_r when it is too
    small), compute AUC(D_f vs chunk) = P(score(D_f) > score(D_r)) for each, and average.
    50 = D_f indistinguishable from retained training data; lower = D_f scored below D_r.
    """
    f = np.asarray(forget_scores, dtype=np.float64).ravel()
    r = np.asarray(retain_scores, dtype=np.float64).ravel()
    if f.size == 0 or r.size == 0:
        raise ValueError("d_f_score needs scores for D_f and for D_r")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(r.size)
    chunk = min(f.size, r.size // n_chunks) if r.size >= n_chunks else r.size
    chunks = [r[perm[i * chunk:(i + 1) * chunk]] for i in range(n_chunks)] if chunk > 0 and r.size >= n_chunks else [r]
    return 100 * float(np.mean([auc(f, c) for c in chunks]))


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in %. logits (N, C), labels (N,)."""
    return 100 * (logits.argmax(-1) == labels).float().mean().item()


def binary_accuracy(p_positive: torch.Tensor, p_negative: torch.Tensor, threshold: float = 0.5) -> float:
    """Accuracy in % of a balanced match / no-match decision: positives above, negatives below `threshold`."""
    correct = torch.cat([p_positive > threshold, p_negative <= threshold]).float()
    return 100 * correct.mean().item()


def mean_interval(values) -> tuple[float, float]:
    """(mean, half-width of its 95% interval) of per-seed values, from the t distribution; the half-width is nan
    for a single value, both are nan for none. Non-finite values (an infinite MI ratio) are left out."""
    from scipy.stats import t as student

    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    if v.size == 1:
        return float(v[0]), math.nan
    return float(v.mean()), float(student.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
