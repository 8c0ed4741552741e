"""The runner's executors side by side: the same fast-mode jobs run one after another, then on a local
Dask cluster, each in a fresh data folder, timed in one run of this script.

    python benchmarks/executors.py                              # notebooks 01-05, seeds 0 and 1, 2 workers
    python benchmarks/executors.py --notebooks 00 01 --workers 2 --seeds 0,1

Each executor gets its own data folder holding a copy of the generated worlds and nothing else, so
neither finds the other's trained models: both train their original models and Retrain. Both pass the
same `--threads` to their jobs (default 1), since training with another thread count sums in another
order (a fast-mode original trained with 1 and with 2 threads: test recall 25.7 against 27.3). Prints the
two wall times (whole runner processes), the ratio dask / sequential, whether `results.csv` agrees row for
row (timing metrics aside), where the time went (each notebook's job seconds under both executors, and how
busy the workers were), and ends with one JSON line.
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

from mdlib.pipeline.results import is_timing

ROOT = Path(__file__).resolve().parents[1]


def run(executor: list[str], work: Path, name: str, args: argparse.Namespace) -> float:
    """Seconds of one runner process in its own data folder (a copy of the worlds only)."""
    data = work / f"data-{name}"
    shutil.copytree(args.data / "worlds", data / "worlds")
    command = [sys.executable, "-m", "mdlib.pipeline.runner", "--mode", "fast", "--notebooks", *args.notebooks,
               "--seeds", args.seeds, "--runs-dir", str(work / "runs"), "--name", name, "--no-progress",
               "--threads", str(args.threads), *executor]
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=dict(os.environ, MDLIB_DATA=str(data)), check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def rows(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path)
    table = table[~table["metric"].map(is_timing)]
    return table.sort_values(list(table.columns[:-1])).reset_index(drop=True)


def show_differences(a: pd.DataFrame, b: pd.DataFrame, limit: int = 10) -> None:
    """Print the rows that only one run wrote, or whose values differ most (at most `limit` of each)."""
    keys = list(a.columns.drop("value"))
    merged = a.merge(b, on=keys, how="outer", suffixes=("_sequential", "_dask"), indicator=True)
    alone = merged[merged["_merge"] != "both"]
    if len(alone):
        print(f"{len(alone)} rows written by one run only:\n{alone.head(limit).to_string()}")
    both = merged[merged["_merge"] == "both"].assign(diff=lambda t: (t["value_sequential"] - t["value_dask"]).abs())
    print(f"largest differences:\n{both.nlargest(limit, 'diff').to_string()}")


def job_seconds(path: Path) -> dict[str, float]:
    """Seconds spent in the jobs of each notebook (summed over seeds), from a run's timings.json."""
    seconds: dict[str, float] = {}
    for job in json.loads(path.read_text())["jobs"]:
        seconds[job["notebook"]] = seconds.get(job["notebook"], 0.0) + job["seconds"]
    return seconds


def breakdown(work: Path, wall: dict[str, float], workers: int) -> dict:
    """Where the time went: each notebook's job seconds in both runs, and the share of the cluster's
    worker-seconds spent in jobs (the rest: start-up, checkpoints trained before the jobs, waiting)."""
    seq, par = (job_seconds(work / "runs" / name / "timings.json") for name in ("sequential", "dask"))
    print(f"{'notebook':<22} {'sequential s':>12} {'dask s':>8} {'dask / seq':>10}")
    for notebook in seq:
        print(f"{notebook:<22} {seq[notebook]:12.1f} {par.get(notebook, 0.0):8.1f} "
              f"{par.get(notebook, 0.0) / seq[notebook]:10.2f}")
    total_seq, total_par = sum(seq.values()), sum(par.values())
    busy = total_par / (workers * wall["dask"])
    print(f"{'all jobs':<22} {total_seq:12.1f} {total_par:8.1f} {total_par / total_seq:10.2f}")
    print(f"outside jobs: sequential {wall['sequential'] - total_seq:.1f} s; the cluster's workers were in jobs "
          f"{100 * busy:.0f}% of {workers} x {wall['dask']:.1f} s")
    return {"job_s_sequential": round(total_seq, 1), "job_s_dask": round(total_par, 1),
            "worker_busy_fraction": round(busy, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notebooks", nargs="+", default=["01", "02", "03", "04", "05"])
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data", type=Path, default=ROOT / "data", help="where the generated worlds are")
    ap.add_argument("--threads", type=int, default=1,
                    help="math threads of every job in both runs (the runner's --threads; default 1)")
    ap.add_argument("--keep", type=Path,
                    help="an empty folder to keep both runs in (default: a temporary one, removed)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            work = args.keep
        sequential = run([], work, "sequential", args)
        print(f"sequential ({args.threads} thread(s) per job): {sequential:7.1f} s", flush=True)
        parallel = run(["--executor", "dask", "--workers", str(args.workers)], work, "dask", args)
        print(f"dask ({args.workers} workers): {parallel:7.1f} s", flush=True)
        a, b = rows(work / "runs" / "sequential" / "results.csv"), rows(work / "runs" / "dask" / "results.csv")
        same_rows = a.shape == b.shape and a.drop(columns="value").equals(b.drop(columns="value"))
        largest = float((a["value"] - b["value"]).abs().max()) if same_rows else float("nan")
        same = same_rows and largest == 0.0
        if not same:
            show_differences(a, b)
        where = breakdown(work, {"sequential": sequential, "dask": parallel}, args.workers)
    ratio = parallel / sequential
    print(f"dask / sequential: {ratio:.2f}; results.csv identical (timings aside): {same} ({len(a)} rows, "
          f"largest difference {largest:.3g})")
    print(json.dumps({"notebooks": args.notebooks, "seeds": args.seeds, "workers": args.workers,
                      "threads": args.threads,
                      "sequential_s": round(sequential, 1), "dask_s": round(parallel, 1),
                      "dask_over_sequential": round(ratio, 3), "identical_results": same, "rows": len(a),
                      "largest_difference": largest, **where}))


if __name__ == "__main__":
    main()
