#!/usr/bin/env bash
# N posrec processes on this machine, talking through a coordinator on localhost: the
# multi-host code path (jax.distributed, per-process data shards, one writer) on CPU.
#
#   launch/local_multiprocess.sh N [posrec.main flags...]
#   launch/local_multiprocess.sh 2 --config=configs/quickstart.py --workdir=/tmp/posrec_mp
#
# Each process gets DEVICES_PER_PROCESS CPU devices (default 1). Process i logs to
# <workdir>/process_<i>.log (process 0 also to the terminal). Exit status: the first non-zero
# status of any process, 0 if all succeeded. PORT (default: a free one) and PYTHON
# (default: python) can be set in the environment.
set -euo pipefail

if [[ $# -lt 1 || ! "$1" =~ ^[0-9]+$ || "$1" -lt 1 ]]; then
    echo "usage: $0 NUM_PROCESSES [posrec.main flags...]" >&2
    exit 2
fi
N=$1
shift
PYTHON=${PYTHON:-python}
DEVICES_PER_PROCESS=${DEVICES_PER_PROCESS:-1}
PORT=${PORT:-$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
WORKDIR=""
for arg in "$@"; do
    case "$arg" in --workdir=*) WORKDIR=${arg#--workdir=} ;; esac
done
LOGDIR=${WORKDIR:-.}
mkdir -p "$LOGDIR"

export XLA_FLAGS="--xla_force_host_platform_device_count=${DEVICES_PER_PROCESS} ${XLA_FLAGS:-}"
export POSREC_COORDINATOR="127.0.0.1:${PORT}"
export POSREC_NUM_PROCESSES="$N"

pids=()
for ((i = 0; i < N; i++)); do
    if [[ $i -eq 0 ]]; then
        POSREC_PROCESS_ID=$i "$PYTHON" -m posrec.main "$@" > >(tee "$LOGDIR/process_$i.log") 2>&1 &
    else
        POSREC_PROCESS_ID=$i "$PYTHON" -m posrec.main "$@" > "$LOGDIR/process_$i.log" 2>&1 &
    fi
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    rc=0
    wait "$pid" || rc=$?
    if [[ $status -eq 0 && $rc -ne 0 ]]; then status=$rc; fi
done
exit $status
