"""Experiment runner: a grid of (data set x variant x hyperparameters x seed) training runs.

    python -m posrec.sweep --sweep=configs/sweeps/positional.py --root=runs/positional \
        [--parallel=2 [--cpus_per_run=1]] [--dry_run] [--extend] [--only='beauty/*']

A sweep file defines `get_sweep()` returning a dict:

    name      the sweep's name (recorded in ROOT/sweep.json; another sweep is refused there)
    datasets  {data set: config file, or {"config": file, "overrides": {key: value}}}
    variants  {variant: {key: value}}        what is compared (e.g. model.positional)
    seeds     (0, 1, 2)
    variant_seeds  {variant: (0, 1, 2)}     optional; these variants use these seeds instead
                                           (e.g. more seeds for the two best of an ablation)
    hparams   {key: (value, ...)}            optional; every variant gets the same grid
    common    {key: value}                   optional; applied to every run
    baseline  the variant `posrec.report` compares against (default "absolute" if it is
              a variant, else the first)

Keys are dotted config keys (`model.positional`), checked against
`config_lib.default_config()` (and the type of the default value) before anything runs;
values are checked by `config_lib.validate` when the run starts, so a bad value fails that
run only. Each key is set in one place. Fair comparison is structural: a variant may not
set the seed, the training budget (`train.num_epochs`, `train.patience`,
`train.eval_every`, `train.batch_size`: steps per epoch), the input window
(`model.max_len`, which also sets what evaluation sees), the data or the evaluation, so all
variants of a data set get the same data, budget and hyperparameter grid; `posrec.report`
selects each variant's hyperparameters on mean validation NDCG@10 and reports test
metrics. Relative file paths (config files, `data.path`) are resolved against the current
directory.

`--only=PATTERN[,PATTERN]` trains only the runs whose name (`<data set>/<variant>/<hparams>/
seed<k>`) matches a shell pattern, e.g. `--only='beauty/*'` to finish one data set's table
first; the others stay pending in the status and a later invocation trains them. A run
name whose label has several hyperparameters may be passed whole (its commas are kept).

`--dry_run` prints the plan: each run's state and, for runs still to train, whether its
full config passes `config_lib.validate` (nothing is written).

Each run trains in its own subprocess (`python -m posrec.main --config=FILE
--workdir=ROOT/<data set>/<variant>/<hparams>/seed<k> --config.key=value ...`) with its
output in `train.log` and its attempts in `attempts.jsonl` (wall seconds, exit code).
Finished runs (results.json) are skipped, interrupted ones resume from their checkpoint, so
rerunning the same command after a crash, reboot or kill continues the sweep. A failing run
is reported (its exit code and last error line, in the final table and in
`ROOT/status.json`, rewritten after every change) and the others go on. SIGTERM/SIGINT
stop the sweep cleanly: running trainings save a checkpoint and exit 75, to be resumed by
the next invocation; a second signal kills them.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import fnmatch
import functools
import hashlib
import importlib.util
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections
from absl import app, flags

from posrec import config_lib
from posrec.cli import parse_flags, report_errors
from posrec.errors import EXIT_INTERRUPTED, ConfigError

SWEEP_KEYS = ("name", "datasets", "variants", "seeds", "variant_seeds", "hparams", "common",
              "baseline")
# Keys a variant may not set: they define the task and the budget every variant shares.
SHARED_PREFIXES = ("data.", "eval.")
SHARED_KEYS = ("seed", "train.num_epochs", "train.patience", "train.eval_every",
               "train.batch_size", "model.max_len")
PATH_KEYS = ("data.path",)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=,-]*$")
MANIFEST = "sweep.json"
STATUS = "status.json"
LOCK = "sweep.lock"


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of a sweep.

    Attributes:
        dataset, variant, hparams, seed: its coordinates in the grid (`hparams` is the
            readable name of one hyperparameter combination, e.g. "dropout=0.2", or "default").
        config: absolute path of the config file.
        overrides: dotted key -> value, applied on top of the config file (includes "seed").
    """

    dataset: str
    variant: str
    hparams: str
    seed: int
    config: str
    overrides: dict[str, Any]

    @property
    def name(self) -> str:
        """The workdir relative to the sweep root."""
        return f"{self.dataset}/{self.variant}/{self.hparams}/seed{self.seed}"

    def command(self, root: Path) -> list[str]:
        """The `python -m posrec.main ...` argv that trains (or resumes) this run."""
        argv = [sys.executable, "-m", "posrec.main", f"--config={self.config}",
                f"--workdir={Path(root).absolute() / self.name}"]
        return argv + [f"--config.{k}={_flag_value(v)}" for k, v in self.overrides.items()]

    def config_dict(self) -> ml_collections.ConfigDict:
        """The run's full config, as posrec.main will build it (config file + overrides)."""
        spec = importlib.util.spec_from_file_location("posrec_sweep_config", self.config)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        config = module.get_config()
        config.update_from_flattened_dict(self.overrides)
        return config

    def spec(self) -> dict[str, Any]:
        """JSON description stored in the manifest (what makes two runs the same run)."""
        return dict(run=self.name, dataset=self.dataset, variant=self.variant, hparams=self.hparams,
                    seed=self.seed, config=self.config, overrides=self.overrides)


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A validated sweep file. `grid` is its canonical JSON form (hashed into the manifest)."""

    name: str
    path: str
    grid: dict[str, Any]
    runs: tuple[Run, ...]
    baseline: str

    @property
    def digest(self) -> str:
        text = json.dumps(self.grid, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _flag_value(value: Any) -> str:
    """A value as ml_collections' command-line parser reads it back (str raw, tuples literal)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return repr(tuple(value))
    return repr(value)


