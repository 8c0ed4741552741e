"""Run the notebooks in order with papermill: `python -m mdlib.pipeline.runner` or `mdlib-run`.

    mdlib-run --mode fast                                 # every notebook, fast mode, runs/fast/
    mdlib-run --notebooks 01 04 --tasks retrieval nlvr --seeds 0,1,2 --name paper
    mdlib-run --notebooks 04 -p df_size 200 --dry-run     # print the plan and the time estimate

A notebook receives only the parameters its `parameters` cell declares: `fast` (from --mode),
`seed`, `task`, `output_dir` (the run folder), `device` and any `-p KEY VALUE`. One that
declares `task` runs once per task, one that declares `seed` once per seed; one that declares
`seeds` runs once and receives them all ("0,1,2": notebook 06 runs the Table 1 protocol over them). Executed copies go
to `runs/<name>/notebooks/`, metrics to `runs/<name>/metrics/`, the long table to
`runs/<name>/results.csv`, the wall times to `runs/<name>/timings.json`, and an HTML report of it all
to `runs/<name>/report/index.html` (`report.py`).

Every parameter value is checked before anything runs (`--dry-run` included), through the checks
the notebooks themselves make (`notebook.check_params`): method names, forget sizes against the
task's training units in the chosen mode, seeds without repeats, a run folder that can be written.
One runner at a time holds a run folder (a lock file); a second one is refused. An interrupted run
(Ctrl-C) says so in one line and records the interrupted job in timings.json.

`--executor dask` runs the jobs in parallel on a local Dask cluster (`--workers N`), `--executor
dask://HOST:PORT` on an existing scheduler (see `executors.py`); `--resume` skips the jobs that
timings.json records as finished and whose executed notebook exists.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..tasks import TASKS, check_task
from ..utils import file_mode, resolve_device, try_lock, write_json
from .executors import parse_executor, require_dask, run_dask, run_job
from .notebook import check_params, parse_seeds
from .results import runs_dir, write_results

RESERVED = {"fast": "--mode", "seed": "--seeds", "seeds": "--seeds", "task": "--tasks", "output_dir": "--name"}
RUNNER_SET = (*RESERVED, "device")  # values the runner checks itself
LOCK_NAME = ".mdlib-run.lock"
RUN_FILES = ("timings.json", "results.csv")
RUN_FOLDERS = ("notebooks", "metrics", "figures")

# Rough wall time (seconds) per execution on 2 CPU cores, by notebook number: (fast, full).
# Used when no earlier run left a timings.json. Fast mode: measured runs of the whole sequence from an empty
# cache, rounded up: 8.7 minutes in all since the fast retrieval model trains 80 epochs (01, 06 and 07 from that
# run; the others from the slower of two runs at 40 epochs, 7.1-7.4 minutes in all). Full mode, retrieval:
# notebook 01 trains f and Retrain (about 7 minutes each, measured); 06 runs the Table 1 protocol (every
# method's grid, then every seed); the others are the previous release's figures scaled by the same training
# speed-up (0.72).
ESTIMATES = {"00": (10, 60), "01": (90, 870), "02": (15, 220), "03": (25, 220), "04": (25, 430),
             "05": (25, 650), "06": (180, 7200), "07": (65, 650), "08": (70, 2600), "09": (20, 650),
             "10": (35, 650), "11": (10, 10),
             ("01", "nlvr"): (60, 3900), ("06", "graph-text"): (75, 3800), ("06", "entailment"): (180, 8200),
             ("06", "nlvr"): (180, 17500)}
DEFAULT_ESTIMATE = (60, 600)
# A notebook that runs every seed itself (06) costs this much more per seed after the first: (fast, full).
# Full mode measured on retrieval: seeds 1 and 2 of the Table 1 protocol took 50 minutes together.
PER_EXTRA_SEED = {"06": (60, 1500), ("06", "graph-text"): (60, 600), ("06", "entailment"): (60, 2100),
                  ("06", "nlvr"): (60, 5800)}
# In full mode a task's models and method runs cost this multiple of retrieval's, from the time to train one
# full-mode model on 2 CPU cores (retrieval about 7 minutes, entailment 11-17, NLVR 30-32, graph-text 2.5-4;
# an NLVR FineTune epoch of D_r takes 4x retrieval's). A notebook's retrieval figure is scaled by it unless the
# (number, task) keys above give the task's own. Those: NLVR's notebook 01 trains f and Retrain (32 and 30
# minutes, measured). Graph-text's Table 1 (every method): 36 minutes for the grids and seed 0, and 9-10 minutes
# for each further seed, in its first run; 1 h 23 min in all on a slower day (2 December). Retrieval's and
# entailment's: their whole three-seed Table 1 from an empty data folder (every method and "-F" variant), 2 h 50
# min and 3 h 27 min (2 December). NLVR's, from its parts measured: f 32 minutes, each Retrain 30, each method
# run 2-4 minutes (52 for the grids and 13 per seed).
TASK_COST = {"retrieval": 1.0, "entailment": 2.0, "nlvr": 4.4, "graph-text": 0.5}


def _figure(table: dict, number: str, task: str | None, default: tuple[int, int]) -> tuple[int, int]:
    """The (fast, full) figure of `table` for notebook `number` on `task`: the task's own, else the number's."""
    return table.get((number, task), table.get(number, default))


class PlanError(ValueError):
    """The command line asks for something the notebooks cannot do; nothing has run."""


@dataclass
class Job:
    notebook: Path
    output: Path
    parameters: dict
    task: str | None = None
    seed: int | None = None
    estimate: float = 0.0

    @property
    def label(self) -> str:
        parts = [f"{k}={getattr(self, k)}" for k in ("task", "seed") if getattr(self, k) is not None]
        return self.notebook.stem + (f" ({', '.join(parts)})" if parts else "")


@dataclass
class Plan:
    run_dir: Path
    jobs: list[Job] = field(default_factory=list)

    @property
    def estimate(self) -> float:
        return sum(j.estimate for j in self.jobs)


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _split(values: list[str] | None) -> list[str]:
    return [v for item in values or [] for v in item.replace(",", " ").split()]


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word is a string, as with papermill's -p


def declared_parameters(notebook: Path) -> dict[str, type]:
    """The parameters a notebook's `parameters` cell declares, mapped to the type of their literal default.

    Read with `ast` rather than papermill's line-based inspector, which skips a line whose comment
    contains "=" and infers no type without an annotation.
    """
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cell = next((c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])), None)
    if cell is None:
        return {}
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as e:
        raise PlanError(f"{notebook.name}: its parameters cell is not plain Python ({e.msg}, line {e.lineno}); "
                        f"keep it to assignments of literals") from None
    declared = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
            else []
        for target in targets:
            if not isinstance(target, ast.Name):
                continue
            try:
                declared[target.id] = type(ast.literal_eval(node.value))
            except ValueError:
                raise PlanError(f"{notebook.name}: parameter {target.id} (line {node.lineno}) is not a literal; "
                                f"the parameters cell holds literals only (compute derived values in a later cell)"
                                ) from None
    return declared


def _type_matches(value, expected: type) -> bool:
    if expected is type(None):
        return True
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def find_notebooks(notebook_dir: Path, selection: list[str] | None) -> list[Path]:
    """Notebooks of `notebook_dir` in order, or those whose names start with a prefix of `selection`."""
    if not notebook_dir.is_dir():
        raise PlanError(f"no notebook folder at {notebook_dir}; pass --notebook-dir")
    available = sorted(p for p in notebook_dir.glob("*.ipynb") if not p.name.startswith("."))
    if not selection:
        if not available:
            raise PlanError(f"no notebooks in {notebook_dir}")
        return available
    chosen: list[Path] = []
    for item in selection:
        path = Path(item)
        matches = [path] if path.suffix == ".ipynb" and path.is_file() else \
            [p for p in available if p.name.startswith(item)]
        if not matches:
            raise PlanError(f"no notebook matches {item!r}; available: {', '.join(p.name for p in available) or 'none'}")
        chosen += [m for m in matches if m not in chosen]
    return chosen


def _previous_timings(root: Path, mode: str) -> dict[str, float]:
    """The longest seconds per notebook (and per notebook+task) over earlier runs' timings.json in this mode:
    reruns that found their checkpoints cached are quick, and must not pull a first run's estimate down."""
    longest: dict[str, float] = {}
    for path in sorted(root.glob("*/timings.json")):
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        if data.get("mode") != mode:
            continue
        for job in data.get("jobs", []):
            if job.get("status") == "ok":
                for key in (job["notebook"], f"{job['notebook']}|{job.get('task')}"):
                    longest[key] = max(longest.get(key, 0.0), float(job["seconds"]))
    return longest


