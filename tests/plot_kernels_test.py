"""Kernel pictures: one valid PNG per kernel/head/factor, plus offsets plots, from a tiny model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("matplotlib")

from posrec import checkpoint, config_lib  # noqa: E402
from posrec.errors import ConfigError  # noqa: E402
from posrec.models import sasrec  # noqa: E402
from posrec.plot_kernels import kernel_factors, plot_kernels  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
T = 6


def tiny(positional="kernel", **kernel_kw):
    config = config_lib.default_config()
    m = config.model
    m.max_len, m.hidden, m.num_heads, m.num_blocks, m.dropout = T, 8, 2, 2, 0.0
    m.positional = positional
    m.kernel.init = "identity_noise"
    m.kernel.init_noise = 0.3
    m.kernel.update(kernel_kw)
    model = sasrec.SASRec(m, 10)
    params = model.init(jax.random.key(0), jnp.ones((1, T), jnp.int32))["params"]
    return config, params


def assert_pngs(paths: list[Path]) -> None:
    import matplotlib.image

    for path in paths:
        assert path.read_bytes()[:8] == PNG_SIGNATURE, path
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50


@pytest.mark.parametrize(
    "kernel_kw,expected",
    [
        (  # 2 blocks x 2 heads x {U, L, C} + one offsets plot per block (Toeplitz U)
            dict(u="toeplitz", l="full", per_head=True),
            [f"block{b}_h{h}_{f}.png" for b in (0, 1) for h in (0, 1) for f in "ULC"]
            + ["block0_offsets.png", "block1_offsets.png"],
        ),
        (
            dict(u="decay", l="decay", share="shared", per_head=False, l_norm="softmax"),
            ["shared_h0_U.png", "shared_h0_L.png", "shared_h0_C.png", "shared_offsets.png"],
        ),
        (
            dict(u="full", l="full", per_head=False, l_norm="rowsum"),
            [f"block{b}_h0_{f}.png" for b in (0, 1) for f in "ULC"],
        ),
    ],
)
def test_one_png_per_block_head_factor(tmp_path, kernel_kw, expected):
    config, params = tiny(**kernel_kw)
    paths = plot_kernels(config, params, tmp_path / "kernels")
    assert sorted(p.name for p in paths) == sorted(expected)
    assert sorted(p.name for p in (tmp_path / "kernels").iterdir()) == sorted(expected)
    assert_pngs(paths)


def test_factors_come_from_the_params(tmp_path):
    """The plotted U of block 1 is built from block 1's own Toeplitz coefficients."""
    config, params = tiny(u="toeplitz", l="identity", per_head=False)
    factors = kernel_factors(config, params)
    coef = np.asarray(params["kernel_1"]["u_toeplitz"])[0]
    np.testing.assert_allclose(factors["block1"].U_HxTxT[0, 0], coef[:T], rtol=1e-6)
    np.testing.assert_array_equal(factors["block1"].L_HxTxT[0], np.eye(T))


def test_run_without_kernel_is_refused(tmp_path):
    config, params = tiny(positional="absolute")
    with pytest.raises(ConfigError, match="no positional kernel"):
        plot_kernels(config, params, tmp_path)


def test_cli_reads_best_checkpoint(tmp_path):
    config, params = tiny(u="toeplitz", l="full")
    workdir = tmp_path / "run"
    workdir.mkdir()
    config_lib.save_or_check(config, workdir)
    checkpoint.save(checkpoint.manager(workdir, "best"), 1, params, params, {"step": 1})
    result = subprocess.run(
        [sys.executable, "-m", "posrec.plot_kernels", f"--workdir={workdir}"],
        capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    paths = sorted((workdir / "kernels").glob("*.png"))
    assert len(paths) == 2 * 3 + 2  # 2 blocks x 1 head x {U, L, C} + 2 offsets plots
    assert_pngs(paths)


def test_cli_reports_missing_run_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "posrec.plot_kernels", f"--workdir={tmp_path / 'nope'}"],
        capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("posrec: error:") and "Traceback" not in result.stderr
