"""The HTML report of a run folder (`mdlib.pipeline.report`), on the runner's small fixture notebooks."""
from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from mdlib.pipeline import report
from mdlib.pipeline.report import write_report
from mdlib.pipeline.runner import main

FIXTURE = Path(__file__).parent / "fixtures" / "param_notebook.ipynb"
# A 1x1 PNG: a figure written by the notebook into the run folder and shown as a cell output.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


@pytest.fixture
def nbdir(tmp_path):
    """The runner's fixture notebook, plus a cell that prints a marker, shows a figure inline and saves it
    to the run folder's figures/."""
    d = tmp_path / "notebooks"
    d.mkdir()
    nb = nbformat.read(FIXTURE, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import base64, pathlib\n"
        "from IPython.display import Image, display\n"
        f"png = base64.b64decode({base64.b64encode(PNG).decode()!r})\n"
        "print(f'marker-output task={task} seed={seed} value={scale * (seed + 1)}')\n"
        "display(Image(data=png))\n"
        "if output_dir:\n"
        "    fig = pathlib.Path(output_dir) / 'figures' / f'curve_{task}_{seed}.png'\n"
        "    fig.parent.mkdir(parents=True, exist_ok=True)\n"
        "    fig.write_bytes(png)"))
    nbformat.write(nb, d / "01_param.ipynb")
    return d


def run(nbdir, *args):
    return main(["--notebook-dir", str(nbdir), "--runs-dir", str(nbdir.parent / "runs"), "--no-progress", *args])


def notebook_lines(index: str) -> dict[str, str]:
    """The index's notebook list: file name -> the text of its line (tags removed)."""
    items = re.findall(r"<li>(.*?)</li>", index, flags=re.S)
    return {re.sub(r"<[^>]+>", "", item).split(":")[0]: re.sub(r"<[^>]+>", "", item) for item in items}


def test_run_writes_a_report_with_every_notebook_status_results_and_figures(nbdir, capsys):
    rc = run(nbdir, "--mode", "fast", "--name", "demo", "--tasks", "retrieval", "nlvr", "--seeds", "0,1",
             "-p", "scale", "3")
    out, err = capsys.readouterr()
    assert rc == 0, err
    run_dir = nbdir.parent / "runs" / "demo"
    index_path = run_dir / "report" / "index.html"
    assert f"report: {index_path}" in out.splitlines()
    index = index_path.read_text()
    assert "<title>Run demo</title>" in index and "<h1>Run demo</h1>" in index
    assert "<script" not in index

    executed = sorted(p.name for p in (run_dir / "notebooks").glob("*.ipynb"))
    assert len(executed) == 4
    lines = notebook_lines(index)
    assert sorted(lines) == executed
    timings = {Path(j["output"]).name: j for j in json.loads((run_dir / "timings.json").read_text())["jobs"]}
    for name in executed:
        page = name.replace(".ipynb", ".html")
        assert f'<a href="{page}">{name}</a>' in index
        assert (run_dir / "report" / page).is_file()
        seconds = int(round(timings[name]["seconds"]))
        assert re.fullmatch(rf"{re.escape(name)}: ok, {seconds // 60}m{seconds % 60:02d}s", lines[name])

    # the results table: the mean over the two seeds of d_test = scale * (seed + 1) = 3 and 6, and the half-width
    # of its 95% interval: 12.71 (t quantile, 1 degree of freedom) x 2.12 (sd) / sqrt(2) = 19.1
    results = index.split("<h2>Results</h2>")[1].split("<h2>Figures</h2>")[0]
    assert "param_notebook" in results and "d_test" in results and "original" in results
    assert results.count("4.5 ± 19.1") == 2  # one row per task
    assert "seeds 0, 1" in results

    # the figures: thumbnails by relative link, no copy of the image in the index
    figures = index.split("<h2>Figures</h2>")[1]
    for task in ("nlvr", "retrieval"):
        for seed in (0, 1):
            assert f'src="../figures/curve_{task}_{seed}.png"' in figures
            assert (run_dir / "report" / f"../figures/curve_{task}_{seed}.png").is_file()
    assert "base64" not in index


def test_notebook_page_holds_its_code_and_outputs_with_embedded_figures(nbdir, capsys):
    assert run(nbdir, "--mode", "fast", "--name", "one", "--seeds", "1", "-p", "scale", "2.5") == 0
    page = (nbdir.parent / "runs" / "one" / "report" / "01_param__retrieval__seed1.html").read_text()
    assert "marker-output task=retrieval seed=1 value=5.0" in page  # the executed output, with its parameters
    assert "Runner fixture" in page  # markdown
    assert "the fixture was asked to fail" in page  # code inputs are included
    assert "data:image/png;base64," + base64.b64encode(PNG).decode()[:20] in page