def _name_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "-".join(_name_value(v) for v in value)
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", _flag_value(value))


def _canonical(value: Any) -> Any:
    """JSON-stable form: tuples become lists (ml_collections turns them back into tuples)."""
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def _default_keys() -> dict[str, Any]:
    return config_lib.flatten(config_lib.to_dict(config_lib.default_config()))


def _check_overrides(where: str, overrides: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    """Known keys, values of the default's type (values themselves: config_lib.validate)."""
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where} must be a dict of config keys, got {overrides!r}")
    out = {}
    for key, value in overrides.items():
        if key not in defaults:
            close = difflib.get_close_matches(str(key), list(defaults), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown config key {key!r}{hint}")
        probe = config_lib.default_config()
        section, _, leaf = key.rpartition(".")
        try:
            (probe[section] if section else probe)[leaf] = _canonical(value)
        except (TypeError, ValueError) as err:
            raise ConfigError(
                f"{where}: {key}={value!r} does not fit the key's type "
                f"({type(defaults[key]).__name__}, default {defaults[key]!r})"
            ) from err
        out[key] = _canonical(value)
    return out


def _check_name(kind: str, name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(
            f"{kind} name {name!r} must be a non-empty directory name of letters, digits and _.+=,-"
        )
    return name


def _resolve(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path)) if path else path


def _config_file(ref: Any, where: str) -> str:
    if not isinstance(ref, str) or not ref:
        raise ConfigError(f"{where}: the config must be a file path, got {ref!r}")
    return _resolve(ref if ref.endswith(".py") else f"configs/{ref}.py")


def _check_seeds(where: str, seeds: Any) -> list[int]:
    if not isinstance(seeds, (list, tuple)) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in seeds
    ) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where} must be a list of distinct ints, got {seeds!r}")
    return list(seeds)


