"""Tables of a sweep: mean ± std over seeds, relative change and paired tests vs a baseline.

    python -m posrec.report --root=runs/positional [--baseline=absolute] [--out=DIR]

Reads the runs listed in ROOT/sweep.json (written by `posrec.sweep`). For every data set and
variant, the hyperparameter combination with the best mean validation NDCG@10 over its
finished seeds is selected (the same grid for every variant; test metrics never take part
in the choice), and its test metrics are reported as mean ± sample std over seeds, with the
number of seeds, the mean number of epochs trained and the mean wall time per run
(`wall_seconds`: all attempts of a run summed, including attempts killed with the sweep;
runs trained in parallel share the CPUs).

Significance: per-user test NDCG@10 (from `per_user_test.npz`), averaged over each variant's
seeds, is compared user by user with the baseline's by a paired t-test and a Wilcoxon
signed-rank test, both two-sided with the normal approximation (every data set here has
hundreds to tens of thousands of users). These see the users' variation, not the seeds':
whether a gain survives retraining is asked by Welch's t-test over the per-seed test
NDCG@10 of the two variants (`p (seeds)`, Student's t; it needs 2 seeds on each side, and
with 3 it can only find large, consistent effects).

Writes into --out (default ROOT/report): `report.md`, `results.csv` (one row per data set and
variant), `hparams.csv` (every hyperparameter combination with its validation score) and
`runs.csv` (every run of the sweep with its state). Unfinished, failed and missing runs are
listed, never dropped silently. Sampled (legacy) metrics, when runs have them, appear only in
columns and a table labelled "sampled".
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from absl import app, flags, logging

from posrec import config_lib, sweep
from posrec.cli import parse_flags, report_errors
from posrec.errors import ConfigError

METRICS = ("ndcg@10", "hr@10", "cov@10", "ndcg@20", "hr@20", "cov@20")
SELECT_ON = "ndcg@10"  # validation metric that picks the hyperparameters
TEST_ON = 10  # K of the per-user NDCG compared by the significance tests


# ----------------------------------------------------------------------------- statistics


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x [n], ties sharing the mean of the ranks they span."""
    values, inverse, counts = np.unique(np.asarray(x), return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts  # 0-based rank of each distinct value's first copy
    return (first + (counts + 1) / 2.0)[inverse.ravel()]


def _two_sided_normal_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0))


