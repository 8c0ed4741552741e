"""Where the runner's jobs execute: one after another here (`local`), or as tasks of a Dask scheduler.

    --executor local              one job at a time in this process (the default)
    --executor dask --workers 2   a `dask.distributed.LocalCluster` on this machine, one job per worker
    --executor dask://HOST:8786   an existing scheduler (a cluster); the run folder, the notebooks and the
                                  data folder must be visible to every worker at the same paths

Both call `run_job`, which executes one notebook and returns its timing record; only the driver (the
runner, which holds the run folder's lock) writes `timings.json` and `results.csv`, after each job.

Shared checkpoints: notebook `01_*` trains the original model and Retrain of its (task, seed), which
the later notebooks load (training them when absent). Each job declares the (task, seed) pairs it loads
(`needs`: its own, or every seed of a notebook that takes `seeds`). The Dask executor first trains, once,
the checkpoints of every pair that two or more jobs need and no `01` job of the run trains
(`prepare_checkpoints`), then runs every `01` job and waits for them, then submits the rest; so a
checkpoint is never trained twice in parallel. A job whose checkpoints could not be made is skipped.
"""
from __future__ import annotations

import os
import sys
import time
from collections import Counter
from typing import Callable

TRAINS_CHECKPOINTS = "01"  # the notebook-name prefix of the jobs that train the shared checkpoints
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 for its workers, and their kernels inherit it. Measured here:
# it made a fast-mode training 1.7x slower (40 s instead of 23 s, CPU time likewise), alone or on a cluster.
# Jobs run without it, as they do in a sequential run.
WORKER_ONLY_VARIABLES = ("MALLOC_TRIM_THRESHOLD_",)


def parse_executor(text: str) -> str | None:
    """None for the local executor, "" for a new LocalCluster, else the scheduler address."""
    if text == "local":
        return None
    if text == "dask":
        return ""
    if text.startswith("dask://") and len(text) > len("dask://"):
        return "tcp://" + text[len("dask://"):]
    raise ValueError(f"--executor takes local, dask or dask://HOST:PORT, got {text!r}")


def require_dask() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ValueError('--executor dask needs Dask distributed: pip install "mdlib[cluster]"') from None


# A kernel that dies before it answers its first request has run no cell, so the job can start again. Seen with
# two Dask workers starting kernels at once: both drew the same free TCP port ("Address already in use").
KERNEL_START_FAILURE = "Kernel died before replying to kernel_info"
KERNEL_START_ATTEMPTS = 3


