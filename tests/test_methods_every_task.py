"""Every method runs by name on every embedded task (not only retrieval), under the one contract."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_baselines import ENCODER_PREFIXES, fast_hparams, snapshot, tiny_env

from mdlib.methods import available, unlearn
from mdlib.metrics import d_f_score

TASKS = ["entailment", "nlvr", "graph-text"]


@pytest.fixture(scope="module", params=TASKS)
def env(request):
    """40 units of the task's fast data; D_f = 4 units."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    e = tiny_env(request.param, 40, epochs=2)
    yield e.task, e.model, e.forget, e.retain, e.val
    torch.set_num_threads(threads)


def test_every_method_runs_on_every_task(env):
    task, model, forget, retain, val = env
    before = snapshot(model)
    for name in available():
        if name == "erm-ktp" and task.name == "graph-text":
            with pytest.raises(ValueError, match="N/A on graph-text"):
                unlearn(name, model, task, forget, retain, val, progress=False, **fast_hparams(name))
            continue
        result = unlearn(name, model, task, forget, retain, val, seed=0, progress=False, **fast_hparams(name))
        new = result.model.state_dict()
        assert all(torch.isfinite(v).all() for v in new.values() if v.is_floating_point()), name
        changed = [k for k in before if not torch.equal(before[k], new[k])]
        assert changed, f"{name} left the model unchanged on {task.name}"
        if name.endswith("-f"):
            assert not [k for k in changed if k.startswith(ENCODER_PREFIXES)], f"{name} moved an encoder"
        z_f, z_r = task.true_logodds(result.model, forget), task.true_logodds(result.model, retain)
        assert np.isfinite(z_f).all() and np.isfinite(z_r).all()
        assert 0 <= d_f_score(z_f, z_r, seed=0) <= 100
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "f was modified"


def test_forget_split_never_leaks_into_retain(env):
    task, *_ = env
    for size in (0.05, 10):
        forget, retain = task.forget_split(size, seed=1)
        assert not np.isin(forget.units(), retain.units()).any()
        assert len(forget) + len(retain) == len(task.train)


def test_task_method_overrides_apply_under_explicit_settings(env):
    task, model, forget, retain, val = env
    overrides = task.method_overrides("multidelete")
    if task.name == "graph-text":
        assert overrides == {}
        return
    assert overrides["alpha"] > 1 and overrides["epochs"] > 4  # statement tasks: a stronger L_MD, longer
    small = dict(epochs=1, min_steps=1, eval_every=1)
    result = unlearn("multidelete", model, task, forget, retain, val, progress=False, **small)
    assert result.config["alpha"] == overrides["alpha"] and result.config["lr"] == overrides["lr"]
    assert result.config["epochs"] == 1  # the caller's setting wins
    result = unlearn("multidelete", model, task, forget, retain, val, progress=False, alpha=0.5, **small)
    assert result.config["alpha"] == 0.5
