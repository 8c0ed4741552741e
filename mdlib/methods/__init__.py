"""Unlearning methods under one contract, picked by name (see `base.py`).

Names: retrain, finetune, neggrad, dtd, l-codec, erm-ktp, ul, multidelete; each but erm-ktp also
as a fusion-only "-f" variant.
"""
from .base import Method, MethodConfig, UnlearnResult, available, get_method, register, unlearn
from .dtd import DtD, DtDConfig, dtd_noise_scale
from .ermktp import ErmKtp, ErmKtpConfig
from .finetune import FineTune, FineTuneConfig
from .frozen import FrozenModel
from .lcodec import LCodec, LCodecConfig, fisher_newton_direction, foci, newton_noise_scale
from .multidelete import PAPER_SETTINGS, MultiDelete, MultiDeleteConfig
from .neggrad import DivergenceGuard, NegGrad, NegGradConfig
from .retrain import Retrain, RetrainConfig
from .timing import step_time
from .ul import UL, ULConfig

__all__ = ["Method", "MethodConfig", "UnlearnResult", "available", "get_method", "register", "unlearn",
           "FrozenModel", "MultiDelete", "MultiDeleteConfig", "PAPER_SETTINGS", "Retrain", "RetrainConfig", "FineTune", "FineTuneConfig",
           "NegGrad", "NegGradConfig", "DivergenceGuard", "DtD", "DtDConfig", "dtd_noise_scale", "LCodec",
           "LCodecConfig", "foci", "fisher_newton_direction", "newton_noise_scale", "ErmKtp", "ErmKtpConfig",
           "UL", "ULConfig", "step_time"]
