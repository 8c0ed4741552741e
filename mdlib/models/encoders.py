"""Unimodal encoders f_I (ViT) and f_T (BERT), built from transformers components.

Both return token states of shape (B, N, H) with the [CLS] token first. They are built
from a config (random initialisation, the embedded default) or loaded from a local
folder / hub id with `from_pretrained` (a user with network and a GPU).
"""
from __future__ import annotations

import torch
from torch import nn


class ImageEncoder(nn.Module):
    """f_I: a ViT. pixel_values (B, 3, S, S) -> token states (B, 1 + (S/patch)^2, H)."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.vit = vit
        self.hidden_size = vit.config.hidden_size

    @classmethod
    def from_config(cls, image_size: int, patch_size: int, hidden: int, layers: int, heads: int,
                    intermediate: int, dropout: float = 0.0) -> "ImageEncoder":
        from transformers import ViTConfig, ViTModel

        cfg = ViTConfig(image_size=image_size, patch_size=patch_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout, qkv_bias=True)
        return cls(ViTModel(cfg, add_pooling_layer=False))

    @classmethod
    def from_pretrained(cls, name_or_path: str) -> "ImageEncoder":
        from transformers import ViTModel

        return cls(ViTModel.from_pretrained(name_or_path, add_pooling_layer=False))

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, None]:
        """Returns (states (B, N, H), mask None: every image token is valid)."""
        return self.vit(pixel_values=pixel_values).last_hidden_state, None


class TextEncoder(nn.Module):
    """f_T: a bidirectional BERT. input_ids, attention_mask (B, L) -> token states (B, L, H)."""

    def __init__(self, bert: nn.Module):
        super().__init__()
        self.bert = bert
        self.hidden_size = bert.config.hidden_size

    @classmethod
    def from_config(cls, vocab_size: int, max_len: int, hidden: int, layers: int, heads: int,
                    intermediate: int, dropout: float = 0.0) -> "TextEncoder":
        from transformers import BertConfig, BertModel

        cfg = BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                         intermediate_size=intermediate, max_position_embeddings=max_len, hidden_dropout_prob=dropout,
                         attention_probs_dropout_prob=dropout, type_vocab_size=1)
        return cls(BertModel(cfg, add_pooling_layer=False))

    @classmethod
    def from_pretrained(cls, name_or_path: str) -> "TextEncoder":
        from transformers import BertModel

        return cls(BertModel.from_pretrained(name_or_path, add_pooling_layer=False))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
