"""MovieLens-20M, leave-one-out, full ranking, T = 200.

    python -m posrec.main --config=configs/ml20m.py --workdir=runs/ml20m
    python -m posrec.data.stats --config=configs/ml20m.py
    # offline: a local ml-20m.zip, its ratings.csv, or a user_id,item_id,timestamp CSV
    python -m posrec.main --config=configs/ml20m.py --workdir=runs/ml20m \
        --config.data.path=/path/to/ml-20m.zip

Fetches ml-20m.zip (GroupLens; checked against the md5 GroupLens publishes). Preprocessing:
every rating is an interaction, 5-core, real Unix timestamps (--config.data.split=temporal
works).

Expected after preprocessing: not verified here (no internet; not in shared/data).
Published: GroupLens: 138,493 users, 27,278 movies, 20,000,263 ratings (before the 5-core;
every user has >= 20 ratings). Metrics: none cited here.
"""

from posrec.config_lib import default_config


def get_config():
    config = default_config()
    config.data.name = "ml-20m"
    config.data.has_real_time = True  # a CSV copy would hold real timestamps
    config.data.min_user_count = 5
    config.data.min_item_count = 5
    config.data.dedup_consecutive = False
    config.model.max_len = 200
    return config
