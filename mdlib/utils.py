"""Small shared helpers: seeding, devices, fast mode, paths and atomic writes."""
from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

__all__ = [
    "seed_everything", "resolve_device", "resolve_fast", "data_dir", "atomic_write",
    "write_json", "generator", "config_hash", "is_batch", "progress_bar", "CacheError", "file_mode", "exclusive",
    "try_lock",
]


class CacheError(RuntimeError):
    """A cached file or folder under `data_dir()` is unreadable; the message names it and how to rebuild it."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so that a rerun gives the same numbers."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r} ({type(seed).__name__})")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def generator(seed: int) -> torch.Generator:
    """A CPU torch.Generator seeded with `seed` (every random choice in mdlib takes one)."""
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`"auto"` picks CUDA when present, else CPU; anything else is passed to torch.device."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:<index>'") from e
    if dev.type == "cuda":
        _check_cuda(device, dev)
    return dev


def _check_cuda(asked, dev: torch.device) -> None:
    """Refuse a CUDA device that is not visible, naming what was asked and what there is."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ValueError(f"device={asked!r} was asked for but no CUDA GPU is visible; use device='auto' or 'cpu'")
    if dev.index is not None and dev.index >= count:
        raise ValueError(f"device={asked!r} was asked for but only {count} CUDA GPU(s) are visible "
                         f"(cuda:0 to cuda:{count - 1}); use device='cuda' or 'auto'")


def resolve_fast(fast: bool | None) -> bool:
    """Fast mode: the explicit parameter wins; when it is None, the `CI` environment variable decides.

    nbval cannot inject parameters, so CI sets `CI=1` and every notebook shrinks its loops.
    """
    if fast is None:
        return _env_flag("CI")
    if not isinstance(fast, bool):
        raise TypeError(f"fast must be True, False or None (read the CI variable), got {fast!r}")
    return fast


def data_dir() -> Path:
    """Where generated data and checkpoints are cached.

    `$MDLIB_DATA` if set; else the repository's `data/` folder when mdlib runs from a
    checkout; else `~/.cache/mdlib` (for example after `pip install` on Colab).
    """
    env = os.environ.get("MDLIB_DATA")
    if env:
        path = Path(env)
    else:
        repo_data = Path(__file__).resolve().parents[1] / "data"
        path = repo_data if repo_data.is_dir() and os.access(repo_data, os.W_OK) else Path.home() / ".cache" / "mdlib"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", **open_kwargs) -> Iterator[Any]:
    """Write to a temporary file next to `path` and rename it into place on success (`open_kwargs`, such
    as encoding, go to `open`). The file gets the mode a plain `open` would give it.

    A crash or an exception leaves the previous file (or nothing) behind, never a partial one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_kwargs) as fh:
            os.fchmod(fh.fileno(), file_mode())  # mkstemp makes the file owner-only; give it the usual mode
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def try_lock(fd: int) -> bool:
    """Take an exclusive advisory lock (`fcntl.flock`) on the open file `fd` without waiting.

    False when another process holds it; True when taken, or where there are no such locks (Windows without
    `fcntl`, a network file system that answers ENOLCK): then nothing is protected, as without a lock.
    Closing the file releases the lock.
    """
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # the file system offers no locks (ENOLCK, EOPNOTSUPP): go on unlocked
        pass
    return True


@contextlib.contextmanager
def exclusive(path: str | Path, waiting: str = "") -> Iterator[None]:
    """Hold an exclusive lock named after `path` (a hidden `.<name>.lock` file next to it) while the block
    runs: another process that asks for the same lock waits until this one is done. Two notebooks (or test
    processes) that need the same missing checkpoint therefore train it once; the second then loads it.

    `waiting` is printed when the lock is held elsewhere. Where there are no such locks (see `try_lock`)
    the block runs unlocked.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as fh:  # the lock file stays: removing it would race
        if not try_lock(fh.fileno()):
            import fcntl  # present: try_lock found the lock held

            if waiting:
                print(waiting, flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield  # leaving `with` closes the file, which releases the lock


def _umask() -> int:
    """The process's umask, read without changing it where /proc allows."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode(directory: bool = False) -> int:
    """The mode a plain `open()` (or `mkdir`) would give a new file (folder): 0o666 (0o777) less the umask."""
    return (0o777 if directory else 0o666) & ~_umask()


def write_json(obj: Any, path: str | Path) -> Path:
    """Atomically write `obj` as indented JSON."""
    with atomic_write(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, default=_json_default)
    return Path(path)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, torch.Tensor) and o.numel() == 1:
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} as JSON")


def config_hash(*objs: Any, length: int = 10) -> str:
    """A short stable hash of JSON-serialisable configs (names cached artifacts)."""
    import hashlib

    blob = json.dumps(objs, sort_keys=True, default=_json_default).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def _env_flag(name: str) -> bool:
    """True when the environment variable is set to anything but empty, 0, false or no."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def is_batch() -> bool:
    """True in batch runs: the `CI` or `MDLIB_BATCH` environment variable is set (papermill runner, nbval, CI)."""
    return _env_flag("CI") or _env_flag("MDLIB_BATCH")


def progress_bar(**kwargs):
    """A tqdm progress bar: a widget in a live notebook; in batch runs plain text redrawn at most every
    10 seconds, because thousands of widget updates from one cell overflow the kernel's output channel
    (nbval and papermill then lose messages and stall)."""
    if is_batch():
        from tqdm.std import tqdm

        return tqdm(mininterval=10.0, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(**kwargs)
