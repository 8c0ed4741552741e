"""The original model f (and Retrain): load the checkpoint if present, else train and save it.

Any notebook can call `original_model(task, seed)`: the first call trains (minutes in
full mode, seconds in fast mode), every later call loads the same weights. A checkpoint
carries its identity (`identity`); one at the expected file name that was trained for
anything else (another task, seed or recipe, or not trained by mdlib at all) is refused
with a `CheckpointError` that names the differences and the file to delete.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from ..data.examples import ExampleSet
from ..models import ModelConfig, MultimodalModel
from ..precision import resolve_precision
from ..tasks.base import Task
from ..training import TrainConfig, train
from ..utils import config_hash, data_dir, exclusive, resolve_device, seed_everything
from .checkpoints import load_checkpoint, save_checkpoint

FAST_TRAIN = dict(epochs=40, batch_size=32, lr=1e-3, warmup_steps=20, eval_every=20)


def default_train_config(fast: bool, task: Task | None = None) -> TrainConfig:
    """The recipe of the original model: `TrainConfig()` (full) or the fast-mode one, with the
    task's own overrides (`Task.train_overrides(fast)`, e.g. fewer epochs for graph-text)."""
    base = dict(FAST_TRAIN) if fast else {}
    if task is not None:
        base.update(task.train_overrides(fast))
    return TrainConfig(**base)


def _world_signature(task: Task) -> dict:
    world = getattr(task, "world", None)
    signature = dataclasses.asdict(world.config) if world is not None and dataclasses.is_dataclass(world.config) \
        else {"examples": len(task.train), "name": getattr(task, "source", task.name)}
    return dict(signature, examples_hash=task.data_signature())


def identity(task: Task, kind: str, model_config: ModelConfig, train_config: TrainConfig, seed: int,
             train_units=None) -> dict:
    """What a checkpoint is: every setting that shapes its weights (compared when it is loaded)."""
    units = None if train_units is None else [int(u) for u in train_units]
    return {"task": task.name, "kind": kind, "seed": seed, "data": _world_signature(task),
            "model_config": model_config.to_dict(), "train_config": train_config.to_dict(),
            "train_units": None if units is None else {"count": len(units), "hash": config_hash(sorted(units))},
            "mdlib_version": _version()}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mdlib")
    except PackageNotFoundError:
        return "unknown"


def checkpoint_path(task: Task, kind: str, model_config: ModelConfig, train_config: TrainConfig, seed: int,
                    train_units=None):
    key = config_hash(task.name, _world_signature(task), model_config.to_dict(), train_config.to_dict(), seed,
                      None if train_units is None else [int(u) for u in train_units])
    return data_dir() / "checkpoints" / f"{task.name}-{kind}-seed{seed}-{key}.pt"


def resolved_recipe(train_config: TrainConfig, device: str | torch.device) -> TrainConfig:
    """The recipe with its precision as it runs on `device` ("auto" resolved): part of what a checkpoint is."""
    used = "bf16" if resolve_precision(train_config.precision, resolve_device(device)) == torch.bfloat16 else "fp32"
    return dataclasses.replace(train_config, precision=used)


def train_or_load(task: Task, data: ExampleSet, *, kind: str, seed: int, train_config: TrainConfig,
                  model_config: ModelConfig | None = None, device: str = "auto", progress: bool = True,
                  retrain_units=None) -> tuple[MultimodalModel, dict]:
    """Train `kind` ("original" or "retrain") on `data` unless a matching checkpoint exists. When two
    processes ask for the same missing checkpoint, the first trains it and the second waits, then loads it.

    Returns (model in eval mode, meta) where meta holds the training history and wall time.
    """
    model_config = model_config or task.model_config()
    dev = resolve_device(device)
    train_config = resolved_recipe(train_config, dev)
    path = checkpoint_path(task, kind, model_config, train_config, seed, retrain_units)
    expect = identity(task, kind, model_config, train_config, seed, retrain_units)
    if not path.exists():  # train it, unless another process is training it: then wait and load its file
        with exclusive(path, waiting=f"waiting for another process that trains {path.name}"):
            if not path.exists():
                return _train_and_save(path, task, data, kind, seed, train_config, model_config, dev, progress,
                                       identity=expect)
    model, meta = load_checkpoint(path, dev, expect=expect)
    meta["loaded_from"] = str(path)
    return model, meta


def _train_and_save(path: Path, task: Task, data: ExampleSet, kind: str, seed: int, train_config: TrainConfig,
                    model_config: ModelConfig, device: torch.device, progress: bool, identity: dict
                    ) -> tuple[MultimodalModel, dict]:
    """Train a fresh model on `data` with `train_config` from `seed`; save it (with its meta) to `path`."""
    seed_everything(seed)
    model = MultimodalModel(model_config).to(device)
    start = time.perf_counter()
    history = train(model, task, data, train_config, seed=seed, val=task.val, progress=progress)
    meta = {"kind": kind, "task": task.name, "seed": seed, "seconds": time.perf_counter() - start,
            "history": history, "train_config": train_config.to_dict(), "n_train_examples": len(data),
            "identity": identity}
    save_checkpoint(path, model, meta)
    meta["loaded_from"] = None
    return model, meta


def original_model(task: Task, seed: int = 0, *, fast: bool = False, train_config: TrainConfig | None = None,
                   model_config: ModelConfig | None = None, device: str = "auto",
                   progress: bool = True) -> tuple[MultimodalModel, dict]:
    """The original model f trained on all of D_train (loaded if it was trained before)."""
    return train_or_load(task, task.train, kind="original", seed=seed,
                         train_config=train_config or default_train_config(fast, task), model_config=model_config,
                         device=device, progress=progress)


def retrained_model(task: Task, retain: ExampleSet, seed: int = 0, *, fast: bool = False,
                    train_config: TrainConfig | None = None, model_config: ModelConfig | None = None,
                    device: str = "auto", progress: bool = True) -> tuple[MultimodalModel, dict]:
    """Retrain: the same recipe from scratch on D_r only (it never sees D_f)."""
    return train_or_load(task, retain, kind="retrain", seed=seed,
                         train_config=train_config or default_train_config(fast, task), model_config=model_config,
                         device=device, progress=progress, retrain_units=retain.units())
