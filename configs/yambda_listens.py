"""Yambda-50M listens (Yandex Music), played >= 50%, leave-one-out or temporal, T = 200.

    python -m posrec.main --config=configs/yambda_listens.py --workdir=runs/yambda_listens
    python -m posrec.data.stats --config=configs/yambda_listens.py
    # offline, or the 500M / 5B versions (same format):
    #     --config.data.path=/path/to/flat/50m/listens.parquet
    # needs pyarrow: pip install -e ".[parquet]"

Fetches flat/50m/listens.parquet from huggingface.co/datasets/yandex/yambda (sha256 recorded
on first download). Implicit-feedback rule: a listen counts when played_ratio_pct >= 50
(data.min_play_ratio = 50; Yambda's own "Listen+" is "over 50%", which differs only on rows
at exactly 50; use 51 for it). Repeats kept (music is re-consumed), 5-core. Timestamps are
seconds on Yambda's own global clock: --config.data.split=temporal works.

Expected after preprocessing: not verified here (no internet; not in shared/data).
Published statistics: see the Yambda dataset card; not verified here. Metrics:
shared/docs/paper.md quotes NDCG@10 0.0123 for the paper's model on Y-listens (a third
party's extraction; the paper's version, rule and protocol are not known).
"""

from posrec.config_lib import default_config


def get_config():
    config = default_config()
    config.data.name = "yambda-listens"
    config.data.has_real_time = True  # a CSV copy would hold real timestamps
    config.data.min_user_count = 5
    config.data.min_item_count = 5
    config.data.dedup_consecutive = False
    config.data.min_play_ratio = 50
    config.model.max_len = 200
    return config
