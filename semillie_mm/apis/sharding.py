"""Enhance a whole dataset across processes: each rank its share of the files.

``tools/enhance.py ... --launcher pytorch`` under ``torchrun
--nproc_per_node N`` (or ``tools/dist_enhance.sh``) and the detection study
(:func:`semillie_mm.detection.methods.enhance_images`) use these functions;
docs/enhance.md, "Many images across processes", is the user's view.

- :func:`init_distributed` starts MMEngine's launcher (``init_dist``): gloo
  on the CPU, NCCL when the processes run on GPUs (one GPU per process:
  ``cuda`` becomes ``cuda:LOCAL_RANK``).
- :func:`list_work` lists the inputs as every rank sees them (sorted:
  folder by folder, names in order; the images, then the videos), as
  ``dict(img_path=..., rel=...)`` / ``dict(video_path=..., rel=...)`` items
  that :class:`~semillie_mm.apis.SemiLLIEInferencer` takes as they are.
- :func:`shard_work` splits the items into one share per rank, balanced by
  their cost in pixels (:func:`work_cost`: width x height read from an
  image's header, declared frames x width x height of a video): the largest
  item first, each to the rank with the least work so far (ties: the lower
  rank). Not plain round-robin because a folder that mixes 4K photos with
  thumbnails, or videos of different lengths, would keep one rank busy long
  after the others; with equal costs the rule is round-robin. The shares
  depend only on the list and the costs, so every rank computes the same
  partition without a message, and a rerun the same again: they are made
  before existing outputs are left out (each rank leaves out its own), so
  no file is ever given to two ranks.
- :func:`enhance_sharded` runs one rank's share through the inferencer's
  own call (same tiling, batching, precision, backend, atomic writes and
  ``skip_existing``) and returns the rank's summary; an exception is caught,
  logged with its traceback and put in the summary so the rank still meets
  the others at the end. :func:`gather_summaries` is that meeting (the only
  collective, after all the work) and :func:`merge_summaries` the totals.

An output is written to a hidden temporary file in its folder and renamed
onto its name when complete (:func:`~semillie_mm.utils.fileio.atomic_path`),
so an output that exists is whole: a stopped run resumes with
``skip_existing`` and never keeps a half-written file.
"""
import hashlib
import heapq
import logging
import os
import statistics
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .output_plan import list_inputs
from .video import split_video_inputs

logger = logging.getLogger(__name__)

#: The launchers of MMEngine's tools (``--launcher``).
LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
#: Seconds a collective waits (the process group's timeout). The only
#: collective is the meeting after all the work, where the ranks that finish
#: first wait for the last one (and a rank that failed early waits for the
#: others' whole run): one day by default.
DEFAULT_DIST_TIMEOUT = 24 * 3600


def _env_int(*names: str) -> Optional[int]:
    """The first of the environment variables that holds an integer (a
    slurm count such as ``4(x2)`` gives 4)."""
    for name in names:
        value = os.environ.get(name, '').strip()
        digits = value.split('(')[0]
        if digits.isdigit():
            return int(digits)
    return None


def local_rank_and_size() -> Tuple[int, int]:
    """This process's rank among the processes of its machine, and their
    number, from the launchers' environment variables.

    Returns:
        tuple[int, int]: ``(local_rank, local_size)``; ``(0, 1)`` outside a
        launcher.
    """
    rank = _env_int('LOCAL_RANK', 'SLURM_LOCALID',
                    'OMPI_COMM_WORLD_LOCAL_RANK') or 0
    size = _env_int('LOCAL_WORLD_SIZE', 'OMPI_COMM_WORLD_LOCAL_SIZE',
                    'SLURM_NTASKS_PER_NODE', 'WORLD_SIZE', 'SLURM_NTASKS',
                    'OMPI_COMM_WORLD_SIZE') or 1
    return rank, max(size, rank + 1)