def _hparam_names(keys: list[str]) -> dict[str, str]:
    """Short, unique labels for hyperparameter keys: the last component unless ambiguous."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def build(raw: Any, path: str = "<sweep>") -> Sweep:
    """Validate a `get_sweep()` dict and expand it into runs (seed-major order)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: get_sweep() must return a dict, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(SWEEP_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown sweep entries {unknown}; allowed: {list(SWEEP_KEYS)}")
    for key in ("name", "datasets", "variants", "seeds"):
        if key not in raw:
            raise ConfigError(f"{path}: get_sweep() must define {key!r}")
    name = _check_name("sweep", raw["name"])
    defaults = _default_keys()

    datasets = {}
    if not isinstance(raw["datasets"], dict):
        raise ConfigError(f"{path}: datasets must be a dict")
    for ds, entry in raw["datasets"].items():
        _check_name("data set", ds)
        entry = {"config": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict) or set(entry) - {"config", "overrides"}:
            raise ConfigError(
                f"{path}: datasets[{ds!r}] must be a config path or "
                '{"config": path, "overrides": {...}}'
            )
        over = _check_overrides(f"{path}: datasets[{ds!r}]", entry.get("overrides", {}), defaults)
        over = {k: (_resolve(v) if k in PATH_KEYS else v) for k, v in over.items()}
        datasets[ds] = dict(config=_config_file(entry.get("config"), f"datasets[{ds!r}]"),
                            overrides=over)

    if not isinstance(raw["variants"], dict):
        raise ConfigError(f"{path}: variants must be a dict of {{name: overrides}}")
    variants = {}
    for var, over in raw["variants"].items():
        _check_name("variant", var)
        over = _check_overrides(f"{path}: variants[{var!r}]", over, defaults)
        for key in over:
            if key in SHARED_KEYS or key.startswith(SHARED_PREFIXES):
                raise ConfigError(
                    f"{path}: variants[{var!r}] sets {key}: the seed, training budget (epochs, "
                    "patience, validation cadence, batch size), input window (model.max_len), "
                    "data and evaluation must be the same for every variant (use `common`, "
                    "`hparams`, `seeds` or the data set's overrides)"
                )
        variants[var] = over

    seeds = _check_seeds(f"{path}: seeds", raw["seeds"])
    variant_seeds = raw.get("variant_seeds") or {}
    if not isinstance(variant_seeds, dict) or set(variant_seeds) - set(variants):
        raise ConfigError(f"{path}: variant_seeds must map variants of this sweep to seeds")
    variant_seeds = {v: _check_seeds(f"{path}: variant_seeds[{v!r}]", s)
                     for v, s in variant_seeds.items()}
    if not all(variant_seeds.values()):
        raise ConfigError(f"{path}: empty grid: a variant_seeds entry lists no seeds")

    hparams_raw = raw.get("hparams") or {}
    if not isinstance(hparams_raw, dict):
        raise ConfigError(f"{path}: hparams must be a dict of {{key: [values]}}")
    hparams = {}
    for key, values in hparams_raw.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(
                f"{path}: empty grid: hparams[{key!r}] must be a non-empty list of values"
            )
        hparams[key] = [_check_overrides(f"{path}: hparams", {key: v}, defaults)[key]
                        for v in values]
        if key.startswith(SHARED_PREFIXES):
            raise ConfigError(f"{path}: hparams may not tune {key} (use data sets / common)")
    common = _check_overrides(f"{path}: common", raw.get("common", {}) or {}, defaults)
    common = {k: (_resolve(v) if k in PATH_KEYS else v) for k, v in common.items()}

    empty = [k for k, v in (("datasets", datasets), ("variants", variants), ("seeds", seeds))
             if not v]
    if empty:
        raise ConfigError(f"{path}: empty grid: no {', '.join(empty)}")

    # Each key is set in one place, so no run depends on an order of precedence.
    layers = {
        "common": set(common),
        "hparams": set(hparams),
        "datasets": {k for e in datasets.values() for k in e["overrides"]},
        "variants": {k for o in variants.values() for k in o},
    }
    for (a, keys_a), (b, keys_b) in itertools.combinations(layers.items(), 2):
        if keys_a & keys_b:
            raise ConfigError(f"{path}: {sorted(keys_a & keys_b)} set in both {a} and {b}")
    for where, keys in layers.items():
        if "seed" in keys:
            raise ConfigError(f"{path}: {where} sets seed; seeds come from `seeds`")

    baseline = raw.get("baseline", "absolute" if "absolute" in variants else next(iter(variants)))
    if baseline not in variants:
        raise ConfigError(f"{path}: baseline {baseline!r} is not one of the variants")

    labels = _hparam_names(list(hparams))
    combos = []
    for values in itertools.product(*hparams.values()):
        combo = dict(zip(hparams, values))
        label = ",".join(f"{labels[k]}={_name_value(v)}" for k, v in combo.items()) or "default"
        combos.append((label, combo))
    if len({label for label, _ in combos}) != len(combos):
        raise ConfigError(f"{path}: two hyperparameter combinations get the same directory name")

    seeds_of = {v: variant_seeds.get(v, seeds) for v in variants}
    runs = []
    for seed in sorted({s for ss in seeds_of.values() for s in ss}):
        for ds, entry in datasets.items():
            for label, combo in combos:
                for var, over in variants.items():
                    if seed not in seeds_of[var]:
                        continue
                    overrides = {**entry["overrides"], **common, **combo, **over, "seed": seed}
                    runs.append(Run(ds, var, label, seed, entry["config"], overrides))
    grid = dict(name=name, datasets=datasets, variants=variants, seeds=list(seeds),
                variant_seeds=variant_seeds, hparams=hparams, common=common, baseline=baseline)
    return Sweep(name=name, path=str(path), grid=grid, runs=tuple(runs), baseline=baseline)


def load(path: str | Path) -> Sweep:
    """Import a sweep file, call its `get_sweep()` and `build` it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file {path} not found")
    spec = importlib.util.spec_from_file_location(f"posrec_sweep_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        get_sweep = module.get_sweep
    except AttributeError as err:
        raise ConfigError(f"{path} defines no get_sweep()") from err
    return build(get_sweep(), str(path))


# ----------------------------------------------------------------------------- the root


def read_manifest(root: Path) -> dict[str, Any] | None:
    """ROOT/sweep.json, or None when the root has none."""
    path = Path(root) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
        ok = isinstance(manifest["sweep"], str) and all(
            isinstance(r, dict) and "run" in r for r in manifest["runs"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ConfigError(f"{path} is unreadable ({err}); it is not a posrec.sweep root") from err
    if not ok:
        raise ConfigError(f"{path} is not a posrec.sweep manifest (written by another version?)")
    return manifest


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += _diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


def check_root(sweep: Sweep, root: Path, extend: bool = False) -> dict[str, Any]:
    """The manifest to (re)write, or ConfigError if ROOT holds another sweep's runs.

    A root is accepted when it is new or empty, or holds this sweep with the same grid; with
    `extend`, also a grown grid of this sweep whose every existing run is unchanged.
    """
    root = Path(root)
    manifest = dict(sweep=sweep.name, file=sweep.path, digest=sweep.digest, grid=sweep.grid,
                    runs=[r.spec() for r in sweep.runs])  # a list: keeps the grid's order
    existing = next((p for p in (root, *root.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(
            f"--root={root}: {existing} is a file, not a directory; pass a sweep root "
            "directory (a new one is created)"
        )
    old = read_manifest(root)
    if old is None:
        if root.exists() and any(p.name != LOCK for p in root.iterdir()):
            raise ConfigError(
                f"{root} is not empty and has no {MANIFEST}: it does not hold a posrec sweep; "
                "use a new --root"
            )
        return manifest
    if old["sweep"] != sweep.name:
        raise ConfigError(
            f"{root} holds runs of sweep {old['sweep']!r} ({old.get('file')}), not "
            f"{sweep.name!r}: use another --root"
        )
    if old.get("digest") == sweep.digest:
        return manifest
    changes = _diff(old.get("grid"), sweep.grid)
    if not extend:
        raise ConfigError(
            f"{root} holds sweep {sweep.name!r} with a different grid ("
            + "; ".join(changes[:5])
            + "). Use a new --root, or --extend if you only added data sets, variants, seeds "
            "or hyperparameter values"
        )
    new_runs = {spec["run"]: spec for spec in manifest["runs"]}
    changed = [spec["run"] for spec in old["runs"] if new_runs.get(spec["run"]) != spec]
    if changed:
        raise ConfigError(
            f"--extend: {len(changed)} existing runs of {root} would change or disappear "
            f"(e.g. {changed[0]}); use a new --root"
        )
    return manifest


def run_state(workdir: Path) -> tuple[str, str]:
    """("done" | "resume" | "new" | "failed", detail) of one run directory."""
    results = workdir / "results.json"
    if results.exists():
        try:
            ok = "test" in json.loads(results.read_text())
        except (OSError, json.JSONDecodeError):
            ok = False
        return ("done", "") if ok else ("failed", f"{results} is unreadable")
    if (workdir / "config.json").exists():
        return "resume", ""
    return "new", ""


def last_error(log: Path) -> str:
    """The `posrec: error:` line of a log, else its last non-empty line."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    errors = [ln for ln in lines if ln.startswith("posrec:")]
    return (errors or lines or [""])[-1][:300]


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the sweep dies, even by SIGKILL (Linux; else no-op)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# XLA:CPU flags for a run pinned to one core: no intra-op thread pool to contend with.
# (Older posrec added a bare `intra_op_parallelism_threads=1`, which XLA ignored.)
ONE_THREAD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false"


def only_patterns(pieces: Sequence[str]) -> list[str]:
    """--only's patterns from its comma-split pieces. A label of several hyperparameters holds
    commas too (`lr=0.001,dropout=0.2`), so a piece whose first path component is `key=...`
    continues the previous pattern instead of starting one: a data set name has no `=`."""
    patterns: list[str] = []
    for piece in pieces:
        if patterns and "=" in piece.split("/", 1)[0]:
            patterns[-1] += "," + piece
        else:
            patterns.append(piece)
    return patterns


def selected_by(name: str, only: Sequence[str]) -> bool:
    """Whether run `name` is one `--only` trains: it matches a shell pattern of `only`, or
    `only` is empty."""
    return not only or any(fnmatch.fnmatchcase(name, p) for p in only)


def cpu_slots(parallel: int, cpus_per_run: int) -> list[tuple[int, ...]]:
    """`parallel` disjoint groups of `cpus_per_run` cores from this process's affinity set;
    ConfigError if there are not enough."""
    cores = sorted(os.sched_getaffinity(0))
    if parallel * cpus_per_run > len(cores):
        raise ConfigError(
            f"--parallel={parallel} x --cpus_per_run={cpus_per_run} needs "
            f"{parallel * cpus_per_run} cores; this process may use {len(cores)} ({cores})"
        )
    return [tuple(cores[i * cpus_per_run:(i + 1) * cpus_per_run]) for i in range(parallel)]


def run_sweep(
    sweep_path: str | Path, root: str | Path, parallel: int = 1, dry_run: bool = False,
    extend: bool = False, out=sys.stdout, only: Sequence[str] = (), cpus_per_run: int = 0,
) -> dict[str, Any]:
    """Run every unfinished run of a sweep under `root`; returns the final status dict.

    With `dry_run`, only validates and prints the plan (nothing is written). With `only`
    (shell patterns), trains only the runs whose name matches one of them. With
    `cpus_per_run` > 0, each running training is pinned to its own cores (and with 1 core
    runs XLA single-threaded): on a small CPU machine two pinned runs side by side trained
    ~1.2x more per hour than one run on all cores (README, "Experiments").
    """
    if parallel < 1:
        raise ConfigError(f"--parallel={parallel} must be >= 1")
    if cpus_per_run < 0:
        raise ConfigError(f"--cpus_per_run={cpus_per_run} must be >= 0")
    slots = cpu_slots(parallel, cpus_per_run) if cpus_per_run else None
    sweep = load(sweep_path)
    selected = {r.name for r in sweep.runs if selected_by(r.name, only)}
    if not selected:
        raise ConfigError(f"--only={','.join(only)} matches none of the {len(sweep.runs)} runs "
                          f"of {sweep.name} (e.g. {sweep.runs[0].name})")
    root = Path(root).absolute()
    manifest = check_root(sweep, root, extend)
    missing = sorted({r.config for r in sweep.runs if not Path(r.config).is_file()})
    if missing:
        raise ConfigError(f"config files not found: {missing}")

    if dry_run:
        states = []
        for r in sweep.runs:
            state, detail = run_state(root / r.name)
            if state in ("new", "resume"):
                try:  # reported, not refused: the run itself fails the same way
                    config_lib.validate(r.config_dict())
                except ConfigError as err:
                    detail = f"will fail: {err}"
            if r.name not in selected:
                state, detail = "skip", "(not in --only)"
            states.append((r, state, detail))
            print(f"{state:7s} {r.name} {detail}", file=out)
        todo = [r for r, s, _ in states if s in ("new", "resume")]
        print(f"{len(todo)} of {len(states)} runs to start; first command:", file=out)
        if todo:
            print(" ".join(todo[0].command(root)), file=out)
        return dict(sweep=sweep.name, runs=[dict(run=r.name, state=s) for r, s, _ in states])

    root.mkdir(parents=True, exist_ok=True)
    with config_lib.exclusive_lock(root / LOCK, "another posrec.sweep"):
        manifest = check_root(sweep, root, extend)  # again: another sweep may have written it
        config_lib.write_json_atomic(root / MANIFEST, manifest)
        return _execute(sweep, root, parallel, out, selected, slots)


@dataclasses.dataclass
class _Attempt:
    run: Run
    proc: subprocess.Popen
    log: Any  # the open train.log
    started: str
    t0: float
    cores: tuple[int, ...] | None = None  # the cores it is pinned to (--cpus_per_run)


def _execute(
    sweep: Sweep, root: Path, parallel: int, out, selected: set[str],
    slots: list[tuple[int, ...]] | None = None,
) -> dict[str, Any]:
    entries = {}
    for r in sweep.runs:
        state, detail = run_state(root / r.name)
        entries[r.name] = dict(
            run=r.name, dataset=r.dataset, variant=r.variant, hparams=r.hparams, seed=r.seed,
            state="pending" if state in ("new", "resume") else state, resume=state == "resume",
            launched=False, returncode=None, seconds=None, error=detail,
        )
    status = dict(sweep=sweep.name, root=str(root), pid=os.getpid(), started=_now(),
                  finished=None, runs=list(entries.values()))

    def save() -> None:
        status["updated"] = _now()
        status["counts"] = _counts(status["runs"])
        config_lib.write_json_atomic(root / STATUS, status)

    queue = [r for r in sweep.runs
             if entries[r.name]["state"] == "pending" and r.name in selected]
    total = len(queue)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if parallel > 1:  # JAX grabs 75% of a GPU per process by default: N would not fit
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    waiting = sum(e["state"] == "pending" for e in entries.values()) - total
    later = f", {waiting} left for later (--only)" if waiting else ""
    print(f"sweep {sweep.name}: {len(sweep.runs)} runs, {len(sweep.runs) - total - waiting} "
          f"done or broken, {total} to run{later} (--parallel={parallel}) in {root}",
          file=out, flush=True)
    running: list[_Attempt] = []
    signals = []

    def on_signal(signum, frame):
        # First signal: ask the trainings to checkpoint and exit (75); later ones: kill.
        signals.append(signum)
        for a in list(running):
            if a.proc.poll() is None:
                a.proc.send_signal(signal.SIGTERM if len(signals) == 1 else signal.SIGKILL)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    started = finished = 0
    announced = False
    try:
        save()
        while (queue and not signals) or running:
            while queue and not signals and len(running) < parallel:
                run = queue.pop(0)
                started += 1
                cores = None
                if slots is not None:
                    cores = next(c for c in slots if all(a.cores != c for a in running))
                running.append(_launch(run, root, env, cores))
                entries[run.name].update(state="running", launched=True)
                verb = "resume" if entries[run.name]["resume"] else "start "
                print(f"[{started}/{total}] {verb} {run.name}", file=out, flush=True)
                save()
            time.sleep(0.2)
            for a in [a for a in running if a.proc.poll() is not None]:
                running.remove(a)
                finished += 1
                e = _finish(entries[a.run.name], a, root / a.run.name, stopping=bool(signals))
                tail = f": {e['error']}" if e["error"] else ""
                print(f"[{finished}/{total}] {e['state']:11s} {a.run.name} "
                      f"({e['seconds']:.0f}s){tail}", file=out, flush=True)
                save()
            if signals and running and not announced:
                announced = True
                print(f"stopping: {len(running)} runs save a checkpoint and exit "
                      "(signal again to kill them)", file=out, flush=True)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        status["finished"] = None if (queue or running or signals) else _now()
        save()
    print_table(status, out)
    return status


def _launch(
    run: Run, root: Path, env: dict[str, str], cores: tuple[int, ...] | None = None
) -> _Attempt:
    workdir = root / run.name
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = run.command(root)
    started = _now()
    log = open(workdir / "train.log", "a")  # noqa: SIM115 (closed in _finish)
    pinned = f" (cores {list(cores)})" if cores is not None else ""
    log.write(f"\n=== posrec.sweep {started}{pinned}: {' '.join(cmd)}\n")
    if cores is not None and len(cores) == 1:
        env = dict(env, XLA_FLAGS=f"{env.get('XLA_FLAGS', '')} {ONE_THREAD_XLA_FLAGS}".strip())
    log.flush()
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
        start_new_session=True,  # signals reach a training only through the sweep
        preexec_fn=functools.partial(_child_setup, cores),
    )
    return _Attempt(run, proc, log, started, time.time(), cores)


