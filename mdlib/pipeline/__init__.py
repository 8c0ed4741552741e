"""Checkpoints and artifacts, the original model (load if present, else train), the papermill runner."""
from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint"]
