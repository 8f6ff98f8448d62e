"""Hardening (issue 18): run directories from others, destructive flags, crashes, bad input.

Every bad input must end in exactly one ``rwenas: error:`` line on stderr with exit status 2,
no traceback, and nothing written or deleted.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from rwenas.checks import check_number
from rwenas.errors import ConfigError, RwenasError
from rwenas.fit.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
from rwenas.models import builtin_network
from rwenas.objectives import worst_values
from rwenas.report import write_figures
from rwenas.search.config import resolve_config
from rwenas.search.front import pareto_front
from rwenas.search.nsga2 import Search, run_search
from rwenas.search.store import LOCK_NAME, RunLock, RunStore, StoreError
from rwenas.spaces import get_space

SRC = str(Path(__file__).resolve().parents[1] / "src")
TINY = {"space": "micro", "dataset": "synthetic", "train_size": 160, "val_size": 80,
        "pop_size": 4, "generations": 2, "seed": 1,
        "network": {"channels": 4, "layers": 2}, "rwe": {"epochs": 1}}


def one_line_error(rc: int, out: str, err: str, *fragments: str) -> str:
    """The single error line of a refused command (and check that it is one)."""
    assert rc == 2, (rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rwenas: error:"), err
    assert "Traceback" not in out + err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its bytes (to check that nothing changed)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A tiny finished search."""
    run_dir = tmp_path_factory.mktemp("hard") / "run"
    run_search(resolve_config(None, None, TINY), run_dir, progress=False, after=write_figures)
    return run_dir


# -- 1. nothing in run.db is unpickled ---------------------------------------------------------
class _Payload:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "pwned"))


@pytest.mark.parametrize("blob", ["crafted", "garbage"])
def test_resume_never_unpickles_the_stored_blob(finished_run, tmp_path, run_cli, blob):
    run_dir = tmp_path / "copy"
    run_dir.mkdir()
    for f in finished_run.iterdir():
        if f.is_file():
            (run_dir / f.name).write_bytes(f.read_bytes())
    marker = tmp_path / "pwned.txt"
    data = pickle.dumps(_Payload(str(marker))) if blob == "crafted" else b"\x80\x05garbage"
    with RunStore.open(run_dir) as store:
        store.set_blob("checkpoint", data)
        n = store.count_evaluations()
    rc, _out, err = run_cli("search", "--resume", str(run_dir), "--quiet")
    assert rc == 0, err
    assert not marker.exists()
    with RunStore.open(run_dir) as store:
        assert store.count_evaluations() == n  # the replay answered everything from the store


def test_a_tampered_history_is_refused_before_any_evaluation(finished_run, tmp_path, run_cli):
    run_dir = tmp_path / "tampered"
    run_dir.mkdir()
    (run_dir / "run.db").write_bytes((finished_run / "run.db").read_bytes())
    with sqlite3.connect(run_dir / "run.db") as conn:
        conn.execute("DELETE FROM generations WHERE generation = 1")  # so gen 1 is redone
        conn.execute("UPDATE generations SET extra = ? WHERE generation = 0",
                     (json.dumps({"offspring": ["<not what was asked>"]}),))
    conn.close()
    before = tree(run_dir)
    rc, out, err = run_cli("search", "--resume", str(run_dir), "--quiet")
    one_line_error(rc, out, err, "replaying generation 0")
    assert tree(run_dir)["run.db"] == before["run.db"]


