"""Shared defaults: `posrec.config_lib.default_config()` holds every key and its default.

    python -m posrec.main --config=configs/default.py --workdir=/tmp/run

Data-set configs start from the same function and override a few fields, so a key
that exists nowhere else (a typo on the command line) is rejected by ml_collections.
"""

from posrec.config_lib import default_config


def get_config():
    return default_config()