def paired_t(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(t, two-sided p) of the paired differences a - b [n]; p from the normal approximation.

    t = mean(d) / (std(d, ddof=1) / sqrt(n)). Identical pairs give (nan, 1.0).
    """
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    n = len(d)
    if n < 2:
        return float("nan"), 1.0
    sd = d.std(ddof=1)
    if sd == 0:
        return (float("nan"), 1.0) if d.mean() == 0 else (math.copysign(math.inf, d.mean()), 0.0)
    t = float(d.mean() / (sd / math.sqrt(n)))
    return t, _two_sided_normal_p(t)


def wilcoxon(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(z, two-sided p) of the Wilcoxon signed-rank test of a - b [n], normal approximation.

    Zero differences are dropped (Wilcoxon's rule); |d| is ranked with average ranks for
    ties; W+ = sum of the ranks of positive differences, E[W+] = n(n+1)/4 and
    Var[W+] = n(n+1)(2n+1)/24 - sum over tie groups (t^3 - t)/48; no continuity correction.
    """
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    d = d[d != 0]
    n = len(d)
    if n == 0:
        return float("nan"), 1.0
    ranks = average_ranks(np.abs(d))
    w_plus = float(ranks[d > 0].sum())
    _, ties = np.unique(np.abs(d), return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24.0 - float(np.sum(ties**3 - ties)) / 48.0
    if var <= 0:
        return float("nan"), 1.0
    z = (w_plus - n * (n + 1) / 4.0) / math.sqrt(var)
    return z, _two_sided_normal_p(z)


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) by its continued fraction (modified Lentz).

    The fraction converges fast for x < (a + 1) / (a + b + 2); otherwise the symmetry
    I_x(a, b) = 1 - I_{1-x}(b, a) is used.
    """
    if x <= 0.0 or x >= 1.0:
        return float(x >= 1.0)
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _betainc(b, a, 1.0 - x)
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    frac = d
    for m in range(1, 500):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            frac *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * frac / a


def student_t_p(t: float, df: float) -> float:
    """Two-sided p of Student's t with df (> 0, not necessarily whole) degrees of freedom:
    P(|T| >= |t|) = I_{df / (df + t^2)}(df / 2, 1 / 2)."""
    if math.isnan(t):
        return 1.0
    return _betainc(df / 2.0, 0.5, df / (df + t * t)) if math.isfinite(t) else 0.0


def welch_t(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(t, df, two-sided p) of Welch's unequal-variance t-test of mean(a) vs mean(b).

    Used over seeds: a [n_a] and b [n_b] are one test metric per seed of two variants (seeds
    of different variants are not paired). df is Welch-Satterthwaite's; p is from Student's
    t, not the normal, because n is 2-5 here. Fewer than 2 values on a side, or no variance
    on either side, give (nan, nan, nan): the test needs each side's spread.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return float("nan"), float("nan"), float("nan")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return float("nan"), float("nan"), float("nan")
    t = float((a.mean() - b.mean()) / math.sqrt(va + vb))
    df = float((va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)))
    return t, df, student_t_p(t, df)


def ndcg_per_user(rank_U: np.ndarray, k: int = TEST_ON) -> np.ndarray:
    """NDCG@k of one relevant item at 1-based `rank_U` [U] (protocol.md)."""
    rank = np.asarray(rank_U, np.float64)
    return np.where(rank <= k, 1.0 / np.log2(rank + 1.0), 0.0)


# ----------------------------------------------------------------------------- collection


_ATTEMPT_HEADER = re.compile(r"^=== posrec\.sweep (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)")
_ABSL_TIME = re.compile(r"^[IWEF](\d\d)(\d\d) (\d\d):(\d\d):(\d\d)")


def wall_seconds(workdir: Path) -> float | None:
    """Wall seconds of every attempt of a run, or None if none is known.

    Attempts that ended while the sweep ran are in `attempts.jsonl`. An attempt killed
    together with the sweep (a machine or session that went away) has no line there, or a
    cut-off one (skipped with a warning); it is timed from its `=== posrec.sweep <start>`
    header in `train.log` to its last timestamped (absl) log line: a lower bound, short by at
    most one progress interval.
    """
    recorded: dict[str, float] = {}
    path = workdir / "attempts.jsonl"
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            x = json.loads(line)
            started, seconds = str(x["started"]), float(x["seconds"])
        except (ValueError, KeyError, TypeError):
            # A sweep killed while appending leaves a cut-off line (and the next sweep's line
            # may follow on it). Skipped, the attempt is timed from train.log like one that
            # was never recorded.
            logging.warning("%s: line %d is not an attempt record (%r); skipped, that "
                            "attempt is timed from train.log", path, lineno, line[:60])
            continue
        recorded[started] = recorded.get(started, 0.0) + seconds
    seconds = list(recorded.values())
    log = workdir / "train.log"
    start = last = None  # of the unrecorded attempt being read
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        if m := _ATTEMPT_HEADER.match(line):
            if start is not None and last is not None:
                seconds.append((last - start).total_seconds())
            start = None if m[1] in recorded else datetime.datetime.fromisoformat(m[1])
            last = None
        elif start is not None and (m := _ABSL_TIME.match(line)):
            month, day, hour, minute, sec = map(int, m.groups())
            year = start.year + ((month, day) < (start.month, start.day))  # New Year's Eve
            last = datetime.datetime(year, month, day, hour, minute, sec)
    if start is not None and last is not None:
        seconds.append((last - start).total_seconds())
    return float(sum(seconds)) if seconds else None


def _progress(workdir: Path) -> str:
    """What an unfinished run directory holds, in words."""
    if not workdir.exists():
        return "not started"
    log = workdir / "metrics.jsonl"
    try:
        lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
        epochs = json.loads(lines[-1])["epoch"] if lines else 0
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        epochs = 0  # no validation yet, or a line being written
    return f"in progress or interrupted (last validation after epoch {epochs})"


def collect(root: Path) -> list[dict[str, Any]]:
    """Every run of the sweep in ROOT: its coordinates, state, results and per-user NDCG."""
    root = Path(root)
    manifest = sweep.read_manifest(root)
    if manifest is None:
        raise ConfigError(f"{root}/{sweep.MANIFEST} not found: --root must be a posrec.sweep root")
    status_path = root / sweep.STATUS
    failed = {}
    if status_path.exists():
        try:
            runs = json.loads(status_path.read_text())["runs"]
            failed = {r["run"]: r["error"] for r in runs if r["state"] == "failed"}
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            failed = {}
    records = []
    for spec in manifest["runs"]:
        name = spec["run"]
        workdir = root / name
        rec = dict(run=name, dataset=spec["dataset"], variant=spec["variant"],
                   hparams=spec["hparams"], seed=spec["seed"], results=None,
                   wall_seconds=wall_seconds(workdir), note="")
        state, detail = sweep.run_state(workdir)
        if state == "done":
            rec["results"] = json.loads((workdir / "results.json").read_text())
            rec["state"] = "done"
        else:
            rec["state"] = "failed" if (state == "failed" or name in failed) else "unfinished"
            rec["note"] = detail or failed.get(name) or _progress(workdir)
        records.append(rec)
    return records


def config_differences(root: Path, records: list[dict[str, Any]],
                       grid: dict[str, Any]) -> list[dict[str, Any]]:
    """Config keys on which finished runs of one data set differ, other than the seed and the
    keys the variants or the hyperparameter grid set: [{dataset, key, values: {value: runs}}].

    The sweep pins its grid, not the contents of config files, so a config file edited while
    a sweep ran would otherwise mix two setups in one table. Each run's `config.json` (what
    it trained with) is read over today's defaults: a key added to posrec after a run was
    made counts as its default value.
    """
    defaults = config_lib.flatten(config_lib.to_dict(config_lib.default_config()))
    varied = {"seed", *grid.get("hparams", {})}
    for overrides in grid.get("variants", {}).values():
        varied |= set(overrides)
    by_ds: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for r in records:
        if r["state"] != "done":
            continue
        try:
            saved = config_lib.flatten(json.loads((root / r["run"] / "config.json").read_text()))
        except (OSError, json.JSONDecodeError, AttributeError):
            continue  # a broken run directory is reported by the state column instead
        flat = {k: json.dumps(v, sort_keys=True) for k, v in {**defaults, **saved}.items()
                if k not in varied}
        by_ds.setdefault(r["dataset"], []).append((r["run"], flat))
    out = []
    for ds, runs in by_ds.items():
        for key in sorted(set().union(*(flat for _, flat in runs))):
            values: dict[str, list[str]] = {}
            for name, flat in runs:
                values.setdefault(flat.get(key, "<absent>"), []).append(name)
            if len(values) > 1:
                out.append(dict(dataset=ds, key=key, values=values))
    return out


def _per_user(root: Path, runs: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(users [U], NDCG@10 [U] averaged over the runs' seeds) on the users all runs share."""
    tables = []
    for r in runs:
        path = Path(root) / r["run"] / "per_user_test.npz"
        if not path.exists():
            raise ConfigError(f"{path} is missing: the run finished without per-user results")
        with np.load(path) as z:
            order = np.argsort(z["users"])
            tables.append((np.asarray(z["users"])[order], ndcg_per_user(z["rank"])[order]))
    users = tables[0][0]
    for u, _ in tables[1:]:
        users = np.intersect1d(users, u)
    return users, np.mean([v[np.searchsorted(u, users)] for u, v in tables], axis=0)


