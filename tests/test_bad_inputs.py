"""Bad inputs, table-driven: every wrong checkpoint, parameter, file or folder is refused up front with an
error that says what is wrong and what to do, and leaves the run folder and the cache untouched.

Each case prepares its inputs under a private folder (runs/, cache/ = MDLIB_DATA, datasets), which is
snapshotted (paths, sizes, modification times, modes) before the call and compared after it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from mdlib.data.adapters import DatasetFormatError, read_dataset
from mdlib.data.adapters.fixtures import write_fixture
from mdlib.pipeline.checkpoints import CheckpointError
from mdlib.pipeline.runner import PlanError, RunLock, main, make_plan, parser
from mdlib.utils import CacheError, atomic_write, write_json

FIXTURE = Path(__file__).parent / "fixtures" / "param_notebook.ipynb"
TINY = dict(vocab_size=50, max_text_len=8, image_size=16, patch_size=8, hidden=16, image_layers=1, text_layers=1,
            fusion_layers=1, heads=2, intermediate=32, embed_dim=8)


@dataclass
class Env:
    root: Path  # everything a case writes lives here
    held: RunLock | None = None  # a lock another runner holds, released at teardown

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def cache(self) -> Path:
        return self.root / "cache"


@pytest.fixture
def env(tmp_path, monkeypatch):
    e = Env(tmp_path)
    e.runs.mkdir()
    e.cache.mkdir()
    monkeypatch.setenv("MDLIB_DATA", str(e.cache))
    monkeypatch.setenv("MDLIB_RUNS", str(e.runs))
    monkeypatch.chdir(tmp_path)
    yield e
    if e.held is not None:
        e.held.release()


def snapshot(root: Path) -> dict:
    """Every path under `root` with its size, modification time and mode."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_size if p.is_file() else None, st.st_mtime_ns, st.st_mode)
    return out


# -- helpers that prepare inputs --------------------------------------------------------------------
@dataclass
class PlanCall:
    """Plan a fast-mode run with `argv` (as `mdlib-run` would, before anything runs)."""

    argv: list[str]

    def __call__(self):
        return make_plan(parser().parse_args(self.argv))


def plan_args(*args: str) -> PlanCall:
    return PlanCall(["--mode", "fast", *args])


class StubTask:
    """Just enough of a Task for the checkpoint cache: a name, its data's signature and a model config."""

    name, world, source, val = "retrieval", None, "stub", None
    train = list(range(10))

    def model_config(self):
        from mdlib.models import ModelConfig

        return ModelConfig(**TINY)

    def data_signature(self):
        return "stub-examples"


def planted_checkpoint(meta_of: Callable[[dict], dict | None]) -> Callable[[], object]:
    """Save a tiny untrained model where the stub task's original model belongs, with `meta_of(identity)`."""
    from mdlib.models import MultimodalModel
    from mdlib.pipeline.checkpoints import save_checkpoint
    from mdlib.pipeline.original import checkpoint_path, default_train_config, identity, resolved_recipe, train_or_load

    task, config = StubTask(), resolved_recipe(default_train_config(True), "cpu")
    path = checkpoint_path(task, "original", task.model_config(), config, 0)
    meta = meta_of(identity(task, "original", task.model_config(), config, 0))
    save_checkpoint(path, MultimodalModel(task.model_config()), meta)
    return lambda: train_or_load(task, task.train, kind="original", seed=0, train_config=config, device="cpu",
                                 progress=False)


def edit_jsonl(path: Path, change: Callable[[list[dict]], None]) -> None:
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    change(recs)
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))


def edit_tsv(path: Path, change: Callable[[list[str]], list[str]]) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0]] + ["\t".join(change(ln.split("\t"))) for ln in lines[1:]]) + "\n")


def swap_ids(fields: list[str]) -> list[str]:
    fields[4], fields[5] = fields[5], fields[4]
    return fields


def gene_name_as_id(fields: list[str]) -> list[str]:
    fields[4] = fields[2]  # the gene symbol where its NCBI id belongs
    return fields


def all_uncertain(fields: list[str]) -> list[str]:
    return fields[:-1] + ["U"]


# -- the cases --------------------------------------------------------------------------------------
def _methods(e):
    return plan_args("--notebooks", "06", "-p", "methods", "nosuch")


def _df_size(e):
    return plan_args("--notebooks", "06", "-p", "df_size", "5000")


def _graph_text_df_size(e):
    # 100 fits the fast scene world (400 images) but not graph-text's 80 training blocks
    return plan_args("--notebooks", "10", "-p", "df_size", "100")


