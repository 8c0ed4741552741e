"""Tasks by name: `load_task("retrieval", fast=True)`."""
from __future__ import annotations

from ..data.world import WorldConfig, load_world, world_path
from .base import Encoded, Task, derangement
from .retrieval import RetrievalTask

TASKS = ("retrieval", "entailment", "nlvr", "graph-text")

# Model sizes for the embedded default: full mode trains in minutes on two CPU cores.
DEFAULT_MODEL = dict(hidden=128, image_layers=3, text_layers=2, fusion_layers=2, heads=4, intermediate=256,
                     embed_dim=64, patch_size=8, image_size=32, max_text_len=64)
FAST_MODEL = dict(DEFAULT_MODEL, hidden=64, image_layers=2, text_layers=1, fusion_layers=1, heads=2, intermediate=128)


def check_task(name: str) -> str:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return name


def load_task(name: str = "retrieval", *, fast: bool = False, world: WorldConfig | None = None) -> Task:
    """Build a task on its embedded default data (cached after the first call)."""
    check_task(name)
    if not isinstance(fast, bool):
        raise TypeError(f"fast must be True or False, got {fast!r}")
    world_cfg = world or (WorldConfig.fast() if fast else WorldConfig())
    model_defaults = FAST_MODEL if fast else DEFAULT_MODEL
    if name == "graph-text":
        from .graph_text import GraphTextTask

        return GraphTextTask.build(fast=fast, model_defaults=model_defaults)
    world = load_world(world_cfg)
    if name == "retrieval":
        cls = RetrievalTask
    elif name == "entailment":
        from .entailment import EntailmentTask as cls
    else:
        from .nlvr import NLVRTask as cls
    # each task trains its own tokenizer on its own texts, cached next to the world
    return cls.build(world, model_defaults, tokenizer_path=world_path(world_cfg).with_name(
        world_path(world_cfg).name + f"-{name}-tokenizer"), **cls.build_options(fast))


__all__ = ["TASKS", "Task", "Encoded", "RetrievalTask", "load_task", "check_task", "derangement"]