def _mean_std(xs: list[float | None]) -> tuple[float, float]:
    """Mean and sample std (ddof=1; nan for one value) of the values that exist."""
    arr = np.asarray([x for x in xs if x is not None], np.float64)
    mean = float(arr.mean()) if len(arr) else float("nan")
    std = float(arr.std(ddof=1)) if len(arr) > 1 else float("nan")
    return mean, std


def _select(group: list[dict[str, Any]], hp_order: list[str], sampled_keys: list[str]):
    """One data set x variant: (row, selection entries, the chosen finished runs).

    The chosen hyperparameters have the best mean validation NDCG@10 over finished seeds
    (ties: the first in grid order); the row holds their test metrics over seeds.
    """
    ds, var = group[0]["dataset"], group[0]["variant"]
    by_hp = {hp: [r for r in group if r["hparams"] == hp] for hp in hp_order}
    by_hp = {hp: runs for hp, runs in by_hp.items() if runs}
    selection, scores = [], {}
    for hp, runs in by_hp.items():
        done = [r for r in runs if r["state"] == "done"]
        if done:
            scores[hp] = float(np.mean([r["results"]["valid"][SELECT_ON] for r in done]))
        selection.append(dict(dataset=ds, variant=var, hparams=hp, seeds_done=len(done),
                              seeds=len(runs), valid_ndcg10=scores.get(hp, float("nan")),
                              selected=False))
    row = dict(dataset=ds, variant=var, grid_done=len(scores), grid=len(by_hp))
    if not scores:
        row.update(hparams="", seeds=0, seeds_expected=max(map(len, by_hp.values())))
        return row, selection, []
    best = max(scores, key=lambda hp: (scores[hp], -hp_order.index(hp)))
    next(s for s in selection if s["hparams"] == best)["selected"] = True
    done = [r for r in by_hp[best] if r["state"] == "done"]
    walls = [r["wall_seconds"] for r in done if r["wall_seconds"] is not None]
    row.update(hparams=best, seeds=len(done), seeds_expected=len(by_hp[best]),
               valid_ndcg10=scores[best],
               epochs=float(np.mean([r["results"]["epochs_trained"] for r in done])),
               wall_seconds=float(np.mean(walls)) if walls else float("nan"))
    for m in METRICS:
        row[m], row[m + "_std"] = _mean_std([r["results"]["test"].get(m) for r in done])
    for m in sampled_keys:
        row[m], row[m + "_std"] = _mean_std(
            [r["results"].get("test_sampled", {}).get(m) for r in done])
    return row, selection, done