# -- 2. the report escapes everything ----------------------------------------------------------
XSS = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
ATTR = '" onmouseover="alert(3)'


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_report_of_a_run_full_of_markup_holds_none_of_it(tmp_path, run_cli):
    run_dir = tmp_path / f"run{XSS.replace('/', '')}"
    config = resolve_config(None, None, TINY)
    config.update(dataset=XSS, data_dir=XSS, ray_address=ATTR, seed=XSS)
    config["rwe"] = {"init": XSS}
    config["network"] = {"channels": XSS}
    space = get_space("micro")
    genome = space.sample(np.random.default_rng(0))
    with RunStore.create(run_dir, config) as store:
        store.add_evaluation(XSS + ATTR, genome, objectives=[0.5, 2.0], generation=0,
                             genotype=space.genotype_to_json(space.decode(genome)),
                             params_m=0.1, madds_m=2.0, seconds=1.0, features_seconds=0.5,
                             classifier_seconds=0.2,
                             extra={"rwe_error": 0.5, "warning": XSS, "latency_ms": XSS})
        store.add_evaluation(ATTR, genome, objectives=[1.0, 1e12], generation=0,
                             status="failed", error=XSS, attempts=3)
        store.add_generation(0, population=[XSS], front=[XSS], hypervolume=0.5,
                             n_evaluated=2, cache_hits=0, seconds=1.0, extra={XSS: ATTR})
        store.set_state("hv_ref", [XSS, 1.0])
    with sqlite3.connect(run_dir / "run.db") as conn:  # text where numbers belong
        conn.execute("UPDATE evaluations SET attempts = ?, generation = ?, madds_m = ?, "
                     "created = ? WHERE status = 'failed'", (XSS, ATTR, XSS, XSS))
        conn.execute("UPDATE evaluations SET genome = ? WHERE status = 'failed'",
                     (json.dumps([XSS, 1]),))
        conn.execute("UPDATE generations SET hypervolume = ?, seconds = ?, cache_hits = ?, "
                     "n_evaluated = ?, created = ?", (XSS, XSS, XSS, ATTR, XSS))
        conn.execute("UPDATE meta SET value = ? WHERE key IN ('created', 'rwenas_version')",
                     (XSS,))
        stored = json.loads(conn.execute("SELECT value FROM meta WHERE key = 'config'")
                            .fetchone()[0])
        stored.update(space=XSS, generations=XSS, max_madds=XSS)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'config'", (json.dumps(stored),))
    conn.close()
    rc, _out, err = run_cli("report", str(run_dir))
    assert rc == 0, err
    text = (run_dir / "report.html").read_text()
    assert "alert(" in text  # the values are shown ...
    assert "<img src=x" not in text and "<script>alert" not in text  # ... as text
    parser = _Tags()
    parser.feed(text)
    for tag, attrs in parser.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        if tag == "img":
            assert (attrs.get("src") or "").startswith("data:image/png;base64,")
    assert [t for t, _ in parser.tags].count("script") == 1  # the page's own sorting script


# -- 3. stored plugin names are not imported unasked -------------------------------------------
EVIL = textwrap.dedent("""
    import os
    from pathlib import Path
    Path(os.environ["EVIL_MARKER"]).write_text("imported")
    from rwenas.spaces.micro import MicroSpace

    class Space(MicroSpace):
        pass
""")


@pytest.fixture()
def evil_plugin(tmp_path, monkeypatch) -> Path:
    (tmp_path / "evil_plugin.py").write_text(EVIL)
    monkeypatch.syspath_prepend(str(tmp_path))
    marker = tmp_path / "IMPORTED"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    sys.modules.pop("evil_plugin", None)
    yield marker
    sys.modules.pop("evil_plugin", None)


def _fake_checkpoint(path: Path, space: str) -> None:
    run = {"architecture": {"space": space, "genotype": {}, "label": "x"}, "network": {}}
    save_checkpoint({"format": CHECKPOINT_FORMAT, "version": 1, "epoch": 1, "model": {},
                     "optimizer": {}, "history": [], "run": json.dumps(run), "elapsed": 0.0,
                     "rng": {"torch": torch.get_rng_state(), "python": {}, "numpy": {}}},
                    path)


def test_stored_plugin_names_need_the_users_word(evil_plugin, tmp_path, run_cli):
    run_dir = tmp_path / "theirs"
    RunStore.create(run_dir, {**resolve_config(None, None, TINY),
                              "space": "evil_plugin:Space"}).close()
    (run_dir / "config.json").write_text(json.dumps({"space": "evil_plugin:Space"}))
    (run_dir / "front.json").write_text(json.dumps([{"genome": "0", "rwe_error": 0.1,
                                                     "madds_m": 1.0}]))
    ckpt = tmp_path / "train"
    ckpt.mkdir()
    _fake_checkpoint(ckpt / "checkpoint.pt", "evil_plugin:Space")
    for argv in (["report", str(run_dir)],
                 ["search", "--resume", str(run_dir), "--quiet"],
                 ["export", str(ckpt)],
                 ["train", "--out", str(ckpt), "--resume", "--quiet"],
                 ["train", "--from-run", str(run_dir), "--pick", "L", "--out",
                  str(tmp_path / "t"), "--quiet"]):
        rc, out, err = run_cli(*argv)
        one_line_error(rc, out, err, "module 'evil_plugin'", "--trust-plugins")
        assert not evil_plugin.exists(), argv
    rc, _, err = run_cli("report", str(run_dir), "--space", "evil_plugin:Space")
    assert rc == 0, err  # named again by the user: allowed (an empty run needs no import)
    # the fake checkpoint fails later, but only after the plugin the user named was imported
    rc, out, err = run_cli("export", str(ckpt), "--trust-plugins")
    assert "trust" not in one_line_error(rc, out, err)
    assert evil_plugin.exists()


