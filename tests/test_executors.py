"""The runner's Dask executors: same results as the sequential run, notebook 01 first, failures reported,
--resume. Runs the torch-free fixture notebook (a few seconds per cluster)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

from mdlib.pipeline.results import is_timing
from mdlib.pipeline.runner import main

pytest.importorskip("distributed")

FIXTURE = Path(__file__).parent / "fixtures" / "param_notebook.ipynb"


def variant(folder: Path, name: str, fail_if: str = "False") -> None:
    """The fixture as `name`.ipynb, writing metrics under its own name and raising when `fail_if` holds."""
    nb = nbformat.read(FIXTURE, as_version=4)
    code = nb.cells[2].source.replace("param_notebook", name)
    nb.cells[2].source = f"if {fail_if}:\n    raise RuntimeError('{name} fails here')\n" + code
    nbformat.write(nb, folder / f"{name}.ipynb")


@pytest.fixture
def nbdir(tmp_path):
    d = tmp_path / "notebooks"
    d.mkdir()
    shutil.copy(FIXTURE, d / "01_param.ipynb")
    variant(d, "02_next")
    return d


@pytest.fixture(scope="module")
def scheduler():
    """An existing scheduler with two worker processes, as a user's cluster would be: dask://HOST:PORT."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address.replace("tcp://", "dask://")


def run(nbdir, *args):
    return main(["--notebook-dir", str(nbdir), "--runs-dir", str(nbdir.parent / "runs"), "--no-progress",
                 "--mode", "fast", "--seeds", "0,1", *args])


def jobs(nbdir, name):
    return json.loads((nbdir.parent / "runs" / name / "timings.json").read_text())["jobs"]


def test_local_cluster_gives_the_sequential_results_and_runs_notebook_01_first(nbdir, capsys):
    assert run(nbdir, "--name", "seq") == 0
    assert run(nbdir, "--name", "par", "--executor", "dask", "--workers", "2") == 0, capsys.readouterr().err
    runs = nbdir.parent / "runs"
    assert (runs / "par" / "results.csv").read_text() == (runs / "seq" / "results.csv").read_text()
    assert len((runs / "par" / "results.csv").read_text().splitlines()) == 1 + 2 * 2 * 2
    assert sorted(p.name for p in (runs / "par" / "notebooks").iterdir()) == \
        sorted(p.name for p in (runs / "seq" / "notebooks").iterdir())
    done = jobs(nbdir, "par")
    assert [j["status"] for j in done] == ["ok"] * 4
    first = [j for j in done if j["notebook"] == "01_param"]
    assert len(first) == 2 and max(j["finished"] for j in first) <= min(
        j["started"] for j in done if j["notebook"] != "01_param")


def test_a_failing_job_is_reported_the_others_finish_and_resume_runs_what_is_missing(nbdir, scheduler, capsys):
    variant(nbdir, "01_param", fail_if="seed == 1")  # notebook 01 fails for seed 1: 02 of seed 1 is skipped
    assert run(nbdir, "--name", "bad", "--executor", scheduler) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "01_param (task=retrieval, seed=1)" in err and "seed=1" in err
    assert "RuntimeError: 01_param fails here" in err and "parameters: fast=True, task='retrieval', seed=1" in err
    assert "SKIPPED 02_next (task=retrieval, seed=1)" in err
    status = {(j["notebook"], j["seed"]): j["status"] for j in jobs(nbdir, "bad")}
    assert status == {("01_param", 0): "ok", ("01_param", 1): "failed", ("02_next", 0): "ok"}

    before = {j["output"]: j["started"] for j in jobs(nbdir, "bad") if j["status"] == "ok"}
    variant(nbdir, "01_param")  # fixed
    assert run(nbdir, "--name", "bad", "--executor", scheduler, "--resume") == 0
    assert "2 job(s) already finished, skipped" in capsys.readouterr().out
    after = jobs(nbdir, "bad")
    assert [j["status"] for j in after] == ["ok"] * 4
    assert {j["output"]: j["started"] for j in after if j["output"] in before} == before  # not rerun


