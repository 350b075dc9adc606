"""Gowalla check-ins (SNAP), leave-one-out or global temporal split, full ranking, T = 200.

    python -m posrec.main --config=configs/gowalla.py --workdir=runs/gowalla
    python -m posrec.data.stats --config=configs/gowalla.py
    # offline: --config.data.path=/path/to/loc-gowalla_totalCheckins.txt.gz

Fetches loc-gowalla_totalCheckins.txt.gz from SNAP (no published checksum: its sha256 is
recorded on first download and verified on every later use). Preprocessing: every check-in
is an interaction with the location id as item; consecutive check-ins at the same location
collapse into one (data.dedup_consecutive = True, before the k-core), then 5-core. Real
times (UTC seconds): --config.data.split=temporal works.

Expected after preprocessing: not verified here (no internet; not in shared/data).
Published: SNAP lists 196,591 users and 6,442,890 check-ins (raw). Metrics: shared/docs/
paper.md quotes NDCG@10 0.0485 for the paper's model on Gowalla (a third party's extraction;
the paper's preprocessing is not known).
"""

from posrec.config_lib import default_config


def get_config():
    config = default_config()
    config.data.name = "gowalla"
    config.data.has_real_time = True  # a CSV copy would hold real timestamps
    config.data.min_user_count = 5
    config.data.min_item_count = 5
    config.data.dedup_consecutive = True
    config.model.max_len = 200
    return config
