"""posrec.report on a hand-made sweep root, against independently computed tables and tests."""

import csv
import json
import math
import statistics

import numpy as np
import pytest

from posrec import config_lib, report, sweep
from posrec.errors import ConfigError

VARIANTS = ("absolute", "kernel", "rope")
HPS = ("dropout=0.2", "dropout=0.5")
U = 400  # users per data set


def make_root(tmp_path):
    """A sweep root whose runs hold generated results; returns (root, truth).

    d1: every run finished except kernel/dropout=0.2/seed1 (corrupt results.json) and
    rope/dropout=0.5/seed2 (interrupted after epoch 3). d2: rope never started.
    """
    raw = dict(
        name="fake",
        datasets={"d1": "configs/default.py", "d2": "configs/default.py"},
        variants={v: {"model.positional": v} for v in VARIANTS},
        seeds=[0, 1, 2],
        hparams={"model.dropout": [0.2, 0.5]},
    )
    s = sweep.build(raw)
    root = tmp_path / "root"
    root.mkdir()
    config_lib.write_json_atomic(root / sweep.MANIFEST, sweep.check_root(s, root))
    rng = np.random.default_rng(0)
    truth = {}
    for r in s.runs:
        workdir = root / r.name
        if r.dataset == "d2" and r.variant == "rope":
            continue
        workdir.mkdir(parents=True)
        (workdir / "config.json").write_text("{}")
        if r.name == "d1/rope/dropout=0.5/seed2":
            (workdir / "metrics.jsonl").write_text(json.dumps({"step": 9, "epoch": 3}) + "\n")
            continue
        if r.name == "d1/kernel/dropout=0.2/seed1":
            (workdir / "results.json").write_text('{"test": ')
            continue
        # kernel is better than absolute on d1, rope on par; dropout=0.5 wins for kernel only
        skill = {"absolute": 0.0, "kernel": 1.0, "rope": 0.0}[r.variant]
        boost = 0.05 if (r.variant == "kernel") == (r.hparams == "dropout=0.5") else 0.0
        rank = rng.geometric(0.05 + 0.1 * skill, size=U)
        users = rng.permutation(U) if r.seed == 1 else np.arange(U)  # order must not matter
        test = {m: float(rng.uniform(0.05, 0.5)) for m in report.METRICS}
        res = dict(best_step=10, best_epoch=int(rng.integers(1, 20)), valid={
            "ndcg@10": float(rng.uniform(0.1, 0.12)) + boost}, test=test)
        res["epochs_trained"] = res["best_epoch"] + 5
        if r.dataset == "d1":
            res["test_sampled"] = {"sampled100_uniform_ndcg@10": float(rng.uniform(0.3, 0.6)),
                                   "sampled100_uniform_num_users": U}
        config_lib.write_json_atomic(workdir / "results.json", res)
        np.savez(workdir / "per_user_test.npz", users=users, rank=rank)  # rank[i]: users[i]
        attempts = [dict(started="x", seconds=float(rng.uniform(50, 100)), returncode=0)
                    for _ in range(1 + (r.seed == 0))]
        (workdir / "attempts.jsonl").write_text("".join(json.dumps(a) + "\n" for a in attempts))
        truth[r.name] = dict(res=res, users=users, rank=rank,
                             wall=sum(a["seconds"] for a in attempts))
    return root, truth


def ndcg(rank):
    return np.array([1 / math.log2(r + 1) if r <= 10 else 0.0 for r in rank])


def pooled(truth, names):
    """Per-user NDCG@10 averaged over runs, aligned by user id (dict user -> value)."""
    per = []
    for n in names:
        per.append({int(u): v for u, v in zip(truth[n]["users"], ndcg(truth[n]["rank"]))})
    users = sorted(set.intersection(*(set(p) for p in per)))
    return np.array([np.mean([p[u] for p in per]) for u in users])


@pytest.fixture
def root_truth(tmp_path):
    return make_root(tmp_path)


def expected_choice(truth, ds, variant):
    scores = {}
    for hp in HPS:
        vals = [t["res"]["valid"]["ndcg@10"] for n, t in truth.items()
                if n.startswith(f"{ds}/{variant}/{hp}/")]
        if vals:
            scores[hp] = sum(vals) / len(vals)
    return max(scores, key=scores.get)


