"""Every method runs by name on every embedded task (not only retrieval), under the one contract."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_baselines import ENCODER_PREFIXES, fast_hparams, snapshot

from mdlib.methods import available, unlearn
from mdlib.metrics import d_f_score
from mdlib.models import MultimodalModel
from mdlib.tasks import load_task
from mdlib.training import TrainConfig, train

TASKS = ["entailment", "nlvr", "graph-text"]


@pytest.fixture(scope="module", params=TASKS)
def env(request):
    """A tiny model trained briefly on 40 units of the task's fast data; D_f = 4 units."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    task = load_task(request.param, fast=True)
    config = task.model_config(hidden=32, intermediate=64, image_layers=1, text_layers=1, fusion_layers=1, heads=2,
                               embed_dim=32)
    units = task.train.units()[:40]
    data = task.train.with_units(units, "tiny D_train")
    torch.manual_seed(0)
    model = MultimodalModel(config)
    train(model, task, data, TrainConfig(epochs=2, batch_size=32, lr=2e-3, warmup_steps=2), seed=0, progress=False)
    model.eval()
    yield task, model, data.with_units(units[:4], "D_f"), data.without_units(units[:4], "D_r"), \
        task.val.with_units(task.val.units()[:8], "val")
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
        p_f, p_r = task.true_probability(result.model, forget), task.true_probability(result.model, retain)
        assert 0 <= d_f_score(p_f, p_r, seed=0) <= 100
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "f was modified"


def test_forget_split_never_leaks_into_retain(env):
    task, *_ = env
    for size in (0.05, 10):
        forget, retain = task.forget_split(size, seed=1)
        assert not np.isin(forget.units(), retain.units()).any()
        assert len(forget) + len(retain) == len(task.train)