@pytest.mark.parametrize("space", ["os:system", "subprocess:Popen", "builtins:exit", ":",
                                   "no_such_module_x:Y", "json:nope", ".rel:X"])
def test_space_that_is_no_space_is_a_clean_error(space, tmp_path, run_cli):
    rc, out, err = run_cli("show", "--space", space, "--genome", "0 1")
    one_line_error(rc, out, err)
    rc, out, err = run_cli("search", "--space", space, "--out", str(tmp_path / "r"))
    one_line_error(rc, out, err)
    assert not (tmp_path / "r").exists()


# -- 4. --force replaces only rwenas runs ------------------------------------------------------
def test_force_does_not_replace_a_foreign_directory_with_an_empty_run_db(tmp_path, run_cli):
    foreign = tmp_path / "theirs"
    foreign.mkdir()
    (foreign / "run.db").write_bytes(b"")
    (foreign / "thesis.tex").write_text("precious")
    before = tree(foreign)
    rc, out, err = run_cli("search", "--out", str(foreign), "--force", "--dataset", "synthetic")
    one_line_error(rc, out, err, "refusing to overwrite")
    assert tree(foreign) == before
    with sqlite3.connect(foreign / "run.db") as conn:  # an SQLite file of other tables
        conn.execute("CREATE TABLE meta (key TEXT, value TEXT)")
        conn.execute("INSERT INTO meta VALUES ('format', 'rwenas.run')")
    conn.close()
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        RunStore.create(foreign, {}, force=True)
    assert (foreign / "thesis.tex").read_text() == "precious"


# -- 6. a crash is blamed on its own evaluation; --retry-failed --------------------------------
FLAKY = textwrap.dedent("""
    import os
    from rwenas.models import builtin_network
    from rwenas.spaces.micro import MicroSpace

    class FlakySpace(MicroSpace):
        name = "flaky"

        def build(self, genome, **setting):
            g = tuple(genome) if not hasattr(genome, "normal") else self.encode(genome)
            if g[0] in (0, 1) and not os.environ.get("FLAKY_OK"):
                raise RuntimeError("simulated build failure")
            return builtin_network(self, genome, **setting)
""")


def test_retry_failed_evaluates_the_failures_again(tmp_path, monkeypatch, run_cli):
    (tmp_path / "flaky2.py").write_text(FLAKY)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = resolve_config(None, None, {**TINY, "space": "flaky2:FlakySpace", "pop_size": 8,
                                      "generations": 1, "max_retries": 0})
    run_dir = tmp_path / "run"
    run_search(cfg, run_dir, progress=False)
    with RunStore.open(run_dir) as store:
        failed = {e["key"] for e in store.evaluations(status="failed")}
        n = store.count_evaluations()
    assert failed, "no genome hit the failure"
    monkeypatch.setenv("FLAKY_OK", "1")
    rc, out, err = run_cli("search", "--resume", str(run_dir), "--quiet", "--trust-plugins")
    assert rc == 0, err
    with RunStore.open(run_dir) as store:
        assert {e["key"] for e in store.evaluations(status="failed")} == failed
    rc, out, err = run_cli("search", "--resume", str(run_dir), "--retry-failed", "--quiet",
                           "--space", "flaky2:FlakySpace")
    assert rc == 0, err
    with RunStore.open(run_dir) as store:
        assert store.evaluations(status="failed") == []
        assert store.count_evaluations() == n
        assert {e["key"] for e in store.evaluations()} >= failed
    rc, out, err = run_cli("search", "--out", str(tmp_path / "new"), "--retry-failed")
    one_line_error(rc, out, err, "--retry-failed")


# -- 7. a non-finite evaluation is failed and never in the front -------------------------------
@pytest.mark.parametrize("outcome", [{"finite": False, "warning": "features are NaN"},
                                     {"madds_m": math.nan}, {"rwe_error": math.inf}])
