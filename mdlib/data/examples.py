"""Examples of a task as aligned tensors, with banks (images, negatives) shared by index.

Every task (retrieval, entailment, NLVR, graph-text) stores its examples the same way:

* `fields`: tensors whose first dimension is the example, e.g. `input_ids` (N, L),
  `attention_mask` (N, L), `label` (N,), `image_index` (N,) or (N, 2), `unit` (N,) (the
  deletion unit: an image or a relation) and `example_id` (N,) (a stable id, used to
  cache the frozen model's outputs);
* `banks`: tensors indexed by `image_index` (the images themselves, minimal-pair negatives).

A batch is a dict of tensors on a device: the fields of the chosen examples plus, for the
image bank, `image` (B, 3, S, S) (or (B, 2, 3, S, S) for pairs of images).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch

Batch = dict  # str -> Tensor (or a torch_geometric Batch under "image" for graphs)


@dataclass
class ExampleSet:
    fields: dict[str, torch.Tensor]
    banks: dict[str, torch.Tensor] = field(default_factory=dict)
    gather_image: Callable[[object, torch.Tensor], object] | None = None  # for non-tensor banks (graphs)
    name: str = ""

    def __post_init__(self) -> None:
        sizes = {k: len(v) for k, v in self.fields.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"fields of unequal length: {sizes}")
        for required in ("unit", "example_id"):
            if required not in self.fields:
                raise ValueError(f"an ExampleSet needs a {required!r} field")

    def __len__(self) -> int:
        return len(self.fields["unit"])

    def __repr__(self) -> str:
        return f"ExampleSet({self.name!r}, {len(self)} examples, {len(self.units())} units)"

    def units(self) -> np.ndarray:
        return np.unique(self.fields["unit"].numpy())

    def subset(self, idx, name: str | None = None) -> "ExampleSet":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return ExampleSet({k: v[idx] for k, v in self.fields.items()}, self.banks, self.gather_image,
                          self.name if name is None else name)

    def sample(self, n: int, seed: int, name: str | None = None) -> "ExampleSet":
        """`n` examples drawn at random without replacement (all of them, shuffled, if there are fewer); the
        draw depends only on `seed` and the set's size."""
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return self.subset(idx, name)

    def with_units(self, units, name: str | None = None) -> "ExampleSet":
        """The examples whose deletion unit is in `units` (a whole unit comes or goes)."""
        keep = np.isin(self.fields["unit"].numpy(), np.asarray(units))
        return self.subset(np.flatnonzero(keep), name)

    def without_units(self, units, name: str | None = None) -> "ExampleSet":
        keep = ~np.isin(self.fields["unit"].numpy(), np.asarray(units))
        return self.subset(np.flatnonzero(keep), name)

    def one_per_unit(self, generator: torch.Generator) -> torch.Tensor:
        """Indices of one random example per unit (an epoch over images with a random caption each)."""
        units = self.fields["unit"]
        order = torch.randperm(len(self), generator=generator)
        _, first = np.unique(units[order].numpy(), return_index=True)
        return order[torch.as_tensor(first)]

    def length_buckets(self, indices: torch.Tensor, batch_size: int, generator: torch.Generator,
                       window: int = 16) -> list[torch.Tensor]:
        """`indices` cut into batches of texts of similar length, the batches in random order.

        Each run of `window` x `batch_size` consecutive indices (shuffle them first) is sorted by text
        length and cut into batches of at most `batch_size` (of equal sizes within a run), so a batch's
        texts are padded to about their own length instead of the longest text of a random batch;
        which examples share a run stays random.
        """
        lengths = self.fields["attention_mask"][indices].sum(1)
        batches = []
        for block, block_len in zip(indices.split(window * batch_size), lengths.split(window * batch_size)):
            block = block[torch.argsort(block_len, stable=True)]
            batches += list(block.tensor_split(math.ceil(len(block) / batch_size)))
        order = torch.randperm(len(batches), generator=generator)
        return [batches[i] for i in order]

    def batch(self, idx, device: torch.device | str = "cpu") -> Batch:
        idx = torch.as_tensor(idx, dtype=torch.long)
        out = {k: v[idx] for k, v in self.fields.items()}
        if "attention_mask" in out:  # trim padding shared by the whole batch
            width = _rounded_width(int(out["attention_mask"].sum(1).max()), out["attention_mask"].shape[1])
            out["input_ids"], out["attention_mask"] = out["input_ids"][:, :width], out["attention_mask"][:, :width]
        if "image_index" in out:
            if self.gather_image is not None:
                out["image"] = self.gather_image(self.banks["image"], out["image_index"])
            else:
                out["image"] = self.banks["image"][out["image_index"]]
        return to_device(out, device)

    def batches(self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu", indices: torch.Tensor | None = None) -> Iterator[Batch]:
        """Batches over the examples (or over `indices`), shuffled with `generator` if asked."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        idx = torch.arange(len(self)) if indices is None else torch.as_tensor(indices)
        if shuffle:
            idx = idx[torch.randperm(len(idx), generator=generator)]
        for start in range(0, len(idx), batch_size):
            yield self.batch(idx[start:start + batch_size], device)


def _rounded_width(longest: int, full: int, multiple: int = 4) -> int:
    """A batch's text width: its longest text rounded up to a multiple of 4 (at most `full`). Fewer distinct
    shapes let the CPU's matrix library reuse its kernels (oneDNN builds one per shape): with every width
    from 10 to 45 in play, a bfloat16 training step slowed from about 135 to 170 ms as new shapes kept coming."""
    return min(full, -(-longest // multiple) * multiple)


def to_device(batch: Batch, device: torch.device | str) -> Batch:
    return {k: (v.to(device, non_blocking=True) if hasattr(v, "to") else v) for k, v in batch.items()}


def concat(sets: list[ExampleSet], name: str = "") -> ExampleSet:
    """Join example sets that share their banks."""
    keys = sets[0].fields.keys()
    fields = {}
    for k in keys:
        tensors = [s.fields[k] for s in sets]
        width = max(t.shape[1] for t in tensors) if tensors[0].dim() > 1 and k in ("input_ids", "attention_mask") else None
        if width is not None:
            tensors = [torch.nn.functional.pad(t, (0, width - t.shape[1])) for t in tensors]
        fields[k] = torch.cat(tensors)
    return ExampleSet(fields, sets[0].banks, sets[0].gather_image, name)
