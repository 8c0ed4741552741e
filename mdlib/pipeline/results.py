"""Results files and the paper's numbers.

A run folder holds `metrics/<notebook>__<task>__seed<seed>.json` (written by
`Session.record`); `collect` reads them all into one long table and `write_results`
writes it as `results.csv`. `paper_table(name)` gives the paper's tables in the same
vocabulary (our method and task names) so notebooks can put both side by side.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics import mean_interval
from ..utils import atomic_write

__all__ = ["COLUMNS", "METHOD_ORDER", "PAPER_COLUMNS", "PAPER", "collect", "write_results", "summarise",
           "paper_table", "runs_dir", "method_order", "is_timing"]

COLUMNS = ["notebook", "task", "method", "seed", "df_size", "metric", "value"]

# Table 1's row order; the fusion-only variant follows its method.
METHOD_ORDER = ["original", "retrain", "finetune", "finetune-f", "neggrad", "neggrad-f", "dtd", "dtd-f",
                "l-codec", "l-codec-f", "erm-ktp", "erm-ktp-f", "ul", "ul-f", "multidelete", "multidelete-f",
                "multidelete-no-md", "multidelete-no-ukr", "multidelete-no-mkr"]


def is_timing(metric: str) -> bool:
    """Whether a results.csv metric is a wall-clock measurement (`seconds`, `sweep_seconds`, `time_vs_retrain`,
    `step_ms_cached`, ...) or read from one (`over_cap`): it differs between two runs of the same jobs, where every
    other metric is equal."""
    return metric.endswith("seconds") or metric.startswith("step_ms") or metric in ("time_vs_retrain", "over_cap")


def runs_dir() -> Path:
    """Where run folders live: `$MDLIB_RUNS`, else `<repo>/runs` in a checkout, else `./runs`."""
    env = os.environ.get("MDLIB_RUNS")
    if env:
        return Path(env).resolve()
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir() and os.access(root, os.W_OK):
        return root / "runs"
    return Path.cwd() / "runs"


def method_order(methods) -> list[str]:
    """`methods` (unique) sorted as in Table 1; unknown names go last, alphabetically."""
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(dict.fromkeys(methods), key=lambda m: (rank.get(m, len(rank)), str(m)))


def collect(run_dir: str | Path) -> pd.DataFrame:
    """Every metrics JSON of a run folder as one long table with columns `COLUMNS`."""
    files = sorted((Path(run_dir) / "metrics").glob("*.json"))
    frames = []
    for path in files:
        try:
            payload = json.loads(path.read_text())
            rows = pd.DataFrame(payload["rows"], columns=COLUMNS[1:])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path} is not a metrics file written by Session.record ({e}); "
                             f"delete it or rerun its notebook") from e
        rows.insert(0, "notebook", payload.get("notebook", path.name.split("__")[0]))
        frames.append(rows)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(COLUMNS, [str, str, str, int, int, str, float])})
    df = pd.concat(frames, ignore_index=True)
    df = df.astype({"seed": int, "df_size": int, "value": float})
    return df.sort_values(COLUMNS[:6], kind="stable", ignore_index=True)


def write_results(run_dir: str | Path) -> Path:
    """Rewrite `<run_dir>/results.csv` (atomically) from the run's metrics files."""
    path = Path(run_dir) / "results.csv"
    buf = io.StringIO()
    collect(run_dir).to_csv(buf, index=False)
    with atomic_write(path, "w") as fh:
        fh.write(buf.getvalue())
    return path