def _nlvr_df_size(e):
    return plan_args("--notebooks", "01", "--tasks", "nlvr", "-p", "df_size", "200")


def _sweep_methods(e):
    return plan_args("--notebooks", "08", "-p", "sweep_methods", "multidelete,typo")


def _n_reference(e):
    return plan_args("--notebooks", "07", "-p", "n_reference", "3")


def _sizes(e):
    return plan_args("--notebooks", "09", "-p", "sizes", "0.01,900")


def _repeated_seeds(e):
    return plan_args("--notebooks", "01", "--seeds", "0,1,0")


def _device(e):
    return plan_args("--notebooks", "01", "--device", "cuda:7")


def _runs_dir_is_a_file(e):
    (e.root / "afile").write_text("x")
    return plan_args("--notebooks", "01", "--runs-dir", str(e.root / "afile"))


def _other_mode_in_folder(e):
    write_json({"mode": "full", "jobs": [{"notebook": "01_train_original", "status": "ok", "seconds": 1.0}]},
               e.runs / "fast" / "timings.json")
    return plan_args("--notebooks", "01")


def _broken_timings(e):
    (e.runs / "fast").mkdir()
    (e.runs / "fast" / "timings.json").write_text('{"mode": "fast", "jobs": [')
    return plan_args("--notebooks", "01")


def _busy_run_folder(e):
    e.held = RunLock(e.runs / "fast").acquire()  # another runner holds the folder
    return lambda: RunLock(e.runs / "fast").acquire()


def _foreign_checkpoint(e):
    return planted_checkpoint(lambda ident: {"identity": dict(ident, task="entailment")})


def _untrained_checkpoint(e):
    return planted_checkpoint(lambda ident: {})


def _other_recipe_checkpoint(e):
    return planted_checkpoint(lambda ident: {"identity": dict(ident, train_config=dict(ident["train_config"],
                                                                                        epochs=3))})