def test_non_finite_evaluation_is_recorded_as_failed(tmp_path, outcome):
    config = resolve_config(None, None, TINY)
    space = get_space("micro")
    genome = space.sample(np.random.default_rng(1))
    key = space.key(genome)
    good = {"rwe_error": 1.0, "madds_m": 0.5, "params_m": 0.01, "seconds": 1.0,
            "features_seconds": 0.5, "classifier_seconds": 0.2, "seed": 1, "warning": None,
            "finite": True}
    with RunStore.create(tmp_path / "run", config) as store:
        record = Search(store, config, progress=False)._record(genome, key,
                                                               {**good, **outcome}, 0)
        assert record["status"] == "failed" and record["error"]
        assert record["objectives"] == worst_values(config["objectives"])
        assert pareto_front(store.evaluations(), config) == []


def test_nan_features_make_an_unfinished_evaluation():
    from rwenas.data import load_dataset, search_split
    from rwenas.evaluation import evaluate_genome

    class NaNSpace(type(get_space("micro"))):
        def build(self, genome, **setting):
            net = builtin_network(self, genome, **setting)
            features = net.features
            net.features = lambda x: features(x) * math.nan
            return net

    ds = load_dataset("synthetic", None, seed=0)
    split = search_split(ds, seed=0, train_size=40, val_size=20)
    space = NaNSpace()
    genome = space.sample(np.random.default_rng(0))
    with pytest.warns(RuntimeWarning):
        ev = evaluate_genome(space, genome, split, ds.info, network={"channels": 4,
                                                                     "layers": 2})
    assert ev.to_dict()["finite"] is False


