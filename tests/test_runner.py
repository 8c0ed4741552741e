"""The papermill batch runner, the notebook session (setup / record) and the results files."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from mdlib.pipeline import results
from mdlib.pipeline.notebook import check_rows, setup
from mdlib.pipeline.runner import ESTIMATES, TASK_COST, main, make_plan, parser

FIXTURE = Path(__file__).parent / "fixtures" / "param_notebook.ipynb"


@pytest.fixture
def nbdir(tmp_path):
    """A notebook folder with the fixture (declares fast, seed, task, output_dir, scale, fail) and a
    variant that declares neither task nor seed (and has "=" in a comment, which papermill's inspector trips on)."""
    d = tmp_path / "notebooks"
    d.mkdir()
    shutil.copy(FIXTURE, d / "01_param.ipynb")
    nb = nbformat.read(FIXTURE, as_version=4)
    nb.cells[1].source = 'output_dir = ""  # "" = the default folder\nscale = 2.0\nfail = False\nnote = "x"'
    nb.cells.insert(2, nbformat.v4.new_code_cell('fast, seed, task = None, 5, "nlvr"'))
    nbformat.write(nb, d / "02_plain.ipynb")
    return d


def run(nbdir, *args):
    return main(["--notebook-dir", str(nbdir), "--runs-dir", str(nbdir.parent / "runs"), "--no-progress", *args])


def plan(nbdir, *args):
    return make_plan(parser().parse_args(["--notebook-dir", str(nbdir), "--runs-dir", str(nbdir.parent / "runs"),
                                          *args]))


def test_plan_expands_tasks_and_seeds_and_passes_declared_parameters_only(nbdir):
    p = plan(nbdir, "--mode", "fast", "--tasks", "retrieval,nlvr", "--seeds", "0", "1", "-p", "scale", "3")
    labels = [j.output.name for j in p.jobs]
    assert labels == ["01_param__retrieval__seed0.ipynb", "01_param__retrieval__seed1.ipynb",
                      "01_param__nlvr__seed0.ipynb", "01_param__nlvr__seed1.ipynb", "02_plain.ipynb"]
    first, plain = p.jobs[0].parameters, p.jobs[-1].parameters
    assert first == {"fast": True, "seed": 0, "task": "retrieval", "scale": 3,
                     "output_dir": str(nbdir.parent / "runs" / "fast")}
    assert "device" not in first  # the fixture does not declare it
    assert set(plain) == {"output_dir", "scale"}
    # a string parameter takes the text as typed
    assert plan(nbdir, "--notebooks", "02", "-p", "note", "0,1").jobs[0].parameters["note"] == "0,1"


def test_unknown_or_mistyped_parameter_stops_before_anything_runs(nbdir, capsys):
    assert run(nbdir, "--mode", "fast", "-p", "bogus", "1") == 2
    err = capsys.readouterr().err
    assert "'bogus'" in err and "fail, note, scale" in err
    assert run(nbdir, "--mode", "fast", "-p", "scale", '"big"') == 2
    assert "declares scale as a float" in capsys.readouterr().err
    assert run(nbdir, "--mode", "fast", "-p", "seed", "3") == 2
    assert "--seeds" in capsys.readouterr().err
    assert run(nbdir, "--tasks", "cooking") == 2
    assert "retrieval, entailment" in capsys.readouterr().err
    assert not (nbdir.parent / "runs").exists()


def test_dry_run_runs_nothing(nbdir, capsys):
    assert run(nbdir, "--mode", "fast", "--dry-run", "--seeds", "0,1") == 0
    out = capsys.readouterr().out
    assert "3 notebook run(s)" in out and "estimated total" in out
    assert not (nbdir.parent / "runs").exists()


def test_estimates_are_first_run_figures_that_a_slower_earlier_run_raises(nbdir):
    fast_01 = ESTIMATES["01"][0]
    assert [j.estimate for j in plan(nbdir, "--mode", "fast", "--notebooks", "01").jobs] == [fast_01]
    earlier = nbdir.parent / "runs" / "earlier"
    earlier.mkdir(parents=True)
    jobs = [{"notebook": "01_param", "task": "retrieval", "status": "ok", "seconds": s} for s in (1.0, 2 * fast_01)]
    (earlier / "timings.json").write_text(json.dumps({"mode": "fast", "jobs": jobs}))
    # the quick (cached) rerun does not pull the estimate down; the slow run raises it
    assert [j.estimate for j in plan(nbdir, "--mode", "fast", "--notebooks", "01").jobs] == [2 * fast_01]


def test_full_mode_estimates_scale_with_the_task(nbdir):
    """An NLVR model costs about four retrieval models: its notebooks are estimated so, unless the task has
    its own measured figure; fast-mode worlds are alike, so there the task does not matter."""
    shutil.copy(FIXTURE, nbdir / "05_param.ipynb")

    def estimates(*args):
        return {(j.notebook.name[:2], j.task): j.estimate for j in plan(nbdir, "--notebooks", "01", "05", *args).jobs}

    full = estimates("--mode", "full", "--tasks", "retrieval", "entailment", "nlvr")
    assert full[("05", "entailment")] == TASK_COST["entailment"] * full[("05", "retrieval")]
    assert full[("05", "retrieval")] < full[("05", "entailment")] < full[("05", "nlvr")]
    assert full[("01", "nlvr")] == ESTIMATES[("01", "nlvr")][1]
    fast = estimates("--mode", "fast", "--tasks", "retrieval", "nlvr")
    assert fast[("05", "retrieval")] == fast[("05", "nlvr")]


def test_run_writes_notebooks_results_and_timings(nbdir, capsys):
    rc = run(nbdir, "--mode", "fast", "--name", "demo", "--notebooks", "01", "--tasks", "retrieval", "nlvr",
             "--seeds", "0,1", "-p", "scale", "3")
    assert rc == 0, capsys.readouterr().err
    run_dir = nbdir.parent / "runs" / "demo"
    assert len(list((run_dir / "notebooks").glob("*.ipynb"))) == 4
    executed = nbformat.read(run_dir / "notebooks" / "01_param__nlvr__seed1.ipynb", as_version=4)
    injected = next(c.source for c in executed.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "fast = True" in injected and "seed = 1" in injected and "device" not in injected

    df = pd.read_csv(run_dir / "results.csv")
    assert list(df.columns) == results.COLUMNS
    d_test = df[df.metric == "d_test"].set_index(["task", "seed"])["value"]
    assert d_test[("nlvr", 1)] == 6.0 and d_test[("retrieval", 0)] == 3.0
    timings = json.loads((run_dir / "timings.json").read_text())
    assert timings["mode"] == "fast" and [j["status"] for j in timings["jobs"]] == ["ok"] * 4

    # recorded durations shorter than the built-in first-run figure do not lower a later plan's estimate
    later = plan(nbdir, "--mode", "fast", "--notebooks", "01")
    first_run = ESTIMATES["01"][0]
    assert later.estimate == first_run and max(j["seconds"] for j in timings["jobs"]) < first_run


def test_failing_notebook_stops_with_its_path(nbdir, capsys):
    assert run(nbdir, "--mode", "fast", "--name", "bad", "-p", "fail", "True") == 1
    err = capsys.readouterr().err
    assert "RuntimeError: the fixture was asked to fail" in err
    partial = nbdir.parent / "runs" / "bad" / "notebooks" / "01_param__retrieval__seed0.ipynb"
    assert str(partial) in err and partial.exists()
    assert not (nbdir.parent / "runs" / "bad" / "notebooks" / "02_plain.ipynb").exists()


# --- setup / record / results --------------------------------------------------------------------------------

ROWS = [{"task": "retrieval", "method": "multidelete", "seed": 0, "df_size": 100, "metric": "d_f", "value": 31.5},
        {"task": "retrieval", "method": "retrain", "seed": 0, "df_size": 100, "metric": "d_f", "value": 50.25}]


def test_setup_rejects_wrong_types_with_a_fix(tmp_path):
    with pytest.raises(TypeError, match=r"seed must be an int, got '3' \(str\); pass -p seed 3"):
        setup(seed="3", output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="choose one of retrieval"):
        setup(task="flickr", output_dir=str(tmp_path))
    with pytest.raises(TypeError, match="pass -p df_size 100"):
        setup(df_size="a hundred", output_dir=str(tmp_path))
    s = setup(fast=True, seed=2, device="cpu", output_dir=str(tmp_path), task="nlvr", df_size=10)
    assert (s.fast, s.seed, s.device.type, s.task_name, s.params) == (True, 2, "cpu", "nlvr", {"df_size": 10})
    assert s.task is None and s.model is None and s.n_forget == 0  # setup loads nothing
    assert "seed 2" in s.header() and "fast mode on" in s.header()


def test_record_is_identical_on_rerun_and_collects(tmp_path):
    paths = []
    for _ in range(2):
        s = setup(fast=True, seed=0, output_dir=str(tmp_path), task="retrieval", df_size=100)
        s.record(ROWS[:1], "04_demo")
        paths.append(s.record(ROWS, "04_demo").read_bytes())  # a second call adds rows, no duplicates
    assert paths[0] == paths[1]
    df = results.collect(tmp_path)
    assert list(df.columns) == results.COLUMNS and len(df) == 2
    table = results.summarise(df, index="method", columns="metric")
    assert list(table.index) == ["retrain", "multidelete"] and table.loc["retrain", "d_f"] == "50.2"
    assert results.write_results(tmp_path).read_text().startswith(",".join(results.COLUMNS))


def test_figures_of_different_tasks_and_seeds_do_not_overwrite_each_other(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = set()
    for task, seed in [("retrieval", 0), ("nlvr", 0), ("retrieval", 1)]:
        fig, _ = plt.subplots()
        s = setup(fast=True, seed=seed, output_dir=str(tmp_path), task=task)
        paths.add(s.save_figure(fig, "06_tradeoff"))
        plt.close(fig)
    assert len(paths) == 3 and all(p.is_file() for p in paths)
    assert tmp_path / "figures" / "06_tradeoff__nlvr__seed0.png" in paths


@pytest.mark.parametrize("bad, message", [
    ({"metric": "D_f"}, "lowercase"), ({"value": float("nan")}, "finite"), ({"task": "cooking"}, "unknown task"),
    ({"seed": "0"}, "non-negative int"), ({"extra": 1}, "unexpected keys"),
])
def test_bad_rows_are_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        check_rows([{**ROWS[0], **bad}])


def test_summarise_gives_mean_and_95_interval_or_std_over_seeds():
    df = pd.DataFrame([{**ROWS[0], "seed": s, "value": v} for s, v in [(0, 30.0), (1, 32.0)]])
    # two seeds: sd 1.41, and the t quantile 12.71 times sd / sqrt(2) = 12.7 as the 95% half-width
    assert results.summarise(df, index="method", columns="metric").loc["multidelete", "d_f"] == "31.0 ± 12.7"
    by_sd = results.summarise(df, index="method", columns="metric", spread="sd")
    assert by_sd.loc["multidelete", "d_f"] == "31.0 ± 1.4"
    numeric = results.summarise(df, index="method", columns="metric", digits=None)
    assert numeric.loc[("multidelete", "d_f"), "n"] == 2
    assert numeric.loc[("multidelete", "d_f"), "ci95"] > numeric.loc[("multidelete", "d_f"), "std"]
    with pytest.raises(ValueError, match="ci95"):
        results.summarise(df, index="method", columns="metric", spread="iqr")


def test_paper_tables():
    t1 = results.paper_table("table1")
    avg = t1[t1.column == "avg"].pivot(index="method", columns="metric", values="value")
    assert tuple(avg.loc["retrain"]) == (50.3, 83.4) and tuple(avg.loc["multidelete"]) == (28.7, 84.2)
    assert set(t1.task.dropna()) == {"retrieval", "entailment", "nlvr", "graph-text"}
    wide = results.paper_table("table1", wide=True)
    assert wide.index[0] == "retrain" and wide.loc["multidelete-f", ("pgr", "d_f")] == 19.5
    mi = results.paper_table("table3")
    assert mi[(mi.method == "multidelete") & (mi.column == "avg")].value.item() == 1.27
    assert set(results.paper_table("ablation").method) >= {"multidelete-no-md", "multidelete-no-mkr"}
    with pytest.raises(ValueError, match="table1"):
        results.paper_table("table2")


def test_a_notebook_that_declares_seeds_runs_once_per_task_with_every_seed(nbdir):
    nb = nbformat.read(FIXTURE, as_version=4)
    nb.cells[1].source = 'fast = None\nseeds = "0"\ntask = "retrieval"\noutput_dir = ""'
    nbformat.write(nb, nbdir / "03_seeds.ipynb")
    p = plan(nbdir, "--notebooks", "03", "--mode", "fast", "--tasks", "retrieval,nlvr", "--seeds", "0,1,2")
    assert [j.output.name for j in p.jobs] == ["03_seeds__retrieval.ipynb", "03_seeds__nlvr.ipynb"]
    assert {j.parameters["seeds"] for j in p.jobs} == {"0,1,2"}
    with pytest.raises(Exception, match="--seeds"):
        plan(nbdir, "--notebooks", "03", "-p", "seeds", "0,1")


def test_start_loads_task_model_and_request_and_makes_rows(tmp_path, fast_task, trained_fast_model):
    """`start` = setup + the task, the (cached) original f and the request; rows carry the task's name and
    the number of deleted units; a summary is the task's own."""
    import torch

    from mdlib.pipeline.notebook import start

    s, task, model, forget, retain = start(fast=True, seed=0, device="cpu", output_dir=str(tmp_path),
                                           task="retrieval", df_size=10)
    assert task.data_signature() == fast_task.data_signature() and s.task is task and s.task_name == "retrieval"
    assert (s.model, s.forget, s.retain) == (model, forget, retain)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), trained_fast_model.state_dict().values()))
    expected, _ = fast_task.forget_split(10, seed=0)
    assert s.n_forget == 10 and torch.equal(forget.fields["example_id"], expected.fields["example_id"])
    assert not set(forget.units().tolist()) & set(retain.units().tolist())
    assert s.rows("multidelete", {"d_f": 31.5, "d_test": 80.0}) == [
        dict(task="retrieval", method="multidelete", seed=0, df_size=10, metric="d_f", value=31.5),
        dict(task="retrieval", method="multidelete", seed=0, df_size=10, metric="d_test", value=80.0)]
    assert s.rows("original", {"d_test": 1.0}, df_size=0)[0]["df_size"] == 0
    row = s.summary(model, "f")
    assert row == fast_task.summarise(trained_fast_model, "f", forget=forget, retain=retain, seed=0)
    s.record(s.rows("original", {k: row[k] for k in ("d_f", "d_test")}), "05_demo")
    assert results.collect(tmp_path).set_index("metric").loc["d_f", "value"] == pytest.approx(row["d_f"])