def _compare(root: Path, row: dict[str, Any], base: dict[str, Any], runs, base_runs,
             keys: list[str]) -> None:
    """Add relative changes vs `base` and, for another variant, the paired tests to `row`."""
    for m in keys:
        b = base.get(m, float("nan"))
        row[m + "_rel"] = (row[m] - b) / b if b else float("nan")
    if runs is base_runs:
        return
    row["t_seeds"], row["df_seeds"], row["p_seeds"] = welch_t(
        *([r["results"]["test"][SELECT_ON] for r in rs] for rs in (runs, base_runs)))
    users_b, base_u = _per_user(root, base_runs)
    users_v, var_u = _per_user(root, runs)
    users = np.intersect1d(users_b, users_v)
    a = var_u[np.searchsorted(users_v, users)]
    b = base_u[np.searchsorted(users_b, users)]
    row["n_users"] = len(users)
    row["t"], row["p_t"] = paired_t(a, b)
    row["z_wilcoxon"], row["p_wilcoxon"] = wilcoxon(a, b)


def summarize(root: Path, baseline: str | None = None) -> dict[str, Any]:
    """Rows of the report (one per data set x variant) plus the selection table and runs."""
    root = Path(root)
    manifest = sweep.read_manifest(root)
    records = collect(root)
    baseline = baseline or manifest["grid"].get("baseline", "absolute")
    if baseline not in {r["variant"] for r in records}:
        raise ConfigError(
            f"baseline {baseline!r} is not a variant of sweep {manifest['sweep']!r} "
            f"({sorted({r['variant'] for r in records})}); pass --baseline"
        )
    hp_order = list(dict.fromkeys(r["hparams"] for r in records))
    sampled_keys = sorted({k for r in records if r["results"]
                           for k in r["results"].get("test_sampled", {})
                           if not k.endswith("num_users")})
    rows, selection = [], []
    for ds in dict.fromkeys(r["dataset"] for r in records):
        chosen = {}
        for var in dict.fromkeys(r["variant"] for r in records):
            group = [r for r in records if r["dataset"] == ds and r["variant"] == var]
            if group:
                row, sel, chosen[var] = _select(group, hp_order, sampled_keys)
                rows.append(row)
                selection += sel
        ds_rows = [r for r in rows if r["dataset"] == ds and r["seeds"]]
        base = next((r for r in ds_rows if r["variant"] == baseline), None)
        for row in ds_rows if base else []:
            _compare(root, row, base, chosen[row["variant"]], chosen[baseline],
                     list(METRICS) + sampled_keys)
    return dict(baseline=baseline, sweep=manifest["sweep"], rows=rows, selection=selection,
                runs=records, sampled_keys=sampled_keys,
                config_differences=config_differences(root, records, manifest["grid"]))


