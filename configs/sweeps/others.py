"""The remaining data sets of ../shared/data (issue 8): absolute PE vs the default kernel.

    nohup python -m posrec.sweep --sweep=configs/sweeps/others.py \
        --root=runs/sweeps/others >> runs/sweeps/others.log 2>&1 &
    python -m posrec.report --root=runs/sweeps/others

5 data sets x 2 variants x 1 seed = 10 runs, each with its data set's config. ML-1M, Beauty
and Video Games are in configs/sweeps/positional.py. Edit PATHS to point elsewhere.

Budget (as in positional.py, the same for both variants): 30 epochs (patience 10), length-
bucketed batches; validation every epoch, the best validation checkpoint is tested.
"""

PATHS = {
    "ml-100k": "../shared/data/ml-100k.csv.gz",
    "lastfm": "../shared/data/lastfm.csv.gz",
    "toys": "../shared/data/toys.csv.gz",
    "yelp": "../shared/data/yelp.csv.gz",
    "beauty-bert4rec": "../shared/data/beauty-bert4rec.csv.gz",
}
CONFIGS = {
    "ml-100k": "configs/ml100k.py",
    "lastfm": "configs/lastfm.py",
    "toys": "configs/toys.py",
    "yelp": "configs/yelp.py",
    "beauty-bert4rec": "configs/beauty_bert4rec.py",
}

BUDGET = {"train.num_epochs": 30, "train.bucket_lengths": (10, 20, 50)}  # T = 50
LONG = {"train.num_epochs": 30, "train.bucket_lengths": (50, 100, 200)}  # T = 200
BUDGETS = {name: LONG if name == "ml-100k" else BUDGET for name in PATHS}


def get_sweep():
    return dict(
        name="others",
        datasets={name: dict(config=CONFIGS[name],
                             overrides={"data.path": PATHS[name], **BUDGETS[name]})
                  for name in PATHS},
        variants={
            "absolute": {"model.positional": "absolute"},
            "kernel": {"model.positional": "kernel", "model.kernel.with_pe": "none"},
        },
        seeds=[0],
        hparams={"train.learning_rate": [1e-3]},
        baseline="absolute",
    )
