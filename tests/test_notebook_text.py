"""What a reader meets in the notebooks: every exercise solved, references that exist, short setup cells,
no helper copied between notebooks, and plumbing kept to a small share of the code."""
from __future__ import annotations

import ast
import json
import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("*.ipynb"))


def cells(path: Path, kind: str) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == kind]


def code_lines(source: str) -> list[str]:
    return [ln for ln in source.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def is_plumbing(source: str) -> bool:
    """Setting up (the cell that calls start) and writing results (session.record) are plumbing."""
    return bool(re.search(r"\b(start|setup)\(", source)) or "session.record(" in source


def plumbing_share() -> tuple[int, int]:
    """(plumbing lines, code lines) over the numbered notebooks, parameter cells excluded."""
    plumbing = total = 0
    for path in NOTEBOOKS:
        for source in cells(path, "code")[1:]:
            n = len(code_lines(source))
            total += n
            plumbing += n if is_plumbing(source) else 0
    return plumbing, total


def test_every_exercise_has_a_worked_solution():
    solved = set()
    for path in SOLUTIONS:
        for text in cells(path, "markdown"):
            for nb, k in re.findall(r"^## (\d\d) · Exercise (\d+)", text, re.M):
                solved.add((nb, int(k)))
            if path.name == "06_solutions.ipynb":
                solved |= {("06", int(k)) for k in re.findall(r"^## Exercise (\d+)", text, re.M)}
    asked = set()
    for path in NOTEBOOKS:
        for text in cells(path, "markdown"):
            if text.lstrip().startswith("## Exercises"):
                asked |= {(path.name[:2], int(k)) for k in re.findall(r"^(\d+)\. ", text, re.M)}
    assert len(asked) >= 36
    assert asked - solved == set(), f"exercises without a solution: {sorted(asked - solved)}"


@pytest.mark.parametrize("path", NOTEBOOKS + SOLUTIONS, ids=lambda p: p.name)
def test_no_project_words_and_no_missing_files(path):
    text = path.read_text()
    for word in (r"\bissue\b", r"DESIGN\.md", r"\bfoundation\b", r"\.\./shared"):
        assert not re.search(word, text, re.I), f"{path.name} says {word}"
    for ref in re.findall(r"`((?:mdlib|notebooks|scripts|docs|tests|benchmarks)/[\w./-]+\.\w+)`", text):
        assert (ROOT / ref).exists(), f"{path.name} points to {ref}, which does not exist"


@pytest.mark.parametrize("path", NOTEBOOKS + SOLUTIONS, ids=lambda p: p.name)
def test_setup_cell_is_short_and_unpacks_the_task(path):
    setup = cells(path, "code")[1]
    assert re.search(r"\b(start|setup)\(", setup), "the cell after the parameters sets up with `start` or `setup`"
    assert len(code_lines(setup)) <= 17, f"{len(code_lines(setup))} code lines in the setup cell"
    assert not re.search(r"(?<![\w.])data\s*=", "\n".join(cells(path, "code"))), "the Task is called `task`"


def test_no_helper_function_is_defined_in_two_notebooks():
    defined = Counter()
    for path in NOTEBOOKS:
        names = set()
        for source in cells(path, "code"):
            clean = "\n".join(re.sub(r"^(\s*)%.*", r"\1pass", ln) for ln in source.splitlines())
            names |= {n.name for n in ast.walk(ast.parse(clean)) if isinstance(n, ast.FunctionDef)}
        defined.update(names)
    assert [n for n, k in defined.items() if k > 1] == []


def test_plumbing_is_at_most_a_fifth_of_the_code():
    plumbing, total = plumbing_share()
    print(f"plumbing: {plumbing} of {total} code lines ({plumbing / total:.0%})")
    assert plumbing / total <= 0.20


@pytest.mark.parametrize("path", NOTEBOOKS + SOLUTIONS, ids=lambda p: p.name)
def test_every_cell_has_a_unique_id(path):
    """nbformat 4.5 requires cell ids (JupyterLab and nbval warn without them, and future versions refuse)."""
    ids = [c.get("id") for c in json.loads(path.read_text())["cells"]]
    assert None not in ids and len(set(ids)) == len(ids)
