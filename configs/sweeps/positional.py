"""Positional-scheme comparison (issue 8): SASRec with each positional scheme vs the kernel.

    nohup python -m posrec.sweep --sweep=configs/sweeps/positional.py \
        --root=runs/sweeps/positional --parallel=2 >> runs/sweeps/positional.log 2>&1 &
    python -m posrec.report --root=runs/sweeps/positional

    # one data set's table first (the others stay pending):
    ... --only='beauty/*'

7 variants x 3 data sets x 3 seeds = 63 runs, each with its data set's config (T, dropout)
and the same hyperparameter grid for every variant. The grid is one learning rate: on CPU
every extra value doubles the cost. Values can be added later to the same root with
--extend (e.g. "train.learning_rate": [1e-3, 3e-3]); a new key cannot, because it renames
every run directory.

Budget (a CPU budget, the same for every variant of a data set; BUDGET below): Beauty and
Video Games 30 epochs (patience 10), ML-1M 15 epochs; length-bucketed batches for speed.
Validation every epoch, the best validation checkpoint is tested. This compares the schemes
at a fixed, modest budget, not at convergence (SASRec+ trains ML-1M for 100+ epochs).

Data: the copies in ../shared/data (relative to the directory the sweep is started from,
the repository root); edit PATHS to point elsewhere.
"""


PATHS = {  # in the order the sweep trains them (per seed)
    "beauty": "../shared/data/beauty.csv.gz",
    "video_games": "../shared/data/video-games.csv.gz",
    "ml-1m": "../shared/data/ml-1m.csv.gz",
}
CONFIGS = {
    "ml-1m": "configs/ml1m.py",
    "beauty": "configs/beauty.py",
    "video_games": "configs/video_games.py",
}
# The shared ML-1M file has order indices, not Unix times (shared/data/README.md).
EXTRA = {"ml-1m": {"data.has_real_time": False}}
SHORT = {"train.num_epochs": 30, "train.bucket_lengths": (10, 20, 50)}  # T = 50
BUDGET = {"beauty": SHORT, "video_games": SHORT,
          "ml-1m": {"train.num_epochs": 15, "train.bucket_lengths": (50, 100, 200)}}


def get_sweep():
    return dict(
        name="positional",
        datasets={
            name: dict(config=CONFIGS[name],
                       overrides={"data.path": PATHS[name], **EXTRA.get(name, {}),
                                  **BUDGET[name]})
            for name in PATHS
        },
        variants={
            "absolute": {"model.positional": "absolute"},  # SASRec: learned absolute PE
            "none": {"model.positional": "none"},
            "rope": {"model.positional": "rope"},
            "alibi": {"model.positional": "alibi"},
            "learned_bias": {"model.positional": "learned_bias"},
            # the paper's best ablation: Toeplitz U, Full L, a kernel per block (config default)
            "kernel": {"model.positional": "kernel", "model.kernel.with_pe": "none"},
            "kernel+absolute": {"model.positional": "kernel", "model.kernel.with_pe": "absolute"},
        },
        seeds=[0, 1, 2],
        hparams={"train.learning_rate": [1e-3]},
        baseline="absolute",
    )
