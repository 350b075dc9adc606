"""ML-1M at a fixed budget: absolute PE vs none vs three kernel parametrizations (issue 3).

    nohup python -m posrec.sweep --sweep=configs/sweeps/ml1m_budget.py \
        --root=runs/sweeps/ml1m_budget --parallel=2 >> runs/sweeps/ml1m_budget.log 2>&1 &
    python -m posrec.report --root=runs/sweeps/ml1m_budget

SASRec+ setup (T=200, d=64, 2 blocks, 1 head, dropout 0.1, lr 1e-3, batch 128, CE), one
seed, length-bucketed batches (T in 50/100/200, for CPU speed; the same for every variant),
every variant trained for the same 15 epochs (validation every epoch, the best
validation checkpoint tested). 15 epochs is far from convergence on ML-1M (SASRec+ needs
~100+): this compares how fast each scheme learns on a CPU budget, not final accuracy.
"""

PATH = "../shared/data/ml-1m.csv.gz"


def get_sweep():
    return dict(
        name="ml1m_budget",
        datasets={
            "ml-1m": dict(
                config="configs/ml1m.py",
                overrides={"data.path": PATH, "data.has_real_time": False},
            )
        },
        variants={
            "kernel_toeplitz_full": {
                "model.positional": "kernel", "model.kernel.u": "toeplitz", "model.kernel.l": "full"
            },
            "absolute": {"model.positional": "absolute"},
            "none": {"model.positional": "none"},
            "kernel_full_full": {
                "model.positional": "kernel", "model.kernel.u": "full", "model.kernel.l": "full"
            },
            "kernel_toeplitz_toeplitz": {
                "model.positional": "kernel", "model.kernel.u": "toeplitz",
                "model.kernel.l": "toeplitz",
            },
        },
        seeds=[0],
        common={"train.num_epochs": 15, "train.bucket_lengths": (50, 100, 200)},
        baseline="absolute",
    )