def test_selection_means_stds_and_relative_change(root_truth):
    root, truth = root_truth
    summary = report.summarize(root)
    rows = {(r["dataset"], r["variant"]): r for r in summary["rows"]}
    assert summary["baseline"] == "absolute"
    assert rows[("d1", "kernel")]["hparams"] == "dropout=0.5"
    assert rows[("d1", "absolute")]["hparams"] == "dropout=0.2"
    for (ds, var), row in rows.items():
        if (ds, var) == ("d2", "rope"):
            assert row["seeds"] == 0 and row["seeds_expected"] == 3
            continue
        hp = expected_choice(truth, ds, var)
        names = [n for n in truth if n.startswith(f"{ds}/{var}/{hp}/")]
        assert row["hparams"] == hp and row["seeds"] == len(names)
        for m in report.METRICS:
            values = [truth[n]["res"]["test"][m] for n in names]
            assert row[m] == pytest.approx(statistics.fmean(values))
            assert row[m + "_std"] == pytest.approx(statistics.stdev(values))
        base = [truth[n]["res"]["test"]["ndcg@10"] for n in truth
                if n.startswith(f"{ds}/absolute/{expected_choice(truth, ds, 'absolute')}/")]
        want = (statistics.fmean([truth[n]["res"]["test"]["ndcg@10"] for n in names])
                / statistics.fmean(base) - 1)
        assert row["ndcg@10_rel"] == pytest.approx(want)
        assert row["epochs"] == pytest.approx(
            statistics.fmean([truth[n]["res"]["epochs_trained"] for n in names]))
        assert row["wall_seconds"] == pytest.approx(
            statistics.fmean([truth[n]["wall"] for n in names]))
    # rope on d1, dropout=0.5: seed2 is interrupted -> 2 of 3 seeds; kernel 0.2: 2 of 3
    sel = {(s["dataset"], s["variant"], s["hparams"]): s for s in summary["selection"]}
    assert sel[("d1", "rope", "dropout=0.5")]["seeds_done"] == 2
    assert sel[("d1", "kernel", "dropout=0.2")]["seeds_done"] == 2


def test_paired_tests_pool_seeds_per_user(root_truth):
    root, truth = root_truth
    rows = {(r["dataset"], r["variant"]): r for r in report.summarize(root)["rows"]}
    def chosen(ds, v):
        return [n for n in truth if n.startswith(f"{ds}/{v}/{expected_choice(truth, ds, v)}/")]

    for ds, var in (("d1", "kernel"), ("d1", "rope"), ("d2", "kernel")):
        a, b = pooled(truth, chosen(ds, var)), pooled(truth, chosen(ds, "absolute"))
        d = a - b
        t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
        assert rows[(ds, var)]["n_users"] == U
        assert rows[(ds, var)]["t"] == pytest.approx(t)
        assert rows[(ds, var)]["p_t"] == pytest.approx(math.erfc(abs(t) / math.sqrt(2)))
        scipy_stats = pytest.importorskip("scipy.stats")
        ref = scipy_stats.wilcoxon(a, b, zero_method="wilcox", correction=False,
                                   method="approx")
        assert rows[(ds, var)]["p_wilcoxon"] == pytest.approx(ref.pvalue, rel=1e-9)
        assert rows[(ds, var)]["p_t"] == pytest.approx(
            scipy_stats.ttest_rel(a, b).pvalue, abs=2e-3)  # normal vs Student t, n = 400
    assert rows[("d1", "kernel")]["p_t"] < 1e-3  # the planted effect is found
    assert "p_t" not in rows[("d1", "absolute")]


def test_seed_level_welch_test(root_truth):
    """p (seeds) compares the chosen runs' per-seed test NDCG@10, unpaired, with Welch."""
    root, truth = root_truth
    rows = {(r["dataset"], r["variant"]): r for r in report.summarize(root)["rows"]}
    def seeds(ds, v):
        hp = expected_choice(truth, ds, v)
        return [truth[n]["res"]["test"]["ndcg@10"] for n in truth
                if n.startswith(f"{ds}/{v}/{hp}/")]

    for ds, var in (("d1", "kernel"), ("d1", "rope"), ("d2", "kernel")):
        a, b = seeds(ds, var), seeds(ds, "absolute")
        assert len(a) >= 2 and len(b) >= 2
        va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
        t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
        df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
        row = rows[(ds, var)]
        assert (row["t_seeds"], row["df_seeds"]) == (pytest.approx(t), pytest.approx(df))
        assert row["p_seeds"] == pytest.approx(report.student_t_p(t, df))
    assert "p_seeds" not in rows[("d1", "absolute")]
    md = report.markdown(report.summarize(root))
    assert "| p (Wilcoxon) | p (seeds) |" in md


