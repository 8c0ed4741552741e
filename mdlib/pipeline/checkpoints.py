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
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "meta": meta or {}}
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
        # Pretrained backbones are rebuilt from the config, then overwritten by the saved weights.
        model = MultimodalModel(config)
        model.load_state_dict(blob["state_dict"])
    except Exception as e:
        raise CheckpointError(f"the checkpoint {path} does not match its model config ({e}); "
                              f"delete it and run again to retrain") from e
    return model.to(device).eval(), blob.get("meta", {})
