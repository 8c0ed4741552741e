"""Models: encoders f_I and f_T, fusion f_F, and the multimodal model that joins them."""
from .encoders import ImageEncoder, TextEncoder
from .fusion import CrossAttentionFusion
from .multimodal import ModelConfig, MultimodalModel

__all__ = ["ImageEncoder", "TextEncoder", "CrossAttentionFusion", "ModelConfig", "MultimodalModel"]
