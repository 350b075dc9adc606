"""Yelp (the S3-Rec version: 2019 reviews, 5-core), leave-one-out, full ranking, T = 50.

    python -m posrec.main --config=configs/yelp.py --workdir=runs/yelp \
        --config.data.path=../shared/data/yelp.csv.gz
    python -m posrec.data.stats --config=configs/yelp.py \
        --config.data.path=../shared/data/yelp.csv.gz

No automatic download: the Yelp Open Dataset (https://www.yelp.com/dataset) needs its terms
accepted by hand; pass a user_id,item_id,timestamp CSV. Preprocessing: 5-core; the file
contains repeated (user, business) pairs, kept (data.dedup_consecutive = False). The shared
CSV has order indices only (leave-one-out only).

Expected after preprocessing (posrec.data.stats on shared/data/yelp.csv.gz): 30,431 users,
20,033 items, 316,354 interactions; length min 5 / median 7 / mean 10.4 / max 350; density
0.000519.
Published: the same counts in S3-Rec (Zhou et al., CIKM 2020). Metrics: none cited here.
"""

from posrec.config_lib import sparse_config


def get_config():
    return sparse_config("yelp")
