#!/usr/bin/env bash
# posrec on every worker of a Cloud TPU VM slice: one process per worker host, started by
# one command; jax.distributed finds the slice's workers itself (POSREC_DISTRIBUTED=1).
#
#   launch/tpu_vm.sh TPU_NAME ZONE [posrec.main flags...]
#   launch/tpu_vm.sh my-v5e-32 us-west4-a --config=configs/ml1m.py --workdir=/mnt/shared/runs/ml1m
#
# Every worker needs the repository at $POSREC_DIR (default ~/posrec) with posrec installed,
# e.g. once:
#   gcloud compute tpus tpu-vm ssh TPU_NAME --zone=ZONE --worker=all \
#       --command="git clone <repo> ~/posrec && pip install -e ~/posrec 'jax[tpu]'"
# --workdir must be a directory all workers see (NFS / Filestore, or a gcsfuse mount).
set -euo pipefail
if [[ $# -lt 2 ]]; then
    echo "usage: $0 TPU_NAME ZONE [posrec.main flags...]" >&2
    exit 2
fi
TPU=$1
ZONE=$2
shift 2
REMOTE_DIR=${POSREC_DIR:-'~/posrec'}
ARGS=$(printf ' %q' "$@")
exec gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker=all \
    --command="cd $REMOTE_DIR && POSREC_DISTRIBUTED=1 python -m posrec.main$ARGS"