def execute(job, kernel: str, timeout: int | None, progress: bool) -> str | None:
    """Run one notebook with papermill; returns None, "interrupted" or the error in one line. A kernel that
    fails to start is started again (at most KERNEL_START_ATTEMPTS times in all)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    job.output.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
        try:
            papermill.execute_notebook(str(job.notebook), str(job.output), parameters=job.parameters,
                                       kernel_name=kernel, progress_bar=progress, cwd=str(job.notebook.parent),
                                       execution_timeout=timeout)
        except PapermillExecutionError as e:
            # Ctrl-C in a terminal reaches the kernel too: its cell stops with KeyboardInterrupt
            interrupted = e.ename == "KeyboardInterrupt"
            return "interrupted" if interrupted else f"{e.ename}: {e.evalue} (at In [{e.exec_count}])"
        except Exception as e:  # kernel death, timeout, unreadable notebook: still report where it stopped
            if KERNEL_START_FAILURE in str(e) and attempt < KERNEL_START_ATTEMPTS:
                time.sleep(attempt)  # another kernel may be taking the ports just now
                continue
            return f"{type(e).__name__}: {e}"
        return None


def run_job(job, kernel: str, timeout: int | None, progress: bool = False, threads: int | None = None) -> dict:
    """Execute one job and return its timing record (status "ok", "failed" or "interrupted").

    `threads` caps the math threads of the job's kernel (which inherits this process's environment)."""
    os.environ["MDLIB_BATCH"] = "1"  # interactive widgets draw static figures instead
    job_environment(threads)
    started = time.time()
    try:
        error = execute(job, kernel, timeout, progress)
    except KeyboardInterrupt:
        error = "interrupted"
    return timing_record(job, started, time.time(), error)


def job_environment(threads: int | None) -> None:
    """The environment a job's kernel inherits from this process: without the Dask workers' own variables,
    and with `threads` math threads when given."""
    for variable in WORKER_ONLY_VARIABLES:
        os.environ.pop(variable, None)
    if threads:
        os.environ.update({v: str(threads) for v in THREAD_VARIABLES})


def timing_record(job, started: float, finished: float, error: str | None) -> dict:
    """What timings.json keeps of one job: where it ran to, when, and its status ("ok", "failed" with the
    error in one line, or "interrupted")."""
    record = {"notebook": job.notebook.stem, "task": job.task, "seed": job.seed, "output": str(job.output),
              "seconds": round(finished - started, 2), "started": round(started, 3), "finished": round(finished, 3),
              "status": "interrupted" if error == "interrupted" else "failed" if error else "ok"}
    if record["status"] == "failed":
        record["error"] = error
    return record


def needs(job) -> list[tuple[str, int]]:
    """The (task, seed) pairs whose original model and Retrain `job` loads: its own (task, seed), or one per
    seed of a notebook that takes `seeds`; none for a `01` job (it trains them) or a job without a task."""
    if job.task is None or job.notebook.name.startswith(TRAINS_CHECKPOINTS):
        return []
    if job.seed is not None:
        return [(job.task, job.seed)]
    if "seeds" not in job.parameters:
        return []
    from .notebook import parse_seeds  # the runner checked the value when it made the plan

    return [(job.task, s) for s in parse_seeds(job.parameters["seeds"])]


def shared_needs(jobs: list) -> list[tuple[str, int]]:
    """The (task, seed) pairs that two or more jobs load and no `01` job of the plan trains first."""
    trained = {(j.task, j.seed) for j in jobs if j.notebook.name.startswith(TRAINS_CHECKPOINTS)}
    count = Counter(pair for job in jobs for pair in dict.fromkeys(needs(job)))
    return [pair for pair, n in count.items() if n > 1 and pair not in trained]


def prepare_checkpoints(task: str, seed: int, fast: bool, device: str, df_size, threads: int | None = None) -> None:
    """Train (or find) the original model of (task, seed) and, with a `df_size`, its Retrain on that request,
    as notebook `01` would; run on a worker before the jobs that load them."""
    job_environment(threads)
    if threads:  # this runs in the worker's own process, which may have imported torch already
        import torch

        torch.set_num_threads(threads)
    from ..tasks import load_task
    from ..utils import resolve_fast
    from .original import original_model, retrained_model

    fast = resolve_fast(fast)
    t = load_task(task, fast=fast)
    original_model(t, seed, fast=fast, device=device, progress=False)
    if df_size is not None:
        _, retain = t.forget_split(df_size, seed=seed)
        retrained_model(t, retain, seed, fast=fast, device=device, progress=False)


def phases(jobs: list) -> tuple[list, list]:
    """The jobs that train shared checkpoints (notebook `01_*`), and the others, each in plan order."""
    first = [j for j in jobs if j.notebook.name.startswith(TRAINS_CHECKPOINTS)]
    return first, [j for j in jobs if j not in first]


def run_dask(jobs: list, done: Callable[[object, dict], bool], *, address: str, workers: int, device: str,
             kernel: str, timeout: int | None, prepare: Callable | None = None, threads: int | None = None) -> int:
    """Run `jobs` on a Dask scheduler (a new LocalCluster when `address` is ""): the shared checkpoints no
    `01` job trains first (`prepare`, once per (task, seed)), then the `01` jobs, then the rest. `threads`
    caps each job's math threads (default: cores / workers on a local cluster, the workers' own on a remote one).

    `done(job, record)` is called in this process as each job ends and returns whether it was recorded.
    Every job runs whatever the others do; returns 0, or 1 when any failed, was skipped or not recorded."""
    import dask
    from distributed import Client, LocalCluster, as_completed

    if address:
        client, cluster = Client(address, timeout="30s"), None
        resources = {"GPU": 1} if device.startswith("cuda") else None
        if resources and not any(w.get("resources", {}).get("GPU") for w in
                                 client.scheduler_info()["workers"].values()):
            print(f"mdlib-run: no worker of {address} offers a GPU resource yet; the jobs wait for one "
                  f"(start workers with `dask worker {address} --nworkers 1 --resources GPU=1`)",
                  file=sys.stderr, flush=True)
    else:
        spawn = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ").items()
                 if k not in WORKER_ONLY_VARIABLES}  # checkpoints are trained in the worker itself
        with dask.config.set({"distributed.scheduler.allowed-failures": 0,  # no rerun of a job that killed its worker
                              "distributed.nanny.pre-spawn-environ": spawn}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client, resources = Client(cluster), None
        threads = threads or max(1, (os.cpu_count() or 1) // workers)
    prepare = prepare or prepare_checkpoints
    status, futures = 0, {}
    failed_keys: set = set()
    try:
        shared = shared_needs(jobs)
        if shared:
            print(f"training the shared checkpoints of {', '.join(f'{t} seed {s}' for t, s in shared)} once, "
                  "before the jobs that load them", flush=True)
            futures = {}
            for task, seed in shared:
                params = next(j.parameters for j in jobs if (task, seed) in needs(j))
                futures[client.submit(prepare, task, seed, params.get("fast"), device, params.get("df_size"),
                                      threads, pure=False, resources=resources)] = (task, seed)
            for future in as_completed(futures):
                try:
                    future.result()
                except Exception as e:  # the job that needs it would fail the same way: skip it
                    print(f"FAILED training the checkpoints of task={futures[future][0]}, seed={futures[future][1]}:"
                          f" {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                    failed_keys.add(futures[future])
        for phase in phases(jobs):
            runnable = []
            for job in phase:
                missing = [pair for pair in dict.fromkeys([(job.task, job.seed), *needs(job)]) if pair in failed_keys]
                if missing:
                    print(f"SKIPPED {job.label}: the checkpoints of task={missing[0][0]}, seed={missing[0][1]} could "
                          f"not be trained, so they are missing; fix that and rerun with --resume",
                          file=sys.stderr, flush=True)
                    status = 1
                else:
                    runnable.append(job)
            if not runnable:
                continue
            where = address or f"a local cluster of {workers} worker(s)"
            print(f"submitting {len(runnable)} job(s) to {where}", flush=True)
            futures = {client.submit(run_job, job, kernel, timeout, False, threads, pure=False,
                                     resources=resources): job for job in runnable}
            submitted = time.time()
            for future in as_completed(futures):
                job = futures[future]
                try:
                    record = future.result()
                except Exception as e:  # the worker died, or the job could not reach one
                    record = timing_record(job, submitted, time.time(), f"{type(e).__name__}: {e}")
                if not done(job, record) or record["status"] != "ok":
                    status = 1
                    if job.notebook.name.startswith(TRAINS_CHECKPOINTS):
                        failed_keys.add((job.task, job.seed))
    finally:
        client.cancel([f for f in futures if not f.done()])  # after Ctrl-C: pending jobs of a cluster stop
        client.close()
        if cluster is not None:
            cluster.close()
    return status