def _estimate(job: Job, mode: str, previous: dict[str, float]) -> float:
    """Seconds a first run of `job` takes: the built-in figure (per extra seed for notebooks that run every
    seed), or an earlier run's if that took longer (a slower machine, a heavier task)."""
    index = 0 if mode == "fast" else 1
    number = job.notebook.name[:2]
    seeds = len(parse_seeds(job.parameters["seeds"])) if "seeds" in job.parameters else 1
    first = _figure(ESTIMATES, number, job.task, DEFAULT_ESTIMATE)
    built_in = first[index] + (seeds - 1) * _figure(PER_EXTRA_SEED, number, job.task, first)[index]
    if mode != "fast" and (number, job.task) not in ESTIMATES:
        built_in *= TASK_COST.get(job.task, 1.0)
    earlier = previous.get(f"{job.notebook.stem}|{job.task}", previous.get(job.notebook.stem, 0.0))
    return max(built_in, earlier)


def make_plan(args: argparse.Namespace) -> Plan:
    """Check the command line against the notebooks' parameters and list the executions; runs nothing."""
    root = Path(args.runs_dir).resolve() if args.runs_dir else runs_dir()
    name = args.name or args.mode
    if not name or "/" in name or name.startswith("."):
        raise PlanError(f"--name must be a plain folder name such as 'paper', got {name!r}")
    run_dir = root / name
    notebooks = find_notebooks(Path(args.notebook_dir).resolve() if args.notebook_dir else _repo_root() / "notebooks",
                               _split(args.notebooks))
    tasks = _split(args.tasks) or ["retrieval"]
    if tasks == ["all"]:
        tasks = list(TASKS)
    try:
        for t in tasks:
            check_task(t)
    except ValueError as e:
        raise PlanError(f"--tasks: {e}, or all") from None
    seeds = [_literal(s) for s in _split(args.seeds) or ["0"]]
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise PlanError(f"--seeds takes non-negative ints such as 0,1,2, got {' '.join(_split(args.seeds))}")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise PlanError(f"--seeds repeats {', '.join(map(str, repeated))}: each job would run twice into the same "
                        f"notebook; list each seed once, e.g. --seeds {','.join(map(str, dict.fromkeys(seeds)))}")
    if len(set(tasks)) != len(tasks):
        raise PlanError(f"--tasks repeats a task ({' '.join(tasks)}); list each task once")

    raw = {}
    for key, text in args.param or []:
        if key in RESERVED:
            raise PlanError(f"-p {key} is set by the runner; use {RESERVED[key]} instead")
        raw[key] = text
    declared = {nb: declared_parameters(nb) for nb in notebooks}
    extra = {}
    for key, text in raw.items():
        owners = {nb: d[key] for nb, d in declared.items() if key in d}
        if not owners:
            valid = sorted({k for d in declared.values() for k in d} - set(RESERVED))
            raise PlanError(f"no selected notebook declares a parameter {key!r}; valid -p parameters: "
                            f"{', '.join(valid) or 'none'} (see each notebook's parameters cell)")
        value = _literal(text)
        if all(t is str for t in owners.values()) and not isinstance(value, str):
            value = text  # a string parameter takes the text as typed: -p seeds 0,1,2 gives "0,1,2"
        extra[key] = value
        for nb, expected in owners.items():
            if not _type_matches(value, expected):
                raise PlanError(f"-p {key} {value!r} is a {type(value).__name__} but {nb.name} declares {key} "
                                f"as a {expected.__name__}; pass a value of that type "
                                f"(strings with spaces or commas in quotes)")

    if any("device" in d for d in declared.values()):
        try:
            resolve_device(args.device)
        except ValueError as e:
            raise PlanError(f"--device: {e}") from None
    given = {"fast": args.mode == "fast", "output_dir": str(run_dir), "device": args.device, **extra}
    previous = _previous_timings(root, args.mode)
    plan = Plan(run_dir)
    for nb in notebooks:
        d = declared[nb]
        for task in (tasks if "task" in d else [None]):
            for seed in (seeds if "seed" in d else [None]):
                params = {k: v for k, v in given.items() if k in d}
                if task is not None:
                    params["task"] = task
                if seed is not None:
                    params["seed"] = seed
                if "seeds" in d:  # a notebook that runs every seed itself (06: the Table 1 protocol)
                    params["seeds"] = ",".join(map(str, seeds))
                suffix = (f"__{task}" if task else "") + (f"__seed{seed}" if seed is not None else "")
                job = Job(nb, run_dir / "notebooks" / f"{nb.stem}{suffix}.ipynb", params, task, seed)
                job.estimate = _estimate(job, args.mode, previous)
                _check_values(job, args.mode)
                plan.jobs.append(job)
    check_run_dir(run_dir, args.mode)
    return plan


