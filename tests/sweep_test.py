"""posrec.sweep: a tiny real sweep end to end (subprocesses), then every refusal."""

import fcntl
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from posrec import config_lib, report, sweep
from posrec.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

TINY_CONFIG = """
from posrec.config_lib import default_config


def get_config():
    config = default_config()
    config.data.name = "synthetic"
    config.data.synthetic.update(num_users=120, num_items=30, seq_len=10)
    config.data.min_user_count = config.data.min_item_count = 0
    config.model.update(max_len=8, hidden=8, num_blocks=1, dropout=0.1)
    config.train.update(num_epochs=1, batch_size=64, log_every=1000)
    config.eval.update(batch_size=128, ks=(1, 10, 20))
    return config
"""


def write_sweep(directory: Path, **changes) -> Path:
    """A sweep file over the tiny config; `changes` replace entries of get_sweep()."""
    config = directory / "tiny_config.py"
    config.write_text(TINY_CONFIG)
    raw = dict(
        name="tiny",
        datasets={"syn": str(config)},
        variants={
            "absolute": {"model.positional": "absolute"},
            "none": {"model.positional": "none"},
            "broken": {"model.positional": "bogus"},  # fails when its run starts
        },
        seeds=[0, 1],
        hparams={"train.learning_rate": [0.003]},
        common={"eval.sampled": 5},
    )
    raw.update(changes)
    path = directory / f"sweep_{abs(hash(json.dumps(raw, sort_keys=True)))}.py"
    path.write_text(f"def get_sweep():\n    return {raw!r}\n")
    return path


def runs_by_name(status):
    return {r["run"]: r for r in status["runs"]}