# ----------------------------------------------------------------------------- output


def _f(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.{digits}f}"


def _pm(row: dict[str, Any], m: str) -> str:
    if m not in row or math.isnan(row[m]):
        return "—"
    std = row[m + "_std"]
    return _f(row[m]) + ("" if math.isnan(std) else f" ± {_f(std)}")


def _p(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "—"
    return f"{x:.1e}" if x < 1e-3 else f"{x:.3f}"


def _rel(x: float | None) -> str:
    return "—" if x is None or math.isnan(x) else f"{100 * x:+.1f}%"


def _table(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out) + "\n"


def markdown(summary: dict[str, Any]) -> str:
    """The report as Markdown: one table per data set, then selection and unfinished runs."""
    base = summary["baseline"]
    parts = [f"# Sweep `{summary['sweep']}`\n",
             "Full-ranking test metrics (mean ± std over seeds) of each variant's "
             "hyperparameters with the best mean validation NDCG@10. Δ: relative change of the "
             f"mean vs `{base}`; p: paired tests over users of seed-averaged test NDCG@10 vs "
             f"`{base}` (t-test, Wilcoxon signed-rank; normal approximation); p (seeds): Welch's "
             "t-test over the per-seed test NDCG@10 (Student's t; needs 2 seeds a side).\n"]
    datasets = list(dict.fromkeys(r["dataset"] for r in summary["rows"]))
    header = ["variant", "hparams", "seeds", "epochs", "wall (min)",
              *[m.upper() for m in METRICS],
              "Δ NDCG@10", "Δ HR@10", "p (t)", "p (Wilcoxon)", "p (seeds)"]
    for ds in datasets:
        lines = []
        for r in (r for r in summary["rows"] if r["dataset"] == ds):
            seeds = f"{r['seeds']}/{r['seeds_expected']}"
            if r["grid_done"] < r["grid"]:
                seeds += f" (grid {r['grid_done']}/{r['grid']})"
            if not r["seeds"]:
                lines.append([r["variant"], "—", seeds] + ["—"] * (len(header) - 3))
                continue
            is_base = r["variant"] == base
            lines.append([
                f"**{r['variant']}**" if is_base else r["variant"], r["hparams"], seeds,
                _f(r["epochs"], 1), _f(r["wall_seconds"] / 60.0, 1),
                *[_pm(r, m) for m in METRICS],
                "baseline" if is_base else _rel(r.get("ndcg@10_rel")),
                "baseline" if is_base else _rel(r.get("hr@10_rel")),
                _p(r.get("p_t")), _p(r.get("p_wilcoxon")), _p(r.get("p_seeds")),
            ])
        parts.append(f"## {ds}\n\n" + _table(header, lines))
        if not any(r["dataset"] == ds and r["variant"] == base and r["seeds"]
                   for r in summary["rows"]):
            parts.append(f"No finished `{base}` runs on {ds}: no Δ or p-values.\n")
    if summary["sampled_keys"]:
        keys = summary["sampled_keys"]
        lines = [[r["dataset"], r["variant"], *[_pm(r, k) for k in keys]]
                 for r in summary["rows"] if r["seeds"]]
        parts.append("## SAMPLED evaluation (legacy protocol, not comparable with full ranking)"
                     "\n\n" + _table(["data set", "variant", *keys], lines))
    diffs = summary.get("config_differences", [])
    if diffs:
        lines = [[d["dataset"], d["key"], "; ".join(
            f"{value} ({len(runs)} run{'s' * (len(runs) > 1)}, e.g. {runs[0]})"
            for value, runs in d["values"].items())] for d in diffs]
        parts.append("## WARNING: config differences within a data set\n\nThese finished runs "
                     "of one data set differ in more than their variant, hyperparameters and "
                     "seed (a config file changed while the sweep ran?), so their rows do "
                     "not compare like with like.\n\n" + _table(["data set", "key", "values"],
                                                                  lines))
    sel = [[s["dataset"], s["variant"], s["hparams"], f"{s['seeds_done']}/{s['seeds']}",
            _f(s["valid_ndcg10"]), "✓" if s["selected"] else ""] for s in summary["selection"]]
    parts.append("## Hyperparameter selection (validation NDCG@10, mean over finished seeds)\n\n"
                 + _table(["data set", "variant", "hparams", "seeds", "valid NDCG@10",
                           "selected"], sel))
    open_runs = [r for r in summary["runs"] if r["state"] != "done"]
    if open_runs:
        parts.append(f"## Runs without results ({len(open_runs)})\n\n" + _table(
            ["run", "state", "note"], [[r["run"], r["state"], r["note"]] for r in open_runs]))
    return "\n".join(parts)


def _csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    return buf.getvalue()


def write(summary: dict[str, Any], out: Path) -> list[Path]:
    """report.md, results.csv, hparams.csv, runs.csv into `out`; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metric_cols = [c for m in METRICS + tuple(summary["sampled_keys"])
                   for c in (m, m + "_std", m + "_rel")]
    result_cols = ["dataset", "variant", "hparams", "seeds", "seeds_expected", "grid_done",
                   "grid", "epochs", "wall_seconds", "valid_ndcg10", *metric_cols, "n_users",
                   "t", "p_t", "z_wilcoxon", "p_wilcoxon",
                   "t_seeds", "df_seeds", "p_seeds"]
    run_rows = [dict(r, **({f"test_{m}": r["results"]["test"].get(m) for m in METRICS}
                           if r["results"] else {})) for r in summary["runs"]]
    files = {
        "report.md": markdown(summary),
        "results.csv": _csv(summary["rows"], result_cols),
        "hparams.csv": _csv(summary["selection"], ["dataset", "variant", "hparams",
                                                    "seeds_done", "seeds", "valid_ndcg10",
                                                    "selected"]),
        "runs.csv": _csv(run_rows, ["run", "dataset", "variant", "hparams", "seed", "state",
                                    "note", "wall_seconds", *[f"test_{m}" for m in METRICS]]),
    }
    paths = []
    for name, text in files.items():
        config_lib.write_atomic(out / name, text)
        paths.append(out / name)
    return paths


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    with report_errors(f.debug):
        summary = summarize(Path(f.root), f.baseline)
        paths = write(summary, Path(f.out or Path(f.root) / "report"))
    print(paths[0].read_text())
    print("wrote " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    flags.DEFINE_string("root", None, "Sweep root (holds sweep.json).", required=True)
    flags.DEFINE_string("baseline", None, "Variant to compare against (default: the sweep "
                        "file's `baseline`, else absolute).")
    flags.DEFINE_string("out", None, "Output directory (default ROOT/report).")
    flags.DEFINE_bool("debug", False, "Show tracebacks for posrec errors.")
    app.run(main, flags_parser=parse_flags)
