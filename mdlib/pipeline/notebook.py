"""What every notebook does first and last: check its parameters, set up, record results.

    session, task, model, forget, retain = start(fast=fast, seed=seed, task=task, output_dir=output_dir,
                                                 device=device, df_size=df_size)
    ...
    session.summary(model, "original f")             # one table row: D_f score, P(true), D_test
    session.save_figure(fig, "d_f_over_steps")
    session.record(session.rows("multidelete", {"d_test": 84.1, "d_f": 17.0}), notebook="05_multidelete")

`start` is `setup` (check the parameters, seed, device, plot theme) plus loading what most notebooks
begin from: the Task, the original model f and a deletion request (D_f, D_r). A notebook that needs
none of these calls `setup`.

Parameters arrive from the notebook's `parameters` cell, from papermill (`-p seed 3`)
or from the batch runner; `setup` checks each one and says how to fix a wrong one.
"""
from __future__ import annotations

import ast
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ..tasks import check_task
from ..utils import atomic_write, resolve_device, resolve_fast, seed_everything, write_json
from .results import runs_dir

__all__ = ["Session", "Started", "setup", "start", "check_rows", "check_params", "parse_seeds", "parse_methods",
           "parse_sizes", "training_units"]

ROW_KEYS = ("task", "method", "seed", "df_size", "metric", "value")
_METRIC = re.compile(r"^[a-z][a-z0-9_@.\-]*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")