def test_failed_notebook_is_listed_as_failed_with_its_error(nbdir, capsys):
    assert run(nbdir, "--mode", "fast", "--name", "bad", "-p", "fail", "True") == 1
    out = capsys.readouterr().out
    run_dir = nbdir.parent / "runs" / "bad"
    assert f"report: {run_dir / 'report' / 'index.html'}" in out
    index = (run_dir / "report" / "index.html").read_text()
    line = notebook_lines(index)["01_param__retrieval__seed0.ipynb"]
    assert line.startswith("01_param__retrieval__seed0.ipynb: failed: RuntimeError: the fixture was asked to fail")
    assert "(after " in line
    # the partial notebook still has its page, with the traceback
    page = (run_dir / "report" / "01_param__retrieval__seed0.html").read_text()
    assert "the fixture was asked to fail" in page and "RuntimeError" in page
    assert "No results: this run recorded no metrics." in index


def test_a_notebook_that_cannot_be_rendered_does_not_fail_the_run(nbdir, capsys, monkeypatch):
    real = report._render

    def render(exporter, notebook):
        if "seed1" in notebook.name:
            raise ValueError("broken on purpose\nsecond line")
        return real(exporter, notebook)

    monkeypatch.setattr(report, "_render", render)
    assert run(nbdir, "--mode", "fast", "--name", "partial", "--seeds", "0,1") == 0
    out = capsys.readouterr().out
    report_dir = nbdir.parent / "runs" / "partial" / "report"
    assert f"report: {report_dir / 'index.html'}" in out
    lines = notebook_lines((report_dir / "index.html").read_text())
    assert lines["01_param__retrieval__seed1.ipynb"].endswith("; render failed: ValueError: broken on purpose")
    assert lines["01_param__retrieval__seed1.ipynb"].startswith("01_param__retrieval__seed1.ipynb: ok, ")
    assert "render failed" not in lines["01_param__retrieval__seed0.ipynb"]
    assert sorted(p.name for p in report_dir.iterdir()) == ["01_param__retrieval__seed0.html", "index.html"]


def test_report_failure_is_a_warning_not_the_run_outcome(nbdir, capsys, monkeypatch):
    def broken(run_dir):
        raise RuntimeError("no report today")

    monkeypatch.setattr(report, "write_report", broken)
    assert run(nbdir, "--mode", "fast", "--name", "warn") == 0
    captured = capsys.readouterr()
    assert "warning: HTML report not written: RuntimeError: no report today" in captured.err
    assert "report:" not in captured.out


def test_empty_run_folder_gets_an_index_that_says_so(tmp_path):
    run_dir = tmp_path / "empty"
    run_dir.mkdir()
    index = write_report(run_dir)
    assert index == run_dir.resolve() / "report" / "index.html"
    text = index.read_text()
    assert "<h1>Run empty</h1>" in text
    assert "No executed notebooks" in text and "No results" in text and "No figures" in text
    assert [p.name for p in index.parent.iterdir()] == ["index.html"]


def test_rerun_report_drops_pages_of_removed_notebooks(nbdir, capsys):
    assert run(nbdir, "--mode", "fast", "--name", "again", "--seeds", "0,1") == 0
    run_dir = nbdir.parent / "runs" / "again"
    (run_dir / "notebooks" / "01_param__retrieval__seed1.ipynb").unlink()
    index = write_report(run_dir).read_text()
    assert not (run_dir / "report" / "01_param__retrieval__seed1.html").exists()
    line = notebook_lines(index)["01_param__retrieval__seed1.ipynb"]
    assert "no executed notebook in notebooks/" in line and "href" not in line


def test_missing_run_folder_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match=r"no run folder at .*nowhere; pass a folder written by mdlib-run"):
        write_report(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a run folder"):
        write_report(tmp_path / "file")
    assert report.main([str(tmp_path / "nowhere")]) == 2
    assert "no run folder at" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()


def test_cli_writes_the_report(tmp_path, capsys):
    run_dir = tmp_path / "cli"
    (run_dir / "notebooks").mkdir(parents=True)
    shutil.copy(FIXTURE, run_dir / "notebooks" / "01_param.ipynb")  # unexecuted: no timing recorded
    assert report.main([str(run_dir)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {run_dir.resolve() / 'report' / 'index.html'}"
    lines = notebook_lines((run_dir / "report" / "index.html").read_text())
    assert lines == {"01_param.ipynb": "01_param.ipynb: no timing recorded"}