# -- 8. one process per run directory ----------------------------------------------------------
def test_a_second_process_is_refused_and_a_dead_holders_lock_is_free(finished_run, tmp_path,
                                                                     run_cli):
    run_dir = finished_run
    code = (f"import sys, time; sys.path.insert(0, {SRC!r})\n"
            "from pathlib import Path\nfrom rwenas.search.store import RunLock\n"
            f"lock = RunLock.acquire(Path({str(run_dir)!r}))\n"
            "print('locked', flush=True)\ntime.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = tree(run_dir)
        rc, out, err = run_cli("search", "--resume", str(run_dir), "--quiet")
        one_line_error(rc, out, err, f"in use by process {holder.pid}")
        rc, out, err = run_cli("search", "--out", str(run_dir), "--force", "--dataset",
                               "synthetic")
        one_line_error(rc, out, err, f"in use by process {holder.pid}")
        assert tree(run_dir) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock = RunLock.acquire(run_dir)  # the kernel dropped the dead holder's lock
    lock.release()
    assert (run_dir / LOCK_NAME).exists()


# -- 9. a full disk ----------------------------------------------------------------------------
def _full_store(store: RunStore) -> RunStore:
    """Let SQLite believe the disk is full: no page may be added to the database."""
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")
    return store


def test_a_full_disk_is_a_one_line_error(tmp_path, monkeypatch, run_cli):
    with _full_store(RunStore.create(tmp_path / "direct", {"x": 1})) as store:
        with pytest.raises(StoreError, match="disk is full") as info:
            store.add_evaluation("k" * 50_000, [1, 2], objectives=[0.1, 0.2], generation=0)
        assert "\n" not in str(info.value) and isinstance(info.value, RwenasError)
    create = RunStore._create_db.__func__
    monkeypatch.setattr(RunStore, "_create_db", classmethod(
        lambda cls, *a: _full_store(create(cls, *a))))
    rc, out, err = run_cli("search", "--out", str(tmp_path / "full"), "--quiet",
                           *_flags(TINY))
    one_line_error(rc, out, err, "disk is full", "--resume")


def _flags(settings: dict) -> list[str]:
    return ["--space", settings["space"], "--dataset", settings["dataset"], "--train-size",
            str(settings["train_size"]), "--val-size", str(settings["val_size"]),
            "--pop-size", str(settings["pop_size"]), "--generations",
            str(settings["generations"]), "--channels", "4", "--layers", "2", "--epochs", "1"]


# -- bad inputs --------------------------------------------------------------------------------
def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


BAD_TOML = {
    'crossover_prob = "abc"': "crossover_prob",
    "mutation_eta = [1]": "mutation_eta",
    'gpus_per_eval = "x"': "gpus_per_eval",
    "data_dir = 5": "data_dir",
    "space = 5": "space",
    "mutation_eta = inf": "mutation_eta",
    "seed = -1": "seed",
    "profile = []": "profile",
    "[network]\nchannels = 99999999999": "2048",
}


def bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """name → (argv, a fragment of the error)."""
    nested = tmp / "deep.json"
    nested.write_text("[" * 100_000 + "]" * 100_000)
    empty = _write(tmp / "empty.json", "[]")
    return {
        "5000-digit genome value": (["show", "--genome", "1 " * 5 + "9" * 5000], "digits"),
        "empty --genome": (["evaluate", "--genome", ""], "genome is empty"),
        "--genomes []": (["evaluate", "--genomes", empty], "holds no genome"),
        "genotype nested 100000 deep": (["show", "--genotype", str(nested)], "nested"),
        "negative seed": (["search", "--seed", "-1", "--out", str(tmp / "r")], "seed"),
        "huge seed": (["search", "--seed", "9" * 40, "--out", str(tmp / "r")], "seed"),
        "--max-madds nan": (["search", "--max-madds", "nan", "--out", str(tmp / "r")],
                            "nan"),
        "--gpus-per-eval nan": (["search", "--gpus-per-eval", "nan", "--out", str(tmp / "r")],
                                "nan"),
        "--gpus-per-eval without ray": (["search", "--gpus-per-eval", "0.5", "--out",
                                         str(tmp / "r")], "ray executor only"),
        "--ray-address without ray": (["search", "--executor", "process", "--ray-address",
                                       "auto", "--out", str(tmp / "r")], "ray executor only"),
        "evaluate --device tpu": (["evaluate", "--genome", "1", "--device", "tpu"], "tpu"),
        "show --increment -100": (["show", "--arch", "DARTS", "--increment", "-100"],
                                  "increment"),
        "--channels 99999999999": (["show", "--arch", "DARTS", "--channels", "99999999999"],
                                   "2048"),
        "show --layers 100000": (["show", "--arch", "DARTS", "--layers", "100000"], "100]"),
        "train --crop-padding 100000": (["train", "--arch", "DARTS", "--out", str(tmp / "t"),
                                         "--crop-padding", "100000"], "4096"),
    }


@pytest.mark.parametrize("name", [
    "5000-digit genome value", "empty --genome", "--genomes []", "genotype nested 100000 deep",
    "negative seed", "huge seed", "--max-madds nan", "--gpus-per-eval nan",
    "--gpus-per-eval without ray", "--ray-address without ray", "evaluate --device tpu",
    "show --increment -100", "--channels 99999999999", "show --layers 100000",
    "train --crop-padding 100000"])
def test_bad_input_is_one_line(name, tmp_path, run_cli):
    argv, fragment = bad_inputs(tmp_path)[name]
    before = tree(tmp_path)
    rc, out, err = run_cli(*argv)
    one_line_error(rc, out, err, fragment)
    assert tree(tmp_path) == before  # no run.db, no config.json, nothing


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda(tmp_path, run_cli):
    genome = " ".join(map(str, get_space("micro").sample(np.random.default_rng(0))))
    rc, out, err = run_cli("evaluate", "--genome", genome, "--device", "cuda")
    one_line_error(rc, out, err, "CUDA is not available")
    rc, out, err = run_cli("search", "--device", "cuda", "--out", str(tmp_path / "r"))
    one_line_error(rc, out, err, "CUDA is not available")
    assert not (tmp_path / "r").exists()


def test_train_inputs_the_network_cannot_take_leave_nothing(tmp_path, run_cli):
    common = ["--arch", "DARTS", "--dataset", "synthetic", "--train-size", "20",
              "--test-size", "10", "--channels", "4", "--layers", "3", "--epochs", "1",
              "--quiet"]
    out = tmp_path / "big"
    rc, o, e = run_cli("train", "--out", str(out), "--image-size", "64", *common)
    one_line_error(rc, o, e, "64x64")
    assert not (out / "config.json").exists()
    out = tmp_path / "pad"
    rc, o, e = run_cli("train", "--out", str(out), "--image-size", "12", "--crop-padding",
                       "100", *common)
    one_line_error(rc, o, e, "crop padding 100")
    assert not (out / "config.json").exists()


FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FMNIST.is_dir(), reason="no Fashion-MNIST files here")
def test_train_image_size_64_on_fashion_mnist(tmp_path, run_cli):
    out = tmp_path / "fm"
    rc, o, e = run_cli("train", "--arch", "DARTS", "--dataset", "fashion-mnist", "--data-dir",
                       str(FMNIST), "--image-size", "64", "--train-size", "20", "--test-size",
                       "10", "--channels", "4", "--layers", "3", "--out", str(out), "--quiet")
    one_line_error(rc, o, e, "64x64")
    assert not (out / "config.json").exists()