def test_resume_with_the_local_executor_skips_finished_jobs(nbdir, capsys):
    assert run(nbdir, "--name", "r", "--notebooks", "01") == 0
    (nbdir.parent / "runs" / "r" / "notebooks" / "01_param__retrieval__seed1.ipynb").unlink()  # lost: rerun
    before = jobs(nbdir, "r")
    assert run(nbdir, "--name", "r", "--notebooks", "01", "--resume") == 0
    assert "1 job(s) already finished, skipped" in capsys.readouterr().out
    after = {j["seed"]: j["started"] for j in jobs(nbdir, "r")}
    assert after[0] == before[0]["started"] and after[1] > before[1]["started"]


def test_executor_options_are_checked_before_anything_runs(nbdir, capsys, monkeypatch):
    for args, message in [(["--executor", "spark"], "local, dask or dask://HOST:PORT"),
                          (["--workers", "2"], "--workers sets the size of --executor dask"),
                          (["--executor", "dask", "--workers", "0"], "positive int")]:
        assert run(nbdir, "--dry-run", *args) == 2
        assert message in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if Dask were not installed
    assert run(nbdir, "--dry-run", "--executor", "dask") == 2
    assert 'pip install "mdlib[cluster]"' in capsys.readouterr().err
    assert not (nbdir.parent / "runs").exists()


def test_jobs_declare_the_checkpoints_they_load():
    from mdlib.pipeline.executors import needs, shared_needs
    from mdlib.pipeline.runner import Job

    def job(name, task="retrieval", seed=0, **params):
        return Job(Path(f"{name}.ipynb"), Path(f"out/{name}.ipynb"), params, task, seed)

    plan = [job("01_train", seed=1), job("05_md", seed=0), job("05_md", seed=1), job("06_table", seed=None, seeds="0,1,2"),
            job("11_results", task=None, seed=None)]
    assert [needs(j) for j in plan] == [[], [("retrieval", 0)], [("retrieval", 1)],
                                       [("retrieval", 0), ("retrieval", 1), ("retrieval", 2)], []]
    # seed 1 is trained by its 01 job; seed 2 is needed by one job only, which trains it itself
    assert shared_needs(plan) == [("retrieval", 0)]


def test_two_jobs_that_load_the_same_checkpoints_find_them_trained_once(tmp_path, monkeypatch, capsys):
    import mdlib.pipeline.executors as executors

    d = tmp_path / "notebooks"
    d.mkdir()
    variant(d, "02_next")
    variant(d, "03_more")
    marks = tmp_path / "prepared"
    marks.mkdir()

    def prepare(task, seed, fast, device, df_size, threads=None):  # pickled by value to the workers
        import time as t

        with open(marks / f"{task}-{seed}", "a") as fh:
            t.sleep(0.5)
            fh.write(f"{t.time()}\n")

    monkeypatch.setattr(executors, "prepare_checkpoints", prepare)
    assert run(d, "--name", "shared", "--executor", "dask", "--workers", "2") == 0, capsys.readouterr().err
    assert "training the shared checkpoints of retrieval seed 0, retrieval seed 1 once" in capsys.readouterr().out
    done = jobs(d, "shared")
    assert [j["status"] for j in done] == ["ok"] * 4
    for seed in (0, 1):
        lines = (marks / f"retrieval-{seed}").read_text().split()
        assert len(lines) == 1  # trained once, not once per job
        assert float(lines[0]) <= min(j["started"] for j in done if j["seed"] == seed)


def test_threads_reach_every_job_in_both_executors_and_dask_worker_settings_do_not(tmp_path, scheduler, monkeypatch,
                                                                                    capsys):
    """--threads sets the kernels' math threads whichever executor runs them; without it a local cluster gives
    each worker cores / workers. Dask's MALLOC_TRIM_THRESHOLD_ for its workers never reaches a job's kernel."""
    d = tmp_path / "notebooks"
    d.mkdir()
    nb = nbformat.read(FIXTURE, as_version=4)
    environ = '__import__("os").environ'
    nb.cells[2].source = nb.cells[2].source.replace(
        '"value": float(bool(fast))}', f'"value": float({environ}.get("OMP_NUM_THREADS", 0))}}').replace(
        '"value": scale * (seed + 1)}', f'"value": float("MALLOC_TRIM_THRESHOLD_" in {environ})}}')
    nbformat.write(nb, d / "02_threads.ipynb")
    monkeypatch.setattr("os.cpu_count", lambda: 4)  # the driver computes the local cluster's default
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)

    def column(name, metric):
        table = (tmp_path / "runs" / name / "results.csv").read_text().splitlines()
        return {line.split(",")[-1] for line in table if f",{metric}," in line}

    assert run(d, "--name", "seq", "--threads", "1") == 0, capsys.readouterr().err
    assert run(d, "--name", "par", "--executor", "dask", "--workers", "2", "--threads", "1") == 0
    assert column("seq", "fast") == column("par", "fast") == {"1.0"}
    assert (tmp_path / "runs" / "seq" / "results.csv").read_text() == \
        (tmp_path / "runs" / "par" / "results.csv").read_text()
    assert run(d, "--name", "default", "--executor", "dask", "--workers", "2") == 0
    assert column("default", "fast") == {"2.0"}
    assert run(d, "--name", "remote", "--executor", scheduler) == 0  # a cluster started with Dask's defaults
    for name in ("seq", "par", "default", "remote"):
        assert column(name, "d_test") == {"0.0"}, name
    assert run(d, "--dry-run", "--threads", "0") == 2
    assert "--threads takes a positive int" in capsys.readouterr().err