HP = "learning_rate=0.003"
VICTIM = f"syn/absolute/{HP}/seed1"
# The first invocation pins each of its 2 parallel runs to a core where there are 2.
PIN = 1 if len(os.sched_getaffinity(0)) >= 2 else 0


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """Run the tiny sweep twice: fresh (--parallel 2), then after 'interrupting' one run."""
    directory = tmp_path_factory.mktemp("sweep")
    path, root = write_sweep(directory), directory / "root"
    with pytest.MonkeyPatch.context() as mp:
        # Later subprocesses reuse the first ones' XLA compilations (same shapes).
        mp.setenv("JAX_PLATFORMS", "cpu")
        mp.setenv("JAX_COMPILATION_CACHE_DIR", str(directory / "xla_cache"))
        mp.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        mp.setenv("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
        first = sweep.run_sweep(path, root, parallel=2, out=io.StringIO(), cpus_per_run=PIN)
        done = [r["run"] for r in first["runs"] if r["state"] == "done"]
        results = {n: json.loads((root / n / "results.json").read_text()) for n in done}
        mtimes = {n: os.stat(root / n / "train.log").st_mtime_ns for n in done}
        # An interruption after the last checkpoint: no results yet, checkpoints present.
        (root / VICTIM / "results.json").unlink()
        (root / VICTIM / "per_user_test.npz").unlink()
        out = io.StringIO()
        second = sweep.run_sweep(path, root, parallel=2, out=out)
    return dict(root=root, path=path, first=first, second=second, results=results,
                mtimes=mtimes, out=out.getvalue())


def test_first_invocation_trains_all_and_reports_the_broken_variant(swept):
    root, first = swept["root"], runs_by_name(swept["first"])
    assert len(first) == 6
    for name, run in first.items():
        assert run["launched"]
        if "/broken/" in name:
            assert run["state"] == "failed" and run["returncode"] == 2
            assert "model.positional='bogus'" in run["error"]
            continue
        assert run["state"] == "done" and run["returncode"] == 0, run
        cfg = json.loads((root / name / "config.json").read_text())  # overrides reached it
        assert cfg["train"]["learning_rate"] == 0.003 and cfg["eval"]["sampled"] == 5
        assert cfg["seed"] == int(name[-1])
        assert cfg["model"]["positional"] == name.split("/")[1]
        assert (root / name / "per_user_test.npz").exists()
    # --parallel 2: the first two runs were trained at the same time
    a, b = (json.loads((root / n / "attempts.jsonl").read_text().splitlines()[0])
            for n in (f"syn/absolute/{HP}/seed0", f"syn/none/{HP}/seed0"))
    assert abs(np.datetime64(a["started"]) - np.datetime64(b["started"])) <= np.timedelta64(1, "s")
    manifest = json.loads((root / "sweep.json").read_text())
    assert manifest["sweep"] == "tiny" and len(manifest["runs"]) == 6


@pytest.mark.skipif(not PIN, reason="needs 2 cores")
def test_parallel_runs_were_pinned_to_distinct_cores(swept):
    root = swept["root"]
    cores = {}
    for name in runs_by_name(swept["first"]):
        header = (root / name / "train.log").read_text().split("\n=== posrec.sweep ")[1]
        cores[name] = header.split("(cores ")[1].split(")")[0]
    a, b = (cores[f"syn/{v}/{HP}/seed0"] for v in ("absolute", "none"))  # ran together
    assert a != b and {a, b} <= {str([c]) for c in sorted(os.sched_getaffinity(0))}


def test_child_setup_pins_and_slots_are_checked():
    import subprocess
    import sys

    core = sorted(os.sched_getaffinity(0))[-1]
    out = subprocess.run(
        [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
        preexec_fn=lambda: sweep._child_setup((core,)), capture_output=True, text=True,
        check=True,
    ).stdout
    assert out.strip() == f"[{core}]"
    n = len(os.sched_getaffinity(0))
    assert [len(c) for c in sweep.cpu_slots(n, 1)] == [1] * n
    with pytest.raises(ConfigError, match=f"needs {n + 1} cores"):
        sweep.cpu_slots(n + 1, 1)


def test_second_invocation_skips_finished_and_resumes_interrupted(swept):
    root, second = swept["root"], runs_by_name(swept["second"])
    launched = {n for n, r in second.items() if r["launched"]}
    assert launched == {VICTIM, f"syn/broken/{HP}/seed0", f"syn/broken/{HP}/seed1"}
    for name, mtime in swept["mtimes"].items():
        if name != VICTIM:
            assert second[name]["state"] == "done"
            assert os.stat(root / name / "train.log").st_mtime_ns == mtime  # not relaunched
    assert second[VICTIM]["state"] == "done"
    log = (root / VICTIM / "train.log").read_text()
    assert "resumed from step" in log
    assert len((root / VICTIM / "metrics.jsonl").read_text().splitlines()) == 1  # no retraining
    assert json.loads((root / VICTIM / "results.json").read_text()) == swept["results"][VICTIM]
    assert len((root / VICTIM / "attempts.jsonl").read_text().splitlines()) == 2
    on_disk = json.loads((root / "status.json").read_text())
    assert on_disk["counts"] == {"done": 4, "failed": 2} and on_disk["finished"]
    assert "model.positional='bogus'" in swept["out"]  # the final table names the error


@pytest.mark.parametrize("stopping", [False, True])
def test_a_sigkill_the_sweep_did_not_send_is_a_failure(tmp_path, stopping):
    """SIGKILL from outside (the OOM killer) fails the run, so `sweep` exits 1, not 75 (a
    rerun-while-75 loop would retry it forever); the sweep's own second-signal SIGKILL is
    an interruption."""
    proc = subprocess.Popen([sys.executable, "-c",
                             "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    proc.wait()
    run = sweep.Run("syn", "absolute", "x", 0, "cfg.py", {})
    attempt = sweep._Attempt(run, proc, open(tmp_path / "train.log", "a"), "now", time.time())
    entry = sweep._finish({}, attempt, tmp_path, stopping=stopping)
    assert entry["returncode"] == -signal.SIGKILL
    if stopping:
        assert entry["state"] == "interrupted"
    else:
        assert entry["state"] == "failed" and "killed by SIGKILL, not by the sweep" in entry[
            "error"]
    assert json.loads((tmp_path / "attempts.jsonl").read_text())["returncode"] == -9


def test_report_of_the_swept_root(swept):
    root = swept["root"]
    summary = report.summarize(root)
    rows = {r["variant"]: r for r in summary["rows"]}
    assert summary["baseline"] == "absolute"
    for variant in ("absolute", "none"):
        tests = [json.loads((root / f"syn/{variant}/{HP}/seed{s}/results.json").read_text())
                 for s in (0, 1)]
        for m in ("ndcg@10", "hr@20", "cov@10"):
            values = [t["test"][m] for t in tests]
            assert rows[variant][m] == pytest.approx(np.mean(values))
            assert rows[variant][m + "_std"] == pytest.approx(np.std(values, ddof=1))
        key = "sampled5_uniform_hr@1"
        assert rows[variant][key] == pytest.approx(np.mean([t["test_sampled"][key]
                                                            for t in tests]))
    assert rows["broken"]["seeds"] == 0
    broken = [r for r in summary["runs"] if r["variant"] == "broken"]
    assert all(r["state"] == "failed" and "bogus" in r["note"] for r in broken)
    assert rows["none"]["n_users"] == 120
    md = report.markdown(summary)
    assert "SAMPLED" in md and f"syn/broken/{HP}/seed0" in md


# ----------------------------------------------------------------------------- refusals


def test_dry_run_validates_and_writes_nothing(tmp_path):
    out = io.StringIO()
    plan = sweep.run_sweep(write_sweep(tmp_path), tmp_path / "root", dry_run=True, out=out)
    assert [r["state"] for r in plan["runs"]] == ["new"] * 6
    assert not (tmp_path / "root").exists()
    assert "--config.model.positional=absolute" in out.getvalue()
    # values are checked too, and reported (the run itself would fail the same way)
    assert f"syn/broken/{HP}/seed0 will fail: config.model.positional='bogus'" in out.getvalue()
    assert out.getvalue().count("will fail") == 2


def test_only_selects_runs_by_pattern(tmp_path):
    out = io.StringIO()
    plan = sweep.run_sweep(write_sweep(tmp_path), tmp_path / "root", dry_run=True, out=out,
                           only=["*/none/*", "*/absolute/*/seed1"])
    states = {r["run"]: r["state"] for r in plan["runs"]}
    assert {n for n, s in states.items() if s == "new"} == {
        f"syn/none/{HP}/seed0", f"syn/none/{HP}/seed1", f"syn/absolute/{HP}/seed1"}
    assert sum(s == "skip" for s in states.values()) == 3
    with pytest.raises(ConfigError, match=r"--only=beauty/\* matches none of the 6 runs"):
        sweep.run_sweep(write_sweep(tmp_path), tmp_path / "root", dry_run=True, only=["beauty/*"])


def test_only_keeps_the_commas_of_a_label_with_several_hyperparameters(tmp_path):
    """absl splits --only on commas; a run name copied whole must still select that run."""
    path = write_sweep(tmp_path, hparams={"train.learning_rate": [0.003],
                                          "model.dropout": [0.0, 0.2]})
    plan = sweep.run_sweep(path, tmp_path / "root", dry_run=True, out=io.StringIO())
    name = "syn/none/learning_rate=0.003,dropout=0.2/seed1"
    assert name in {r["run"] for r in plan["runs"]}
    pieces = f"{name},syn/absolute/*/seed0".split(",")  # what DEFINE_list hands over
    only = sweep.only_patterns(pieces)
    assert only == [name, "syn/absolute/*/seed0"]
    plan = sweep.run_sweep(path, tmp_path / "root", dry_run=True, out=io.StringIO(), only=only)
    assert {r["run"] for r in plan["runs"] if r["state"] == "new"} == {
        name, "syn/absolute/learning_rate=0.003,dropout=0.0/seed0",
        "syn/absolute/learning_rate=0.003,dropout=0.2/seed0"}
    assert sweep.only_patterns(["beauty/*", "ml-1m/*/lr=1", "dropout=0/*"]) == [
        "beauty/*", "ml-1m/*/lr=1,dropout=0/*"]


@pytest.mark.parametrize("changes, match", [
    (dict(variants={"a": {"model.hiden": 8}}), r"unknown config key 'model.hiden'.*model.hidden"),
    (dict(common={"train.epochs": 3}), "unknown config key 'train.epochs'"),
    (dict(hparams={"model.drop": [0.1]}), "unknown config key 'model.drop'"),
    (dict(seeds=[]), "empty grid: no seeds"),
    (dict(variants={}), "empty grid: no variants"),
    (dict(datasets={}), "empty grid: no datasets"),
    (dict(hparams={"model.dropout": []}), r"empty grid: hparams\['model.dropout'\]"),
    (dict(variants={"a": {"model.dropout": "high"}}), "does not fit the key's type"),
    (dict(variants={"a": {"train.num_epochs": 5}}), "training budget"),
    (dict(variants={"a": {"data.min_user_count": 2}}), r"input window \(model.max_len\), data"),
    (dict(variants={"a": {"train.batch_size": 64}}), r"sets train.batch_size: .*batch size"),
    (dict(variants={"a": {"model.max_len": 16}}), r"sets model.max_len: .*input window"),
    (dict(variants={"a": {"train.learning_rate": 0.1}}), r"set in both hparams and variants"),
    (dict(variants={"a/b": {}}), "variant name 'a/b'"),
    (dict(seeds=[0, 0]), "distinct ints"),
    (dict(extra=1), r"unknown sweep entries \['extra'\]"),
    (dict(hparams={"seed": [1, 2]}), "hparams sets seed"),
    (dict(baseline="sasrec"), "baseline 'sasrec' is not one of the variants"),
])
def test_bad_sweep_file_is_refused_before_anything_runs(tmp_path, changes, match):
    with pytest.raises(ConfigError, match=match):
        sweep.run_sweep(write_sweep(tmp_path, **changes), tmp_path / "root")
    assert not (tmp_path / "root").exists()


def make_root(tmp_path, **changes) -> Path:
    """A root holding the manifest of a tiny sweep (no run trained)."""
    root = tmp_path / "root"
    s = sweep.load(write_sweep(tmp_path, **changes))
    root.mkdir()
    config_lib.write_json_atomic(root / sweep.MANIFEST, sweep.check_root(s, root))
    return root


def test_root_of_another_sweep_is_refused(tmp_path):
    root = make_root(tmp_path, name="other")
    with pytest.raises(ConfigError, match="holds runs of sweep 'other'"):
        sweep.run_sweep(write_sweep(tmp_path), root, dry_run=True)


def test_changed_grid_is_refused_and_extend_only_accepts_additions(tmp_path):
    root = make_root(tmp_path)
    grown = write_sweep(tmp_path, seeds=[0, 1, 2])
    grid_change = r"different grid \(seeds: \[0, 1\] -> \[0, 1, 2\]\).*--extend"
    with pytest.raises(ConfigError, match=grid_change):
        sweep.run_sweep(grown, root, dry_run=True)
    plan = sweep.run_sweep(grown, root, dry_run=True, extend=True, out=io.StringIO())
    assert len(plan["runs"]) == 9
    changed = write_sweep(tmp_path, common={"eval.sampled": 7})
    with pytest.raises(ConfigError, match="6 existing runs .* would change"):
        sweep.run_sweep(changed, root, dry_run=True, extend=True)


def test_foreign_or_corrupt_root_is_refused(tmp_path):
    root = tmp_path / "root"
    (root / "some_run").mkdir(parents=True)
    with pytest.raises(ConfigError, match="not empty and has no sweep.json"):
        sweep.run_sweep(write_sweep(tmp_path), root, dry_run=True)
    (root / "sweep.json").write_text("{not json")
    with pytest.raises(ConfigError, match="sweep.json is unreadable"):
        sweep.run_sweep(write_sweep(tmp_path), root, dry_run=True)


@pytest.mark.parametrize("dry_run", [True, False])
def test_root_that_is_a_file_is_refused(tmp_path, dry_run):
    root = tmp_path / "root"
    root.write_text("not a directory")
    with pytest.raises(ConfigError, match=f"--root={root}: {root} is a file, not a directory"):
        sweep.run_sweep(write_sweep(tmp_path), root, dry_run=dry_run)
    with pytest.raises(ConfigError, match=f"--root={root}/sub: {root} is a file"):
        sweep.run_sweep(write_sweep(tmp_path), root / "sub", dry_run=dry_run)
    assert root.read_text() == "not a directory"


def test_a_second_sweep_process_on_the_same_root_is_refused(tmp_path):
    root = make_root(tmp_path)
    with open(root / sweep.LOCK, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ConfigError, match=r"in use by another posrec.sweep \("):
            sweep.run_sweep(write_sweep(tmp_path), root)


def test_a_root_taken_by_another_sweep_before_the_lock_is_refused(tmp_path, monkeypatch):
    """Two sweeps started together on a new root both pass the first check; the one that
    gets the lock second re-checks under it and is refused, leaving the manifest alone."""
    root = tmp_path / "root"
    (tmp_path / "o").mkdir()
    other = sweep.load(write_sweep(tmp_path / "o", name="other"))
    real_lock = config_lib.exclusive_lock

    def first_comes_the_other_sweep(path, holder):
        config_lib.write_json_atomic(root / sweep.MANIFEST, sweep.check_root(other, root))
        return real_lock(path, holder)

    monkeypatch.setattr(config_lib, "exclusive_lock", first_comes_the_other_sweep)
    with pytest.raises(ConfigError, match="holds runs of sweep 'other'"):
        sweep.run_sweep(write_sweep(tmp_path), root)
    assert json.loads((root / sweep.MANIFEST).read_text())["sweep"] == "other"
    assert sorted(p.name for p in root.iterdir()) == sorted([sweep.LOCK, sweep.MANIFEST])


def test_run_state_of_corrupt_and_partial_directories(tmp_path):
    assert sweep.run_state(tmp_path / "missing") == ("new", "")
    (tmp_path / "config.json").write_text("{}")
    assert sweep.run_state(tmp_path) == ("resume", "")
    (tmp_path / "results.json").write_text('{"valid": ')
    state, detail = sweep.run_state(tmp_path)
    assert state == "failed" and "unreadable" in detail


def test_override_values_survive_the_command_line(tmp_path):
    """Each override, formatted by Run.command, parses back to the same config value."""
    path = tmp_path / "c.py"
    path.write_text("from posrec.config_lib import default_config\n"
                    "def get_config():\n    return default_config()\n")
    overrides = {"eval.ks": [1, 10, 20], "data.has_real_time": False, "train.learning_rate": 1e-4,
                 "model.positional": "rope", "data.path": "/a b/c.csv.gz", "seed": 3}
    run = sweep.Run("d", "v", "default", 3, str(path), overrides)
    argv = run.command(tmp_path)
    workdir = tmp_path / "d" / "v" / "default" / "seed3"
    assert argv[1:5] == ["-m", "posrec.main", f"--config={path}", f"--workdir={workdir}"]
    args = ["prog", argv[3]] + argv[5:]
    fv = flags.FlagValues()  # the parser posrec.main uses, on this argv
    config_flags.DEFINE_config_file("config", None, flag_values=fv, sys_argv=args)
    fv(args)
    cfg = fv.config
    assert cfg.eval.ks == (1, 10, 20) and cfg.data.has_real_time is False
    assert cfg.train.learning_rate == 1e-4 and cfg.model.positional == "rope"
    assert cfg.data.path == "/a b/c.csv.gz" and cfg.seed == 3


@pytest.mark.parametrize("name", ["positional", "kernel_ablation", "others"])
def test_shipped_sweep_files_are_valid(name, monkeypatch):
    monkeypatch.chdir(REPO)
    s = sweep.load(REPO / "configs" / "sweeps" / f"{name}.py")
    variants = {r.variant for r in s.runs}
    assert s.baseline in variants
    for r in s.runs:  # every run's data comes from ../shared/data, every config is valid
        assert Path(r.overrides["data.path"]).parent == (REPO.parent / "shared" / "data")
        assert Path(r.config).parent == REPO / "configs"
        config_lib.validate(r.config_dict())
    if name == "positional":
        assert {"absolute", "none", "rope", "alibi", "learned_bias", "kernel",
                "kernel+absolute"} <= variants
        assert {r.dataset for r in s.runs} == {"ml-1m", "beauty", "video_games"}
        assert {r.seed for r in s.runs} == {0, 1, 2}