def _child_setup(cores: tuple[int, ...] | None) -> None:
    """In the child, before exec: die with the sweep; pin to `cores` if given."""
    _die_with_parent()
    if cores is not None:
        os.sched_setaffinity(0, cores)


def _finish(entry: dict[str, Any], attempt: _Attempt, workdir: Path,
            stopping: bool = False) -> dict[str, Any]:
    """Record one ended attempt in attempts.jsonl and the run's status entry.

    A SIGKILL the sweep did not send (`stopping`: it got a signal itself) is a failure, not
    an interruption: most likely the out-of-memory killer, and a loop that reruns the sweep
    while it exits 75 would otherwise retry that run forever. The next invocation still
    resumes it from its checkpoint.
    """
    attempt.log.close()
    returncode, seconds = attempt.proc.returncode, round(time.time() - attempt.t0, 1)
    with open(workdir / "attempts.jsonl", "a") as f:
        f.write(json.dumps(dict(started=attempt.started, seconds=seconds,
                                returncode=returncode)) + "\n")
    state, detail = run_state(workdir)
    if returncode == 0 and state == "done":
        entry.update(state="done", error="")
    elif returncode in (EXIT_INTERRUPTED, -signal.SIGTERM) or (
            stopping and returncode == -signal.SIGKILL):
        entry.update(state="interrupted", error="stopped; rerun the sweep to resume it")
    elif returncode == -signal.SIGKILL:
        entry.update(state="failed", error="killed by SIGKILL, not by the sweep (the "
                     "out-of-memory killer?); the next invocation resumes it")
    else:
        entry.update(state="failed",
                     error=detail or last_error(workdir / "train.log") or f"exit {returncode}")
    entry.update(returncode=returncode, seconds=seconds)
    return entry


