"""Data parallelism on 2 forced CPU devices against one device (tests/parallel_worker.py).

The worker runs in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=2
(JAX reads it once, at import). The reference here is independent of posrec.parallel: a
plain `jax.jit(train.train_step)` on the whole global batch on this process's one device.
"""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import parallel_worker as pw
import pytest

from posrec import checkpoint, config_lib, parallel, train
from posrec.errors import ConfigError

# The single-device reference steps of parallel_test and distributed_test are one program:
# with the persistent compilation cache the second module loads it instead of compiling.
pytestmark = pytest.mark.usefixtures("jax_compile_cache")
TRAINED = ["sharding/ce", "pmap/ce"]
MORE_LOSSES = ["ce_chunked", "bce", "sampled_softmax"]  # slow test below


def run_worker(out: Path, *losses: str):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    worker = Path(__file__).with_name("parallel_worker.py")
    proc = subprocess.run([sys.executable, str(worker), str(out), *losses], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, json.loads((out / "report.json").read_text()), dict(np.load(out / "arrays.npz"))


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory):
    return run_worker(tmp_path_factory.mktemp("two_devices"))


def leaves(params, prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}{jax.tree_util.keystr(p)}": np.asarray(x)
            for p, x in jax.tree_util.tree_leaves_with_path(params)}


@functools.cache
def reference(loss_name: str):
    """(initial params, params after the steps, loss values): one device, no parallel.py."""
    model, state = pw.model_and_state(pw.tiny_config())
    init = leaves(state.params, "")
    step = jax.jit(functools.partial(train.train_step, model=model,
                                     loss_fn=pw.loss_fn(loss_name)))
    values = []
    for batch in pw.global_batches():
        state, m = step(state, batch, jax.random.key(3))
        values.append(float(m["loss"]))
    return init, leaves(state.params, ""), values


@pytest.mark.parametrize("key", TRAINED)
def test_two_devices_train_like_one_device(two_devices, key):
    """k steps with dropout 0.2 and unevenly padded rows: same parameters (1e-5) and loss."""
    check_against_reference(*two_devices, key)


@pytest.mark.slow
def test_two_devices_train_like_one_device_with_other_losses(tmp_path):
    """Chunked CE under shard_map; BCE draws per-row negatives from the global row index,
    sampled softmax shares its negatives through the step key: all give one device's
    parameters on two."""
    result = run_worker(tmp_path, *MORE_LOSSES)
    for loss_name in MORE_LOSSES:
        check_against_reference(*result, f"sharding/{loss_name}")


def check_against_reference(out, report, arrays, key):
    mode, loss_name = key.split("/")
    init, want, want_values = reference(loss_name)
    moved = max(float(np.abs(want[k] - init[k]).max()) for k in want)
    assert moved > 1e-2  # the steps did change the parameters
    for name, value in want.items():
        np.testing.assert_allclose(arrays[key + name], value, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(report["loss_values"][key], want_values, rtol=1e-5)


def test_pmap_and_sharding_agree(two_devices):
    _, _, arrays = two_devices
    names = [k[len("pmap/ce"):] for k in arrays if k.startswith("pmap/ce[")]
    assert names
    for name in names:
        np.testing.assert_allclose(arrays["pmap/ce" + name], arrays["sharding/ce" + name],
                                   atol=1e-5, err_msg=name)


def test_checkpoint_from_two_devices_restores_on_one(two_devices):
    out, _, arrays = two_devices
    _, params, meta = checkpoint.restore_params(out / "run", "best")
    assert meta["step"] == pw.STEPS
    for name, value in leaves(params, "sharding/ce").items():
        np.testing.assert_array_equal(value, arrays[name])
    _, state = pw.model_and_state(pw.tiny_config())  # 1-device arrays as the target
    got, _, _ = checkpoint.restore(checkpoint.manager(out / "run", "best"), state.params,
                                   state.opt_state)
    for name, value in leaves(got, "sharding/ce").items():
        np.testing.assert_array_equal(value, arrays[name])


@pytest.fixture(scope="module")
def one_device_evaluation(two_devices):
    """The 2-device checkpoint evaluated here, on one device, in one item chunk."""
    out, _, _ = two_devices
    _, params, _ = checkpoint.restore_params(out / "run", "best")
    return pw.evaluate_with_plan(parallel.make_plan("sharding", 1), params, 0)


@pytest.mark.parametrize("mode,chunk", pw.EVALUATIONS)
def test_evaluation_identical_on_two_devices(two_devices, one_device_evaluation, mode, chunk):
    """23 users, batches of 5, 2 devices, catalog in chunks of 7 or whole: every user once,
    the same ranks and metrics as one device scoring the whole catalog."""
    _, report, arrays = two_devices
    summary, per_user = one_device_evaluation
    assert summary["num_users"] == 23
    np.testing.assert_array_equal(per_user["users"], np.arange(23))
    np.testing.assert_array_equal(arrays[f"eval/{mode}/{chunk}/rank"], per_user["rank"])
    assert report[f"eval/{mode}/{chunk}"] == summary


def test_bad_device_requests_are_clear_errors(two_devices):
    _, report, _ = two_devices
    errors = report["errors"]
    assert "num_devices=3" in errors["too_many_devices"]
    assert "at most 2" in errors["too_many_devices"]
    assert "batch_size=1 is smaller than the 2 devices" in errors["batch_smaller_than_devices"]
    assert "multiple of 2 (e.g. 6 or 8)" in errors["batch_not_divisible"]
    assert "parallelism='threads'" in errors["bad_parallelism"]


def test_rng_impl_check_agrees_with_two_device_training(two_devices):
    """`Plan.check_rng_impl` refuses exactly the PRNGs whose keys fail inside a real 2-device
    step (philox2x32 with JAX 0.10.2), and names the setting and the way out."""
    _, report, _ = two_devices
    for key, r in report["rng_impls"].items():
        assert (r["check"] == "") == (r["step"] == "ok"), (key, r)
        if r["check"]:
            assert "rng_impl=" in r["check"] and "'threefry2x32'" in r["check"], r["check"]
    assert report["rng_impls"]["sharding/rbg"] == dict(check="", step="ok")


def test_too_many_devices_fails_before_anything_is_written(tmp_path):
    config = pw.tiny_config()
    config.train.num_devices = jax.local_device_count() + 1
    with pytest.raises(ConfigError, match="num_devices"):
        train.train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    for key, value in (("parallelism", "threads"), ("num_devices", -1)):
        config = pw.tiny_config()
        config.train[key] = value
        with pytest.raises(ConfigError, match=key):
            config_lib.validate(config)
