"""Data parallelism over local devices and processes, and multi-host start-up.

One per-device function runs on every device, built in one of two ways
(`config.train.parallelism`):

  * "sharding": `jax.jit(jax.shard_map(f, mesh=Mesh(devices, ("data",)), ...))` with the
    batch arrays sharded on `P("data")`;
  * "pmap": `jax.pmap(f, axis_name="data", devices=...)` with the batch reshaped
    [D_local, B/D, ...].

`f` is `train.train_step` (with `axis_name="data"`: it psums the loss numerator, the target
count and the gradients) or the evaluation scorer (no collectives). `f` is written for one
device and knows nothing of shard_map, so shard_map's varying-axes type check is off
(`check_vma=False`; loops inside `f` start from device-invariant zeros); the outputs declared
replicated are psums, and the tests compare both ways with one device. In both ways the train
state lives as *replicated global arrays of their natural shapes* (pmap takes and returns it
with in_axes/out_axes None), so `int(state.step)`, checkpoints (one unreplicated copy, which
restores on any number of devices) and evaluation see the same thing. One device is the same
path with D = 1.

Batch layout. The global batch of B rows is split into contiguous blocks: process p builds
and feeds rows [p·B/P, (p+1)·B/P) (`batching.TrainBatches(process_shard=...)`) and each of the
D devices gets B/D of them, in mesh order (process-major). Training requires B to be a
multiple of D and raises ConfigError otherwise (padding would silently train on a batch
other than the configured one); evaluation pads each user batch with invalid rows to a
multiple of D and drops them after gathering, so no user is dropped or counted twice.

Randomness does not depend on the split: the step gets the global row index of each example
(`batch["rows"]`), dropout keys are fold_in(step key, row), and shared negatives come from the
step key, so D devices reproduce one device on the same global batch up to float rounding
of the cross-device sums (tested to 1e-5 with SGD; Adam's m/√v can turn that rounding into
learning-rate-sized differences on parameters whose exact gradient is ~0, such as attention
key biases, so whole runs on different device counts agree statistically, not bitwise).

Multi-host (`initialize_distributed`, called by main.py before anything touches a device):
an explicit coordinator (flags, or POSREC_COORDINATOR / POSREC_NUM_PROCESSES /
POSREC_PROCESS_ID), or JAX's cluster auto-detection (SLURM with more than one task, TPU VMs,
with --distributed or POSREC_DISTRIBUTED=1). Joining is bounded by a timeout with a clear
error; `check_same` then makes every process prove it runs the same config and data.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from posrec.errors import ConfigError, PosrecError

AXIS = "data"
PARALLELISM = ("sharding", "pmap")

ENV_COORDINATOR = "POSREC_COORDINATOR"
ENV_NUM_PROCESSES = "POSREC_NUM_PROCESSES"
ENV_PROCESS_ID = "POSREC_PROCESS_ID"
ENV_DISTRIBUTED = "POSREC_DISTRIBUTED"  # "1": let JAX detect the cluster (SLURM, TPU VM)


class DistributedError(PosrecError):
    """Joining or running a multi-process job failed (coordinator, peers, disagreement)."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """Which devices a run uses and how the per-device functions are mapped onto them.

    `devices` lists every participating device of every process, process-major, and is the
    order of the 1-D mesh `("data",)`; `local_devices` are this process's share.
    """

    mode: str
    devices: tuple[Any, ...]

    @functools.cached_property
    def mesh(self) -> Mesh:
        return Mesh(np.array(self.devices), (AXIS,))

    @property
    def num_devices(self) -> int:
        return len(self.devices)

    @property
    def process_index(self) -> int:
        return jax.process_index()

    @property
    def process_count(self) -> int:
        return jax.process_count()

    @property
    def local_devices(self) -> tuple[Any, ...]:
        return tuple(d for d in self.devices if d.process_index == self.process_index)

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    def check_batch_size(self, batch_size: int) -> None:
        """ConfigError unless the global training batch splits evenly over the devices."""
        D = self.num_devices
        if batch_size < D:
            raise ConfigError(
                f"config.train.batch_size={batch_size} is smaller than the {D} devices it is "
                f"split over; use a multiple of {D} or fewer devices (config.train.num_devices)"
            )
        if batch_size % D:
            lo, hi = batch_size // D * D, (batch_size // D + 1) * D
            raise ConfigError(
                f"config.train.batch_size={batch_size} does not split evenly over {D} "
                f"devices; use a multiple of {D} (e.g. {lo} or {hi})"
            )

    def check_rng_impl(self, impl: str) -> None:
        """ConfigError unless keys of `impl` work inside this plan's mapped step.

        JAX 0.10.2's philox2x32 fails to compile when partitioned over more than one device
        (its 32x32->64-bit multiply does not lower under manual sharding), in both modes; a
        tiny compile finds out for the installed JAX before any data is read.
        """
        if self.num_devices == 1 or impl == "threefry2x32":
            return
        probe = jax.jit(jax.shard_map(lambda k: jax.random.bits(k, (2,)), mesh=self.mesh,
                                      in_specs=P(), out_specs=P(), check_vma=False))
        try:
            probe.lower(jax.random.key(0, impl=impl)).compile()
        except Exception as err:  # the JAX error type varies by version and backend
            raise ConfigError(
                f"config.train.rng_impl={impl!r} does not compile on {self.num_devices} "
                f"devices with JAX {jax.__version__} ({str(err).splitlines()[0][:120]}); use "
                "'threefry2x32' or 'rbg' for multi-device runs, or one device"
            ) from err

    def replicate(self, tree: Any) -> Any:
        """Every leaf as a global array replicated on all devices (no-op if it already is).

        Leaves may be numpy arrays, arrays on one device (e.g. a restored checkpoint), or PRNG
        key arrays; in a multi-process run every process must pass the same values.
        """
        sharding = self.replicated

        def put(x):
            if isinstance(x, jax.Array) and x.sharding == sharding:
                return x
            if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
                data = put(jax.random.key_data(x))
                return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
            if isinstance(x, jax.Array) and not x.is_fully_addressable:
                return jax.device_put(x, sharding)
            host = np.asarray(x)
            return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

        return jax.tree.map(put, tree)

    def _put_batch(self, local: dict[str, np.ndarray]) -> dict[str, Any]:
        """This process's rows [b, ...] -> the per-device layout of `mode`."""
        D_local = len(self.local_devices)
        if self.mode == "pmap":
            return {k: v.reshape(D_local, v.shape[0] // D_local, *v.shape[1:])
                    for k, v in local.items()}
        sharding = NamedSharding(self.mesh, P(AXIS))
        return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}

    def make_train_step(self, per_device_step: Callable) -> Callable:
        """(state, local_batch, rng) -> (state, metrics) over all devices.

        `per_device_step(state, batch, rng, *, axis_name)` is `train.train_step` (partially
        applied). `local_batch` holds this process's rows ("inputs", "targets": [b, T] numpy);
        the wrapper adds "rows", their global indices, and places them. `state` and `rng`
        must be replicated (`replicate`); the returned state and metrics are too.
        """
        f = functools.partial(per_device_step, axis_name=AXIS)
        if self.mode == "pmap":
            mapped = jax.pmap(f, axis_name=AXIS, in_axes=(None, 0, None), out_axes=None,
                              devices=self.devices, donate_argnums=0)
        else:
            mapped = jax.jit(
                jax.shard_map(f, mesh=self.mesh, in_specs=(P(), P(AXIS), P()),
                              out_specs=P(), check_vma=False),
                donate_argnums=0,
            )
        D_local = len(self.local_devices)

        def step(state, batch: dict[str, np.ndarray], rng):
            b = len(batch["targets"])
            if b % D_local:
                raise ConfigError(f"a batch of {b} rows does not split over {D_local} devices")
            lo = self.process_index * b
            local = dict(batch, rows=np.arange(lo, lo + b, dtype=np.int32))
            state, metrics = mapped(state, self._put_batch(local), rng)
            if self.mode == "pmap" and self.process_count > 1:
                # multi-process pmap returns host-local arrays; make them global again so that
                # checkpoints and the next step see one replicated array
                state, metrics = multihost_utils.host_local_array_to_global_array(
                    (state, metrics), self.mesh, P()
                )
            return state, metrics

        return step

    def make_scorer(self, per_device_score: Callable) -> Scorer:
        return Scorer(self, per_device_score)