def test_outputs_list_every_run_and_label_sampled_metrics(root_truth, tmp_path):
    root, truth = root_truth
    summary = report.summarize(root)
    paths = report.write(summary, tmp_path / "out")
    assert [p.name for p in paths] == ["report.md", "results.csv", "hparams.csv", "runs.csv"]
    md = paths[0].read_text()
    assert "d1/rope/dropout=0.5/seed2 | unfinished | in progress or interrupted " \
           "(last validation after epoch 3)" in md
    assert "d1/kernel/dropout=0.2/seed1 | failed |" in md and "unreadable" in md
    assert "d2/rope/dropout=0.2/seed0 | unfinished | not started" in md
    assert "SAMPLED evaluation" in md and "sampled100_uniform_ndcg@10" in md
    with open(paths[2].parent / "runs.csv") as f:
        runs = list(csv.DictReader(f))
    assert len(runs) == 2 * 3 * 2 * 3  # every run of the manifest, finished or not
    with open(paths[1]) as f:
        rows = {(r["dataset"], r["variant"]): r for r in csv.DictReader(f)}
    kernel = next(r for r in summary["rows"] if (r["dataset"], r["variant"]) == ("d1", "kernel"))
    assert float(rows[("d1", "kernel")]["ndcg@10"]) == kernel["ndcg@10"]
    assert float(rows[("d1", "kernel")]["sampled100_uniform_ndcg@10"]) == pytest.approx(
        statistics.fmean([truth[n]["res"]["test_sampled"]["sampled100_uniform_ndcg@10"]
                          for n in truth if n.startswith("d1/kernel/dropout=0.5/")]))
    assert rows[("d2", "rope")]["seeds"] == "0"


def test_config_differences_within_a_data_set_are_flagged(root_truth, tmp_path):
    """Runs of one data set may differ in their variant's keys, the hyperparameter grid and
    the seed; anything else (here: model.hidden of one d1 run) is listed with its runs, and a
    key absent from an older config.json counts as its default."""
    root, _ = root_truth
    assert report.summarize(root)["config_differences"] == []
    hidden = config_lib.default_config().model.hidden
    odd = root / "d1/absolute/dropout=0.2/seed0"
    config_lib.write_json_atomic(odd / "config.json", {"model": {"hidden": hidden * 2}})
    for name in ("d1/kernel/dropout=0.5/seed0", "d2/kernel/dropout=0.5/seed1"):
        config_lib.write_json_atomic(root / name / "config.json", {
            "model": {"positional": "kernel", "dropout": 0.5, "hidden": hidden}, "seed": 1})
    summary = report.summarize(root)
    diffs = summary["config_differences"]
    assert [(d["dataset"], d["key"]) for d in diffs] == [("d1", "model.hidden")]
    assert diffs[0]["values"][str(hidden * 2)] == ["d1/absolute/dropout=0.2/seed0"]
    assert len(diffs[0]["values"][str(hidden)]) == 3 * 2 * 3 - 2 - 1  # finished d1 runs
    md = report.markdown(summary)
    assert "WARNING: config differences" in md and "e.g. d1/absolute/dropout=0.2/seed0" in md


def test_baseline_choice(root_truth):
    root, _ = root_truth
    rows = {(r["dataset"], r["variant"]): r
            for r in report.summarize(root, baseline="kernel")["rows"]}
    assert rows[("d1", "kernel")]["ndcg@10_rel"] == 0.0 and "p_t" not in rows[("d1", "kernel")]
    assert "p_t" in rows[("d1", "absolute")]
    with pytest.raises(ConfigError, match="baseline 'sasrec' is not a variant"):
        report.summarize(root, baseline="sasrec")


def test_not_a_sweep_root(tmp_path):
    with pytest.raises(ConfigError, match="sweep.json not found"):
        report.summarize(tmp_path)


