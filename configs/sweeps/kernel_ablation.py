"""Kernel ablation on Amazon Beauty (issue 8): U/L parametrizations, sharing, operator forms.

    nohup python -m posrec.sweep --sweep=configs/sweeps/kernel_ablation.py \
        --root=runs/sweeps/kernel_ablation >> runs/sweeps/kernel_ablation.log 2>&1 &
    python -m posrec.report --root=runs/sweeps/kernel_ablation

Variants, named U-L-sharing[-form]:
  * Full/Toeplitz for each of U and L x layer-wise/shared (8), with the `ul` form;
  * one factor only (U or L, the other the identity), layer-wise;
  * the other operator forms (alt1, alt2, mult) with the default factors (Toeplitz U, Full L,
    layer-wise);
  * SASRec with absolute PE, the baseline of the report.
One seed each (14 runs), 30 epochs each (bucketed batches), then seeds 1 and 2 of the two
TOP variants and of the baseline: 20 runs as the file stands. For the issue's "3 seeds for
the top two" the first pass ran with TOP empty; the two best by validation NDCG@10 were then
named in TOP and the same command rerun with --extend (in a new root, one command does both).
"""

PATHS = {"beauty": "../shared/data/beauty.csv.gz"}
# The two variants with the best validation NDCG@10 after the one-seed pass (fourth session:
# toeplitz-identity 0.0662, alt2 0.0660, then mult 0.0656 and the default 0.0654), chosen on
# validation only; they and the baseline get seeds 1 and 2 (--extend).
TOP = ("toeplitz-identity-layerwise", "toeplitz-full-layerwise-alt2")
# The Beauty budget of configs/sweeps/positional.py, so the two tables compare.
BUDGET = {"train.num_epochs": 30, "train.bucket_lengths": (10, 20, 50)}


def kernel(upper, lower, share, form="ul"):
    return {"model.positional": "kernel", "model.kernel.u": upper, "model.kernel.l": lower,
            "model.kernel.share": share, "model.kernel.form": form}


def get_sweep():
    variants = {"absolute": {"model.positional": "absolute"}}
    for share in ("layerwise", "shared"):
        for upper in ("toeplitz", "full"):
            for lower in ("full", "toeplitz"):
                variants[f"{upper}-{lower}-{share}"] = kernel(upper, lower, share)
    variants["toeplitz-identity-layerwise"] = kernel("toeplitz", "identity", "layerwise")
    variants["identity-full-layerwise"] = kernel("identity", "full", "layerwise")
    for form in ("alt1", "alt2", "mult"):
        variants[f"toeplitz-full-layerwise-{form}"] = kernel("toeplitz", "full", "layerwise", form)
    return dict(
        name="kernel_ablation",
        datasets={"beauty": dict(config="configs/beauty.py",
                                 overrides={"data.path": PATHS["beauty"],
                                            **BUDGET})},
        variants=variants,
        seeds=[0],
        variant_seeds={name: [0, 1, 2] for name in (*TOP, "absolute")},
        hparams={"train.learning_rate": [1e-3]},
        baseline="absolute",
    )
