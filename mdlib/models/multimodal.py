"""An ALBEF/BLIP-shaped model: f_I, f_T, contrastive projections, fusion f_F and a head on the fused [CLS]."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .encoders import ImageEncoder, TextEncoder
from .fusion import CrossAttentionFusion


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the model. The defaults are a ~1.5M-parameter model that trains on two CPU cores.

    `image_backbone` / `text_backbone` name a local folder or hub id of pretrained ViT / BERT
    weights; `None` (the default) builds randomly initialised encoders from the sizes here.
    `n_classes` is the head's output size; `n_images` is how many fused [CLS] the head reads
    (2 for NLVR-style pairs of images).
    """

    vocab_size: int = 400
    max_text_len: int = 64
    image_size: int = 32
    patch_size: int = 8
    hidden: int = 128
    image_layers: int = 3
    text_layers: int = 2
    fusion_layers: int = 2
    heads: int = 4
    intermediate: int = 512
    embed_dim: int = 64
    n_classes: int = 2
    n_images: int = 1
    dropout: float = 0.0
    image_backbone: str | None = None
    text_backbone: str | None = None
    modality: str = "image"  # the non-text modality: "image" (a ViT) or "graph" (a GNN, see models/graph.py)
    node_features: int = 1  # graphs: size of the input node features
    graph_layers: int = 2  # graphs: message-passing layers

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type in ("int",) and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ValueError(f"ModelConfig.{f.name} must be a positive int, got {v!r}")
        if self.modality not in ("image", "graph"):
            raise ValueError(f"ModelConfig.modality must be 'image' or 'graph', got {self.modality!r}")
        if self.image_size % self.patch_size:
            raise ValueError("ModelConfig.image_size must be a multiple of patch_size")
        if self.hidden % self.heads:
            raise ValueError("ModelConfig.hidden must be a multiple of heads")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _build_second_modality_encoder(c: ModelConfig) -> nn.Module:
    """f_I for images (a ViT, pretrained or not) or, for graph-text, a GNN that plays the image's role."""
    if c.modality == "graph":
        from .graph import GraphEncoder

        return GraphEncoder.from_config(c)
    if c.image_backbone:
        return ImageEncoder.from_pretrained(c.image_backbone)
    return ImageEncoder.from_config(c.image_size, c.patch_size, c.hidden, c.image_layers, c.heads, c.intermediate, c.dropout)


class MultimodalModel(nn.Module):
    """f = (f_I, f_T, f_F) plus contrastive projections and a task head.

    * `image_encoder` (f_I): pixel_values (B, 3, S, S) -> (B, N_i, H)
    * `text_encoder` (f_T): input_ids, attention_mask (B, L) -> (B, L, H)
    * `fusion` (f_F): text states cross-attending to image states -> (B, L, H); its [CLS] is the
      fused representation that MultiDelete's L_MD and L_MKR compare
    * `head`: fused [CLS] (B, n_images * H) -> logits (B, n_classes); for retrieval it is the
      image-text matching (ITM) head, class 1 = "matched"
    """

    def __init__(self, config: ModelConfig, image_encoder: nn.Module | None = None, text_encoder: nn.Module | None = None):
        super().__init__()
        self.config = config
        c = config
        self.image_encoder = image_encoder or _build_second_modality_encoder(c)
        self.text_encoder = text_encoder or (
            TextEncoder.from_pretrained(c.text_backbone) if c.text_backbone else
            TextEncoder.from_config(c.vocab_size, c.max_text_len, c.hidden, c.text_layers, c.heads, c.intermediate, c.dropout))
        h_img, h_txt = self.image_encoder.hidden_size, self.text_encoder.hidden_size
        # Image states enter the fusion at the text width (identity when the widths agree).
        self.image_to_fusion = nn.Identity() if h_img == h_txt else nn.Linear(h_img, h_txt)
        self.fusion = CrossAttentionFusion(h_txt, c.fusion_layers, c.heads, c.intermediate, c.dropout)
        self.image_proj = nn.Linear(h_img, c.embed_dim)
        self.text_proj = nn.Linear(h_txt, c.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(1 / 0.07).log())
        self.head = nn.Sequential(nn.Linear(c.n_images * h_txt, h_txt), nn.GELU(), nn.Linear(h_txt, c.n_classes))
        # A masked-language-modelling head on f_T (text side), trained with the original model so
        # that token-level unlearning (UL) has a language-modelling likelihood to act on.
        vocab = getattr(getattr(self.text_encoder, "bert", None), "config", None)
        vocab = vocab.vocab_size if vocab is not None else c.vocab_size
        self.mlm_head = nn.Sequential(nn.Linear(h_txt, h_txt), nn.GELU(), nn.LayerNorm(h_txt), nn.Linear(h_txt, vocab))

    # -- the three modules MultiDelete talks about ------------------------------------
    @property
    def f_I(self) -> nn.Module:
        return self.image_encoder

    @property
    def f_T(self) -> nn.Module:
        return self.text_encoder

    @property
    def f_F(self) -> nn.Module:
        return self.fusion

    # -- forward pieces -------------------------------------------------------------
    def encode_image(self, image) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Image (or other non-text modality) -> (states (B, N, H_i), mask (B, N) or None).

        Pixels are cast to the weights' dtype (float32, or bfloat16 in bfloat16 training)."""
        if torch.is_tensor(image) and image.is_floating_point():
            image = image.to(self.logit_scale.dtype)
        return self.image_encoder(image)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids (B, L) -> states (B, L, H)."""
        return self.text_encoder(input_ids, attention_mask)

    def fuse(self, image_states: torch.Tensor, text_states: torch.Tensor, text_mask: torch.Tensor,
             image_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Fused [CLS] (B, H) of each (image, text) pair (the last fusion layer runs for [CLS] alone)."""
        return self.fusion(text_states, text_mask, self.image_to_fusion(image_states), image_mask, cls_only=True)[:, 0]

    def contrastive_features(self, image_states: torch.Tensor | None = None,
                             text_states: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Unit-norm contrastive embeddings (B, E) of the image and text [CLS] tokens, in float32."""
        img = F.normalize(self.image_proj(image_states[:, 0]).float(), dim=-1) if image_states is not None else None
        txt = F.normalize(self.text_proj(text_states[:, 0]).float(), dim=-1) if text_states is not None else None
        return img, txt

    def temperature_scale(self) -> torch.Tensor:
        """1 / temperature for contrastive logits (float32), clamped like CLIP's (at most 100)."""
        return self.logit_scale.float().exp().clamp(max=100.0)

    # -- parameter groups (the "-F" variants train `fusion_parameters` only) ----------
    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """f_I, f_T, the contrastive projections and temperature, and the text side's MLM head."""
        for m in (self.image_encoder, self.text_encoder, self.image_proj, self.text_proj, self.mlm_head):
            yield from m.parameters()
        yield self.logit_scale

    def fusion_parameters(self) -> Iterator[nn.Parameter]:
        """f_F (with the image-to-fusion adapter) and the head."""
        for m in (self.image_to_fusion, self.fusion, self.head):
            yield from m.parameters()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
