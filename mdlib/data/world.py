"""The embedded image-text world: generation, caching through `datasets`, splits by image.

A world is built once per configuration and cached under `data_dir()/worlds/`, so a
second run (or another notebook) loads it instead of regenerating it.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..utils import CacheError, config_hash, data_dir, file_mode
from .scenes import NAMES, NEGATIVE_KINDS, Scene, SceneSampler, captions, describe, perturb, render

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class WorldConfig:
    """Size and shape of the scene world. `WorldConfig.fast()` is the CI / smoke-test size."""

    n_train: int = 2000
    n_val: int = 250
    n_test: int = 250
    image_size: int = 32
    captions_per_image: int = 5
    negatives_per_image: int = 6
    n_names: int = 100
    min_objects: int = 2
    max_objects: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_train", "n_val", "n_test", "captions_per_image", "negatives_per_image", "image_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"WorldConfig.{name} must be a positive int, got {value!r}")
        if self.image_size % 8:
            raise ValueError("WorldConfig.image_size must be a multiple of 8 (the ViT patch size)")
        SceneSampler(self.max_objects, self.min_objects, self.n_names)  # validates the rest

    @classmethod
    def fast(cls, seed: int = 0) -> "WorldConfig":
        return cls(n_train=400, n_val=80, n_test=80, seed=seed)

    @property
    def n_images(self) -> int:
        return self.n_train + self.n_val + self.n_test


class SceneWorld:
    """Images, captions, minimal-pair negatives and scene structure, with a fixed split by image.

    Attributes
    ----------
    images : uint8 array (N, S, S, 3)
    captions : list of N lists of `captions_per_image` strings
    negatives : list of N lists of `negatives_per_image` strings (one thing changed each)
    negative_kinds : int array (N, K) indexing `NEGATIVE_KINDS`
    split : str array (N,) in {"train", "val", "test"}
    """

    def __init__(self, config: WorldConfig, images: np.ndarray, captions: list[list[str]],
                 negatives: list[list[str]], negative_kinds: np.ndarray, scenes: list[str], split: np.ndarray):
        self.config = config
        self.images = images
        self.captions = captions
        self.negatives = negatives
        self.negative_kinds = negative_kinds
        self._scene_json = scenes
        self.split = split

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        counts = {s: int((self.split == s).sum()) for s in SPLITS}
        return f"SceneWorld({counts}, {self.config.captions_per_image} captions per image)"

    @cached_property
    def scenes(self) -> list[Scene]:
        return [Scene.from_json(s) for s in self._scene_json]

    def indices(self, split: str) -> np.ndarray:
        """Image indices of one split, sorted."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
        return np.flatnonzero(self.split == split)

    def all_texts(self) -> list[str]:
        return [c for cs in self.captions for c in cs] + [c for cs in self.negatives for c in cs]


def generate_world(config: WorldConfig) -> SceneWorld:
    """Generate a world from scratch (no cache). Scenes are rejected until every one is unique."""
    rng = np.random.default_rng(config.seed)
    sampler = SceneSampler(config.max_objects, config.min_objects, config.n_names)
    names = NAMES[: config.n_names]
    seen: set = set()
    scenes: list[Scene] = []
    while len(scenes) < config.n_images:
        s = sampler.sample(rng)
        if s.key() not in seen:
            seen.add(s.key())
            scenes.append(s)
    images = np.stack([render(s, config.image_size) for s in scenes])
    caps = [captions(s, config.captions_per_image, rng) for s in scenes]
    kinds = np.array([[k % len(NEGATIVE_KINDS) for k in range(config.negatives_per_image)]] * len(scenes))
    kinds = np.stack([rng.permutation(row) for row in kinds])
    negs = [[describe(perturb(s, NEGATIVE_KINDS[k], rng, names), rng) for k in row] for s, row in zip(scenes, kinds)]
    split = np.array(["train"] * config.n_train + ["val"] * config.n_val + ["test"] * config.n_test)
    split = split[rng.permutation(len(split))]
    return SceneWorld(config, images, caps, negs, kinds.astype(np.int64), [s.to_json() for s in scenes], split)


def world_path(config: WorldConfig) -> Path:
    return data_dir() / "worlds" / f"scenes-{config_hash(dataclasses.asdict(config))}"


def load_world(config: WorldConfig | None = None, *, cache: bool = True) -> SceneWorld:
    """Load the world for `config` from the `datasets` cache, generating and caching it first if needed."""
    import datasets

    config = config or WorldConfig()
    if not isinstance(config, WorldConfig):
        raise TypeError(f"config must be a WorldConfig, got {type(config).__name__}")
    path = world_path(config)
    if cache and path.exists():
        try:
            ds = datasets.load_from_disk(str(path))
            return _from_dataset(config, ds)
        except Exception as e:  # a half-written or foreign folder: rebuild it rather than fail later
            raise CacheError(f"the cached world at {path} is unreadable ({e}); delete that folder and run again "
                             f"to rebuild it") from e
    world = generate_world(config)
    if cache:
        size, k = config.image_size, config.negatives_per_image
        features = datasets.Features({
            "image": datasets.Array3D(shape=(size, size, 3), dtype="uint8"),
            "captions": datasets.Sequence(datasets.Value("string")),
            "negatives": datasets.Sequence(datasets.Value("string")),
            "negative_kinds": datasets.Sequence(datasets.Value("int64"), length=k),
            "scene": datasets.Value("string"), "split": datasets.Value("string"),
        })
        ds = datasets.Dataset.from_dict({
            "image": world.images, "captions": world.captions, "negatives": world.negatives,
            "negative_kinds": world.negative_kinds, "scene": world._scene_json, "split": list(world.split),
        }, features=features)
        _save_atomically(ds, path)
    return world


def _save_atomically(ds, path: Path) -> None:
    """`ds.save_to_disk` into a private folder next to `path`, renamed into place (a concurrent writer wins)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, file_mode(directory=True))  # mkdtemp makes the folder owner-only
        ds.save_to_disk(str(tmp))
        if not path.exists():
            os.replace(tmp, path)
    except OSError:
        if not path.exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _from_dataset(config: WorldConfig, ds) -> SceneWorld:
    arrays = ds.select_columns(["image", "negative_kinds"]).with_format("numpy")[:]
    text = ds.select_columns(["captions", "negatives", "scene", "split"])[:]
    return SceneWorld(config, arrays["image"].astype(np.uint8), text["captions"], text["negatives"],
                      arrays["negative_kinds"].astype(np.int64), text["scene"], np.asarray(text["split"]))
