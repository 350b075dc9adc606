"""Zvuk music listening (Sber AI Lab), 10% user sample, leave-one-out, T = 200.

    python -m posrec.main --config=configs/zvuk.py --workdir=runs/zvuk
    python -m posrec.data.stats --config=configs/zvuk.py
    # offline: --config.data.path=/path/to/zvuk-interactions.parquet (or the Kaggle zip)
    # needs pyarrow: pip install -e ".[parquet]"

Fetches the zvuk-dataset zip from Kaggle (the publisher's page gives no checksum: its sha256
is recorded on first download); zvuk-interactions.parquet is extracted into the cache once.
Preprocessing: every play is an interaction (repeats kept: music is re-consumed;
play_duration unused); a seeded 10% of users (data.user_sample = 0.1, data.user_sample_seed)
to fit memory, then 5-core. Real times: --config.data.split=temporal works.

Expected after preprocessing: not verified here (no internet; not in shared/data).
Published statistics: none verified here. Metrics: shared/docs/paper.md quotes NDCG@10
0.0106 for the paper's model on zvuk (a third party's extraction; its sampling and
preprocessing are not known).
"""

from posrec.config_lib import default_config


def get_config():
    config = default_config()
    config.data.name = "zvuk"
    config.data.has_real_time = True  # a CSV copy would hold real timestamps
    config.data.min_user_count = 5
    config.data.min_item_count = 5
    config.data.dedup_consecutive = False
    config.data.user_sample = 0.1
    config.data.user_sample_seed = 0
    config.model.max_len = 200
    return config
