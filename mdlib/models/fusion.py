"""f_F: BERT layers whose text tokens self-attend (bidirectionally) and cross-attend to image tokens.

transformers only adds cross-attention to *decoder* BERT layers, whose self-attention is
causal: the fused [CLS] would then see no later text token. We build the layers with
`is_decoder=True, add_cross_attention=True`, switch the causal flag off and pass our own
padding masks, so every text token sees the whole text and every image token.

Most readers only need the fused [CLS] (the ITM head, the task heads, L_MD and L_MKR). Then the
last layer's queries, attention outputs and feed-forward run for the [CLS] position alone
(`cls_only=True`); its keys and values still come from every text token. The result is the same
vector as the full layer's output at position 0, for about a fifth of that layer's work.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Padding mask (B, N) of 1/0 -> additive attention mask (B, 1, 1, N) of 0 / -inf-ish."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


class CrossAttentionFusion(nn.Module):
    """f_F. text_states (B, L, H), text_mask (B, L), image_states (B, N, H) -> fused states (B, L, H)."""

    def __init__(self, hidden: int, layers: int, heads: int, intermediate: int, dropout: float = 0.0):
        super().__init__()
        from transformers import BertConfig
        from transformers.models.bert.modeling_bert import BertLayer

        cfg = BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                         intermediate_size=intermediate, hidden_dropout_prob=dropout,
                         attention_probs_dropout_prob=dropout, is_decoder=True, add_cross_attention=True)
        cfg._attn_implementation = "sdpa"
        self.layers = nn.ModuleList(BertLayer(cfg, layer_idx=i) for i in range(layers))
        for layer in self.layers:
            layer.attention.self.is_causal = False  # bidirectional self-attention over the text
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, text_states: torch.Tensor, text_mask: torch.Tensor, image_states: torch.Tensor,
                image_mask: torch.Tensor | None = None, cls_only: bool = False) -> torch.Tensor:
        """Fused states (B, L, H), or with `cls_only` the fused [CLS] alone, (B, 1, H)."""
        self_mask = additive_mask(text_mask, text_states.dtype)
        cross_mask = None if image_mask is None else additive_mask(image_mask, text_states.dtype)
        h = text_states
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if cls_only and i == last:
                return _cls_layer(layer, h, self_mask, image_states, cross_mask)
            h = layer(h, attention_mask=self_mask, encoder_hidden_states=image_states,
                      encoder_attention_mask=cross_mask)
        return h


def _attend(attention: nn.Module, queries: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """A BERT attention block (its projections, output dense and LayerNorm) with queries (B, Q, H) over
    keys/values (B, K, H): the same arithmetic as transformers' BertAttention, for fewer queries."""
    heads = attention.self.num_attention_heads

    def split(x):  # (B, N, H) -> (B, heads, N, H / heads)
        return x.unflatten(-1, (heads, -1)).transpose(1, 2)

    p = attention.self.dropout.p if attention.training else 0.0
    out = F.scaled_dot_product_attention(split(attention.self.query(queries)), split(attention.self.key(keys)),
                                         split(attention.self.value(keys)), attn_mask=mask, dropout_p=p)
    return attention.output(out.transpose(1, 2).flatten(2), queries)


def _cls_layer(layer: nn.Module, h: torch.Tensor, self_mask: torch.Tensor, image_states: torch.Tensor,
               cross_mask: torch.Tensor | None) -> torch.Tensor:
    """One fusion layer computed for the [CLS] query only: text states (B, L, H) -> fused [CLS] (B, 1, H)."""
    x = _attend(layer.attention, h[:, :1], h, self_mask)
    x = _attend(layer.crossattention, x, image_states, cross_mask)
    return layer.output(layer.intermediate(x), x)