@pytest.mark.parametrize("target", ["/dev/full", "closed pipe"])
def test_a_closed_or_full_stdout(target):
    env = {**os.environ, "PYTHONPATH": SRC}
    cmd = [sys.executable, "-m", "rwenas.cli", "show", "--arch", "DARTS"]
    if target == "/dev/full":
        if not Path("/dev/full").exists():
            pytest.skip("no /dev/full")
        with open("/dev/full", "w") as full:
            proc = subprocess.run(cmd, stdout=full, stderr=subprocess.PIPE, text=True, env=env,
                                  timeout=120)
        rc, err = proc.returncode, proc.stderr
    else:  # `| head -1` that has already gone: the read end is closed before any write
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
        proc.stdout.close()
        err = proc.stderr.read()
        rc = proc.wait(timeout=120)
    one_line_error(rc, "", err, "cannot write to standard output")


def test_check_number_is_the_one_gate():
    assert check_number("x", "7", integer=True, low=1) == 7
    assert check_number("x", 0.5, low=0, high=1) == 0.5
    assert check_number("x", None, optional=True) is None
    for bad, limits in ((True, {}), ("nan", {}), (math.inf, {}), ("1" * 5000, {"integer": True}),
                        (0, {"low": 0, "low_open": True}), (11, {"high": 10}), ([1], {}),
                        ("1.5", {"integer": True}), (10**400, {})):
        with pytest.raises(ConfigError, match="must be"):
            check_number("x", bad, **limits)


def test_resume_replay_is_fast_and_exact(finished_run, tmp_path, run_cli):
    """Resuming a finished run replays it from the store: nothing new, the same front."""
    with RunStore.open(finished_run) as store:
        n = store.count_evaluations()
    front = (finished_run / "front.json").read_text()
    t0 = time.perf_counter()
    rc, _out, err = run_cli("search", "--resume", str(finished_run), "--quiet")
    assert rc == 0, err
    assert time.perf_counter() - t0 < 60
    with RunStore.open(finished_run) as store:
        assert len(store.generations()) == TINY["generations"]
        assert store.count_evaluations() == n
    assert (finished_run / "front.json").read_text() == front


# -- the options of issues 13, 14 and 16 under the same rules ----------------------------------
EVIL_OBJECTIVE = textwrap.dedent("""
    import os
    from pathlib import Path
    Path(os.environ["EVIL_MARKER"]).write_text("imported")
    raise RuntimeError("an objective module that runs code on import")
""")


def test_stored_objective_functions_need_the_users_word(tmp_path, monkeypatch, run_cli):
    """A stored ``module:function`` objective imports code: only with the user's word, as a
    stored plugin space; the report only reads its stored values and never imports it."""
    (tmp_path / "evil_objective.py").write_text(EVIL_OBJECTIVE)
    monkeypatch.syspath_prepend(str(tmp_path))
    marker = tmp_path / "IMPORTED"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    objectives = ["rwe", "madds", "evil_objective:score"]
    run_dir = tmp_path / "theirs"
    RunStore.create(run_dir, {**resolve_config(None, None, TINY),
                              "objectives": objectives}).close()
    rc, out, err = run_cli("search", "--resume", str(run_dir), "--quiet")
    one_line_error(rc, out, err, "module 'evil_objective'", "--trust-plugins", "--objectives")
    assert not marker.exists()
    rc, out, err = run_cli("report", str(run_dir))
    assert rc == 0, err
    assert not marker.exists()
    for vouch in (["--objectives", ",".join(objectives)], ["--trust-plugins"]):
        rc, out, err = run_cli("search", "--resume", str(run_dir), "--quiet", *vouch)
        one_line_error(rc, out, err, "cannot import objective module 'evil_objective'",
                       "RuntimeError")
        assert marker.exists(), vouch  # imported: the user vouched for it
        marker.unlink()
        sys.modules.pop("evil_objective", None)


def test_resumable_settings_hold_both_sides():
    from rwenas.search.nsga2 import RESUMABLE

    assert {"executor", "workers", "threads", "ray_address", "gpus_per_eval", "max_retries",
            "max_minutes", "stop_after_stagnation"} <= set(RESUMABLE)
    assert not {"algorithm", "objectives", "seed", "pop_size", "initial_population",
                "space"} & set(RESUMABLE)