def init_distributed(launcher: str,
                     device: str = 'cpu',
                     timeout: float = DEFAULT_DIST_TIMEOUT
                     ) -> Tuple[int, int, str]:
    """Join the processes started by ``launcher`` (MMEngine's ``init_dist``).

    Args:
        launcher (str): One of :data:`LAUNCHERS`; ``'none'`` starts nothing.
        device (str): The device asked for: ``'cpu'`` (gloo backend),
            ``'cuda'`` (NCCL; each process takes ``cuda:LOCAL_RANK``) or
            ``'cuda:N'`` (every process on that GPU; gloo, as NCCL refuses
            two ranks on one GPU).
        timeout (float): Seconds a collective may wait. Default: one day.

    Returns:
        tuple[int, int, str]: ``(rank, world_size, device)``, the device
        this process uses.

    Raises:
        ValueError: An unknown launcher, or ``'cuda'`` with more processes
            on this machine than GPUs.
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f'launcher must be one of {LAUNCHERS}, got '
                         f'{launcher!r}')
    if launcher == 'none':
        return 0, 1, device
    from mmengine.dist import get_dist_info, init_dist, is_distributed
    local_rank, local_size = local_rank_and_size()
    cuda = device.startswith('cuda')
    # the same backend on every rank: NCCL for one GPU per process
    backend = 'nccl' if device == 'cuda' else 'gloo'
    if device == 'cuda':
        gpus = torch.cuda.device_count()
        if local_size > gpus:
            raise ValueError(
                f'--device cuda with {local_size} processes on this machine '
                f'but {gpus} GPU(s): start at most {gpus} per machine '
                '(--nproc_per_node), or use --device cpu')
        device = f'cuda:{local_rank}'
    if not is_distributed():
        if (launcher == 'pytorch' and backend == 'gloo'
                and torch.cuda.is_available()
                and local_rank >= torch.cuda.device_count()):
            # mmengine's launcher selects cuda:LOCAL_RANK even for gloo,
            # which fails when there are fewer GPUs than processes
            import datetime
            torch.distributed.init_process_group(
                backend, timeout=datetime.timedelta(seconds=timeout))
        else:
            init_dist(launcher, backend=backend, timeout=timeout)
    rank, world_size = get_dist_info()
    if cuda:
        torch.cuda.set_device(torch.device(device))
    return rank, world_size, device


def prefix_log_with_rank(rank: int, world_size: int) -> None:
    """Start every message of the root logger's handlers with ``[rank
    R/N]`` (the processes share one terminal).

    Args:
        rank (int): This process's rank.
        world_size (int): The number of processes.
    """
    tag = f'[rank {rank}/{world_size}] '
    for handler in logging.getLogger().handlers:
        fmt = getattr(handler.formatter, '_fmt', None) or '%(message)s'
        if tag not in fmt:
            handler.setFormatter(logging.Formatter(
                fmt.replace('%(message)s', tag + '%(message)s'),
                getattr(handler.formatter, 'datefmt', None)))


def threads_per_process(local_size: Optional[int] = None) -> int:
    """The default torch thread count of one of ``local_size`` processes
    sharing this machine: the cores this process may run on divided by
    ``local_size``, at least one.

    Args:
        local_size (int, optional): Processes on this machine; default from
            :func:`local_rank_and_size`.

    Returns:
        int: The thread count.
    """
    if local_size is None:
        local_size = local_rank_and_size()[1]
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, local_size))


def set_process_threads(local_size: Optional[int] = None) -> int:
    """Give this process :func:`threads_per_process` torch threads, unless
    the user chose a count with ``OMP_NUM_THREADS`` (kept as it is).

    ``torchrun`` sets ``OMP_NUM_THREADS=1`` when it is unset and it starts
    more than one process; ``tools/dist_enhance.sh`` sets it to the cores
    divided by the processes instead.

    Args:
        local_size (int, optional): Processes on this machine.

    Returns:
        int: The thread count in use.
    """
    if not os.environ.get('OMP_NUM_THREADS', '').strip():
        torch.set_num_threads(threads_per_process(local_size))
    return torch.get_num_threads()


def list_work(inputs) -> Tuple[List[dict], List[str]]:
    """The images and videos of ``inputs``, in the order every rank sees.

    Args:
        inputs (str | list): A folder (searched recursively), a file, or a
            list of these (as :class:`~semillie_mm.apis.SemiLLIEInferencer`
            takes them).

    Returns:
        tuple[list[dict], list[str]]: The items (``img_path`` or
        ``video_path``, and ``rel``: the name under the output folder), the
        images first, and the ignored files (not images nor videos, or
        dot-files).
    """
    videos, rest, in_folders = split_video_inputs(inputs)
    items, ignored = list_inputs(rest)
    return items + videos, [p for p in ignored if p not in in_folders]


def work_cost(item: dict) -> Optional[int]:
    """What enhancing an item costs, in pixels, read without decoding it.

    Args:
        item (dict): From :func:`list_work`.

    Returns:
        int | None: Width x height of an image (from its header), declared
        frames x width x height of a video; None when the header cannot be
        read (the file is skipped with its reason when it is enhanced).
    """
    if 'video_path' in item:
        import cv2

        from .video import _open
        try:
            cap = _open(item['video_path'])
        except (OSError, ValueError):
            return None
        try:
            frames = int(max(cap.get(cv2.CAP_PROP_FRAME_COUNT), 1))
            return frames * int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) * int(
                cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) or None
        finally:
            cap.release()
    from .image_io import check_image_size
    try:
        size = check_image_size(item['img_path'])
    except (OSError, ValueError):
        return None
    return size[0] * size[1] if size else None


def shard_work(costs: Sequence[Optional[float]],
               world_size: int) -> List[List[int]]:
    """Split items of the given costs into ``world_size`` shares.

    The largest item first, each to the share with the smallest total so
    far (ties: the lower rank; equal costs: round-robin). Unknown costs
    (None) count as the median of the known ones.

    Args:
        costs (Sequence[float | None]): One cost per item.
        world_size (int): The number of shares (>= 1).

    Returns:
        list[list[int]]: For each rank, the indices of its items, in
        ascending order; together a partition of ``range(len(costs))``.
    """
    if world_size < 1:
        raise ValueError(f'world_size must be >= 1, got {world_size}')
    known = [c for c in costs if c is not None]
    fill = statistics.median(known) if known else 1
    costs = [fill if c is None else c for c in costs]
    shares: List[List[int]] = [[] for _ in range(world_size)]
    loads = [(0, rank) for rank in range(world_size)]  # a heap
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        load, rank = heapq.heappop(loads)
        shares[rank].append(i)
        heapq.heappush(loads, (load + costs[i], rank))
    return [sorted(s) for s in shares]


def _digest(items: Sequence[dict], costs: Sequence) -> str:
    """A fingerprint of the work list: equal on every rank when all ranks
    listed the same inputs."""
    h = hashlib.sha256()
    for item, cost in zip(items, costs):
        path = item.get('img_path') or item.get('video_path')
        h.update(f'{path}\0{item["rel"]}\0{cost}\n'.encode())
    return h.hexdigest()[:16]


def enhance_sharded(inferencer,
                    inputs,
                    out_dir: str,
                    rank: int = 0,
                    world_size: int = 1,
                    balance: str = 'pixels',
                    **kwargs) -> dict:
    """Enhance this rank's share of ``inputs`` into ``out_dir``.

    Every rank lists ``inputs`` (:func:`list_work`), computes the same
    shares (:func:`shard_work`) and runs its own through ``inferencer(share,
    out_dir=out_dir, **kwargs)``: the outputs are those of one process
    enhancing everything, each written by one rank only. An exception other
    than Ctrl-C is logged with its traceback and returned in ``error``.

    Args:
        inferencer (SemiLLIEInferencer): The model.
        inputs (str | list): A folder, a file or a list of these.
        out_dir (str): The output folder (names relative to the input
            folder, as in one process).
        rank (int): This process's rank. Default: 0.
        world_size (int): The number of processes. Default: 1.
        balance (str): ``'pixels'`` (default: :func:`work_cost`) or
            ``'count'`` (round-robin by index).
        **kwargs: More arguments of the inferencer's call (``tile_size``,
            ``batch_size``, ``skip_existing``, ``on_error``, ``ext`` ...).

    Returns:
        dict: This rank's summary: ``rank``, ``world_size``, ``total`` (all
        items), ``items`` (this share), ``outputs``, ``skipped``
        (``{'path', 'reason'}``), ``notes``, ``existing`` (outputs kept by
        ``skip_existing``), ``ignored`` (rank 0 only, to count them once),
        ``error`` (None or ``'Type: message'``), ``interrupted`` (Ctrl-C),
        ``digest`` (of the work list) and ``seconds``.
    """
    if balance not in ('pixels', 'count'):
        raise ValueError(f"balance must be 'pixels' or 'count', got "
                         f'{balance!r}')
    items, ignored = list_work(inputs)
    costs = [work_cost(item) for item in items] if balance == 'pixels' \
        else [1] * len(items)
    share = [items[i] for i in shard_work(costs, world_size)[rank]]
    results = dict(outputs=[], skipped=[], notes=[], existing=[])
    summary = dict(rank=rank, world_size=world_size, total=len(items),
                   items=len(share), error=None, interrupted=False,
                   digest=_digest(items, costs),
                   ignored=ignored if rank == 0 else [])
    logger.info('%d of the %d inputs', len(share), len(items))
    start = time.time()
    kwargs.setdefault('return_preds', False)
    try:
        inferencer(share, out_dir=out_dir, results=results, **kwargs)
    except KeyboardInterrupt:
        summary['interrupted'] = True
    except Exception as err:  # noqa: BLE001  (reported to all ranks)
        logger.exception('failed after %d outputs',
                         len(results['outputs']))
        summary['error'] = f'{type(err).__name__}: ' + ' '.join(
            str(err).split())
    for key in ('outputs', 'skipped', 'notes', 'existing'):
        summary[key] = list(results.get(key, []))
    summary['seconds'] = round(time.time() - start, 1)
    logger.info('%s written %d, skipped %d, existing %d in %.1f s',
                'FAILED,' if summary['error'] else
                ('interrupted,' if summary['interrupted'] else 'done,'),
                len(summary['outputs']), len(summary['skipped']),
                len(summary['existing']), summary['seconds'])
    return summary


def gather_summaries(summary: dict) -> List[dict]:
    """Every rank's summary, on every rank (the one collective, after the
    work; a single process gets ``[summary]``).

    Args:
        summary (dict): This rank's, from :func:`enhance_sharded`.

    Returns:
        list[dict]: The summaries in rank order.
    """
    from mmengine.dist import all_gather_object, get_world_size
    if get_world_size() == 1:
        return [summary]
    return all_gather_object(summary)


def merge_summaries(summaries: Sequence[dict]) -> Dict:
    """The totals of all ranks.

    Args:
        summaries (Sequence[dict]): From :func:`gather_summaries`.

    Returns:
        dict: ``processed``, ``skipped``, ``ignored``, ``existing`` (counts)
        and ``outputs``, ``skipped_files``, ``existing_files``, ``notes``
        (all ranks), ``failed`` (``{'rank', 'error'}`` of ranks that
        failed, and a rank ``None`` entry when the ranks listed different
        inputs), ``interrupted`` and ``ranks`` (per rank: ``items``,
        ``processed``, ``skipped``, ``existing``, ``seconds``).
    """
    merged = dict(outputs=[], skipped_files=[], existing_files=[], notes=[],
                  ignored_files=[], failed=[], ranks=[], interrupted=False)
    for s in summaries:
        merged['outputs'] += s['outputs']
        merged['skipped_files'] += s['skipped']
        merged['existing_files'] += s['existing']
        merged['notes'] += s['notes']
        merged['ignored_files'] += s['ignored']
        merged['interrupted'] |= bool(s['interrupted'])
        if s['error']:
            merged['failed'].append(dict(rank=s['rank'], error=s['error']))
        merged['ranks'].append(dict(
            rank=s['rank'], items=s['items'], processed=len(s['outputs']),
            skipped=len(s['skipped']), existing=len(s['existing']),
            seconds=s['seconds']))
    if len({s['digest'] for s in summaries}) > 1:
        merged['failed'].append(dict(rank=None, error=(
            'the ranks listed different inputs (files added or removed '
            'while the run started?): some may have been left out; run '
            'again to enhance them (existing outputs are kept)')))
    merged.update(processed=len(merged['outputs']),
                  skipped=len(merged['skipped_files']),
                  ignored=len(merged.pop('ignored_files')),
                  existing=len(merged['existing_files']))
    return merged


def end_distributed() -> None:
    """Destroy the process group (after :func:`gather_summaries`), rather
    than leave it to the interpreter's exit."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


__all__ = [
    'LAUNCHERS', 'DEFAULT_DIST_TIMEOUT', 'local_rank_and_size',
    'init_distributed', 'prefix_log_with_rank', 'threads_per_process', 'set_process_threads',
    'list_work', 'work_cost', 'shard_work', 'enhance_sharded',
    'gather_summaries', 'merge_summaries', 'end_distributed'
]