# ----------------------------------------------------------------------------- statistics


def test_average_ranks_by_hand():
    np.testing.assert_array_equal(report.average_ranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])),
                                  [4.0, 1.0, 4.0, 2.0, 4.0])


def test_wilcoxon_by_hand():
    # d = 1, 1, -2, 3 (a zero dropped): |d| ranks 1.5, 1.5, 3, 4; W+ = 7; n = 4
    # E = 5, Var = 4*5*9/24 - (2^3 - 2)/48 = 7.375 -> z = 2 / sqrt(7.375)
    a, b = np.array([1.0, 2.0, 0.0, 5.0, 4.0]), np.array([0.0, 1.0, 2.0, 2.0, 4.0])
    z, p = report.wilcoxon(a, b)
    assert z == pytest.approx(2 / math.sqrt(7.375))
    assert p == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert report.wilcoxon(a, a) == (pytest.approx(float("nan"), nan_ok=True), 1.0)


def test_paired_t_by_hand():
    # d = 1, 2, 3, 4: mean 2.5, sd sqrt(5/3), t = 2.5 / (sd / 2)
    t, p = report.paired_t(np.array([1.0, 2, 3, 4]), np.zeros(4))
    assert t == pytest.approx(2.5 / (math.sqrt(5 / 3) / 2))
    assert p == pytest.approx(math.erfc(t / math.sqrt(2)))
    assert report.paired_t(np.ones(3), np.ones(3))[1] == 1.0


def test_student_t_p_closed_forms():
    # df = 1 (Cauchy): p = 1 - 2 atan|t| / pi; df = 2: p = 1 - |t| / sqrt(2 + t^2);
    # df = 4: the two-sided 5% point is 2.776445 (t tables); df -> inf: the normal.
    for t in (0.0, 0.3, 1.0, 2.5, 12.0, -7.0):
        assert report.student_t_p(t, 1.0) == pytest.approx(
            1 - 2 * math.atan(abs(t)) / math.pi, rel=1e-10, abs=1e-15)
        assert report.student_t_p(t, 2.0) == pytest.approx(
            1 - abs(t) / math.sqrt(2 + t * t), rel=1e-10, abs=1e-15)
        assert report.student_t_p(t, 1e7) == pytest.approx(
            math.erfc(abs(t) / math.sqrt(2)), rel=1e-5, abs=1e-15)
    assert report.student_t_p(2.776445, 4.0) == pytest.approx(0.05, rel=1e-5)
    assert report.student_t_p(math.inf, 3.0) == 0.0
    assert report.student_t_p(float("nan"), 3.0) == 1.0


def test_welch_t_by_hand():
    # a = 1, 2, 3 (mean 2, var 1); b = 0, 0, 0, 4 (mean 1, var 4): s2 = 1/3 + 1 = 4/3,
    # t = 1 / sqrt(4/3); df = (4/3)^2 / ((1/3)^2 / 2 + 1^2 / 3) = (16/9) / (7/18) = 32/7
    t, df, p = report.welch_t(np.array([1.0, 2, 3]), np.array([0.0, 0, 0, 4]))
    assert t == pytest.approx(math.sqrt(3 / 4)) and df == pytest.approx(32 / 7)
    assert p == pytest.approx(report.student_t_p(math.sqrt(3 / 4), 32 / 7))
    # equal sizes and variances: df = 2 (n - 1) = 2, so the closed form above applies
    t, df, p = report.welch_t(np.array([3.0, 5.0]), np.array([0.0, 2.0]))
    assert (t, df) == (pytest.approx(3 / math.sqrt(2)), pytest.approx(2.0))
    assert p == pytest.approx(1 - t / math.sqrt(2 + t * t))
    nan3 = (pytest.approx(float("nan"), nan_ok=True),) * 3
    assert report.welch_t(np.array([1.0]), np.array([0.0, 2.0])) == nan3  # one seed
    assert report.welch_t(np.ones(3), np.zeros(3)) == nan3  # no spread on either side
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for n_a, n_b in ((3, 3), (2, 5), (4, 3)):
        a, b = rng.normal(0.15, 0.01, n_a), rng.normal(0.14, 0.003, n_b)
        ref = scipy_stats.ttest_ind(a, b, equal_var=False)
        t, _, p = report.welch_t(a, b)
        assert (t, p) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue, rel=1e-9))


