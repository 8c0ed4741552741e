"""What every real-data adapter returns (`RealData`), the image bank, subsampling and errors.

An adapter reads a dataset's published files into plain records, one per example:
its text, label, images (indices into a list of image sources), deletion unit, stable
example id and split. `mdlib.tasks.real` turns those records into a Task; nothing here
knows about models or tokenizers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np
import torch

SPLITS = ("train", "val", "test")
ImageSource = Union[str, Path, Callable[[], object]]  # a file, or a function returning a PIL image


class DatasetFormatError(ValueError):
    """A dataset file exists but does not have the expected format."""


def missing_root(dataset: str, root, how: str) -> FileNotFoundError:
    """The error for a dataset folder that does not exist (a relative one shown with where it was looked for)."""
    where = f"{root}" if Path(root).is_absolute() else f"{root} (looked for {Path(root).resolve()})"
    return FileNotFoundError(f"{dataset} not found at {where}: no such local folder; {how}")


# ---------------------------------------------------------------------------------------
# The records
# ---------------------------------------------------------------------------------------
@dataclass
class RealData:
    """A real dataset as aligned records (N examples) plus the sources of its images.

    texts (N,) str; label (N,) int; image_index (N,) or (N, 2) rows of `images`; unit (N,) the
    deletion unit (an int id, stable across subsamples); example_id (N,) stable ids; split (N,)
    "train" / "val" / "test". `images`: one source per image (a path, or a callable returning a
    PIL image), or for graph-text the graphs themselves. `descriptions`: optional texts about each
    image (SNLI-VE premises), aligned with `images`. `info`: adapter-specific tables.
    """

    name: str
    texts: list[str]
    label: np.ndarray
    image_index: np.ndarray
    unit: np.ndarray
    example_id: np.ndarray
    split: np.ndarray
    images: list
    descriptions: list[list[str]] | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.texts)
        for k in ("label", "image_index", "unit", "example_id", "split"):
            if len(getattr(self, k)) != n:
                raise ValueError(f"RealData.{k} has {len(getattr(self, k))} rows for {n} texts")
        if self.descriptions is not None and len(self.descriptions) != len(self.images):
            raise ValueError("RealData.descriptions must hold one list per image")

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, int]:
        return {s: int((self.split == s).sum()) for s in SPLITS}

    def select(self, keep: np.ndarray) -> "RealData":
        """The examples where `keep` is True, with only the images they use (re-indexed)."""
        keep = np.asarray(keep, dtype=bool)
        idx = np.flatnonzero(keep)
        used, inverse = np.unique(self.image_index[idx], return_inverse=True)
        return replace(self, texts=[self.texts[i] for i in idx], label=self.label[idx],
                       image_index=inverse.reshape(self.image_index[idx].shape), unit=self.unit[idx],
                       example_id=self.example_id[idx], split=self.split[idx],
                       images=[self.images[i] for i in used],
                       descriptions=None if self.descriptions is None else [self.descriptions[i] for i in used])


def subsample(data: RealData, max_examples: int | None, seed: int = 0) -> RealData:
    """At most about `max_examples` examples, drawn as whole units, each split keeping its share.

    Units are taken in a seeded random order while they fit in the split's share (at least one
    unit per split, two for train), so the same (data, max_examples, seed) always gives the same
    subset and a unit is never cut.
    """
    if max_examples is None:
        return data
    if isinstance(max_examples, bool) or not isinstance(max_examples, (int, np.integer)) or max_examples < 1:
        raise ValueError(f"max_examples must be a positive int or None, got {max_examples!r}")
    if max_examples >= len(data):
        return data
    keep = np.zeros(len(data), dtype=bool)
    for k, s in enumerate(SPLITS):
        in_split = data.split == s
        if not in_split.any():
            continue
        cap = max(1, round(max_examples * in_split.sum() / len(data)))
        units, counts = np.unique(data.unit[in_split], return_counts=True)
        order = np.random.default_rng([seed, k]).permutation(len(units))
        chosen, total, minimum = [], 0, 2 if s == "train" else 1
        for i in order:
            if total + counts[i] <= cap or len(chosen) < minimum:
                chosen.append(units[i])
                total += counts[i]
            if total >= cap and len(chosen) >= minimum:
                break
        keep |= in_split & np.isin(data.unit, chosen)
    return data.select(keep)


def check_splits(dataset: str, split: Sequence[str], reasons: dict[str, str] | str | None = None) -> None:
    """Refuse records with an empty train, val or test split, saying why it is empty (`reasons[split]`, or
    one reason for every split)."""
    present = set(np.asarray(split).tolist())
    empty = [s for s in SPLITS if s not in present]
    if empty:
        reasons = dict.fromkeys(SPLITS, reasons) if isinstance(reasons, str) else reasons or {}
        why = "; ".join(f"{s}: {reasons.get(s, 'its file holds no example')}" for s in empty)
        raise DatasetFormatError(f"{dataset}: the {', '.join(empty)} split(s) hold no example ({why}); every split "
                                 f"needs examples: check the files or the options that filter rows")


def split_off(units: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded random `fraction` of the distinct `units` (at least one), e.g. a validation split."""
    distinct = np.unique(units)
    n = max(1, int(round(fraction * len(distinct))))
    if n >= len(distinct):
        raise DatasetFormatError(f"only {len(distinct)} units: too few to split off a validation set")
    return np.sort(np.random.default_rng(seed).choice(distinct, size=n, replace=False))


