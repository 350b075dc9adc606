"""Pictures of a run's learned positional kernels.

    python -m posrec.plot_kernels --workdir=DIR [--out=DIR/kernels]

Reads the best checkpoint of the run in DIR and writes, for every kernel (one per block when
`model.kernel.share="layerwise"`, one named `shared` otherwise) and every head of it
(one head unless `model.kernel.per_head`), PNG heatmaps of U, L (after `l_norm`) and the
effective kernel C = U·L at the full window T = model.max_len:

    <kernel>_h<head>_{U,L,C}.png          e.g. block0_h0_U.png, shared_h1_C.png

Axes are positions in the left-padded window: 0 is the oldest slot, T-1 the most recent item.
For kernels with a Toeplitz-structured factor (`toeplitz` or `decay`) it also writes
`<kernel>_offsets.png`: the coefficient by offset d of each such factor and head, read from
the factor itself (U: first row, U_{0,d}; L: most recent row, L_{T-1,T-1-d}, i.e. after
`l_norm` as seen by the newest position).

matplotlib is an optional dependency: `pip install 'posrec[plot]'`.
"""

from __future__ import annotations

from pathlib import Path

import ml_collections
import numpy as np
from absl import app, flags

from posrec.errors import ConfigError, PosrecError
from posrec.models import kernel as kernel_lib

TOEPLITZ_LIKE = ("toeplitz", "decay")


def kernel_factors(
    config: ml_collections.ConfigDict, params
) -> dict[str, kernel_lib.KernelFactors]:
    """{label: factors at T = max_len} for every kernel module of a SASRec parameter tree.

    Labels are `block<i>` (layerwise) or `shared`; factors are numpy arrays [H, T, T].
    """
    m = config.model
    if m.positional != "kernel":
        raise ConfigError(
            f"model.positional={m.positional!r}: this run has no positional kernel to plot"
        )
    module = kernel_lib.PositionalKernel(m.kernel, m.max_len, m.num_heads)
    if m.kernel.share == "shared":
        names = {"shared": "kernel"}
    else:
        names = {f"block{i}": f"kernel_{i}" for i in range(m.num_blocks)}
    out = {}
    for label, name in names.items():
        own = params.get(name, {})
        if not own and (m.kernel.u != "identity" or m.kernel.l != "identity"):
            raise ConfigError(f"parameters have no '{name}' entry for this config's kernel")
        variables = {"params": own} if own else {}
        factors = module.apply(variables, m.max_len)
        if m.kernel.l != "identity":  # L as a full window sees it (every position real)
            factors = factors._replace(
                L_HxTxT=kernel_lib.normalize_l(factors.L_HxTxT, m.kernel.l_norm)
            )
        out[label] = kernel_lib.KernelFactors(*(np.asarray(f) for f in factors))
    return out


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise PosrecError(
            "plotting kernels needs matplotlib: pip install 'posrec[plot]'"
        ) from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _heatmap(plt, matrix_TxT: np.ndarray, title: str, path: Path) -> Path:
    """Diverging heatmap centred at 0, so sign and magnitude read at a glance."""
    lim = float(np.max(np.abs(matrix_TxT))) or 1.0
    fig, ax = plt.subplots(figsize=(5, 4.2))
    im = ax.imshow(matrix_TxT, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    fig.colorbar(im, ax=ax)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("column position (T-1 = most recent)")
    ax.set_ylabel("row position")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _offsets_plot(
    plt, factors: kernel_lib.KernelFactors, cfg: ml_collections.ConfigDict, title: str, path: Path
) -> Path:
    """Coefficient by offset of every Toeplitz-like factor and head."""
    T = factors.U_HxTxT.shape[-1]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for factor, mats in (("U", factors.U_HxTxT), ("L", factors.L_HxTxT)):
        if cfg[factor.lower()] not in TOEPLITZ_LIKE:
            continue
        for h, mat in enumerate(mats):
            coef = mat[0, :] if factor == "U" else mat[T - 1, ::-1]
            ax.plot(np.arange(T), coef, marker=".", markersize=3, label=f"{factor} head {h}")
    ax.axhline(0.0, color="grey", linewidth=0.5)
    ax.set_xlabel("offset d (positions back)")
    ax.set_ylabel("coefficient")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_kernels(config: ml_collections.ConfigDict, params, out_dir: Path) -> list[Path]:
    """Write the kernel pictures of `params` (a SASRec parameter tree) into `out_dir`.

    Returns the written paths: 3 heatmaps per kernel and head, plus one offsets plot per
    kernel with a `toeplitz` or `decay` factor.
    """
    plt = _pyplot()
    cfg = config.model.kernel
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for label, factors in kernel_factors(config, params).items():
        C = np.asarray(kernel_lib.effective_kernel(factors))
        for h in range(factors.U_HxTxT.shape[0]):
            for name, mats, kind in (
                ("U", factors.U_HxTxT, f"{cfg.u}, on logits"),
                ("L", factors.L_HxTxT, f"{cfg.l}, l_norm={cfg.l_norm}, on values"),
                ("C", C, "U·L"),
            ):
                title = f"{label} head {h}: {name} ({kind})"
                written.append(_heatmap(plt, mats[h], title, out_dir / f"{label}_h{h}_{name}.png"))
        if cfg.u in TOEPLITZ_LIKE or cfg.l in TOEPLITZ_LIKE:
            title = f"{label}: coefficients by offset (U {cfg.u}, L {cfg.l})"
            path = out_dir / f"{label}_offsets.png"
            written.append(_offsets_plot(plt, factors, cfg, title, path))
    return written


def _define_flags() -> None:
    """CLI flags, defined only when run as a program (posrec.main defines the same names)."""
    flags.DEFINE_string("workdir", None, "Run directory with checkpoints/best.")
    flags.DEFINE_string("out", None, "Output directory (default: WORKDIR/kernels).")
    flags.DEFINE_bool("debug", False, "Show tracebacks for posrec errors.")
    flags.mark_flags_as_required(["workdir"])


def main(argv: list[str]) -> None:
    """Restore the best checkpoint of --workdir and write its kernel pictures."""
    from posrec import checkpoint
    from posrec.cli import report_errors

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    FLAGS = flags.FLAGS
    with report_errors(FLAGS.debug):
        workdir = Path(FLAGS.workdir)
        restored = checkpoint.restore_params(workdir, which="best")  # (config, params, ...)
        config, params = restored[0], restored[1]
        out = Path(FLAGS.out) if FLAGS.out else workdir / "kernels"
        paths = plot_kernels(config, params, out)
        print(f"wrote {len(paths)} kernel pictures to {out}")


if __name__ == "__main__":
    _define_flags()
    from posrec.cli import parse_flags

    app.run(main, flags_parser=parse_flags)
