#!/usr/bin/env bash
# Enhance a folder of images and videos with several processes (torchrun),
# each writing its share of the files (tools/enhance.py --launcher pytorch).
#   tools/dist_enhance.sh [CONFIG CHECKPOINT | MODEL.onnx] INPUT OUTPUT NUM_PROCS [enhance.py options]
# One process per GPU with --device cuda; without it, CPU processes (gloo).
# Each process gets OMP_NUM_THREADS = cores / NUM_PROCS unless OMP_NUM_THREADS
# is set. Several machines: set NNODES, NODE_RANK, MASTER_ADDR, PORT on each.
USAGE="usage: tools/dist_enhance.sh [CONFIG CHECKPOINT | MODEL.onnx] INPUT OUTPUT NUM_PROCS [enhance.py options]"
# the positional arguments before the first option: the last is NUM_PROCS
POS=()
for arg in "$@"; do
    case "$arg" in -*) break ;; esac
    POS+=("$arg")
done
N=${#POS[@]}
if [ "$N" -lt 3 ]; then
    echo "dist_enhance.sh: error: expected INPUT OUTPUT NUM_PROCS (after CONFIG CHECKPOINT or MODEL.onnx); $USAGE" >&2
    exit 2
fi
GPUS=${POS[$((N - 1))]}
case "$GPUS" in
    ''|*[!0-9]*|0) echo "dist_enhance.sh: error: NUM_PROCS '${GPUS}' is not a positive integer; $USAGE" >&2
        exit 2 ;;
esac
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}
if [ -z "$OMP_NUM_THREADS" ]; then
    # torchrun would set 1; share this machine's cores instead
    CORES=$(nproc 2>/dev/null || echo 1)
    OMP_NUM_THREADS=$(( CORES / GPUS > 0 ? CORES / GPUS : 1 ))
fi
export OMP_NUM_THREADS

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/enhance.py" \
    "${POS[@]:0:$((N - 1))}" \
    --launcher pytorch "${@:$((N + 1))}"