def summarise(df: pd.DataFrame, index=("task", "method"), columns=("metric",), *, digits: int | None = 1,
              over: str = "seed", spread: str = "ci95") -> pd.DataFrame:
    """Mean ± spread over `over` (seeds) of a long table, pivoted to `index` x `columns`.

    `spread` is "ci95" (the half-width of the 95% t interval of the mean, as `metrics.mean_interval`) or "sd".
    With `digits` the cells are text ("83.4 ± 1.2", or "83.4" from a single seed);
    with `digits=None` the result has numeric `mean`, `std`, `n` and `ci95` columns instead.
    Methods are listed in Table 1's order.
    """
    if spread not in ("ci95", "sd"):
        raise ValueError(f'spread must be "ci95" or "sd", got {spread!r}')
    index, columns = list(np.atleast_1d(index)), list(np.atleast_1d(columns))
    missing = [c for c in index + columns + ["value", over] if c not in df.columns]
    if missing:
        raise KeyError(f"summarise needs columns {missing}; pass a long table such as collect(run_dir)")
    keys = index + columns
    # Average repeated rows of one seed first so that std is over seeds only.
    per_seed = df.groupby(keys + [over], dropna=False)["value"].mean()
    groups = per_seed.groupby(level=keys, dropna=False)
    stats = groups.agg(["mean", "std", "count"]).rename(columns={"count": "n"})
    stats["ci95"] = groups.agg(lambda v: mean_interval(v)[1])
    if digits is None:
        out = stats
    else:
        half = stats["ci95" if spread == "ci95" else "std"]
        text = [f"{m:.{digits}f}" if n < 2 or np.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}"
                for m, s, n in zip(stats["mean"], half, stats["n"])]
        out = pd.Series(text, index=stats.index).unstack(columns) if columns else pd.Series(text, index=stats.index)
    if "method" in index:
        order = method_order(out.index.get_level_values("method"))
        pos = {m: i for i, m in enumerate(order)}
        out = out.iloc[sorted(range(len(out)), key=lambda i: _sort_key(out.index[i], index, pos))]
    return out


def _sort_key(key, names, pos):
    key = key if isinstance(key, tuple) else (key,)
    return tuple(pos[k] if n == "method" else str(k) for k, n in zip(key, names))


# --- the paper's numbers (Cheng & Amiri, ECCV 2024), transcribed from the slides -------------------------

# Paper dataset columns -> our tasks ("avg" is the paper's average over its columns).
PAPER_COLUMNS = {"flickr-ir": "retrieval", "flickr-tr": "retrieval", "snli-ve": "entailment", "nlvr2": "nlvr",
                 "pgr": "graph-text", "avg": None}
_NA = float("nan")

# Table 1: D_test / D_f (%) per column; N/A -> NaN.
_TABLE1 = {
    "retrain": [97.8, 50.4, 93.5, 50.4, 79.4, 50.2, 80.3, 50.3, 67.5, 50.2, 83.4, 50.3],
    "finetune": [96.7, 50.4, 94.1, 50.4, 79.1, 50.5, 80.3, 49.8, 67.4, 49.9, 83.5, 50.2],
    "finetune-f": [97.1, 49.9, 94.6, 49.9, 79.5, 49.9, 81.2, 50.0, 67.5, 50.1, 83.8, 49.9],
    "neggrad": [92.4, 50.5, 91.7, 50.5, 77.8, 48.6, 77.3, 50.6, 63.4, 49.6, 80.5, 50.0],
    "neggrad-f": [93.3, 50.2, 90.6, 50.2, 79.6, 50.6, 80.8, 50.0, 63.5, 49.9, 81.5, 50.2],
    "dtd": [10.3, 51.4, 8.9, 51.4, 45.2, 50.1, 50.8, 49.8, 50.0, 50.2, 33.0, 50.5],
    "dtd-f": [22.5, 50.9, 20.7, 50.9, 48.6, 49.8, 50.9, 49.8, 53.6, 50.2, 39.2, 50.2],
    "l-codec": [83.5, 50.0, 78.5, 50.0, 56.7, 49.9, 55.3, 52.7, 57.8, 48.8, 66.3, 50.3],
    "l-codec-f": [87.4, 49.4, 50.6, 48.2, 57.4, 48.4, 56.8, 53.1, 59.1, 46.9, 62.2, 49.2],
    "erm-ktp": [57.4, 48.7, 56.2, 49.0, 53.2, 48.9, 52.9, 50.8, _NA, _NA, 54.9, 49.3],
    "erm-ktp-f": [_NA] * 12,
    "ul": [95.1, 50.4, 90.3, 50.4, 75.7, 49.8, 76.3, 50.4, 64.8, 49.7, 80.4, 50.2],
    "ul-f": [94.4, 50.2, 94.1, 50.2, 79.1, 49.7, 76.8, 50.4, 66.1, 48.8, 82.1, 49.8],
    "multidelete": [97.1, 33.2, 94.3, 33.2, 79.8, 35.3, 80.8, 23.5, 68.5, 18.6, 84.2, 28.7],
    "multidelete-f": [96.8, 34.4, 94.1, 34.5, 79.5, 36.3, 80.4, 26.4, 67.7, 19.5, 83.7, 30.2],
}
_T1_COLS = [(c, m) for c in ("flickr-ir", "flickr-tr", "snli-ve", "nlvr2", "pgr", "avg") for m in ("d_test", "d_f")]

