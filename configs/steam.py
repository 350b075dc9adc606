"""Steam reviews (Kang & McAuley, the SASRec Steam), leave-one-out, T = 50.

    python -m posrec.main --config=configs/steam.py --workdir=runs/steam
    python -m posrec.data.stats --config=configs/steam.py
    # offline: --config.data.path=/path/to/steam_reviews.json.gz

Fetches steam_reviews.json.gz (UCSD; sha256 recorded on first download). Preprocessing:
every review is an interaction (user name, product id, review date), iterative 5-core (SASRec
filtered once). Times are days: --config.data.split=temporal works; same-day reviews keep
file order.

Expected after preprocessing: not verified here (no internet; not in shared/data).
Published: SASRec (Kang & McAuley, ICDM 2018, Table 2) lists Steam with 334,730 users, 13,047
items, 3.7M actions after its own single-pass filter. Metrics: none cited here.
"""

from posrec.config_lib import default_config


def get_config():
    config = default_config()
    config.data.name = "steam"
    config.data.has_real_time = True  # a CSV copy would hold real timestamps
    config.data.min_user_count = 5
    config.data.min_item_count = 5
    config.data.dedup_consecutive = False
    config.model.max_len = 50
    config.model.dropout = 0.5  # SASRec's rate for sparse data
    return config