def test_damaged_stored_budgets_are_one_line(finished_run, tmp_path, run_cli):
    run_dir = tmp_path / "copy"
    run_dir.mkdir()
    (run_dir / "run.db").write_bytes((finished_run / "run.db").read_bytes())
    with RunStore.open(run_dir) as store:
        store.set_state("limits", {"max_minutes": "<b>1</b>", "other": 1})
    rc, out, err = run_cli("search", "--resume", str(run_dir), "--quiet")
    one_line_error(rc, out, err, "max_minutes")
    rc, out, err = run_cli("search", "--resume", str(run_dir), "--quiet", "--max-minutes", "9")
    assert rc == 0, err  # a limit given now replaces the damaged one, and is kept
    with RunStore.open(run_dir) as store:
        assert store.get_state("limits") == {"max_minutes": 9.0}
    rc, out, err = run_cli("search", "--resume", str(run_dir), "--quiet", "--algorithm",
                           "random")
    one_line_error(rc, out, err, "cannot change algorithm")


NEW_BAD_TOML = {
    "max_minutes = nan": "max_minutes",
    "max_minutes = -1": "max_minutes",
    'max_minutes = "5"': "max_minutes",
    "stop_after_stagnation = 1.5": "stop_after_stagnation",
    "stop_after_stagnation = 0": "stop_after_stagnation",
    "algorithm = 5": "algorithm",
    'algorithm = "cmaes"': "unknown algorithm",
    "initial_population = [[1, [2]]]": "initial_population",
    'initial_population = "x"': "initial_population",
    'initial_population = [["1"]]': "initial_population",
    'objectives = ["rwe", ":f"]': "names no module",
    'objectives = ["rwe", "os:nope"]': "no objective function",
}


ALL_BAD_TOML = BAD_TOML | NEW_BAD_TOML


@pytest.mark.parametrize("line", list(ALL_BAD_TOML))
def test_toml_values_of_the_wrong_type(line, tmp_path, run_cli):
    config = _write(tmp_path / "c.toml", line + "\n")
    rc, out, err = run_cli("search", "--config", config, "--out", str(tmp_path / "r"))
    one_line_error(rc, out, err, ALL_BAD_TOML[line])
    assert not (tmp_path / "r").exists()


def new_bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """name → (argv, a fragment of the error), for the options of issues 13, 14 and 16."""
    nested = tmp / "deep.json"
    nested.write_text("[" * 100_000 + "]" * 100_000)
    out = ["--out", str(tmp / "r")]
    return {
        "--max-minutes nan": (["search", "--max-minutes", "nan", *out], "max_minutes"),
        "--max-minutes 0": (["search", "--max-minutes", "0", *out], "max_minutes"),
        "--stop-after-stagnation 0": (["search", "--stop-after-stagnation", "0", *out],
                                      "stop_after_stagnation"),
        "--algorithm cmaes": (["search", "--algorithm", "cmaes", *out], "invalid choice"),
        "--objectives rwe,:f": (["search", "--objectives", "rwe,:f", *out], "names no module"),
        "--initial-population nested": (["search", "--initial-population", str(nested),
                                          "--dataset", "synthetic", *out],
                                         "not a list of genomes"),
        "--initial-population missing": (["search", "--initial-population",
                                          str(tmp / "none"), *out], "no such file"),
        "--pick without --from-run": (["export", "--pick", "knee"], "--from-run"),
        "report --pick madds<=nan": (["report", str(tmp / "none"), "--pick", "madds<=nan"],
                                     "not an rwenas run"),
        "train --workers -1": (["train", "--arch", "DARTS", "--workers", "-1", *out],
                               "workers"),
        "train --precision fp16": (["train", "--arch", "DARTS", "--precision", "fp16", *out],
                                   "invalid choice"),
        "show --decoder dense on micro": (["show", "--arch", "DARTS", "--decoder", "dense"],
                                          "--decoder does not apply to the micro space"),
        "bench build --lr nan": (["bench", "build", str(tmp / "b"), "--lr", "nan"], "lr"),
        "bench build --seed -1": (["bench", "build", str(tmp / "b"), "--seed", "-1"], "seed"),
        "bench build --device tpu": (["bench", "build", str(tmp / "b"), "--device", "tpu"],
                                     "tpu"),
        "bench build --precision fp16": (["bench", "build", str(tmp / "b"), "--precision",
                                          "fp16"], "invalid choice"),
        "bench build --channels 99999": (["bench", "build", str(tmp / "b"), "--channels",
                                          "99999"], "2048"),
    }


