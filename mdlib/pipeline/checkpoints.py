"""Checkpoints: written atomically with their config and identity, loaded with `weights_only=True`.

A checkpoint's `meta["identity"]` says what it is (task, kind, seed, data, model and training
settings, retained units, mdlib version); `load_checkpoint(path, expect=identity)` refuses one
trained for anything else before building its model.
"""
from __future__ import annotations

import json
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


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", *,
                    expect: dict | None = None) -> tuple[MultimodalModel, dict]:
    """Rebuild the model saved at `path`; returns (model in eval mode, meta).

    With `expect` (an identity, see `pipeline.original.identity`), a checkpoint whose stored
    identity differs, or that has none, is refused with a `CheckpointError` naming the differences.
    """
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
    if expect is not None:
        check_identity(path, blob.get("meta", {}), expect)
    try:
        config = ModelConfig(**blob["model_config"])
        model = MultimodalModel(config, **_encoders_from_configs(config, blob.get("encoder_configs", {})))
        model.load_state_dict(blob["state_dict"])
    except Exception as e:
        raise CheckpointError(f"the checkpoint {path} does not match its model config ({e}); "
                              f"delete it and run again to retrain") from e
    return model.to(device).eval(), blob.get("meta", {})


# Fields an older checkpoint's meta holds without an identity: compared when nothing more is there.
LEGACY_FIELDS = ("task", "kind", "seed", "train_config")
VERSION_FIELD = "mdlib_version"  # recorded, shown, not compared: a setting that changes training is a field


def check_identity(path: Path, meta: dict, expect: dict) -> None:
    """Raise `CheckpointError` unless `meta` identifies the model `expect` describes."""
    stored = meta.get("identity") if isinstance(meta, dict) else None
    fields = [k for k in expect if k != VERSION_FIELD]
    if stored is None and isinstance(meta, dict) and all(k in meta for k in LEGACY_FIELDS):
        stored, fields = {k: meta[k] for k in LEGACY_FIELDS}, list(LEGACY_FIELDS)
    if not isinstance(stored, dict):
        raise CheckpointError(f"{path} holds a model saved without its identity (task, kind, seed, settings), "
                              f"so it may be untrained or another task's; delete {path} and run again to retrain")
    diffs = differences(_plain({k: stored.get(k) for k in fields}), _plain({k: expect[k] for k in fields}))
    if diffs:
        shown = "; ".join(f"{k}: checkpoint {a!r}, asked {b!r}" for k, a, b in diffs[:6])
        more = f" (and {len(diffs) - 6} more)" if len(diffs) > 6 else ""
        version = stored.get(VERSION_FIELD)
        raise CheckpointError(f"{path} was trained for other settings{f' by mdlib {version}' if version else ''}: "
                              f"{shown}{more}; delete {path} and run again to retrain it for what was asked")


def differences(stored, asked, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted key, stored value, asked value) for every leaf where two JSON-like values differ."""
    if isinstance(stored, dict) and isinstance(asked, dict):
        out = []
        for k in list(asked) + [k for k in stored if k not in asked]:
            out += differences(stored.get(k), asked.get(k), f"{prefix}{k}.")
        return out
    return [] if stored == asked else [(prefix.rstrip(".") or "identity", stored, asked)]


def _plain(obj):
    """`obj` as JSON would give it back (tuples as lists), so saved and asked values compare equal."""
    return json.loads(json.dumps(obj, default=str))


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
