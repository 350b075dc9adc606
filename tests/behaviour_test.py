"""Behaviour on the quickstart order task: order-aware models learn the lag rule.

The synthetic task's next item is f(item `lag` steps back). `oracle_hit_rates` gives the
independent reference: the order-aware Bayes ceiling and the best any order-blind model can
reach. The kernel model must clear the order-blind ceiling by a wide margin, and the
model without positional information must stay at or below it.
"""

import numpy as np
import pytest

from posrec import config_lib, train
from posrec.data import load_interactions
from posrec.data.synthetic import oracle_hit_rates


def order_task_config(positional: str):
    config = config_lib.default_config()
    config.data.synthetic.update(num_users=3000, num_items=100, seq_len=40)
    config.data.min_user_count = config.data.min_item_count = 0
    config.model.update(max_len=20, hidden=32, dropout=0.0, positional=positional)
    config.train.update(num_epochs=12, batch_size=128, learning_rate=5e-3, eval_every=12)
    config.eval.batch_size = 1000
    return config


@pytest.fixture(scope="module")
def ceilings():
    config = order_task_config("none")
    s = config.data.synthetic
    return oracle_hit_rates(load_interactions(config.data), s.num_items, s.lag, s.seed)


@pytest.fixture(scope="module")
def hr10(tmp_path_factory):
    out = {}
    for positional in ("kernel", "none"):
        workdir = tmp_path_factory.mktemp(positional)
        out[positional] = train.train_and_evaluate(order_task_config(positional), workdir)[
            "test"
        ]["hr@10"]
    return out


def test_kernel_learns_the_order_rule(hr10, ceilings):
    print(f"HR@10 kernel={hr10['kernel']:.3f} none={hr10['none']:.3f} ceilings={ceilings}")
    assert ceilings["order"] > ceilings["bag"] + 0.3  # the task does separate the two
    assert hr10["kernel"] > ceilings["bag"] + 0.3
    assert hr10["kernel"] > ceilings["order"] - 0.1
    assert hr10["kernel"] > hr10["none"] + 0.4


def test_order_blind_model_stays_below_bag_ceiling(hr10, ceilings):
    # Three standard errors of a 3000-user hit rate above the order-blind ceiling.
    slack = 3 * np.sqrt(ceilings["bag"] * (1 - ceilings["bag"]) / 3000)
    assert hr10["none"] <= ceilings["bag"] + slack
