"""Orbax checkpoints of a run: `workdir/checkpoints/{latest,best}/<step>/`.

Each checkpoint holds three items: `params`, `opt_state` and `meta` (JSON: epoch, position
in the epoch, early-stopping state, catalog size). `latest` is written at the end of every
epoch, every `train.checkpoint_every` steps within one, and on preemption, for resuming;
`best` whenever validation NDCG@10 improves, and is what gets tested, evaluated and plotted.
Orbax writes into a temporary directory and renames it, so an interrupted save leaves no
half-written step that restore would pick up; a step that still fails to restore is skipped
in favour of an older one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from posrec import config_lib
from posrec.errors import CheckpointError

KINDS = ("latest", "best")


def manager(workdir: Path, kind: str, *, cleanup_tmp: bool = False) -> ocp.CheckpointManager:
    """The `latest` or `best` manager of a run (keeps 2 steps, saves synchronously)."""
    if kind not in KINDS:
        raise ValueError(f"checkpoint kind {kind!r} not in {KINDS}")
    return ocp.CheckpointManager(
        Path(workdir).absolute() / "checkpoints" / kind,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=2,
            create=True,
            enable_async_checkpointing=False,
            # A save killed mid-write leaves `<step>.orbax-checkpoint-tmp*`, never listed as a
            # step. Only the training process removes them: a reader (evaluate, recommend)
            # running next to a training run must not delete the save in progress.
            cleanup_tmp_directories=cleanup_tmp,
        ),
        item_names=("params", "opt_state", "meta"),
    )


def save(mngr: ocp.CheckpointManager, step: int, params, opt_state, meta: dict) -> None:
    """Write `step` synchronously, replacing an existing checkpoint of the same step.

    A step can be saved twice after an interruption: e.g. killed after `best` was written at
    step S but before `latest` was, the resumed run replays up to S and saves `best` at S
    again (with the same contents, since resume is exact); orbax refuses an existing step.
    """
    if step in mngr.all_steps():
        mngr.delete(step)
    mngr.save(
        step,
        args=ocp.args.Composite(
            params=ocp.args.StandardSave(params),
            opt_state=ocp.args.StandardSave(opt_state),
            meta=ocp.args.JsonSave(meta),
        ),
        force=True,
    )
    mngr.wait_until_finished()


def restore(
    mngr: ocp.CheckpointManager, params_like, opt_state_like
) -> tuple[Any, Any, dict] | None:
    """(params, opt_state, meta) of the newest restorable step, or None if there is none.

    `*_like` are pytrees of arrays (or ShapeDtypeStructs) of the expected structure; a
    checkpoint from another config fails with CheckpointError naming the mismatch.
    """
    errors = []
    for step in sorted(mngr.all_steps(), reverse=True):
        try:
            out = mngr.restore(
                step,
                args=ocp.args.Composite(
                    params=ocp.args.StandardRestore(_abstract(params_like)),
                    opt_state=ocp.args.StandardRestore(_abstract(opt_state_like)),
                    meta=ocp.args.JsonRestore(),
                ),
            )
        except (ValueError, KeyError, TypeError) as err:
            if _is_structure_mismatch(err):
                raise CheckpointError(
                    f"checkpoint {mngr.directory}/{step} does not match this config's model "
                    f"({_short(err)}); use a new --workdir or the original config"
                ) from err
            errors.append(f"step {step}: {_short(err)}")
            continue
        except Exception as err:  # corrupt files: try an older step
            errors.append(f"step {step}: {_short(err)}")
            continue
        where = f"{mngr.directory}/{step}"
        _check_shapes(out["params"], params_like, where)
        _check_shapes(out["opt_state"], opt_state_like, where)
        return out["params"], out["opt_state"], dict(out["meta"])
    if errors:
        raise CheckpointError(
            f"no restorable checkpoint in {mngr.directory}: " + "; ".join(errors)
            + ". Delete the directory to start over."
        )
    return None


def restore_params(workdir: Path, which: str = "best") -> tuple[Any, Any, dict]:
    """(config, params, meta) of a run's best (or latest) checkpoint, for evaluation/plots."""
    config = config_lib.load(workdir)
    mngr = manager(workdir, which)
    steps = sorted(mngr.all_steps(), reverse=True)
    if not steps:
        raise CheckpointError(f"no {which} checkpoint under {Path(workdir) / 'checkpoints'}")
    errors = []
    for step in steps:
        try:
            out = mngr.restore(
                step,
                args=ocp.args.Composite(
                    # Saved on other devices (e.g. 2 devices, restored on 1): onto the first
                    # local device; callers replicate as they need (parallel.Plan.replicate).
                    params=ocp.args.StandardRestore(fallback_sharding=_first_local_device()),
                    meta=ocp.args.JsonRestore(),
                ),
            )
            return config, out["params"], dict(out["meta"])
        except Exception as err:  # corrupt: try an older one
            errors.append(f"step {step}: {_short(err)}")
    raise CheckpointError(f"no restorable {which} checkpoint in {mngr.directory}: {errors}")


def check_same_data(meta: dict, fingerprint: str, num_items: int, where: str | Path) -> None:
    """Refuse a checkpoint (its saved `meta`) that was trained on other data than the data
    now loaded. Checkpoints written before fingerprints existed are checked by item count."""
    saved = meta.get("data_fingerprint")
    if meta.get("num_items", num_items) != num_items or (saved and saved != fingerprint):
        raise CheckpointError(
            f"{where}: the checkpoint was trained on other data ({meta.get('num_items')} "
            f"items, data fingerprint {str(saved)[:12]}) than the data now loaded "
            f"({num_items} items, {fingerprint[:12]}): the data file or its preprocessing "
            "changed. Restore the original data, or train in a new --workdir"
        )


def _first_local_device() -> jax.sharding.Sharding:
    return jax.sharding.SingleDeviceSharding(jax.local_devices()[0])


def _check_shapes(restored, like, where: str) -> None:
    """CheckpointError unless every restored array has the expected shape and dtype.

    Orbax checks the tree structure but restores each array with its *saved* shape, so a
    checkpoint of another hidden size or catalog would otherwise load and fail later inside
    jit with an unrelated-looking error.
    """
    got, got_def = jax.tree_util.tree_flatten_with_path(restored)
    want, want_def = jax.tree_util.tree_flatten_with_path(like)
    if got_def != want_def:
        raise CheckpointError(
            f"checkpoint {where} has another parameter structure than this config's model; "
            "use a new --workdir or the original config"
        )
    for (path, a), (_, b) in zip(got, want, strict=True):
        if tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
            raise CheckpointError(
                f"checkpoint {where} does not match this config's model: "
                f"{jax.tree_util.keystr(path)} is {a.dtype}{list(a.shape)} there, "
                f"{b.dtype}{list(b.shape)} here; use a new --workdir or the original config"
            )


def _abstract(tree):
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _is_structure_mismatch(err: Exception) -> bool:
    msg = str(err).lower()
    return any(s in msg for s in ("shape", "structure", "mismatch", "missing", "unexpected"))


def _short(err: Exception) -> str:
    return str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
