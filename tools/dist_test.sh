#!/usr/bin/env bash
# Distributed testing through PyTorch's launcher (torchrun) and MMEngine's runner.
#   tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py options]
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
# a user's mistake: one line on stderr, exit status 2 (as tools/test.py)
USAGE="usage: tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py options]"
if [ ! -f "$CONFIG" ]; then
    echo "dist_test.sh: error: config ${CONFIG:-(none)} does not exist; $USAGE" >&2
    exit 2
fi
if [ ! -f "$CHECKPOINT" ]; then
    echo "dist_test.sh: error: checkpoint ${CHECKPOINT:-(none)} does not exist; $USAGE" >&2
    exit 2
fi
case "$GPUS" in
    ''|*[!0-9]*|0) echo "dist_test.sh: error: NUM_PROCS '${GPUS}' is not a positive integer; $USAGE" >&2
        exit 2 ;;
esac
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/test.py" \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher pytorch "${@:4}"
