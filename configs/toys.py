"""Amazon Toys and Games (the S3-Rec 5-core version), leave-one-out, full ranking, T = 50.

    python -m posrec.main --config=configs/toys.py --workdir=runs/toys \
        --config.data.path=../shared/data/toys.csv.gz
    python -m posrec.data.stats --config=configs/toys.py \
        --config.data.path=../shared/data/toys.csv.gz
    # official reviews_Toys_and_Games_5.json.gz (Amazon 2014), fetched into $POSREC_DATA_DIR:
    python -m posrec.main --config=configs/toys.py --workdir=runs/toys

Preprocessing: as configs/beauty.py (every review, 5-core, repeats kept). The shared CSV has
order indices only (leave-one-out only).

Expected after preprocessing (posrec.data.stats on shared/data/toys.csv.gz): 19,412 users,
11,924 items, 167,597 interactions; length min 5 / median 6 / mean 8.63 / max 550; density
0.000724. Official-file route: not verified here.
Published: the same counts in S3-Rec (Zhou et al., CIKM 2020). Metrics: none cited here.
Measured (configs/sweeps/others.py: 30 epochs, bucketed, lr 1e-3, seed 0; RESULTS.md): test
NDCG@10 0.0596 absolute PE, 0.0564 kernel (this config's default).
"""

from posrec.config_lib import sparse_config


def get_config():
    return sparse_config("toys")