def fixed_task(notebook: Path) -> str | None:
    """The task a notebook without a `task` parameter sets itself (`task = "graph-text"`, or `task="graph-text"`
    passed to `start`), if any."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" not in cell.metadata.get("tags", []):
            m = re.search(r"(?<![\w.])task\s*=\s*[\"']([\w-]+)[\"']", cell.source)
            if m and m.group(1) in TASKS:
                return m.group(1)
    return None


def _check_values(job: Job, mode: str) -> None:
    """The notebook's own checks of its parameter values (methods, seeds, forget sizes for its task and mode)."""
    own = {k: v for k, v in job.parameters.items() if k not in RUNNER_SET}
    if not own:
        return
    task = job.task or fixed_task(job.notebook)
    try:
        check_params(own, task=task, fast=mode == "fast")
    except (TypeError, ValueError) as e:
        raise PlanError(f"{job.label}: {e}") from None


def check_run_dir(run_dir: Path, mode: str) -> None:
    """Refuse a run folder that cannot be written, or that holds a run of the other mode; changes nothing."""
    paths = [run_dir, *(run_dir / f for f in RUN_FOLDERS)]
    for p in paths:
        if p.exists() and not p.is_dir():
            raise PlanError(f"{p} is a file where the run needs a folder; move it away or pass another --name")
    for f in RUN_FILES:
        if (run_dir / f).is_dir():
            raise PlanError(f"{run_dir / f} is a folder where the run writes a file; move it away or pass "
                            f"another --name")
    existing = next(p for p in (run_dir, *run_dir.parents) if p.exists())
    if not existing.is_dir():
        raise PlanError(f"cannot create the run folder {run_dir}: {existing} is a file; pass another --runs-dir")
    for p in [existing] + [p for p in paths if p.is_dir()]:
        if not os.access(p, os.W_OK | os.X_OK):
            raise PlanError(f"the run folder {p} is not writable; fix its permissions or pass another "
                            f"--runs-dir / --name")
    timings = read_timings(run_dir)
    if timings is not None and timings.get("mode") not in (None, mode):
        raise PlanError(f"{run_dir} holds a {timings['mode']}-mode run (its timings.json); a {mode}-mode run there "
                        f"would mix both in results.csv: pass another --name, or delete the folder to start over")


