#!/usr/bin/env bash
# Distributed training through PyTorch's launcher (torchrun) and MMEngine's runner.
#   tools/dist_train.sh CONFIG NUM_PROCS [train.py options]
# Several machines: set NNODES, NODE_RANK, MASTER_ADDR, PORT on each.
# Without CUDA the processes run on CPU with the gloo backend.
CONFIG=$1
GPUS=$2
# a user's mistake: one line on stderr, exit status 2 (as tools/train.py)
if [ ! -f "$CONFIG" ]; then
    echo "dist_train.sh: error: config ${CONFIG:-(none)} does not exist; usage: tools/dist_train.sh CONFIG NUM_PROCS [train.py options]" >&2
    exit 2
fi
case "$GPUS" in
    ''|*[!0-9]*|0) echo "dist_train.sh: error: NUM_PROCS '${GPUS}' is not a positive integer; usage: tools/dist_train.sh CONFIG NUM_PROCS [train.py options]" >&2
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
    "$(dirname "$0")/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
