"""Amazon Video Games (the SASRec "Games" file), 5-core, leave-one-out, T = 50.

    python -m posrec.main --config=configs/video_games.py --workdir=runs/video_games \
        --config.data.path=../shared/data/video-games.csv.gz
    python -m posrec.data.stats --config=configs/video_games.py \
        --config.data.path=../shared/data/video-games.csv.gz
    # official ratings_Video_Games.csv (Amazon 2014), fetched into $POSREC_DATA_DIR:
    python -m posrec.main --config=configs/video_games.py --workdir=runs/video_games

Preprocessing: every rating is an interaction; iterative 5-core on users and items (SASRec
filtered once, so its file still has users with 1 interaction; posrec repeats the filter to
a fixed point). For SASRec's data as is: --config.data.min_user_count=0
--config.data.min_item_count=0. The shared CSV has order indices only (leave-one-out only).

Expected after preprocessing (posrec.data.stats on shared/data/video-games.csv.gz): 24,303
users, 10,672 items, 231,780 interactions (raw file: 31,013 / 23,715 / 287,107); length min 5
/ median 7 / mean 9.54 / max 773; density 0.000894. Official-file route: not verified here.
Published: SASRec (Kang & McAuley, ICDM 2018, Table 2) lists Games with 31,013 users and
23,715 items, i.e. the raw shared file before posrec's 5-core. Metrics: none cited here.
Measured (configs/sweeps/positional.py: 30 epochs, bucketed, lr 1e-3, seeds 0-2; RESULTS.md):
test NDCG@10 0.0697 ± 0.0011 absolute PE, 0.0699 ± 0.0006 kernel (this config's default),
0.0715 ± 0.0011 kernel + absolute PE.
"""

from posrec.config_lib import sparse_config


def get_config():
    return sparse_config("video-games")