def test_cuda_jobs_take_one_gpu_each_on_a_cluster_whose_workers_offer_gpus(nbdir, capsys):
    """With --device cuda on an existing scheduler, each job asks for one `GPU` resource: a worker with two
    threads but one GPU runs its jobs one after another. (The fixture notebook declares no `device`, so no
    GPU is needed: the check is the scheduling, not CUDA.)"""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None,
                      resources={"GPU": 1}) as cluster:
        address = cluster.scheduler_address.replace("tcp://", "dask://")
        assert run(nbdir, "--name", "gpu", "--executor", address, "--device", "cuda", "--seeds", "0,1,2") == 0
    assert "offers a GPU resource" not in capsys.readouterr().err
    done = sorted(jobs(nbdir, "gpu"), key=lambda j: j["started"])
    assert len(done) == 6 and all(j["status"] == "ok" for j in done)
    assert all(a["finished"] <= b["started"] for a, b in zip(done, done[1:]))  # never two at once on one GPU


def test_real_fast_notebooks_give_the_sequential_rows_on_a_local_cluster(tmp_path, trained_fast_model, monkeypatch,
                                                                         capsys):
    """Notebook 02 in fast mode for seeds 0 and 1, sequential and then on two workers at --threads 1: the same
    results.csv rows, timings aside (the sequential run trains the checkpoints the cluster then loads)."""
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # --threads sets them here; restored afterwards
        monkeypatch.delenv(variable, raising=False)
    common = ["--runs-dir", str(tmp_path), "--no-progress", "--mode", "fast", "--notebooks", "02",
              "--seeds", "0,1", "--threads", "1"]
    assert main([*common, "--name", "seq"]) == 0, capsys.readouterr().err
    assert main([*common, "--name", "par", "--executor", "dask", "--workers", "2"]) == 0, capsys.readouterr().err

    def rows(name):
        lines = (tmp_path / name / "results.csv").read_text().splitlines()
        return sorted(line for line in lines if not is_timing(line.split(",")[5]))

    assert len(rows("seq")) > 10 and rows("seq") == rows("par")


def test_a_kernel_that_fails_to_start_is_started_again_and_a_failing_cell_is_not(tmp_path, monkeypatch):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from mdlib.pipeline import executors
    from mdlib.pipeline.runner import Job

    calls = []

    def starts_on_attempt(n):
        def execute_notebook(*args, **kwargs):  # the kernel dies until attempt n (a port taken by another kernel)
            calls.append(1)
            if len(calls) < n:
                raise RuntimeError("Kernel died before replying to kernel_info")
        return execute_notebook

    def failing_cell(*args, **kwargs):
        calls.append(1)
        raise PapermillExecutionError(2, 3, "x = bad()", "ValueError", "bad", [])

    monkeypatch.setattr(executors.time, "sleep", lambda seconds: None)
    job = Job(FIXTURE, tmp_path / "out" / "x.ipynb", {})
    cases = [(starts_on_attempt(2), None, 2),  # started again, and ran
             (starts_on_attempt(99), "RuntimeError: Kernel died before replying to kernel_info",
              executors.KERNEL_START_ATTEMPTS),  # gives up, and says why
             (failing_cell, "ValueError: bad (at In [3])", 1)]  # a cell's error is the notebook's: no rerun
    for execute_notebook, error, attempts in cases:
        calls.clear()
        monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
        assert executors.execute(job, "python3", None, False) == error and len(calls) == attempts