def test_start_without_a_task_or_model_loads_nothing(tmp_path):
    from mdlib.pipeline.notebook import start

    s, task, model, forget, retain = start(fast=True, output_dir=str(tmp_path))
    assert task is model is forget is retain is None and s.task is None
    with pytest.raises(RuntimeError, match="rows need a task"):
        s.rows("multidelete", {"d_f": 1.0})
    with pytest.raises(RuntimeError, match="summary needs a task"):
        s.summary(None, "f")
    with pytest.raises(RuntimeError, match="retrain needs a task"):
        s.retrain()
    s, task, model, forget, _ = start(fast=True, output_dir=str(tmp_path), task="nlvr", original=False)
    assert task.name == "nlvr" and model is None and forget is None


def test_start_checks_every_parameter_before_loading(tmp_path, monkeypatch):
    import mdlib.tasks

    from mdlib.pipeline.notebook import start

    monkeypatch.setattr(mdlib.tasks, "load_task", lambda *a, **k: pytest.fail("loaded before the check"))
    with pytest.raises(ValueError, match="does not fit the retrieval task"):
        start(fast=True, output_dir=str(tmp_path), task="retrieval", df_size=10**6)


def test_table_rows_map_names_to_methods_and_skip_missing_cells(tmp_path):
    import pandas as pd

    s = setup(fast=True, seed=1, output_dir=str(tmp_path), task="retrieval")
    table = pd.DataFrame([{"model": "original f", "d_f": 50.0, "seconds": float("nan")},
                          {"model": "MD", "d_f": 20.0, "seconds": 3.0}])
    rows = s.table_rows(table, ("d_f", "seconds", "absent"), {"original f": "original", "MD": "multidelete"})
    assert [(r["method"], r["metric"], r["value"]) for r in rows] == [
        ("original", "d_f", 50.0), ("multidelete", "d_f", 20.0), ("multidelete", "seconds", 3.0)]
    assert {(r["seed"], r["df_size"], r["task"]) for r in rows} == {(1, 0, "retrieval")}  # no request: size 0
    with pytest.raises(KeyError, match="no row 'Retrain'"):
        s.table_rows(table, ("d_f",), {"Retrain": "retrain"})
    # a sweep: the method and df_size come from the table's own columns, the metrics get a prefix
    sweep = pd.DataFrame({"method": ["neggrad", "neggrad"], "df_size": [10, 20], "d_f": [40.0, 45.0]})
    rows = s.table_rows(sweep, ("d_f",), prefix="sweep_")
    assert [(r["method"], r["df_size"], r["metric"], r["value"]) for r in rows] == [
        ("neggrad", 10, "sweep_d_f", 40.0), ("neggrad", 20, "sweep_d_f", 45.0)]


def test_the_task_a_notebook_fixes_itself_is_found_for_the_plan_checks():
    from mdlib.pipeline.runner import fixed_task

    root = Path(__file__).resolve().parents[1] / "notebooks"
    assert fixed_task(root / "10_graph_text.ipynb") == "graph-text"  # passed to start(task="graph-text")
    assert fixed_task(root / "00_overview.ipynb") is None
