"""MultiDelete's three losses (Cheng & Amiri, ECCV 2024), written as close to the paper as possible.

With f the frozen original model and f' the model being unlearned:

    L_MD  = Dis({f'(I_i, T_i) | (I_i, T_i) in D_f}, {f(I_p, T_q) | p != q})       modality decoupling
    L_MKR = Dis(f'(I_r, T_r), f(I_r, T_r)),  (I_r, T_r) in D_r                      multimodal knowledge retention
    L_UKR = Dis([f'_I(I_i); f'_T(T_i)], [f_I(I_i); f_T(T_i)]),  (I_i, T_i) in D_f   unimodal knowledge retention
    L     = alpha L_MD + beta L_MKR + gamma L_UKR

Dis is the mean squared error by default. The functions take the representations already
computed (tensors), so they are easy to check by hand and reuse for every task.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all entries (the paper's Dis), in float32."""
    return F.mse_loss(a.float(), b.float())


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos(a_i, b_i) over rows (rows flattened to vectors)."""
    return (1 - F.cosine_similarity(a.flatten(1).float(), b.flatten(1).float(), dim=1)).mean()


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference over all entries, in float32."""
    return F.l1_loss(a.float(), b.float())


DISTANCES: dict[str, Distance] = {"mse": mse, "cosine": cosine_distance, "l1": l1}


def get_distance(name: str) -> Distance:
    if name not in DISTANCES:
        raise ValueError(f"unknown distance {name!r}; choose one of {sorted(DISTANCES)}")
    return DISTANCES[name]


def modality_decoupling_loss(fused_forget: torch.Tensor, fused_unrelated: torch.Tensor, dis: Distance = mse) -> torch.Tensor:
    """L_MD. fused_forget: f'(I_i, T_i) for D_f pairs (B, D); fused_unrelated: f(I_p, T_q), p != q, under the frozen f (B, D)."""
    return dis(fused_forget, fused_unrelated.detach())


def similarity_decoupling_loss(sim_forget: torch.Tensor, sim_unrelated: torch.Tensor, dis: Distance = mse) -> torch.Tensor:
    """L_MD with the retrieval readout of the authors' code: the in-batch image-to-text and
    text-to-image similarity matrices (B, B) of f' on D_f against those of f with the texts shuffled."""
    sim_unrelated = sim_unrelated.detach()
    return (dis(sim_forget, sim_unrelated) + dis(sim_forget.t(), sim_unrelated.t())) / 2


def multimodal_retention_loss(fused_retain_new: torch.Tensor, fused_retain_old: torch.Tensor, dis: Distance = mse) -> torch.Tensor:
    """L_MKR. f'(I_r, T_r) against f(I_r, T_r) on D_r pairs, both (B, D)."""
    return dis(fused_retain_new, fused_retain_old.detach())


def unimodal_retention_loss(unimodal_new: torch.Tensor, unimodal_old: torch.Tensor, dis: Distance = mse) -> torch.Tensor:
    """L_UKR. [f'_I(I_i); f'_T(T_i)] against [f_I(I_i); f_T(T_i)] on D_f, both (B, D)."""
    return dis(unimodal_new, unimodal_old.detach())


def multidelete_loss(l_md: torch.Tensor, l_mkr: torch.Tensor, l_ukr: torch.Tensor,
                     alpha: float = 1.0, beta: float = 1.0, gamma: float = 1.0) -> torch.Tensor:
    """L = alpha L_MD + beta L_MKR + gamma L_UKR (the paper uses alpha = beta = gamma = 1)."""
    return alpha * l_md + beta * l_mkr + gamma * l_ukr
