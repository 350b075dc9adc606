"""Quickstart: a synthetic order task that trains in about a minute on 2 CPU cores.

    python -m posrec.main --config=configs/quickstart.py --workdir=/tmp/posrec_quickstart

The next item is a fixed function of the item `lag` = 3 steps back (posrec.data.synthetic),
so order-aware models (the default kernel, or absolute PE) learn it, while
`--config.model.positional=none` cannot tell which earlier item is 3 steps back.
"""

from posrec.config_lib import default_config


def get_config():
    config = default_config()
    config.data.name = "synthetic"
    config.data.min_user_count = 0
    config.data.min_item_count = 0
    config.data.synthetic.num_users = 6000
    config.model.max_len = 20
    config.model.dropout = 0.1
    config.train.num_epochs = 12
    config.train.batch_size = 128
    config.train.learning_rate = 3e-3
    config.train.eval_every = 2
    config.train.patience = 3
    config.train.log_every = 100
    config.eval.batch_size = 500
    return config
