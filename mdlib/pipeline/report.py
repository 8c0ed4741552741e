"""The HTML report of a run folder: `python -m mdlib.pipeline.report RUN_DIR`.

`write_report(run_dir)` writes `<run_dir>/report/index.html` and one HTML page per executed notebook
of `<run_dir>/notebooks/` (nbconvert, code and outputs, figures embedded), so a finished run can be read
in a browser without Jupyter or Python. The index lists each notebook with its status and wall time
from `timings.json`, the results of `results.csv`-style metrics as the mean over seeds ± the half-width of
its 95% interval (one table per notebook), and the figures of `<run_dir>/figures/` as thumbnails linking
to `../figures/`.

The runner writes the report at the end of every run (`mdlib-run`, `./scripts/run.sh`); a notebook that
cannot be rendered is listed as such and does not fail the run.
"""
from __future__ import annotations

import html
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ..utils import atomic_write
from .results import collect, summarise
from .runner import PlanError, format_duration, read_timings

__all__ = ["write_report", "main"]

REPORT_FOLDER = "report"

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
h3 { font-size: 1.05em; margin-bottom: 0.4em; }
.meta, .note { color: #666; }
ul.notebooks { list-style: none; padding-left: 0; }
ul.notebooks li { padding: 0.25em 0; border-bottom: 1px solid #f0f0f0; }
.ok { color: #1a7f37; } .failed, .render-failed { color: #b42318; } .other { color: #9a6700; }
table.results { border-collapse: collapse; font-size: 0.92em; margin-bottom: 1em; }
table.results th, table.results td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
table.results th { background: #f6f8fa; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
.figures figure { margin: 0; width: 260px; }
.figures img { width: 100%; border: 1px solid #ddd; }
.figures figcaption { font-size: 0.85em; color: #444; word-break: break-all; }
"""


@dataclass
class _Entry:
    name: str                  # the executed notebook's file name, e.g. 04_x__retrieval__seed0.ipynb
    html: str | None = None    # its HTML page's file name in report/, None when not rendered
    status: str = ""           # the line's text after the name
    css: str = "other"
    render_error: str | None = None


def _timings(run_dir: Path) -> tuple[dict, dict[str, dict], str | None]:
    """timings.json (empty when absent), its jobs by executed notebook file name, and a problem if unreadable."""
    try:
        data = read_timings(run_dir) or {}
    except PlanError as e:
        return {}, {}, f"{e}; statuses and times are not shown"
    jobs = {Path(j["output"]).name: j for j in data.get("jobs", []) if isinstance(j, dict) and j.get("output")}
    return data, jobs, None


def _status(job: dict | None) -> tuple[str, str]:
    """The status text of a job ("ok, 3m12s", "failed: <error>") and its CSS class."""
    if job is None:
        return "no timing recorded", "other"
    status, seconds = job.get("status", "?"), job.get("seconds")
    took = format_duration(seconds) if isinstance(seconds, (int, float)) else None
    if status == "ok":
        return (f"ok, {took}" if took else "ok"), "ok"
    if status == "failed":
        return f"failed: {job.get('error') or 'unknown error'}" + (f" (after {took})" if took else ""), "failed"
    return str(status) + (f" after {took}" if took else ""), "other"


def _exporter():
    from nbconvert import HTMLExporter

    exporter = HTMLExporter()
    exporter.exclude_input = False
    exporter.embed_images = True  # markdown images by relative path; outputs' figures are embedded already
    return exporter


def _render(exporter, notebook: Path) -> str:
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    source = nb.metadata.get("papermill", {}).get("input_path")  # markdown images are relative to the source
    base = Path(source).parent if source and Path(source).parent.is_dir() else notebook.parent
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": notebook.stem, "path": str(base)}})
    return body


def _write(path: Path, text: str) -> None:
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def _results_html(run_dir: Path) -> str:
    try:
        df = collect(run_dir)
    except ValueError as e:
        return f'<p class="failed">The results could not be read: {html.escape(str(e))}</p>'
    if df.empty:
        return '<p class="note">No results: this run recorded no metrics.</p>'
    parts = ['<p class="meta">Mean over seeds ± the half-width of its 95% t interval (a single value: one seed), '
             'per notebook, task, method, forget size (df_size) and metric.</p>']
    for notebook, rows in df.groupby("notebook", sort=True):
        seeds = sorted(rows["seed"].unique())
        table = summarise(rows, index=("task", "method", "df_size"), columns=("metric",)).reset_index()
        table.columns.name = None
        parts.append(f"<h3>{html.escape(str(notebook))} <span class=\"meta\">(seeds "
                     f"{html.escape(', '.join(map(str, seeds)))})</span></h3>")
        parts.append(table.to_html(classes="results", border=0, index=False, na_rep="", escape=True))
    return "\n".join(parts)


def _figures_html(run_dir: Path) -> str:
    figures = sorted((run_dir / "figures").glob("*.png"))
    if not figures:
        return '<p class="note">No figures in this run.</p>'
    items = []
    for fig in figures:
        href = "../figures/" + quote(fig.name)
        items.append(f'<figure><a href="{href}"><img src="{href}" alt="{html.escape(fig.stem)}" loading="lazy"></a>'
                     f'<figcaption>{html.escape(fig.name)}</figcaption></figure>')
    return '<div class="figures">\n' + "\n".join(items) + "\n</div>"


def _index_html(run_dir: Path, entries: list[_Entry], missing: list[tuple[str, dict]], timings: dict,
                timings_problem: str | None) -> str:
    name = html.escape(run_dir.name)
    meta = []
    if timings.get("mode"):
        meta.append(f"{html.escape(str(timings['mode']))} mode")
    jobs = [j for j in timings.get("jobs", []) if isinstance(j, dict)]
    if jobs:
        ok = sum(j.get("status") == "ok" for j in jobs)
        total = sum(float(j.get("seconds") or 0) for j in jobs)
        meta.append(f"{ok} of {len(jobs)} job(s) ok, {format_duration(total)} of notebook time")
    lines = []
    for e in entries:
        label = f'<a href="{quote(e.html)}">{html.escape(e.name)}</a>' if e.html else html.escape(e.name)
        text = f'<span class="{e.css}">{html.escape(e.status)}</span>'
        if e.render_error:
            text += f'; <span class="render-failed">render failed: {html.escape(e.render_error)}</span>'
        lines.append(f"<li>{label}: {text}</li>")
    for out, job in missing:
        status, css = _status(job)
        lines.append(f'<li>{html.escape(out)}: <span class="{css}">{html.escape(status)}</span>; '
                     f'<span class="note">no executed notebook in notebooks/</span></li>')
    if lines:
        notebooks = '<ul class="notebooks">\n' + "\n".join(lines) + "\n</ul>"
    else:
        notebooks = '<p class="note">No executed notebooks: nothing has run in this folder yet.</p>'
    if timings_problem:
        notebooks = f'<p class="failed">{html.escape(timings_problem)}</p>\n' + notebooks
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Run {name}</title>
<style>{CSS}</style>
</head>
<body>
<h1>Run {name}</h1>
<p class="meta">{html.escape(' · '.join(meta)) if meta else 'no timings.json: statuses and times unknown'}</p>
<h2>Notebooks</h2>
{notebooks}
<h2>Results</h2>
{_results_html(run_dir)}
<h2>Figures</h2>
{_figures_html(run_dir)}
</body>
</html>
"""


def write_report(run_dir: str | Path) -> Path:
    """Write `<run_dir>/report/index.html` and one HTML page per executed notebook; returns the index's path.

    A notebook that cannot be rendered is listed with the reason and gets no page; HTML pages of
    notebooks no longer in `notebooks/` are removed. Raises FileNotFoundError / NotADirectoryError
    for a run folder that does not exist or is a file."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise FileNotFoundError(f"no run folder at {run_dir}; pass a folder written by mdlib-run, such as runs/fast")
    if not run_dir.is_dir():
        raise NotADirectoryError(f"{run_dir} is a file, not a run folder; pass a folder written by mdlib-run, "
                                 f"such as runs/fast")
    run_dir = run_dir.resolve()
    out = run_dir / REPORT_FOLDER
    notebooks = sorted(p for p in (run_dir / "notebooks").glob("*.ipynb") if not p.name.startswith("."))
    timings, jobs, problem = _timings(run_dir)

    entries, exporter, exporter_error = [], None, None
    for nb in notebooks:
        entry = _Entry(nb.name)
        entry.status, entry.css = _status(jobs.get(nb.name))
        page = out / f"{nb.stem}.html"
        try:
            if exporter is None and exporter_error is None:
                try:
                    exporter = _exporter()
                except ImportError as e:
                    exporter_error = f"nbconvert is not installed ({e}); pip install nbconvert"
            if exporter_error:
                raise RuntimeError(exporter_error)
            _write(page, _render(exporter, nb))
            entry.html = page.name
        except Exception as e:  # one unreadable notebook must not stop the others
            entry.render_error = f"{type(e).__name__}: {e}".splitlines()[0]
            page.unlink(missing_ok=True)  # no stale page from an earlier report
        entries.append(entry)

    present = {nb.name for nb in notebooks}
    missing = [(name, job) for name, job in jobs.items() if name not in present]
    index = out / "index.html"
    _write(index, _index_html(run_dir, entries, missing, timings, problem))
    keep = {index.name} | {e.html for e in entries if e.html}
    for stale in out.glob("*.html"):
        if stale.name not in keep:
            stale.unlink(missing_ok=True)
    return index


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m mdlib.pipeline.report",
                                description="Render a run folder's executed notebooks and results to HTML "
                                            "(RUN_DIR/report/index.html).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by mdlib-run, e.g. runs/fast")
    args = p.parse_args(argv)
    try:
        index = write_report(args.run_dir)
    except (FileNotFoundError, NotADirectoryError) as e:
        print(f"mdlib report: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"mdlib report: cannot write the report in {args.run_dir} ({e.strerror or e}); "
              f"the run folder must be writable", file=sys.stderr)
        return 2
    print(f"report: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
