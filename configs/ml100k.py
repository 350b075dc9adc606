"""MovieLens-100K, leave-one-out or global temporal split, full ranking, T = 200.

    python -m posrec.main --config=configs/ml100k.py --workdir=runs/ml100k \
        --config.data.path=../shared/data/ml-100k.csv.gz
    python -m posrec.data.stats --config=configs/ml100k.py \
        --config.data.path=../shared/data/ml-100k.csv.gz [--config.data.split=temporal]
    # official ml-100k.zip (GroupLens, md5-checked), fetched into $POSREC_DATA_DIR:
    python -m posrec.main --config=configs/ml100k.py --workdir=runs/ml100k

Preprocessing: every rating is an interaction, 5-core. Real Unix timestamps (the only shared
file with them), so both splits work: --config.data.split=loo (default) | temporal.

Expected after preprocessing (posrec.data.stats on shared/data/ml-100k.csv.gz): 943 users,
1,349 items, 99,287 interactions; length min 19 / median 64 / mean 105.29 / max 648; density
0.078049; 1997-09-20 .. 1998-04-22. Temporal split: 71 validation users, 89 test users, 761
training sequences (80,418 interactions).
Published: GroupLens: 943 users, 1,682 movies, 100,000 ratings (before the 5-core).
Metrics: none cited here.
Measured (configs/sweeps/others.py: 30 epochs, bucketed, lr 1e-3, seed 0; RESULTS.md): test
NDCG@10 0.0893 absolute PE, 0.0879 kernel (this config's default).
"""

from posrec.config_lib import default_config


def get_config():
    config = default_config()
    config.data.name = "ml-100k"
    config.data.has_real_time = True  # the shared CSV has real Unix timestamps
    config.data.min_user_count = 5
    config.data.min_item_count = 5
    config.data.dedup_consecutive = False
    config.model.max_len = 200
    return config
