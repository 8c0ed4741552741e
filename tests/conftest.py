"""Shared fixtures: the fast retrieval, entailment and NLVR tasks, and a briefly trained fast retrieval model.

Tests never touch the user's data folder: MDLIB_DATA points at a temporary folder unless the
test command set it already.
"""
from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("MDLIB_DATA", tempfile.mkdtemp(prefix="mdlib-tests-"))
os.environ.setdefault("MPLBACKEND", "Agg")

collect_ignore_glob = ["fixtures/*"]


@pytest.fixture(scope="session")
def fast_task():
    from mdlib.tasks import load_task

    return load_task("retrieval", fast=True)


@pytest.fixture(scope="session")
def entailment():
    """The fast-mode entailment task (shared: tests must not change it)."""
    from mdlib.tasks import load_task

    return load_task("entailment", fast=True)


@pytest.fixture(scope="session")
def nlvr():
    """The fast-mode NLVR task (shared: tests must not change it)."""
    from mdlib.tasks import load_task

    return load_task("nlvr", fast=True)


@pytest.fixture(scope="session")
def trained_fast_model(fast_task):
    """The fast-mode original model (trained once per test session and cached in MDLIB_DATA, where the
    notebooks run by nbval afterwards find it)."""
    from mdlib.pipeline.original import original_model

    model, _ = original_model(fast_task, 0, fast=True, progress=False)
    return model.eval()