# Table 3: MI ratio. "avg" is over the four image-text columns (the slides' first version, which has
# every method); PGR comes from the second version, which lists only five methods (its MultiDelete-F
# average is misprinted as 12.4 there).
_TABLE3 = {
    "retrain": [1.10, 1.10, 1.05, 1.07, 1.09, 1.08],
    "finetune": [1.03, 1.03, 1.04, 1.08, _NA, 1.04],
    "finetune-f": [1.06, 1.06, 1.07, 1.09, _NA, 1.07],
    "neggrad": [1.11, 1.11, 1.09, 1.06, _NA, 1.09],
    "neggrad-f": [1.14, 1.14, 1.10, 1.08, _NA, 1.11],
    "dtd": [1.41, 1.41, 1.60, 1.71, _NA, 1.53],
    "dtd-f": [1.40, 1.40, 1.58, 1.66, _NA, 1.51],
    "l-codec": [1.21, 1.21, 1.23, 1.23, 1.07, 1.22],
    "l-codec-f": [1.22, 1.22, 1.26, 1.26, 1.09, 1.24],
    "erm-ktp": [1.10, 1.10, 1.11, 1.21, _NA, 1.13],
    "erm-ktp-f": [_NA] * 6,
    "ul": [0.97, 0.97, 1.04, 1.07, _NA, 1.01],
    "ul-f": [0.98, 0.98, 1.10, 1.04, _NA, 1.02],
    "multidelete": [1.27, 1.27, 1.30, 1.25, 1.24, 1.27],
    "multidelete-f": [1.25, 1.25, 1.26, 1.21, 1.20, 1.24],
}
_T3_COLS = [(c, "mi_ratio") for c in ("flickr-ir", "flickr-tr", "snli-ve", "nlvr2", "pgr", "avg")]

# Ablation (D_test / D_f on NLVR2 and PGR): "Full model" = multidelete, "- MD" = multidelete-no-md, ...
_ABLATION = {
    "retrain": [80.3, 50.3, 67.5, 50.2],
    "multidelete": [80.8, 23.5, 67.8, 18.6],
    "multidelete-no-md": [80.3, 50.3, 67.5, 49.3],
    "multidelete-no-ukr": [79.2, 25.8, 66.3, 22.6],
    "multidelete-no-mkr": [77.1, 25.6, 64.8, 23.7],
}
_ABL_COLS = [(c, m) for c in ("nlvr2", "pgr") for m in ("d_test", "d_f")]

# Unimodal probe accuracy ("Acc." row): linear probes g_I, g_T trained on f's embeddings, applied to f'.
_PROBE = {"finetune": [83.2], "neggrad": [81.7], "dtd": [43.8], "l-codec": [55.2], "ul": [82.7],
          "multidelete": [83.6], "multidelete-no-ukr": [77.9]}
_PROBE_COLS = [("avg", "probe_acc")]


def _long(table: dict[str, list[float]], cols: list[tuple[str, str]]) -> pd.DataFrame:
    rows = [{"method": m, "column": c, "task": PAPER_COLUMNS[c], "metric": k, "value": v}
            for m, values in table.items() for (c, k), v in zip(cols, values, strict=True)]
    return pd.DataFrame(rows)


PAPER: dict[str, pd.DataFrame] = {
    "table1": _long(_TABLE1, _T1_COLS),
    "table3": _long(_TABLE3, _T3_COLS),
    "ablation": _long(_ABLATION, _ABL_COLS),
    "probe": _long(_PROBE, _PROBE_COLS),
}


def paper_table(name: str, *, wide: bool = False, dropna: bool = True) -> pd.DataFrame:
    """One of the paper's tables: "table1" (D_test / D_f), "table3" (MI ratio), "ablation", "probe".

    Long format (method, column, task, metric, value), N/A cells dropped unless `dropna=False`;
    `wide=True` pivots it back to the paper's layout (methods x (column, metric)).
    """
    if name not in PAPER:
        raise ValueError(f"unknown paper table {name!r}; choose one of {', '.join(PAPER)}")
    df = PAPER[name].copy()
    if wide:
        out = df.pivot_table(index="method", columns=["column", "metric"], values="value", sort=False, dropna=False)
        return out.loc[method_order(out.index)]
    return df.dropna(subset=["value"]).reset_index(drop=True) if dropna else df