@pytest.mark.parametrize("name", [
    "--max-minutes nan", "--max-minutes 0", "--stop-after-stagnation 0", "--algorithm cmaes",
    "--objectives rwe,:f", "--initial-population nested", "--initial-population missing",
    "--pick without --from-run", "report --pick madds<=nan", "train --workers -1",
    "train --precision fp16", "show --decoder dense on micro", "bench build --lr nan",
    "bench build --seed -1", "bench build --device tpu", "bench build --precision fp16",
    "bench build --channels 99999"])
def test_bad_input_of_the_new_options_is_one_line(name, tmp_path, run_cli):
    argv, fragment = new_bad_inputs(tmp_path)[name]
    before = tree(tmp_path)
    rc, out, err = run_cli(*argv)
    one_line_error(rc, out, err, fragment)
    assert tree(tmp_path) == before  # no run.db, no config.json, nothing



def test_a_bad_pick_is_one_line_and_writes_nothing(finished_run, tmp_path, run_cli):
    kept = {n: (finished_run / n).read_bytes() for n in ("report.html", "front.json")}
    for pick in ("madds<=nan", "madds=<3", "flops<=1", "madds<=0", "<b>knee</b>"):
        rc, out, err = run_cli("report", str(finished_run), "--pick", pick)
        one_line_error(rc, out, err)
        rc, out, err = run_cli("train", "--from-run", str(finished_run), "--pick", pick,
                               "--out", str(tmp_path / "t"), "--quiet")
        one_line_error(rc, out, err)
        rc, out, err = run_cli("export", "--from-run", str(finished_run), "--pick", pick,
                               "--out", str(tmp_path / "e"))
        one_line_error(rc, out, err)
    assert not (tmp_path / "t").exists() and not (tmp_path / "e").exists()
    assert {n: (finished_run / n).read_bytes() for n in kept} == kept


def test_a_run_made_before_the_new_settings_resumes(finished_run, tmp_path, run_cli):
    """A run whose stored configuration predates --algorithm, --initial-population and the
    budgets resumes with their defaults (NSGA-II, no warm start, no budget)."""
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    (run_dir / "run.db").write_bytes((finished_run / "run.db").read_bytes())
    with sqlite3.connect(run_dir / "run.db") as conn:
        (text,) = conn.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
        old = {k: v for k, v in json.loads(text).items()
               if k not in ("algorithm", "initial_population", "max_minutes",
                            "stop_after_stagnation")}
        conn.execute("UPDATE meta SET value = ? WHERE key = 'config'", (json.dumps(old),))
    conn.close()
    rc, _out, err = run_cli("search", "--resume", str(run_dir), "--quiet")
    assert rc == 0, err
    assert (run_dir / "front.json").read_text() == (finished_run / "front.json").read_text()
    with sqlite3.connect(run_dir / "run.db") as conn:
        (text,) = conn.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
    conn.close()
    assert "algorithm" not in json.loads(text)  # the store itself is left as it was


def test_ray_settings_of_a_stored_run_do_not_block_resuming_it_elsewhere(finished_run, tmp_path,
                                                                         run_cli):
    """A run made on Ray (or before Ray's settings were refused for other executors) resumes
    with another executor: its stored gpus_per_eval and ray_address are dropped, not refused;
    given now, they are refused."""
    run_dir = tmp_path / "ray"
    run_dir.mkdir()
    (run_dir / "run.db").write_bytes((finished_run / "run.db").read_bytes())
    with sqlite3.connect(run_dir / "run.db") as conn:
        (text,) = conn.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
        stored = {**json.loads(text), "gpus_per_eval": 0.5, "ray_address": "auto"}
        conn.execute("UPDATE meta SET value = ? WHERE key = 'config'", (json.dumps(stored),))
    conn.close()
    rc, _out, err = run_cli("search", "--resume", str(run_dir), "--executor", "local",
                            "--quiet")
    assert rc == 0, err
    assert (run_dir / "front.json").read_text() == (finished_run / "front.json").read_text()
    rc, out, err = run_cli("search", "--resume", str(run_dir), "--gpus-per-eval", "0.25")
    one_line_error(rc, out, err, "ray executor only")
