"""The runner's executors side by side: the same fast-mode jobs run one after another, then on a local
Dask cluster, each in a fresh data folder, timed in one run of this script.

    python benchmarks/executors.py                              # notebooks 01-05, seeds 0 and 1, 2 workers
    python benchmarks/executors.py --notebooks 00 01 --workers 2 --seeds 0,1

Each executor gets its own data folder holding a copy of the generated worlds and nothing else, so
neither finds the other's trained models: both train their original models and Retrain. Prints the
two wall times (whole runner processes), the ratio dask / sequential, whether `results.csv` agrees
row for row (timing metrics aside), and ends with one JSON line.

Measured on 2 cores: a fast-mode original trained with 1 math thread differs from one trained with 2 (other
weights; test recall 25.7 against 27.3), so the cluster (1 thread per worker) matches a sequential run only
when that run's jobs also get 1 thread (`--sequential-threads 1`).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from mdlib.pipeline.executors import THREAD_VARIABLES

ROOT = Path(__file__).resolve().parents[1]
TIMING_METRICS = ("seconds", "time_vs_retrain")


def run(executor: list[str], work: Path, name: str, args: argparse.Namespace, threads: int | None = None) -> float:
    """Seconds of one runner process in its own data folder (a copy of the worlds only); `threads` caps the
    math threads of its notebooks' kernels."""
    data = work / f"data-{name}"
    shutil.copytree(args.data / "worlds", data / "worlds")
    command = [sys.executable, "-m", "mdlib.pipeline.runner", "--mode", "fast", "--notebooks", *args.notebooks,
               "--seeds", args.seeds, "--runs-dir", str(work / "runs"), "--name", name, "--no-progress", *executor]
    start = time.perf_counter()
    env = dict(os.environ, MDLIB_DATA=str(data))
    if threads:
        env |= {variable: str(threads) for variable in THREAD_VARIABLES}
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def rows(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path)
    table = table[~table["metric"].isin(TIMING_METRICS)]
    return table.sort_values(list(table.columns[:-1])).reset_index(drop=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notebooks", nargs="+", default=["01", "02", "03", "04", "05"])
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data", type=Path, default=ROOT / "data", help="where the generated worlds are")
    ap.add_argument("--sequential-threads", type=int, default=None,
                    help="math threads of the sequential run's jobs (default: all cores). A local cluster gives each "
                         "worker cores / workers threads, and training with another thread count sums in another "
                         "order: pass that count here to compare the results at equal threads")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sequential = run([], work, "sequential", args, threads=args.sequential_threads)
        print(f"sequential ({args.sequential_threads or 'all'} threads per job): {sequential:7.1f} s", flush=True)
        parallel = run(["--executor", "dask", "--workers", str(args.workers)], work, "dask", args)
        print(f"dask ({args.workers} workers): {parallel:7.1f} s", flush=True)
        a, b = rows(work / "runs" / "sequential" / "results.csv"), rows(work / "runs" / "dask" / "results.csv")
        same_rows = a.shape == b.shape and a.drop(columns="value").equals(b.drop(columns="value"))
        largest = float((a["value"] - b["value"]).abs().max()) if same_rows else float("nan")
        same = same_rows and largest == 0.0
    ratio = parallel / sequential
    print(f"dask / sequential: {ratio:.2f}; results.csv identical (timings aside): {same} ({len(a)} rows, "
          f"largest difference {largest:.3g})")
    print(json.dumps({"notebooks": args.notebooks, "seeds": args.seeds, "workers": args.workers,
                      "sequential_threads": args.sequential_threads,
                      "sequential_s": round(sequential, 1), "dask_s": round(parallel, 1),
                      "dask_over_sequential": round(ratio, 3), "identical_results": same, "rows": len(a),
                      "largest_difference": largest}))


if __name__ == "__main__":
    main()