def _counts(runs: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in runs:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    return counts


def print_table(status: dict[str, Any], out=sys.stdout) -> None:
    """The status of every run, failures with their error line."""
    runs = status["runs"]
    width = max([len(r["run"]) for r in runs] + [3])
    print(f"\n{'run':{width}s}  {'state':11s}  {'seconds':>7s}  note", file=out)
    for r in runs:
        secs = "" if r["seconds"] is None else f"{r['seconds']:.0f}"
        note = r["error"] or ("(already done)" if r["state"] == "done" and not r["launched"]
                              else "")
        print(f"{r['run']:{width}s}  {r['state']:11s}  {secs:>7s}  {note}", file=out)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(status["counts"].items()))
    print(f"\n{counts}; status in {status['root']}/{STATUS}", file=out)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    only = only_patterns(f.only)
    with report_errors(f.debug):
        status = run_sweep(f.sweep, f.root, f.parallel, f.dry_run, f.extend, only=only,
                           cpus_per_run=f.cpus_per_run)
    if f.dry_run:
        return
    states = {r["state"] for r in status["runs"] if selected_by(r["run"], only)}
    if states & {"interrupted", "pending", "running"}:
        sys.exit(EXIT_INTERRUPTED)  # stopped by a signal: rerun to continue
    sys.exit(1 if states - {"done"} else 0)


if __name__ == "__main__":
    # Flags are defined here, not at import, because posrec.report imports this module.
    flags.DEFINE_string("sweep", None, "Sweep file (configs/sweeps/<name>.py).", required=True)
    flags.DEFINE_string("root", None, "Directory holding the sweep's runs.", required=True)
    flags.DEFINE_integer("parallel", 1, "Runs trained at the same time (subprocesses).")
    flags.DEFINE_integer("cpus_per_run", 0, "Pin each running training to this many cores "
                         "of its own (1: also single-threaded XLA); 0: no pinning.")
    flags.DEFINE_bool("dry_run", False, "Validate and print the plan; write and run nothing.")
    flags.DEFINE_bool("extend", False, "Accept a grown grid of the same sweep in --root.")
    flags.DEFINE_list("only", [], "Train only runs whose name matches one of these shell "
                      "patterns (e.g. 'beauty/*'); the others stay pending.")
    flags.DEFINE_bool("debug", False, "Show tracebacks for posrec errors.")
    app.run(main, flags_parser=parse_flags)