class Scorer:
    """Runs a per-device scorer over all devices on whole (global) evaluation batches.

    `per_device_score(params, inputs_BxT, targets_B, seen_BxS) -> (ranks_B, topk_BxK)` has
    no collectives. Calling the Scorer with a global batch of B users pads it to a multiple of
    D with rows of target 0, feeds this process's block, gathers every process's results and
    returns numpy (ranks_B, topk_BxK) for exactly the B input rows. Every process must call it
    with the same batches (they all iterate the full evaluation set).
    """

    def __init__(self, plan: Plan, per_device_score: Callable) -> None:
        self.plan = plan
        if plan.mode == "pmap":
            self._mapped = jax.pmap(per_device_score, axis_name=AXIS, in_axes=(None, 0, 0, 0),
                                    devices=plan.devices)
        else:
            spec = P(AXIS)
            self._mapped = jax.jit(jax.shard_map(
                per_device_score, mesh=plan.mesh, in_specs=(P(), spec, spec, spec),
                out_specs=spec, check_vma=False,
            ))

    def place(self, params: Any) -> Any:
        """Parameters replicated on the scorer's devices (once per evaluation, not per batch)."""
        return self.plan.replicate(params)

    def __call__(self, params, inputs_BxT, targets_B, seen_BxS) -> tuple[np.ndarray, np.ndarray]:
        plan = self.plan
        B = len(targets_B)
        Bp = -(-B // plan.num_devices) * plan.num_devices
        arrays = [np.asarray(x) for x in (inputs_BxT, targets_B, seen_BxS)]
        arrays = [np.pad(x, [(0, Bp - B)] + [(0, 0)] * (x.ndim - 1)) for x in arrays]
        b = Bp // plan.process_count
        lo = plan.process_index * b
        local = plan._put_batch(
            dict(zip(("inputs", "targets", "seen"), (x[lo : lo + b] for x in arrays)))
        )
        out = self._mapped(params, local["inputs"], local["targets"], local["seen"])
        ranks_B, topk_BxK = (self._gather(x) for x in out)
        return ranks_B[:B], topk_BxK[:B]

    def _gather(self, x) -> np.ndarray:
        if self.plan.mode == "pmap":  # host-local [D_local, b, ...] -> [D_local·b, ...]
            x = np.asarray(x)
            x = x.reshape(-1, *x.shape[2:])
        if self.plan.process_count == 1:
            return np.asarray(x)
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def make_plan(parallelism: str = "sharding", num_devices: int = 0) -> Plan:
    """The first `num_devices` local devices of every process (0 = all of them).

    Raises ConfigError when a process has fewer devices than requested.
    """
    if parallelism not in PARALLELISM:
        raise ConfigError(f"config.train.parallelism={parallelism!r} is not one of "
                          f"{list(PARALLELISM)}")
    local = jax.local_devices()
    if num_devices < 0 or num_devices > len(local):
        raise ConfigError(
            f"config.train.num_devices={num_devices}, but this process has {len(local)} "
            f"{local[0].platform} device(s); use 0 (all) or at most {len(local)}"
            + (" (for CPU tests: XLA_FLAGS=--xla_force_host_platform_device_count=N)"
               if local[0].platform == "cpu" else "")
        )
    by_process: dict[int, list] = {}
    for d in sorted(jax.devices(), key=lambda d: (d.process_index, d.id)):
        by_process.setdefault(d.process_index, []).append(d)
    n = num_devices or len(local)
    if any(len(ds) < n for ds in by_process.values()):
        counts = {p: len(ds) for p, ds in sorted(by_process.items())}
        raise ConfigError(f"every process needs {n} devices; devices per process: {counts}")
    devices = tuple(d for p in sorted(by_process) for d in by_process[p][:n])
    return Plan(parallelism, devices)


def plan_for(config: ml_collections.ConfigDict) -> Plan:
    """`make_plan` from `config.train`, with the global batch size checked against it."""
    plan = make_plan(config.train.parallelism, int(config.train.num_devices))
    plan.check_batch_size(int(config.train.batch_size))
    plan.check_rng_impl(config.train.rng_impl)
    return plan


def is_primary() -> bool:
    """Whether this process writes logs, metrics and results (process 0)."""
    return jax.process_index() == 0


def any_process(flag: bool) -> bool:
    """Whether `flag` is true on any process (one all-gather of an int32; every process must
    call it at the same point); `flag` itself in a single-process run."""
    if jax.process_count() == 1:
        return bool(flag)
    return bool(np.asarray(multihost_utils.process_allgather(np.int32(flag))).any())


def check_same(what: str, payload: Any) -> None:
    """DistributedError on every process unless all processes pass the same JSON `payload`.

    Compares a SHA-256 digest of the canonical JSON across processes (one small all-gather);
    a no-op in a single-process run.
    """
    if jax.process_count() == 1:
        return
    text = json.dumps(payload, sort_keys=True, default=str)
    digest = np.frombuffer(hashlib.sha256(text.encode()).digest()[:8], np.uint32).copy()
    all_PxW = np.asarray(multihost_utils.process_allgather(digest))
    differ = [p for p in range(len(all_PxW)) if not np.array_equal(all_PxW[p], all_PxW[0])]
    if differ:
        raise DistributedError(
            f"processes disagree on the {what}: process(es) {differ} differ from process 0 "
            f"(this is process {jax.process_index()}); start every process with the same "
            "--config, overrides and data"
        )


def initialize_distributed(
    coordinator_address: str = "",
    num_processes: int = 0,
    process_id: int = -1,
    auto: bool = False,
    timeout_s: int = 300,
) -> bool:
    """Join a multi-process JAX run if one is configured; returns whether one was joined.

    Sources, first match wins: the arguments (main.py flags), the POSREC_COORDINATOR /
    POSREC_NUM_PROCESSES / POSREC_PROCESS_ID environment, then JAX's auto-detection when
    `auto` or POSREC_DISTRIBUTED=1, or inside a SLURM job step (srun) with more than one task.
    Must run before anything touches a device. If the processes have not all joined within
    `timeout_s`, prints a clear error and exits with status 2 (JAX itself would abort the
    process with a C++ check failure, which no Python code can catch).
    """
    env = os.environ
    coordinator = coordinator_address or env.get(ENV_COORDINATOR, "")
    n = num_processes or int(env.get(ENV_NUM_PROCESSES, "0") or 0)
    pid = process_id if process_id >= 0 else int(env.get(ENV_PROCESS_ID, "-1") or -1)
    auto = auto or env.get(ENV_DISTRIBUTED, "") in ("1", "true", "auto")
    # Only a job step's own task count: sbatch/salloc export SLURM_NTASKS (the allocation's)
    # to the batch script too, where a plain run is a single process with no peers.
    slurm = int(env.get("SLURM_STEP_NUM_TASKS", "1") or 1) > 1
    if coordinator:
        if n < 1 or not 0 <= pid < n:
            raise ConfigError(
                f"a coordinator ({coordinator}) needs --num_processes >= 1 and "
                f"0 <= --process_id < num_processes (got {n} and {pid}); or set "
                f"{ENV_NUM_PROCESSES} / {ENV_PROCESS_ID}"
            )
        if ":" not in coordinator:
            raise ConfigError(f"coordinator address {coordinator!r} must be host:port")
        kwargs = dict(coordinator_address=coordinator, num_processes=n, process_id=pid)
        where = f"coordinator {coordinator} as process {pid} of {n}"
    elif auto or slurm:
        kwargs, where = {}, "the cluster found by JAX's auto-detection (SLURM / TPU VM)"
        coordinator, pid = "", -1
    else:
        return False

    joined = threading.Event()

    def watchdog() -> None:
        if joined.wait(timeout_s):
            return
        hint = ""
        if coordinator and pid != 0:
            reachable = _can_connect(coordinator)
            hint = (" The coordinator port accepts connections, so some other process is "
                    "missing or was started with another --num_processes."
                    if reachable else
                    " Nothing accepts connections there: start process 0 first (it hosts "
                    "the coordinator) and check host, port and firewall.")
        elif coordinator:
            hint = (f" This process hosts the coordinator; not all {n} processes joined "
                    "(are they started, with the same address and --num_processes?).")
        print(f"posrec: error: could not join the distributed run at {where} within "
              f"{timeout_s}s (--initialization_timeout).{hint}", file=sys.stderr, flush=True)
        os._exit(2)

    threading.Thread(target=watchdog, daemon=True, name="posrec-join-watchdog").start()
    try:
        # JAX's own deadline is longer, so the watchdog's message comes first.
        jax.distributed.initialize(**kwargs, initialization_timeout=int(timeout_s) + 60)
    except (ValueError, RuntimeError) as e:  # e.g. auto-detection outside any cluster
        raise ConfigError(
            f"could not start the distributed run at {where}: {e} (outside a SLURM step or "
            "TPU VM, give --coordinator_address, --num_processes and --process_id, or "
            "leave out --distributed)") from e
    finally:
        joined.set()
    return True


def _can_connect(address: str, wait_s: float = 2.0) -> bool:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
                return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