def _broken_tokenizer(e):
    from mdlib.data.tokenizer import cached_tokenizer

    path = e.cache / "worlds" / "tok"
    cached_tokenizer(["a red circle", "a blue square"], path, vocab_size=60)
    text = (path / "tokenizer.json").read_text()
    (path / "tokenizer.json").write_text(text[: len(text) // 2])
    return lambda: cached_tokenizer(["a red circle"], path, vocab_size=60)


def _broken_world(e):
    from mdlib.data.world import WorldConfig, load_world, world_path

    path = world_path(WorldConfig.fast())
    path.mkdir(parents=True)
    (path / "state.json").write_text("{")
    return lambda: load_world(WorldConfig.fast())


def _pgr(e, change):
    root = write_fixture("pgr", e.root / "pgr")
    edit_tsv(root / ("test.tsv" if change is all_uncertain else "train.tsv"), change)
    return lambda: read_dataset("pgr", root)


def _snli_ve(e, label_of):
    root = write_fixture("snli-ve", e.root / "ve")
    edit_jsonl(root / "snli_ve_train.jsonl",
               lambda recs: [r.update(gold_label=label_of(r["gold_label"])) for r in recs])
    return lambda: read_dataset("snli-ve", root)


def _nlvr2_empty_dev(e):
    root = write_fixture("nlvr2", e.root / "nlvr2")
    (root / "dev.json").write_text("")
    return lambda: read_dataset("nlvr2", root)


def _flickr_without_test_images(e):
    root = write_fixture("flickr30k", e.root / "flickr")
    path = root / "dataset_flickr30k.json"
    blob = json.loads(path.read_text())
    for img in blob["images"]:
        img["split"] = "restval" if img["split"] == "test" else img["split"]
    path.write_text(json.dumps(blob))
    return lambda: read_dataset("flickr30k", root)


def _mistyped_local_path(e):
    (e.root / "data").mkdir()
    return lambda: read_dataset("flickr30k", "data/flikr30k")


def _resolve_device(e):
    from mdlib.utils import resolve_device

    return lambda: resolve_device("cuda:7")


def _setup(**params):
    def prepare(e):
        from mdlib.pipeline.notebook import setup

        return lambda: setup(output_dir=str(e.runs / "interactive"), **params)
    return prepare


CASES = [
    # the batch runner: refused while planning, so --dry-run fails too
    ("runner: unknown method", _methods, PlanError, r"unknown method\(s\) nosuch; choose from: all, "),
    ("runner: df_size above the fast world", _df_size, PlanError, r"400 training units.*choose a size below 400"),
    ("runner: df_size above graph-text's blocks", _graph_text_df_size, PlanError, r"graph-text.*80 training units.*below 80"),
    ("runner: df_size of every NLVR pair", _nlvr_df_size, PlanError, r"nlvr.*200 training units.*below 200"),
    ("runner: unknown sweep method", _sweep_methods, PlanError, r"sweep_methods: unknown method\(s\) typo; choose"),
    ("runner: odd n_reference", _n_reference, PlanError, r"n_reference=3 .*even int.*-p n_reference 4"),
    ("runner: a sweep size above the world", _sizes, PlanError, r"sizes=900 .*choose a size below 400"),
    ("runner: repeated seeds", _repeated_seeds, PlanError, r"--seeds repeats 0.*list each seed once.*0,1"),
    ("runner: an absent GPU", _device, PlanError, r"--device: device='cuda:7' was asked for.*use device="),
    ("runner: run folder under a file", _runs_dir_is_a_file, PlanError, r"afile is a file; pass another --runs-dir"),
    ("runner: run folder of the other mode", _other_mode_in_folder, PlanError, r"full-mode run.*pass another --name"),
    ("runner: broken timings.json", _broken_timings, PlanError, r"timings.json is unreadable.*fix or delete it"),
    ("runner: run folder in use", _busy_run_folder, PlanError, r"another mdlib-run \(pid \d+\).*wait for it"),
    # checkpoints
    ("checkpoint of another task", _foreign_checkpoint, CheckpointError,
     r"task: checkpoint 'entailment', asked 'retrieval'; delete .*\.pt and run again"),
    ("checkpoint without identity", _untrained_checkpoint, CheckpointError,
     r"saved without its identity.*delete .*\.pt and run again"),
    ("checkpoint of another recipe", _other_recipe_checkpoint, CheckpointError,
     r"train_config.epochs: checkpoint 3, asked 40; delete"),
    # caches
    ("tokenizer cache cut in half", _broken_tokenizer, CacheError, r"tok is unreadable.*delete that folder"),
    ("world cache unreadable", _broken_world, CacheError, r"cached world at .* is unreadable.*delete that folder"),
    # real data
    ("PGR id columns swapped", lambda e: _pgr(e, swap_ids), DatasetFormatError, r"look swapped: put the gene id"),
    ("PGR gene symbol as id", lambda e: _pgr(e, gene_name_as_id), DatasetFormatError,
     r"GENE_ID='[A-Z0-9]+'.*expected an NCBI Gene id such as 4830"),
    ("PGR test split all uncertain", lambda e: _pgr(e, all_uncertain), DatasetFormatError,
     r"test split\(s\) hold no example.*pass confirmed_labels=False"),
    ("SNLI-VE unknown labels", lambda e: _snli_ve(e, lambda lab: "yes" if lab != "-" else lab), DatasetFormatError,
     r"18 of 19 rows have an unknown gold_label.*fix the file"),
    ("SNLI-VE train split emptied", lambda e: _snli_ve(e, lambda lab: "-"), DatasetFormatError,
     r"train split\(s\) hold no example \(train: all 19 rows of snli_ve_train.jsonl lack a known gold_label\)"),
    ("NLVR2 empty dev file", _nlvr2_empty_dev, DatasetFormatError, r"val split\(s\).*dev.json holds no example"),
    ("Flickr30K without test images", _flickr_without_test_images, DatasetFormatError,
     r"test split\(s\) hold no example \(test: dataset_flickr30k.json puts no image.*check the files"),
    ("PGR relative path missing", lambda e: lambda: read_dataset("pgr", "corpora/pgr"), FileNotFoundError,
     r"PGR not found at corpora/pgr \(looked for .*corpora/pgr\): no such local folder.*pass the folder"),
    ("Flickr30K mistyped local path", _mistyped_local_path, FileNotFoundError,
     r"local folder .*flikr30k does not exist.*mistyped local path.*check the path"),
    # devices and notebook parameters
    ("device index not visible", _resolve_device, ValueError, r"device='cuda:7' was asked for.*use device="),
    ("setup: df_size above the world", _setup(fast=True, task="retrieval", df_size=5000), ValueError,
     r"choose a size below 400"),
    ("setup: repeated seeds", _setup(seeds="0,0"), ValueError, r"list each seed once"),
    ("setup: unknown method", _setup(methods="multidelete,nosuch"), ValueError, r"choose from: all, "),
]


@pytest.mark.parametrize("name, prepare, error, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_changes_nothing(env, name, prepare, error, message):
    action = prepare(env)
    before = snapshot(env.root)
    with pytest.raises(error, match=message):
        action()
    assert snapshot(env.root) == before


RUNNER_CASES = [c for c in CASES if c[0].startswith("runner:") and c[1] is not _busy_run_folder]


@pytest.mark.parametrize("name, prepare, error, message", RUNNER_CASES, ids=[c[0] for c in RUNNER_CASES])
def test_dry_run_fails_exactly_when_the_run_would(env, capsys, name, prepare, error, message):
    call = prepare(env)
    before = snapshot(env.root)
    assert main([*call.argv, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mdlib-run: ") and len(err.splitlines()) == 1
    assert re.search(message, err)  # the same error the run itself gives, not just any refusal
    assert snapshot(env.root) == before


# -- recoveries: what is not refused works, and faults during a run are recorded -------------------------
@pytest.fixture
def nbdir(env):
    d = env.root / "notebooks"
    d.mkdir()
    shutil.copy(FIXTURE, d / "01_param.ipynb")
    return d


def run(nbdir, *args):
    return main(["--notebook-dir", str(nbdir), "--no-progress", "--mode", "fast", *args])


def timings(env) -> list[dict]:
    return json.loads((env.runs / "fast" / "timings.json").read_text())["jobs"]


def test_written_files_have_the_usual_modes(env):
    old = os.umask(0o022)
    try:
        with atomic_write(env.cache / "a.bin") as fh:
            fh.write(b"x")
        from mdlib.data.tokenizer import cached_tokenizer

        cached_tokenizer(["a red circle"], env.cache / "tok", vocab_size=60)
    finally:
        os.umask(old)
    files = [env.cache / "a.bin", *(env.cache / "tok").iterdir()]
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o644}
    assert sorted(p.name for p in env.cache.iterdir()) == ["a.bin", "tok"]  # no temporary left behind


def test_matching_checkpoint_loads(env):
    model, meta = planted_checkpoint(lambda ident: {"identity": ident})()
    assert meta["loaded_from"].endswith(".pt") and not model.training


def test_upper_case_snli_ve_labels_are_read_as_lower_case(env):
    plain = read_dataset("snli-ve", write_fixture("snli-ve", env.root / "plain"))
    shouted = _snli_ve(env, str.upper)()
    assert shouted.counts() == plain.counts() and (shouted.label == plain.label).all()


def test_interrupted_run_says_so_in_one_line_and_is_recorded(env, nbdir, capsys, monkeypatch):
    import papermill

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupt)
    assert run(nbdir, "--seeds", "0,1") == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("mdlib-run: interrupted during [1/2] 01_param") and "Traceback" not in err
    assert "rerun the same command" in err and len(err.splitlines()) == 1
    assert [j["status"] for j in timings(env)] == ["interrupted"]
    assert not (env.runs / "fast" / ".mdlib-run.lock").exists()  # the folder is free again


def test_unwritable_run_folder_does_not_hide_the_notebook_error(env, nbdir, capsys, monkeypatch):
    import mdlib.pipeline.runner as runner

    def refuse(obj, path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(runner, "write_json", refuse)
    assert run(nbdir, "-p", "fail", "True") == 1
    err = capsys.readouterr().err
    assert "RuntimeError: the fixture was asked to fail" in err
    assert "cannot write" in err and "timings.json (Permission denied)" in err and "fix its permissions" in err
    assert "Traceback" not in err


def test_a_second_runner_is_refused_and_a_later_one_keeps_the_record(env, nbdir, capsys):
    env.held = RunLock(env.runs / "fast").acquire()
    before = snapshot(env.root)
    assert run(nbdir, "--seeds", "0") == 2
    assert "another mdlib-run" in capsys.readouterr().err and snapshot(env.root) == before
    env.held.release()
    env.held = None
    assert run(nbdir, "--seeds", "0") == 0
    assert run(nbdir, "--seeds", "1") == 0  # a later run into the same folder adds to timings.json
    assert [(j["seed"], j["status"]) for j in timings(env)] == [(0, "ok"), (1, "ok")]
    assert run(nbdir, "--seeds", "1") == 0  # a rerun replaces its own entry
    assert [j["seed"] for j in timings(env)] == [0, 1]


def test_a_file_system_without_locks_still_runs(env, nbdir, monkeypatch):
    """A network file system that answers ENOLCK: the runner goes on unprotected instead of failing."""
    import errno
    import fcntl

    def refuse(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refuse)
    assert run(nbdir, "--seeds", "0") == 0
    assert [(j["seed"], j["status"]) for j in timings(env)] == [(0, "ok")]
