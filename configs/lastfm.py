"""Last.fm (the S3-Rec version of HetRec 2011 tag assignments), leave-one-out, T = 50.

    python -m posrec.main --config=configs/lastfm.py --workdir=runs/lastfm \
        --config.data.path=../shared/data/lastfm.csv.gz
    python -m posrec.data.stats --config=configs/lastfm.py \
        --config.data.path=../shared/data/lastfm.csv.gz
    # official hetrec2011-lastfm-2k.zip (GroupLens), fetched into $POSREC_DATA_DIR:
    python -m posrec.main --config=configs/lastfm.py --workdir=runs/lastfm

Preprocessing: a (user, artist, time) tag assignment is one interaction, 5-core. The shared
CSV has order indices only (leave-one-out only); the official file has real times.

Expected after preprocessing (posrec.data.stats on shared/data/lastfm.csv.gz): 1,090 users,
3,646 items, 52,551 interactions; length min 5 / median 19 / mean 48.21 / max 899; density
0.013223. From the official zip: not verified here (S3-Rec's exact rules are not known).
Published: the same counts in S3-Rec (Zhou et al., CIKM 2020). Metrics: none cited here.
Measured (configs/sweeps/others.py: 30 epochs, bucketed, lr 1e-3, seed 0; RESULTS.md): test
NDCG@10 0.0386 absolute PE, 0.0375 kernel (this config's default).
"""

from posrec.config_lib import sparse_config


def get_config():
    return sparse_config("lastfm")
