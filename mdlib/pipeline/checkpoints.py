"""Checkpoints: written atomically with their config, loaded with `weights_only=True`."""
from __future__ import annotations

from pathlib import Path

import torch

from ..models import ModelConfig, MultimodalModel
from ..utils import atomic_write

FORMAT = "mdlib-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or not an mdlib checkpoint."""


def save_checkpoint(path: str | Path, model: MultimodalModel, meta: dict | None = None) -> Path:
    """Save weights, the model config and JSON-like `meta` to `path`, atomically."""
    path = Path(path)
    blob = {"format": FORMAT, "model_config": model.config.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "meta": meta or {},
            # pretrained encoders are rebuilt from their own configs, so loading needs no backbone folder
            "encoder_configs": {name: enc.config.to_dict() for name, enc in _hf_encoders(model).items()}}
    with atomic_write(path, "wb") as fh:
        torch.save(blob, fh)
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[MultimodalModel, dict]:
    """Rebuild the model saved at `path`; returns (model in eval mode, meta)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}; train the model first (notebook 01) or check the path")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"the checkpoint {path} is corrupt or unreadable ({type(e).__name__}: {e}); "
                              f"delete it and run again to retrain") from e
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an mdlib checkpoint (expected format {FORMAT!r}); "
                              f"delete it and run again to retrain")
    try:
        config = ModelConfig(**blob["model_config"])
        model = MultimodalModel(config, **_encoders_from_configs(config, blob.get("encoder_configs", {})))
        model.load_state_dict(blob["state_dict"])
    except Exception as e:
        raise CheckpointError(f"the checkpoint {path} does not match its model config ({e}); "
                              f"delete it and run again to retrain") from e
    return model.to(device).eval(), blob.get("meta", {})


def _hf_encoders(model: MultimodalModel) -> dict:
    """The transformers models inside pretrained encoders: {"image": ViTModel, "text": BertModel}."""
    out = {}
    if model.config.image_backbone and hasattr(model.image_encoder, "vit"):
        out["image"] = model.image_encoder.vit
    if model.config.text_backbone and hasattr(model.text_encoder, "bert"):
        out["text"] = model.text_encoder.bert
    return out


def _encoders_from_configs(config: ModelConfig, configs: dict) -> dict:
    """Randomly initialised encoders shaped like the saved pretrained ones (their weights come next)."""
    from transformers import BertConfig, BertModel, ViTConfig, ViTModel

    from ..models import ImageEncoder, TextEncoder

    out = {}
    if "image" in configs:
        out["image_encoder"] = ImageEncoder(ViTModel(ViTConfig.from_dict(configs["image"]), add_pooling_layer=False))
    if "text" in configs:
        out["text_encoder"] = TextEncoder(BertModel(BertConfig.from_dict(configs["text"]), add_pooling_layer=False))
    return out