# Notebook-specific parameters we know: (type name, check, what a good value looks like, an example).
_KNOWN: dict[str, tuple[str, Any, str, str]] = {
    "df_size": ("number", lambda v: (0 < v < 1) if isinstance(v, float) else v >= 1,
                "a count of deleted units (an int >= 1) or a fraction of them (a float in (0, 1))", "100"),
    "methods": ("str", lambda v: bool(v.strip()), '"all" or comma-separated method names', "multidelete,neggrad"),
    "sweep_methods": ("str", lambda v: bool(v.strip()), '"all" or comma-separated method names', "multidelete,neggrad"),
    "sizes": ("str", lambda v: bool(v.strip()), "comma-separated forget sizes (fractions or counts)", "0.01,0.05"),
    "betas": ("str", lambda v: bool(v.strip()), "comma-separated non-negative numbers", "0,1,5"),
    "n_reference": ("int", lambda v: v >= 0 and v % 2 == 0, "an even int >= 0 (0: the default)", "4"),
    "seeds": ("str", lambda v: bool(v.strip()), "comma-separated non-negative ints", "0,1,2"),
    "epochs": ("int", lambda v: v >= 1, "a positive int", "5"),
    "lr": ("float", lambda v: v > 0, "a positive number", "2e-5"),
}


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("float", "number"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    raise ValueError(kind)


def _bad_type(name: str, value: Any, kind: str, example: str) -> TypeError:
    article = "an" if kind[0] in "aeiou" else "a"
    hint = example
    if isinstance(value, str):  # e.g. seed="3": papermill's -p would have given the int 3
        try:
            hint = value if _type_ok(ast.literal_eval(value), kind) else example
        except (ValueError, SyntaxError):
            pass
    return TypeError(f"{name} must be {article} {kind}, got {value!r} ({type(value).__name__}); "
                     f"pass -p {name} {hint}")


def _check_param(name: str, value: Any) -> None:
    if name not in _KNOWN:
        if not _is_literal(value):
            raise TypeError(f"parameter {name} must be a plain literal (number, string, bool, None, list or dict), "
                            f"got {type(value).__name__}")
        return
    kind, ok, good, example = _KNOWN[name]
    if not _type_ok(value, kind):
        raise _bad_type(name, value, kind, example)
    if not ok(value):
        raise ValueError(f"{name}={value!r} is not valid: use {good}, e.g. -p {name} {example}")


def _is_literal(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_literal(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_literal(v) for k, v in value.items())
    return False


def parse_seeds(seeds: str | int) -> list[int]:
    """ "0,1,2" -> [0, 1, 2] (an int gives a one-element list)."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        return [seeds]
    try:
        out = [int(s) for s in str(seeds).replace(" ", ",").split(",") if s]
    except ValueError:
        out = []
    if not out or any(s < 0 for s in out):
        raise ValueError(f'seeds must be comma-separated non-negative ints such as "0,1,2", got {seeds!r}')
    repeated = sorted({s for s in out if out.count(s) > 1})
    if repeated:
        once = ",".join(map(str, dict.fromkeys(out)))
        raise ValueError(f"seeds {seeds!r} repeat {', '.join(map(str, repeated))}: each seed would run twice and "
                         f"overwrite its own results; list each seed once, e.g. {once}")
    return out


def parse_sizes(sizes: str) -> list[int | float]:
    """ "0.01,0.05,100" -> [0.01, 0.05, 100]: a number with a point is a fraction, else a count."""
    try:
        out = [float(s) if "." in s else int(s) for s in (p.strip() for p in str(sizes).split(",")) if s]
    except ValueError:
        out = []
    if not out:
        raise ValueError(f'sizes must be comma-separated forget sizes such as "0.01,0.05" (fractions) or "10,50" '
                         f"(counts), got {sizes!r}")
    return out


def _parse_betas(betas: str) -> list[float]:
    try:
        out = [float(b) for b in str(betas).split(",") if b.strip()]
    except ValueError:
        out = []
    if not out or any(not math.isfinite(b) or b < 0 for b in out):
        raise ValueError(f'betas must be comma-separated non-negative numbers such as "0,1,5", got {betas!r}')
    return out


def training_units(task: str, fast: bool) -> int:
    """How many deletion units the training split of `task`'s embedded data holds in fast or full mode
    (images, NLVR pairs or graph-text blocks), computed without building the data."""
    from ..data.world import WorldConfig

    check_task(task)
    if task == "graph-text":
        from ..data.hpo import train_unit_count

        return train_unit_count(fast)
    n_train = (WorldConfig.fast() if fast else WorldConfig()).n_train
    return n_train // 2 if task == "nlvr" else n_train  # NLVR pairs the images of each split


def _check_size(name: str, size, task: str | None, fast: bool | None) -> None:
    """A forget size against the training units of the task it will be drawn from."""
    from ..data.forget import forget_count

    if task is None or fast is None:
        return
    n = training_units(task, fast)
    try:
        forget_count(size, n)
    except ValueError as e:
        raise ValueError(f"{name}={size!r} does not fit the {task} task in {'fast' if fast else 'full'} mode "
                         f"({n} training units): {e}") from None


def check_params(params: dict, *, task: str | None = None, fast: bool | None = None) -> None:
    """Check a notebook's own parameters: types, method names against the registry, seeds without repeats,
    and forget sizes against `task`'s training units in fast or full mode (when both are known).

    The papermill runner calls this for every planned execution, so a wrong value stops the run before
    anything executes; `setup` calls it again inside the notebook.
    """
    for name, value in params.items():
        _check_param(name, value)
    for name in ("methods", "sweep_methods"):
        if name in params:
            try:
                parse_methods(params[name])
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
    if "seeds" in params:
        parse_seeds(params["seeds"])
    if "betas" in params:
        _parse_betas(params["betas"])
    if "df_size" in params:
        _check_size("df_size", params["df_size"], task, fast)
    if "sizes" in params:
        for size in parse_sizes(params["sizes"]):
            _check_size("sizes", size, task, fast)


def parse_methods(methods: str, available: list[str] | None = None) -> list[str]:
    """ "all" -> every registered method; "multidelete,neggrad" -> those, checked against the registry."""
    if available is None:
        from ..methods import available as registered

        available = registered()
    if methods.strip() == "all":
        return list(available)
    names = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in available]
    if unknown or not names:
        raise ValueError(f"unknown method(s) {', '.join(unknown) or repr(methods)}; "
                         f"choose from: all, {', '.join(available)}")
    return names


def check_rows(rows: list[dict]) -> list[dict]:
    """Validate result rows (task, method, seed, df_size, metric, value) and return clean copies."""
    if isinstance(rows, dict) or not hasattr(rows, "__iter__"):
        raise TypeError("rows must be a list of dicts with keys " + ", ".join(ROW_KEYS))
    clean = []
    for i, row in enumerate(rows):
        where = f"row {i}"
        if not isinstance(row, dict):
            raise TypeError(f"{where} must be a dict with keys {', '.join(ROW_KEYS)}, got {type(row).__name__}")
        missing, extra = set(ROW_KEYS) - set(row), set(row) - set(ROW_KEYS)
        if missing or extra:
            raise ValueError(f"{where} has missing keys {sorted(missing)} and unexpected keys {sorted(extra)}; "
                             f"rows need exactly {', '.join(ROW_KEYS)} (one metric per row)")
        check_task(row["task"])
        if not isinstance(row["method"], str) or not _METRIC.match(row["method"]):
            raise ValueError(f"{where}: method must be a lowercase name such as 'multidelete-f', got {row['method']!r}")
        for key in ("seed", "df_size"):
            v = row[key]
            if not _type_ok(v, "int") or v < 0:
                raise ValueError(f"{where}: {key} must be a non-negative int (use df_size 0 when nothing is deleted), "
                                 f"got {v!r}")
        if not isinstance(row["metric"], str) or not _METRIC.match(row["metric"]):
            raise ValueError(f"{where}: metric names are lowercase, like 'd_test' or 'recall@1', "
                             f"got {row['metric']!r}")
        value = row["value"]
        if isinstance(value, torch.Tensor):
            value = value.item() if value.numel() == 1 else value
        if isinstance(value, (np.integer, np.floating)):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{where} ({row['method']}, {row['metric']}): value must be a finite number, "
                             f"got {value!r}; drop the row or record a finite value")
        clean.append({**row, "value": float(value)})
    return clean


@dataclass
class Session:
    """A notebook's checked settings; `record` and `save_figure` write under `output_dir`.

    After `start`, it also holds what the notebook works on: `task` (the Task), `model` (the original f),
    `meta` (how f was trained), `forget` and `retain` (D_f and D_r); each is None where not loaded.
    """

    fast: bool
    seed: int
    device: torch.device
    output_dir: Path
    task_name: str | None = None
    params: dict = field(default_factory=dict)
    task: Any = None
    model: Any = None
    meta: dict = field(default_factory=dict)
    forget: Any = None
    retain: Any = None
    _rows: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def header(self) -> str:
        return (f"device {self.device} | fast mode {'on' if self.fast else 'off'} | torch {torch.__version__} | "
                f"seed {self.seed}" + (f" | task {self.task_name}" if self.task_name else "")
                + f" | output {self.output_dir}")

    @property
    def progress(self) -> bool:
        """Whether loops show progress bars: in full mode only (thousands of bar updates in one cell stall
        batch runs, and fast mode is over in seconds)."""
        return not self.fast

    @property
    def n_forget(self) -> int:
        """How many deletion units D_f holds (0 without a deletion request)."""
        return len(self.forget.units()) if self.forget is not None else 0

    def summary(self, model, name: str) -> dict:
        """One table row about `model` on this session's request: the D_f score (log-odds), mean P(true) on
        D_f, D_r and test, and D_test (see `Task.summarise`)."""
        if self.task is None or self.forget is None:
            raise RuntimeError("summary needs a task and a deletion request: start(..., task=..., df_size=...)")
        return self.task.summarise(model, name, forget=self.forget, retain=self.retain, seed=self.seed)

    def retrain(self, retain=None, seed: int | None = None, progress: bool | None = None):
        """Retrain for this session: the original's recipe from scratch on `retain` (default D_r), seed `seed`
        (default the session's); trained, or loaded from the checkpoint cache. Returns (model, meta)."""
        from .original import retrained_model

        if self.task is None or (retain is None and self.retain is None):
            raise RuntimeError("retrain needs a task and a retained set: start(..., task=..., df_size=...)")
        return retrained_model(self.task, self.retain if retain is None else retain,
                               self.seed if seed is None else seed, fast=self.fast, device=self.device,
                               progress=self.progress if progress is None else progress)

    def rows(self, method: str, values: dict, df_size: int | None = None) -> list[dict]:
        """Result rows for `session.record`: one per metric in `values`, for this session's task and seed.
        df_size defaults to the number of deleted units (0 without a request)."""
        if self.task_name is None:
            raise RuntimeError("rows need a task: start(..., task=...) or setup(..., task=...)")
        size = self.n_forget if df_size is None else df_size
        return [dict(task=self.task_name, method=method, seed=self.seed, df_size=int(size), metric=metric,
                     value=value) for metric, value in values.items()]

    def table_rows(self, table, metrics, methods: dict[str, str] | None = None, prefix: str = "") -> list[dict]:
        """Result rows from a table with one row per model (a DataFrame indexed by the names `summary` gives,
        or with a `model` column). A row's method is `methods[name]` when `methods` is given, else its `method`
        column when there is one, else its name; its df_size is its `df_size` column when there is one, else
        the request's. Column m of `metrics` is recorded as metric `prefix + m`; missing and NaN cells are
        skipped, infinite ones kept (`record` refuses them)."""
        if "model" in getattr(table, "columns", ()):
            table = table.set_index("model")
        names = list(methods) if methods is not None else list(table.index)
        out = []
        for name in names:
            if name not in table.index:
                raise KeyError(f"no row {name!r} in the table; its rows are {list(table.index)}")
            row = table.loc[name]
            method = methods[name] if methods is not None else row.get("method", name)
            df_size = int(row["df_size"]) if "df_size" in row.index else None
            values = {prefix + m: float(row[m]) for m in metrics if m in row.index and row[m] == row[m]}
            out += self.rows(method, values, df_size=df_size)
        return out

    def print_header(self) -> None:
        """Print device, fast mode, torch version and seed on one line."""
        print(self.header())

    def record(self, rows: list[dict], notebook: str) -> Path:
        """Add result rows and (re)write `metrics/<notebook>__<task>__seed<seed>.json` atomically.

        A row repeated with the same (task, method, seed, df_size, metric) replaces the earlier one,
        so rerunning a cell does not duplicate results. The file has no timestamp: a rerun that
        computes the same numbers writes an identical file.
        """
        if not isinstance(notebook, str) or not _NAME.match(notebook):
            raise ValueError(f"notebook must be a file-name-like string such as '04_multidelete', got {notebook!r}")
        table = self._rows.setdefault(notebook, {})
        for row in check_rows(rows):
            table[tuple(row[k] for k in ROW_KEYS[:-1])] = row
        payload = {"notebook": notebook, "task": self.task_name, "seed": self.seed, "fast": self.fast,
                   "device": self.device.type, "params": self.params, "rows": list(table.values())}
        path = self._output_path("metrics", notebook, ".json")
        return write_json(payload, path)

    def _output_path(self, folder: str, name: str, suffix: str) -> Path:
        """`<output_dir>/<folder>/<name>__<task>__seed<seed><suffix>`: one file per job of a run (task and seed)."""
        return self.output_dir / folder / f"{name}__{self.task_name or 'all'}__seed{self.seed}{suffix}"

    def save_figure(self, fig, name: str, dpi: int = 150) -> Path:
        """Save a matplotlib figure as `figures/<name>__<task>__seed<seed>.png` (atomically, named like the
        metrics files, so that the jobs of one run, one per task and seed, do not overwrite each other's
        figures) and return the path."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"figure name must be a file-name-like string such as 'd_f_curves', got {name!r}")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        path = self._output_path("figures", name, ".png")
        with atomic_write(path, "wb") as fh:
            fh.write(buf.getvalue())
        return path


def default_output_dir() -> Path:
    """`<runs>/interactive`: where a notebook run by hand writes (see `results.runs_dir`)."""
    return runs_dir() / "interactive"


def setup(fast: bool | None = None, seed: int = 0, device: str = "auto", output_dir: str | Path = "",
          task: str | None = None, **params) -> Session:
    """Check the notebook's parameters, seed everything, pick the device and apply the plot theme.

    fast=None reads the `CI` variable; output_dir="" means `runs/interactive`. Other keyword
    arguments are the notebook's own parameters (df_size, methods, seeds, ...), checked and kept
    in `Session.params`.
    """
    if fast is not None and not isinstance(fast, bool):
        raise _bad_type("fast", fast, "bool", "True")
    if not _type_ok(seed, "int"):
        raise _bad_type("seed", seed, "int", "0")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}")
    if not isinstance(device, (str, torch.device)):
        raise _bad_type("device", device, "str", "cpu")
    if not isinstance(output_dir, (str, Path)):
        raise _bad_type("output_dir", output_dir, "str", "runs/my_run")
    if task is not None:
        if not isinstance(task, str):
            raise _bad_type("task", task, "str", "retrieval")
        check_task(task)
    check_params(params, task=task, fast=resolve_fast(fast))

    session = Session(fast=resolve_fast(fast), seed=seed, device=resolve_device(device),
                      output_dir=Path(output_dir).resolve() if str(output_dir) else default_output_dir(),
                      task_name=task, params=dict(sorted(params.items())))
    seed_everything(seed)
    _theme()
    return session


class Started(NamedTuple):
    """What `start` returns, to unpack in one line; each is also an attribute of the session (None where
    not loaded)."""

    session: Session
    task: Any
    model: Any
    forget: Any
    retain: Any


def start(fast: bool | None = None, seed: int = 0, device: str = "auto", output_dir: str | Path = "",
          task: str | None = None, df_size: int | float | None = None, original: bool = True,
          progress: bool | None = None, **params) -> Started:
    """`setup`, then load what the notebook works on, print one line about each, and return
    (session, task, model, forget, retain):

    * the Task `task` on its embedded data (fast or full world);
    * with `original=True`, the original model f for `seed` (trained, or loaded from the checkpoint cache;
      progress bars in full mode only unless `progress` says otherwise),
      in `session.model` and `session.meta`;
    * with `df_size`, the deletion request `task.forget_split(df_size, seed)` in `session.forget` and
      `session.retain`.

    Every parameter is checked before anything loads or trains.
    """
    from ..tasks import load_task
    from .original import original_model

    if df_size is not None:
        params["df_size"] = df_size
    session = setup(fast=fast, seed=seed, device=device, output_dir=output_dir, task=task, **params)
    session.print_header()
    if task is None:
        return Started(session, None, None, None, None)
    session.task = load_task(task, fast=session.fast)
    print(session.task)
    if original:
        session.model, session.meta = original_model(session.task, session.seed, fast=session.fast,
                                                     device=session.device,
                                                     progress=session.progress if progress is None else progress)
    if df_size is not None:
        session.forget, session.retain = session.task.forget_split(df_size, seed=session.seed)
        print(f"D_f: {session.n_forget} {session.task.unit_name}s ({len(session.forget)} examples); "
              f"D_r: {len(session.retain)} examples; D_test: {len(session.task.test)} examples")
    return Started(session, session.task, session.model, session.forget, session.retain)


def _theme() -> None:
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