def read_timings(run_dir: Path) -> dict | None:
    """The run folder's timings.json (None when absent); a clear error for an unreadable one."""
    path = run_dir / "timings.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("jobs", []), list):
            raise ValueError("not a timings record")
    except (OSError, ValueError) as e:
        raise PlanError(f"{path} is unreadable ({e}); it records the earlier jobs of this run folder: fix or "
                        f"delete it, or pass another --name") from None
    return data


def format_duration(seconds: float) -> str:
    """A wall time as "1h05m" or "3m12s"."""
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


def _check_kernel(name: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    try:
        manager.get_kernel_spec(name)
    except NoSuchKernel:
        raise PlanError(f"no Jupyter kernel named {name!r}; available: {', '.join(manager.find_kernel_specs())}; "
                        f"pass --kernel or install one with `python -m ipykernel install --user`") from None


class RunLock:
    """An exclusive lock on a run folder (`fcntl.flock` on a lock file), so two runners never share one."""

    def __init__(self, run_dir: Path):
        self.run_dir, self.path, self.fd = run_dir, run_dir / LOCK_NAME, None

    def holder(self) -> str | None:
        """The pid text of the runner holding the folder, or None when it is free (creates nothing)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            return None if try_lock(fd) else (os.read(fd, 32).decode(errors="replace").strip() or "?")
        finally:
            os.close(fd)

    def acquire(self) -> "RunLock":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, file_mode())
            if not try_lock(fd):
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise PlanError(_busy(self.run_dir, holder))
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:  # not unlinked by a finishing runner
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            os.close(self.fd)
            self.fd = None


def _busy(run_dir: Path, holder: str) -> str:
    return (f"another mdlib-run (pid {holder}) is running in {run_dir}; wait for it to finish, "
            f"or pass another --name for a separate run folder")


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def _on_sigterm(handler):
    """Install a SIGTERM handler and return the previous one (None outside the main thread, where Python
    allows no handler)."""
    if handler is None:
        return None
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None


class _Record:
    """timings.json of a run folder: earlier jobs kept, a rerun job replacing its earlier entry."""

    def __init__(self, run_dir: Path, mode: str):
        self.path = run_dir / "timings.json"
        earlier = read_timings(run_dir) or {}
        self.data = {"mode": mode, "jobs": list(earlier.get("jobs", []))}

    def add(self, record: dict) -> None:
        """Add a job's timing record (from `executors.run_job`), replacing an earlier one of the same output."""
        self.data["jobs"] = [j for j in self.data["jobs"] if j.get("output") != record["output"]]
        self.data["jobs"].append(record)
        write_json(self.data, self.path)

    def finished(self, job: Job) -> bool:
        """Whether an earlier run recorded the job as ok and its executed notebook is still there."""
        return job.output.is_file() and any(j.get("output") == str(job.output) and j.get("status") == "ok"
                                            for j in self.data["jobs"])


def run_plan(plan: Plan, *, mode: str, kernel: str, timeout: int | None, progress: bool = True,
             executor: str = "local", workers: int = 2, device: str = "auto", threads: int | None = None) -> int:
    """Execute the jobs, holding the run folder's lock; returns 0, 1 after a failure (its notebook is kept;
    the local executor stops at the first one, Dask runs the others), 2 when the folder is busy or cannot
    be written, 130 when interrupted."""
    try:
        lock = RunLock(plan.run_dir).acquire()
    except PlanError as e:
        print(f"mdlib-run: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"mdlib-run: cannot write the run folder {plan.run_dir} ({e.strerror or e}); fix its permissions "
              f"or pass another --runs-dir / --name", file=sys.stderr)
        return 2
    previous = _on_sigterm(_interrupted)
    try:
        return _run_jobs(plan, mode=mode, kernel=kernel, timeout=timeout, progress=progress, executor=executor,
                         workers=workers, device=device, threads=threads)
    except KeyboardInterrupt:  # between jobs: every finished job is already recorded
        print(f"mdlib-run: interrupted; the jobs that finished are recorded in {plan.run_dir / 'timings.json'}",
              file=sys.stderr)
        return 130
    finally:
        _on_sigterm(previous)
        lock.release()


def _run_jobs(plan: Plan, *, mode: str, kernel: str, timeout: int | None, progress: bool, executor: str = "local",
              workers: int = 2, device: str = "auto", threads: int | None = None) -> int:
    try:
        record = _Record(plan.run_dir, mode)
    except PlanError as e:
        print(f"mdlib-run: {e}", file=sys.stderr)
        return 2
    start_all = time.perf_counter()
    n = len(plan.jobs)
    address = parse_executor(executor)
    if address is not None:
        finished = 0

        def done(job: Job, entry: dict) -> bool:
            nonlocal finished
            finished += 1
            _report(job, entry, f"{finished}/{n}")
            if entry["status"] == "ok":
                print(f"[{finished}/{n}] {job.label} done in {format_duration(entry['seconds'])}  "
                      f"(elapsed {format_duration(time.perf_counter() - start_all)})", flush=True)
            return _save(record, entry, plan.run_dir)

        status = run_dask(plan.jobs, done, address=address, workers=workers, device=device, kernel=kernel,
                          timeout=timeout, threads=threads)
        total = format_duration(time.perf_counter() - start_all)
        print(f"{'finished with failures' if status else 'finished'} after {total}; results in "
              f"{plan.run_dir / 'results.csv'}", flush=True)
        _write_report(plan.run_dir)
        return status
    status = 0
    for i, job in enumerate(plan.jobs, 1):
        print(f"[{i}/{n}] {job.label}  (elapsed {format_duration(time.perf_counter() - start_all)}, "
              f"estimate {format_duration(job.estimate)})", flush=True)
        entry = run_job(job, kernel, timeout, progress, threads)
        outcome, seconds, error = entry["status"], entry["seconds"], entry.get("error")
        _report(job, entry, f"{i}/{n}")
        saved = _save(record, entry, plan.run_dir)
        if outcome == "interrupted":
            print(f"mdlib-run: interrupted during [{i}/{n}] {job.label} after {format_duration(seconds)}; "
                  f"{'recorded in ' + str(record.path) if saved else 'not recorded'}; "
                  f"rerun the same command to run it again", file=sys.stderr, flush=True)
            return 130
        if error or not saved:
            status = 1
            break
        print(f"  done in {format_duration(seconds)}", flush=True)
    total = format_duration(time.perf_counter() - start_all)
    print(f"{'stopped' if status else 'finished'} after {total}; results in {plan.run_dir / 'results.csv'}", flush=True)
    _write_report(plan.run_dir)
    return status


def _write_report(run_dir: Path) -> None:
    """The run's HTML report (`report.py`); a failure is a warning, never the run's outcome."""
    try:
        from .report import write_report

        index = write_report(run_dir)
    except Exception as e:  # noqa: BLE001 - the notebooks and results are written whatever the report does
        print(f"  warning: HTML report not written: {type(e).__name__}: {e}; retry with "
              f"python -m mdlib.pipeline.report {run_dir}", file=sys.stderr, flush=True)
        return
    print(f"report: {index}", flush=True)


def _report(job: Job, entry: dict, position: str) -> None:
    """A failed job's notebook, parameters, error and partial output, on stderr."""
    if entry["status"] == "failed":
        params = ", ".join(f"{k}={v!r}" for k, v in job.parameters.items() if k != "output_dir")
        print(f"FAILED [{position}] {job.label} after {format_duration(entry['seconds'])}\n  notebook: {job.notebook}\n"
              f"  parameters: {params}\n  error: {entry.get('error')}\n"
              f"  the partially executed notebook is {job.output}", file=sys.stderr, flush=True)


def _save(record: _Record, entry: dict, run_dir: Path) -> bool:
    """Record the job in timings.json and rewrite results.csv; a clear message (not a traceback) when the
    run folder cannot be written. Returns whether the job was recorded."""
    try:
        record.add(entry)
    except OSError as e:
        print(f"mdlib-run: cannot write {record.path} ({e.strerror or e}); the run folder must stay writable: "
              f"fix its permissions or free disk space, then rerun", file=sys.stderr, flush=True)
        return False
    try:
        write_results(run_dir)
    except (ValueError, OSError) as e:  # a broken metrics file should not hide the notebook's own outcome
        print(f"  warning: results.csv not updated: {e}", file=sys.stderr)
    return True


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mdlib-run", description="Run the mdlib notebooks in order with papermill.",
                                epilog="example: mdlib-run --mode fast --notebooks 01 04 --seeds 0,1,2 -p df_size 200")
    p.add_argument("--mode", choices=("fast", "full"), default="full", help="fast: tiny data and loops (default full)")
    p.add_argument("--name", help="run folder name under runs/ (default: the mode)")
    p.add_argument("--notebooks", nargs="+", metavar="PREFIX", help="notebook name prefixes, e.g. 00 01 (default all)")
    p.add_argument("--tasks", nargs="+", metavar="TASK",
                   help=f"tasks for notebooks that declare `task`: {', '.join(TASKS)} or all (default retrieval)")
    p.add_argument("--seeds", nargs="+", metavar="SEED", help="seeds for notebooks that declare `seed`, e.g. 0,1,2")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="a notebook parameter, VALUE parsed as a Python literal (repeatable)")
    p.add_argument("--device", default="auto", help="device for notebooks that declare `device` (default auto)")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel (default python3)")
    p.add_argument("--timeout", type=int, default=None, help="seconds allowed per cell (default: no limit)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the time estimate, run nothing")
    p.add_argument("--notebook-dir", help="folder of notebooks (default: the repository's notebooks/)")
    p.add_argument("--runs-dir", help="folder of run folders (default: $MDLIB_RUNS or the repository's runs/)")
    p.add_argument("--no-progress", action="store_true", help="hide papermill's per-cell progress bar")
    p.add_argument("--executor", default="local", metavar="{local,dask,dask://HOST:PORT}",
                   help="local: one job after another (default); dask: a local Dask cluster; dask://HOST:PORT: "
                        "an existing Dask scheduler")
    p.add_argument("--workers", type=int, default=None, help="workers of --executor dask (default 2)")
    p.add_argument("--threads", type=int, default=None,
                   help="math threads of each notebook's kernel, in either executor (default: all cores for local, "
                        "cores / workers for a local cluster, a remote cluster's own setting). Training sums in "
                        "another order with another thread count, so two runs give identical numbers only at equal "
                        "threads")
    p.add_argument("--resume", action="store_true",
                   help="skip the jobs timings.json records as ok whose executed notebook exists")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return _main(args)
    except KeyboardInterrupt:
        print("mdlib-run: interrupted before any notebook ran; nothing was recorded", file=sys.stderr)
        return 130


