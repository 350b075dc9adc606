"""Amazon Beauty, BERT4Rec version (users >= 5, items unfiltered), leave-one-out, T = 50.

    python -m posrec.main --config=configs/beauty_bert4rec.py --workdir=runs/beauty_bert4rec \
        --config.data.path=../shared/data/beauty-bert4rec.csv.gz
    python -m posrec.data.stats --config=configs/beauty_bert4rec.py \
        --config.data.path=../shared/data/beauty-bert4rec.csv.gz
    # official ratings_Beauty.csv (Amazon 2014, all ratings), fetched into $POSREC_DATA_DIR:
    python -m posrec.main --config=configs/beauty_bert4rec.py --workdir=runs/beauty_bert4rec

Preprocessing: every rating is an interaction; users with < 5 interactions dropped, items
NOT filtered (data.min_item_count = 0), which is what distinguishes this variant from
configs/beauty.py. The shared CSV has order indices only (leave-one-out only).

Expected after preprocessing (posrec.data.stats on shared/data/beauty-bert4rec.csv.gz):
40,226 users, 54,542 items, 353,962 interactions; length min 5 / median 6 / mean 8.8 /
max 293; density 0.000161. From the official ratings_Beauty.csv: not verified here (BERT4Rec
may have applied rules this config does not know of).
Published: BERT4Rec (Sun et al., CIKM 2019, Table 1) lists Beauty with 40,226 users, 54,542
items, 0.35M actions. Metrics: none cited here.
"""

from posrec.config_lib import sparse_config


def get_config():
    return sparse_config("beauty-bert4rec", min_item_count=0)
