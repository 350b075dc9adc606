"""posrec.bench: runs on tiny shapes and reports every field (no timing assertions)."""

import json

import jax
import numpy as np
import pytest

from posrec import bench


def _loop_flops(lengths, C, F, blocks, N, kernel):
    """The module-doc formula counted term by term (per position, per causal pair)."""
    total = 0
    for L in lengths:
        for _ in range(blocks):
            for i in range(1, L + 1):  # query i sees keys 1..i
                total += 4 * 2 * C * C + 2 * 2 * C * F  # Q, K, V, out; FFN up and down
                total += i * (2 * C + 2 * C)  # scores and weighted values
                if kernel:
                    total += i * 2 * C + i * 2 * C  # row i of Uᵀ K and of L V
        total += L * 2 * N * C  # logits of each target
    return 3 * total


@pytest.mark.parametrize("kernel", [False, True])
def test_useful_flops_matches_term_by_term_count(kernel):
    lengths = np.array([0, 1, 5, 17])
    got = bench.useful_flops(lengths, hidden=8, ffn=12, num_blocks=2, num_items=30,
                             kernel_mixing=kernel)
    assert got == _loop_flops(lengths, 8, 12, 2, 30, kernel)


def test_bench_smoke_prints_every_field(capsys, tmp_path):
    rc = bench.main([
        "--json", "--data_path", str(tmp_path / "absent.csv"), "--batch_size", "4",
        "--max_len", "8", "--hidden", "8", "--num_blocks", "1", "--num_items", "30",
        "--variants", "absolute,kernel_toeplitz_full", "--bucket_lengths", "",
        "--steps", "1", "--rounds", "1", "--eval_users", "12",
    ])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["data"].startswith("synthetic")
    assert report["matmul_peak_gflops"] > 0
    assert {"cpu", "cpus", "jax", "backend", "load_average"} <= set(report["machine"])
    rows = report["results"]
    assert [r["variant"] for r in rows] == ["absolute", "kernel_toeplitz_full"]
    for r in rows:
        for key in ("ms_per_step", "train_examples_per_s", "train_targets_per_s",
                    "useful_gflops", "fraction_of_peak", "compile_s", "step_memory_bytes",
                    "eval_s", "eval_users_per_s", "eval_compile_s", "step_vs_absolute"):
            assert np.isfinite(r[key]) and r[key] >= 0, key
        assert r["eval_users"] == 12 and r["windows"] == [8]
    assert rows[0]["step_vs_absolute"] == 1.0
    assert report["peak_rss_bytes"] > 0


def test_format_report_table_has_a_row_per_case(capsys, tmp_path):
    args = ["--data_path", str(tmp_path / "absent.csv"), "--batch_size", "4", "--max_len",
            "8", "--hidden", "8", "--num_blocks", "1", "--num_items", "30", "--variants",
            "absolute", "--bucket_lengths", "4", "--steps", "2", "--rounds", "1",
            "--eval_users", "-1"]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    assert "fp32 matmul peak" in out and "targets/s" in out
    assert sum(line.startswith("absolute") for line in out.splitlines()) == 1


def test_eval_ablations_report_time_shapes_and_rank_agreement(capsys, tmp_path):
    rc = bench.main([
        "--ablations=eval_order,eval_last_only", "--data_path", str(tmp_path / "absent.csv"),
        "--batch_size", "4", "--max_len", "8", "--hidden", "8", "--num_blocks", "1",
        "--num_items", "30", "--variants", "kernel_toeplitz_full",
        "--bucket_lengths", "4", "--rounds", "1",
    ])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"eval_order", "eval_last_only"} and "fused_ce" not in report
    for name in ("eval_order", "eval_last_only"):
        for variant, row in report[name].items():
            assert row["before_s"] > 0 and row["after_s"] > 0, (name, variant)
            # both settings score the same model: ranks agree up to float-rounding ties
            assert row["ranks_differing"] <= 0.01 * row["users"], (name, variant, row)
    assert report["eval_order"]["kernel_toeplitz_full"]["ranks_differing"] == 0


def test_rng_impl_ablation_pairs_threefry_with_each_other_prng(capsys, tmp_path):
    """--ablations=rng_impl: one before/after pair per non-default train.rng_impl, each with
    the same targets on both sides (only the dropout streams differ)."""
    rc = bench.main([
        "--ablations=rng_impl", "--data_path", str(tmp_path / "absent.csv"),
        "--batch_size", "4", "--max_len", "8", "--hidden", "8", "--num_blocks", "1",
        "--num_items", "30", "--variants", "absolute", "--bucket_lengths", "4",
        "--steps", "2", "--rounds", "1",
    ])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    pairs = {k for k in report if k.startswith("rng_impl")}
    assert pairs == {"rng_impl=philox2x32", "rng_impl=rbg"}
    for name in pairs:
        row = report[name]["absolute"]
        assert row["before_ms_per_step"] > 0 and row["after_ms_per_step"] > 0
        assert (row["before_targets_per_s"] * row["before_ms_per_step"]
                == pytest.approx(row["after_targets_per_s"] * row["after_ms_per_step"]))


def test_unknown_ablation_is_refused(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--ablations=fused_ce,warp_drive"])
    assert "unknown ablation(s) ['warp_drive']" in capsys.readouterr().err


def test_data_parallel_case_trains_like_the_single_device_step(tmp_path):
    argv = ["--data_path", str(tmp_path / "absent.csv"), "--batch_size", "4", "--max_len",
            "8", "--hidden", "8", "--num_blocks", "1", "--num_items", "30", "--dropout", "0",
            "--bucket_lengths", "4", "--steps", "3"]
    data = bench.load_data(tmp_path / "absent.csv", 8)
    params = {}
    for mode in ("", "pmap"):  # sharding vs pmap equality: parallel_test.py
        args = bench.parse_args([*argv, "--parallelism", mode] if mode else argv)
        case = bench.build_case("kernel_toeplitz_full", 30, data, args)
        assert case.steps and case.results["compile_s"] > 0
        bench.run_steps(case)
        params[mode] = jax.tree.map(np.asarray, case.state.params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 params[""], params["pmap"])