def test_against_scipy_on_tied_ndcg_like_data():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    a = ndcg(rng.geometric(0.10, 3000))  # many zeros and exact ties, like real per-user NDCG
    b = ndcg(rng.geometric(0.09, 3000))
    ref = scipy_stats.wilcoxon(a, b, zero_method="wilcox", correction=False, method="approx")
    assert report.wilcoxon(a, b)[1] == pytest.approx(ref.pvalue, rel=1e-9)
    t_ref = scipy_stats.ttest_rel(a, b)
    t, p = report.paired_t(a, b)
    assert t == pytest.approx(t_ref.statistic)
    assert p == pytest.approx(t_ref.pvalue, abs=1e-4)


def test_wall_seconds_counts_attempts_killed_with_the_sweep(tmp_path):
    """attempts.jsonl has only the attempts that ended while the sweep ran; one killed with
    the sweep is timed from its train.log header to its last absl line (here across
    midnight and New Year), and a recorded attempt's own log lines are not counted again."""
    (tmp_path / "attempts.jsonl").write_text(
        json.dumps(dict(started="2026-12-31T23:00:00", seconds=100.0, returncode=0)) + "\n")
    (tmp_path / "train.log").write_text("\n".join([
        "", "=== posrec.sweep 2026-12-31T23:00:00: python -m posrec.main ...",
        "I1231 23:00:05.000001 1 train.py:1] step 1",
        "I1231 23:50:00.000001 1 train.py:1] step 999",  # recorded: 100 s, not 50 min
        "", "=== posrec.sweep 2026-12-31T23:59:30 (cores [0]): python -m posrec.main ...",
        "I1231 23:59:31.5 1 xla_bridge.py:1] backend",
        "W0101 00:01:00.250 1 train.py:1] step 50",
        "Traceback (most recent call last):",  # lines without a timestamp do not count
        "", "=== posrec.sweep 2027-01-01T00:05:00: python -m posrec.main ...",  # no log line
    ]) + "\n")
    assert report.wall_seconds(tmp_path) == 100.0 + 90.0
    (tmp_path / "attempts.jsonl").unlink()
    assert report.wall_seconds(tmp_path) == 3000.0 + 90.0
    (tmp_path / "train.log").unlink()
    assert report.wall_seconds(tmp_path) is None


def test_wall_seconds_skips_a_cut_off_attempts_line(tmp_path, caplog):
    """A sweep killed while appending to attempts.jsonl leaves a cut-off last line; the next
    sweep may append its own record right after it, on the same line. Such lines are skipped
    with a warning and their attempts timed from train.log, as if never recorded."""
    first = json.dumps(dict(started="2026-05-01T10:00:00", seconds=100.0, returncode=0))
    second = json.dumps(dict(started="2026-05-01T11:00:00", seconds=600.0, returncode=75))
    third = json.dumps(dict(started="2026-05-01T12:00:00", seconds=5.0, returncode=0))
    (tmp_path / "train.log").write_text("\n".join([
        "=== posrec.sweep 2026-05-01T10:00:00: python -m posrec.main ...",
        "I0501 10:01:00.0 1 train.py:1] step 1",
        "=== posrec.sweep 2026-05-01T11:00:00: python -m posrec.main ...",
        "I0501 11:09:00.0 1 train.py:1] step 9",  # timed from the log: 540 s
        "=== posrec.sweep 2026-05-01T12:00:00: python -m posrec.main ...",
        "I0501 12:00:04.0 1 train.py:1] step 1",  # timed from the log: 4 s
    ]) + "\n")
    path = tmp_path / "attempts.jsonl"
    path.write_text(first + "\n" + second[:25])
    with caplog.at_level("WARNING"):
        assert report.wall_seconds(tmp_path) == 100.0 + 540.0 + 4.0
    assert f"{path}: line 2 is not an attempt record" in caplog.text
    path.write_text(first + "\n" + second[:25] + third + "\n")  # a later sweep appended
    assert report.wall_seconds(tmp_path) == 100.0 + 540.0 + 4.0
    path.write_text(first + "\n" + second + "\n" + third + "\n")
    assert report.wall_seconds(tmp_path) == 100.0 + 600.0 + 5.0
