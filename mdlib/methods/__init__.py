"""Unlearning methods under one contract, picked by name (see `base.py`)."""
from .base import Method, MethodConfig, UnlearnResult, available, get_method, register, unlearn
from .frozen import FrozenModel
from .multidelete import MultiDelete, MultiDeleteConfig

__all__ = ["Method", "MethodConfig", "UnlearnResult", "available", "get_method", "register", "unlearn",
           "FrozenModel", "MultiDelete", "MultiDeleteConfig"]
