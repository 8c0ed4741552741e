"""Forget-set selection by deletion unit (an image, a relation...): a unit leaves D_train whole."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ForgetSplit:
    """Units of the training set marked for deletion (D_f) and those retained (D_r)."""

    forget: np.ndarray
    retain: np.ndarray

    def __post_init__(self) -> None:
        if np.intersect1d(self.forget, self.retain).size:
            raise AssertionError("forget and retain units overlap")


def select_forget(train_units: np.ndarray, size: int | float, seed: int) -> ForgetSplit:
    """Pick D_f uniformly at random among the training units.

    `size` is a count (int >= 1) or a fraction of the training units (float in (0, 1)).
    """
    train_units = np.unique(np.asarray(train_units))
    n = forget_count(size, len(train_units))
    rng = np.random.default_rng(seed)
    forget = np.sort(rng.choice(train_units, size=n, replace=False))
    retain = np.setdiff1d(train_units, forget)
    return ForgetSplit(forget, retain)


def forget_count(size: int | float, n_train: int) -> int:
    """How many units a forget `size` (a count, or a fraction in (0, 1)) takes out of `n_train`; a clear
    error when the size is malformed or leaves nothing to retain (checked before any data is built)."""
    if isinstance(size, bool) or not isinstance(size, (int, float, np.integer, np.floating)):
        raise TypeError(f"forget size must be an int (a count) or a float in (0, 1) (a fraction), got {size!r}")
    if isinstance(size, (float, np.floating)):
        if not 0 < size < 1:
            raise ValueError(f"a fractional forget size must lie in (0, 1), got {size}; pass an int for a count")
        n = max(1, int(round(size * n_train)))
    else:
        n = int(size)
    if n < 1:
        raise ValueError(f"the forget set must hold at least one unit, got size={size}")
    if n >= n_train:
        raise ValueError(f"forget size {n} leaves nothing to retain: the training set has {n_train} units; "
                         f"choose a size below {n_train} (or a fraction such as 0.05)")
    return n