def _main(args: argparse.Namespace) -> int:
    try:
        _check_executor(args)
        plan = make_plan(args)
        if args.resume:
            earlier = _Record(plan.run_dir, args.mode)
            kept = [j for j in plan.jobs if not earlier.finished(j)]
            if len(kept) < len(plan.jobs):
                print(f"--resume: {len(plan.jobs) - len(kept)} job(s) already finished, skipped")
            plan.jobs = kept
        if not args.dry_run:
            _check_kernel(args.kernel)
        holder = RunLock(plan.run_dir).holder()
        if holder is not None:
            raise PlanError(_busy(plan.run_dir, holder))
    except PlanError as e:
        print(f"mdlib-run: {e}", file=sys.stderr)
        return 2
    print(f"{len(plan.jobs)} notebook run(s) in {args.mode} mode -> {plan.run_dir}")
    for i, job in enumerate(plan.jobs, 1):
        params = ", ".join(f"{k}={v!r}" for k, v in job.parameters.items() if k != "output_dir")
        print(f"  {i:>2}. {job.label:<46} ~{format_duration(job.estimate):>7}  {params}")
    print(f"estimated total: {format_duration(plan.estimate)} (a first run; cached checkpoints make reruns quicker)",
          flush=True)
    if args.dry_run:
        return 0
    return run_plan(plan, mode=args.mode, kernel=args.kernel, timeout=args.timeout, progress=not args.no_progress,
                    executor=args.executor, workers=args.workers or 2, device=args.device, threads=args.threads)


def _check_executor(args: argparse.Namespace) -> str | None:
    """Check --executor and --workers (Dask importable); returns the scheduler address as parse_executor does."""
    try:
        address = parse_executor(args.executor)
        if address is not None:
            require_dask()
    except ValueError as e:
        raise PlanError(str(e)) from None
    if args.workers is not None:
        if address != "":
            raise PlanError("--workers sets the size of --executor dask (a local cluster); a dask://HOST:PORT "
                            "scheduler has its own workers, and --executor local runs one job at a time")
        if args.workers < 1:
            raise PlanError(f"--workers takes a positive int such as 2, got {args.workers}")
    if args.threads is not None and args.threads < 1:
        raise PlanError(f"--threads takes a positive int such as 1, got {args.threads}")
    return address


if __name__ == "__main__":
    sys.exit(main())