# ---------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------
def load_image(source: ImageSource, size: int) -> np.ndarray:
    """An image as uint8 (S, S, 3): RGB, resized (bicubic) to `size` x `size`."""
    from PIL import Image

    if callable(source):
        img = source()
    else:
        if not Path(source).is_file():
            raise FileNotFoundError(f"image file {source} not found")
        img = Image.open(source)
    img = img.convert("RGB").resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, S, S) -> float in [-1, 1] (as `mdlib.tasks.retrieval.image_tensor`)."""
    return images.float().div(127.5).sub(1.0)


class ImageBank:
    """The images of a task, indexed like a tensor: `bank[index]` -> float (*index.shape, 3, S, S) in [-1, 1].

    Images are read with PIL, converted to RGB and resized to `size`. With `preload` (default: when
    the bank fits in `max_preload_bytes` as uint8) they are read once and kept as uint8, 4x smaller
    than floats, and saved to `cache` (a .pt file) if given, so the next run skips the decoding;
    otherwise each access reads the files again (for full-size datasets on a GPU machine).
    """

    def __init__(self, sources: Sequence[ImageSource], size: int, preload: bool | None = None,
                 max_preload_bytes: int = 2 << 30, cache: str | Path | None = None):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"image size must be a positive int, got {size!r}")
        self.sources, self.size = list(sources), size
        if preload is None:
            preload = len(self.sources) * 3 * size * size <= max_preload_bytes
        self.data: torch.Tensor | None = None
        if preload:
            self.data = self._cached(Path(cache)) if cache is not None else self._read(range(len(self.sources)))

    def _cached(self, path: Path) -> torch.Tensor:
        from ...utils import atomic_write

        if path.is_file():
            try:
                data = torch.load(path, weights_only=True)
                if isinstance(data, torch.Tensor) and tuple(data.shape) == self.shape and data.dtype == torch.uint8:
                    return data
            except Exception:  # an unreadable cache is rebuilt below
                pass
        data = self._read(range(len(self.sources)))
        with atomic_write(path, "wb") as fh:
            torch.save(data, fh)
        return data

    def _read(self, rows) -> torch.Tensor:
        arrays = [load_image(self.sources[i], self.size) for i in rows]
        if not arrays:
            return torch.zeros(0, 3, self.size, self.size, dtype=torch.uint8)
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), 3, self.size, self.size)

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, slice):
            index = torch.arange(len(self))[index]
        index = torch.as_tensor(index, dtype=torch.long)
        flat = index.reshape(-1)
        pixels = self.data[flat] if self.data is not None else self._read(flat.tolist())
        return to_unit_range(pixels).reshape(*index.shape, 3, self.size, self.size)

    def __repr__(self) -> str:
        mode = "preloaded" if self.data is not None else "lazy"
        return f"ImageBank({len(self)} images, {self.size}x{self.size}, {mode})"


def image_index_of_files(folder: Path, suffixes=(".jpg", ".jpeg", ".png")) -> dict[str, Path]:
    """{file name: path} of every image under `folder` (recursively): finds images in sub-folders."""
    return {p.name: p for p in folder.rglob("*") if p.suffix.lower() in suffixes and p.is_file()}


def check_images_exist(paths: Sequence[Path], dataset: str, folder: Path, how: str) -> None:
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        shown = ", ".join(str(Path(p).name) for p in missing[:3])
        raise FileNotFoundError(f"{dataset}: {len(missing)} of {len(paths)} images are missing under {folder} "
                                f"(e.g. {shown}); {how}")


# ---------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------
def read_json_lines(path: Path) -> list[dict]:
    """Records of a JSON-lines file (one object per line; blank lines skipped)."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetFormatError(f"{path}, line {n}: not valid JSON ({e.msg}); expected one JSON object "
                                         f"per line (JSON lines)") from None
            if not isinstance(rec, dict):
                raise DatasetFormatError(f"{path}, line {n}: expected a JSON object per line, got {type(rec).__name__}")
            out.append(rec)
    return out


def require_keys(rec: dict, keys: Sequence[str], where: str, expected: str) -> None:
    missing = [k for k in keys if k not in rec]
    if missing:
        raise DatasetFormatError(f"{where} lacks the key(s) {', '.join(map(repr, missing))}; expected {expected}")
