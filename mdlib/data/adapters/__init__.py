"""Real-data adapters: the published files of Flickr30K, SNLI-VE, NLVR2 and PGR as `RealData` records.

`read_dataset(name, root_or_id, **options)` dispatches by name; `mdlib.tasks.real.load_real_task`
turns the records into a Task. docs/real_data.md says how to get each dataset and its layout.
"""
from __future__ import annotations

from .base import SPLITS, DatasetFormatError, ImageBank, RealData, load_image, subsample
from .flickr30k import read_flickr30k
from .nlvr2 import read_nlvr2
from .pgr import read_pgr
from .snli_ve import read_snli_ve

READERS = {"flickr30k": read_flickr30k, "snli-ve": read_snli_ve, "nlvr2": read_nlvr2, "pgr": read_pgr}
DATASETS = tuple(READERS)


def check_dataset(name: str) -> str:
    """The canonical dataset name ("SNLI_VE" -> "snli-ve"); a clear error for an unknown one."""
    key = str(name).strip().lower().replace("_", "-")
    key = {"flickr": "flickr30k", "flickr-30k": "flickr30k", "snlive": "snli-ve", "nlvr": "nlvr2"}.get(key, key)
    if key not in READERS:
        raise ValueError(f"unknown real dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return key


def read_dataset(name: str, root_or_id, **options) -> RealData:
    """The records of dataset `name` read from `root_or_id` (options: see each reader)."""
    return READERS[check_dataset(name)](root_or_id, **options)


__all__ = ["DATASETS", "SPLITS", "DatasetFormatError", "ImageBank", "RealData", "check_dataset", "load_image",
           "read_dataset", "read_flickr30k", "read_nlvr2", "read_pgr", "read_snli_ve", "subsample"]
