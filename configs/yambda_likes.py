"""Yambda-50M likes (Yandex Music), leave-one-out or global temporal split, T = 200.

    python -m posrec.main --config=configs/yambda_likes.py --workdir=runs/yambda_likes
    python -m posrec.data.stats --config=configs/yambda_likes.py
    # offline, or the 500M / 5B versions (same format):
    #     --config.data.path=/path/to/flat/50m/likes.parquet
    # needs pyarrow: pip install -e ".[parquet]"

Fetches flat/50m/likes.parquet from huggingface.co/datasets/yandex/yambda (sha256 recorded on
first download). Preprocessing: every like is an interaction, organic or recommendation-driven
(unlikes are not subtracted), 5-core. Timestamps are seconds on Yambda's own global clock, so
--config.data.split=temporal works (Yambda's benchmark uses a global temporal split).

Expected after preprocessing: not verified here (no internet; not in shared/data).
Published statistics: see the Yambda dataset card; not verified here. Metrics:
shared/docs/paper.md quotes NDCG@10 0.0153 for the paper's model on Y-likes (a third party's
extraction; the paper's version and protocol are not known).
"""

from posrec.config_lib import default_config


def get_config():
    config = default_config()
    config.data.name = "yambda-likes"
    config.data.has_real_time = True  # a CSV copy would hold real timestamps
    config.data.min_user_count = 5
    config.data.min_item_count = 5
    config.data.dedup_consecutive = False
    config.model.max_len = 200
    return config
