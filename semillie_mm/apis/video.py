"""Enhance videos frame by frame: decode, enhance in batches, encode.

Decoding and encoding use OpenCV (``cv2.VideoCapture`` /
``cv2.VideoWriter``, its FFmpeg backend), already a dependency; no new
package. A video is first probed (:func:`probe_video`: every frame is decoded
once, which costs little next to the network) so that a file that cannot be
opened, has no frames, whose codec does not decode or that is truncated is
refused before any frame is enhanced. The frames then go through the
inferencer's own pipeline, batching and tiling
(:meth:`SemiLLIEInferencer.preprocess` / ``forward``) and are encoded into a
temporary dot-file next to the output, renamed onto it only when the whole
video is written (:func:`~semillie_mm.utils.fileio.atomic_path`).

What is kept: frame size and frame rate (and the frame count). What is
dropped: audio, subtitles and container metadata (OpenCV reads and writes
the video stream only), and the input codec: the output is re-encoded with
the codec of its extension (:data:`VIDEO_WRITE_CODECS`: ``.mp4`` / ``.m4v``
/ ``.mov`` MPEG-4 Part 2, ``.avi`` Motion JPEG, ``.mkv`` FFV1, lossless).
:func:`enhance_video` returns (and logs) that as one line.

``temporal_smoothing`` (``--temporal-smoothing ALPHA``) smooths the
brightness of the output over time: an exponential moving average of each
frame's mean level (:class:`GainSmoother`); see docs/enhance.md, "Video".
"""
import logging
import os
import os.path as osp
import time
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..utils.fileio import atomic_path
from .image_io import tensor_to_image

logger = logging.getLogger(__name__)

#: Extensions taken as videos (compared case-insensitively) when reading.
VIDEO_EXTENSIONS = ('.mp4', '.m4v', '.mov', '.avi', '.mkv', '.webm', '.mpg',
                    '.mpeg', '.wmv', '.flv', '.ts')
#: Extensions a video can be written to, and the FourCC used for each (the
#: encoders OpenCV's bundled FFmpeg has; it has no H.264 encoder).
VIDEO_WRITE_CODECS = {
    '.mp4': 'mp4v', '.m4v': 'mp4v', '.mov': 'mp4v', '.avi': 'MJPG',
    '.mkv': 'FFV1'
}
_CODEC_NAMES = {'mp4v': 'MPEG-4 Part 2', 'MJPG': 'Motion JPEG',
                'FFV1': 'FFV1, lossless'}
#: Output extension of a video whose own extension cannot be written.
DEFAULT_VIDEO_EXT = '.mp4'


class VideoError(ValueError):
    """A video that cannot be read or written (one line: the reason)."""


def is_video(path) -> bool:
    """Whether ``path`` has a :data:`VIDEO_EXTENSIONS` extension.

    Args:
        path (str | os.PathLike): A file name.

    Returns:
        bool: True for a video extension.
    """
    return isinstance(path, (str, os.PathLike)) and osp.splitext(
        os.fspath(path))[1].lower() in VIDEO_EXTENSIONS


def video_output_name(rel: str) -> str:
    """The output name of a video: its own if writable, else ``.mp4``.

    Args:
        rel (str): The input's name (relative to its folder).

    Returns:
        str: The output name.
    """
    stem, ext = osp.splitext(rel)
    return rel if ext.lower() in VIDEO_WRITE_CODECS else \
        stem + DEFAULT_VIDEO_EXT


@dataclass
class VideoInfo:
    """What :func:`probe_video` found.

    Attributes:
        path (str): The file.
        frames (int): Frames that decode.
        fps (float): Frame rate (25 when the file declares none).
        width (int): Frame width.
        height (int): Frame height.
        codec (str): The input's FourCC as FFmpeg reports it (``'h264'``,
            ``'FMP4'``...).
        fps_declared (bool): Whether the file declared its frame rate.
    """
    path: str
    frames: int
    fps: float
    width: int
    height: int
    codec: str
    fps_declared: bool = True


def _fourcc_text(value: float) -> str:
    code = int(value) & 0xFFFFFFFF
    text = code.to_bytes(4, 'little').decode('latin-1')
    return text.strip('\x00 ') if text.isprintable() else f'0x{code:08x}'


def _open(path: str):
    # FFmpeg's own messages (e.g. "moov atom not found") would come on top
    # of the one-line reason given here; OPENCV_FFMPEG_LOGLEVEL set by the
    # user wins (48 shows FFmpeg's debug messages)
    os.environ.setdefault('OPENCV_FFMPEG_LOGLEVEL', '8')
    import cv2
    if not osp.isfile(path):
        raise VideoError(f'{path} does not exist or is not a file')
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise VideoError(
            f'{path}: cannot open as a video (not a video, truncated or '
            'empty, or a format or codec OpenCV/FFmpeg here cannot read)')
    return cap


def probe_video(path: str, tolerance: Optional[int] = None) -> VideoInfo:
    """Open a video and decode all its frames once, to refuse bad files.

    Args:
        path (str): The video file.
        tolerance (int, optional): Frames that may be missing from the
            count the file declares before it is called truncated (declared
            counts can be estimates); default ``max(1, declared // 100)``.

    Returns:
        VideoInfo: Size, frame rate, frame count and codec.

    Raises:
        VideoError: The file cannot be opened, has no frames, no frame
            decodes (an unsupported codec), or fewer frames decode than it
            declares (truncated).
    """
    import cv2
    cap = _open(path)
    try:
        declared = int(max(cap.get(cv2.CAP_PROP_FRAME_COUNT), 0))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0)
        codec = _fourcc_text(cap.get(cv2.CAP_PROP_FOURCC))
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        frames = 0
        while cap.grab():
            frames += 1
    finally:
        cap.release()
    if frames == 0:
        if declared == 0:
            raise VideoError(f'{path}: the video has no frames')
        raise VideoError(
            f'{path}: none of its {declared} frames decodes (codec '
            f'{codec!r} unsupported by OpenCV/FFmpeg here, or the data is '
            'damaged)')
    tol = max(1, declared // 100) if tolerance is None else tolerance
    if declared and frames < declared - tol:
        raise VideoError(f'{path}: truncated or damaged: {frames} of the '
                         f'{declared} frames it declares decode')
    fps_declared = np.isfinite(fps) and fps > 0
    return VideoInfo(path=path, frames=frames,
                     fps=fps if fps_declared else 25.0, width=width,
                     height=height, codec=codec, fps_declared=fps_declared)


def read_frames(path: str) -> Iterator[np.ndarray]:
    """The frames of a video, in order.

    Args:
        path (str): The video file.

    Yields:
        np.ndarray: ``HxWx3`` uint8 RGB frames.

    Raises:
        VideoError: The file cannot be opened.
    """
    import cv2
    cap = _open(path)
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


class VideoSink:
    """Write frames to a video atomically (a context manager).

    Frames go to a temporary dot-file in the output's folder with the
    output's extension; when the block ends normally the file replaces
    ``path`` (:func:`~semillie_mm.utils.fileio.atomic_path`), when it raises
    the temporary file is removed and ``path`` is untouched.

    Args:
        path (str): The output video (``.mp4``, ``.m4v``, ``.mov``, ``.avi``
            or ``.mkv``).
        fps (float): Frame rate.
        size (tuple[int, int]): ``(width, height)``.

    Attributes:
        codec (str): The FourCC written.
        frames (int): Frames written so far.
        encoded_size (tuple[int, int]): ``size`` made even: the encoders
            need even sides (OpenCV would rescale silently), so an odd side
            gets one more row or column, a copy of the last one.
    """

    def __init__(self, path: str, fps: float, size: Tuple[int, int]):
        ext = osp.splitext(path)[1].lower()
        if ext not in VIDEO_WRITE_CODECS:
            raise VideoError(
                f'{path}: cannot write {ext or "files without extension"} '
                f'videos; use one of {" ".join(VIDEO_WRITE_CODECS)}')
        self.path, self.fps, self.size = path, fps, tuple(size)
        self.codec = VIDEO_WRITE_CODECS[ext]
        self.encoded_size = tuple(int(v) + int(v) % 2 for v in self.size)
        self.frames = 0
        self._atomic = atomic_path(path, suffix='.tmp' + ext)
        self._writer = None

    def __enter__(self) -> 'VideoSink':
        import cv2
        tmp = self._atomic.__enter__()
        self._writer = cv2.VideoWriter(
            tmp, cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*self.codec),
            self.fps, self.encoded_size)
        if not self._writer.isOpened():
            err = VideoError(f'{self.path}: OpenCV cannot write a '
                             f'{self.codec} video of size {self.size}')
            self._atomic.__exit__(VideoError, err, None)
            raise err
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one ``HxWx3`` uint8 RGB frame."""
        import cv2
        if frame.shape[1::-1] != self.size:
            raise VideoError(f'{self.path}: frame of size '
                             f'{frame.shape[1::-1]} in a {self.size} video')
        (w, h), (ew, eh) = self.size, self.encoded_size
        if (ew, eh) != (w, h):
            frame = np.pad(frame, ((0, eh - h), (0, ew - w), (0, 0)),
                           mode='edge')
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._writer.release()
        return self._atomic.__exit__(exc_type, exc, tb)


class GainSmoother:
    """Temporal smoothing of the output's brightness.

    Each output frame's mean level ``m_t`` is replaced by its exponential
    moving average ``M_t = alpha * M_{t-1} + (1 - alpha) * m_t``
    (``M_0 = m_0``): the frame is multiplied by ``M_t / m_t``. One gain per
    frame, so moving content is not blurred (an average of the frames
    themselves would leave trails); a brightness change that lasts is
    followed with a time constant of about ``1 / (1 - alpha)`` frames.

    Args:
        alpha (float): In ``[0, 1)``; 0 leaves the frames as they are.
    """

    def __init__(self, alpha: float) -> None:
        alpha = float(alpha)
        if not 0 <= alpha < 1:
            raise ValueError(f'temporal smoothing alpha must be in [0, 1), '
                             f'got {alpha}')
        self.alpha = alpha
        self.level = None

    def __call__(self, frame: torch.Tensor) -> torch.Tensor:
        """Smooth one ``(3, H, W)`` float frame in [0, 1] (in place)."""
        if self.alpha == 0:
            return frame
        m = float(frame.mean())
        self.level = m if self.level is None else \
            self.alpha * self.level + (1 - self.alpha) * m
        if m > 0:
            frame.mul_(self.level / m).clamp_(0, 1)
        return frame


class _Progress:
    """mmengine's ProgressBar over frames (count, rate, elapsed, ETA)."""

    def __init__(self, total: int, show: bool) -> None:
        self.bar = None
        if show:
            from mmengine.utils import ProgressBar
            self.bar = ProgressBar(total)

    def update(self, n: int) -> None:
        for _ in range(n if self.bar is not None else 0):
            self.bar.update()


def dropped_line(info: VideoInfo, dst: str, codec: str,
                 encoded_size: Optional[Tuple[int, int]] = None) -> str:
    """The line saying what a video's enhanced copy keeps and drops.

    Args:
        info (VideoInfo): The input.
        dst (str): The output path.
        codec (str): The FourCC written.
        encoded_size (tuple[int, int], optional): The size written, when
            an odd side was padded (:class:`VideoSink`).

    Returns:
        str: One line.
    """
    fps = f'{info.fps:g} fps' + ('' if info.fps_declared else
                                 ' (none declared: 25 assumed)')
    size = f'{info.width}x{info.height}'
    if encoded_size and tuple(encoded_size) != (info.width, info.height):
        size += ' (padded to {}x{}: odd sides cannot be encoded)'.format(
            *encoded_size)
    return (f'{info.path} -> {dst}: {info.frames} frames, '
            f'{size}, {fps} kept; video re-encoded '
            f'{info.codec} -> {codec} ({_CODEC_NAMES[codec]}); audio, '
            'subtitles and metadata (if any) dropped')


def enhance_video(inferencer,
                  src: str,
                  dst: Optional[str] = None,
                  *,
                  batch_size: int = 1,
                  tile_size: Optional[int] = None,
                  tile_overlap: int = 64,
                  network: Optional[str] = None,
                  temporal_smoothing: float = 0.0,
                  before_tile=None,
                  show_progress: Optional[bool] = None,
                  info: Optional[VideoInfo] = None) -> dict:
    """Enhance a video frame by frame with a :class:`SemiLLIEInferencer`.

    Args:
        inferencer (SemiLLIEInferencer): The model.
        src (str): The input video.
        dst (str, optional): The output video, written atomically; None
            returns the frames instead.
        batch_size (int): Frames per forward pass. Default: 1.
        tile_size (int, optional): Frames larger than this run in tiles, as
            images do (:mod:`.tiling`); None or 0: whole.
        tile_overlap (int): Tile overlap. Default: 64.
        network (str, optional): ``'teacher'`` / ``'student'``.
        temporal_smoothing (float): ``alpha`` of :class:`GainSmoother`;
            0 (default) is off.
        before_tile (callable, optional): Passed to the inferencer's
            ``forward`` (CPU tuning).
        show_progress (bool, optional): Frame progress bar with ETA;
            default the inferencer's ``show_progress``.
        info (VideoInfo, optional): From :func:`probe_video`, if done.

    Returns:
        dict: ``info`` (:class:`VideoInfo`), ``frames`` written,
        ``codec`` (FourCC written, None without ``dst``), ``note`` (the
        line of :func:`dropped_line`, None without ``dst``), ``seconds`` and
        ``video`` (``TxHxWx3`` uint8 RGB frames when ``dst`` is None).

    Raises:
        VideoError: A bad input (see :func:`probe_video`), an output that
            cannot be written, or frames lost while reading.
    """
    smoother = GainSmoother(temporal_smoothing)
    info = info or probe_video(src)
    if show_progress is None:
        show_progress = inferencer.show_progress
    start, out_frames = time.perf_counter(), []
    sink = VideoSink(dst, info.fps, (info.width, info.height)) if dst \
        else None
    note = dropped_line(info, dst, sink.codec, sink.encoded_size) \
        if sink else None
    if note:
        logger.info(note)
    progress = _Progress(info.frames, show_progress)
    items = (dict(img=f) for f in read_frames(src))
    written = 0
    with sink if sink is not None else _nullcontext():
        for batch in inferencer.preprocess(items, batch_size=batch_size):
            if batch['failed']:
                _, reason, err = batch['failed'][0]
                raise VideoError(f'{src}: frame {written}: {reason}') from err
            preds = inferencer.forward(batch, before_tile,
                                       tile_size=tile_size,
                                       tile_overlap=tile_overlap,
                                       network=network)
            for (_, packed), pred in zip(batch['packed'], preds):
                y = smoother(pred['pred_img'])
                frame = tensor_to_image(y, packed['layout']) \
                    if smoother.alpha else pred['output']
                if sink is not None:
                    sink.write(frame)
                else:
                    out_frames.append(frame)
                written += 1
            progress.update(len(preds))
        if written != info.frames:
            raise VideoError(f'{src}: {written} frames decoded this time, '
                             f'{info.frames} when probed: the file changed '
                             'or is damaged')
    if progress.bar is not None:
        print(flush=True)  # end the bar's line
    return dict(info=info, frames=written, codec=sink and sink.codec,
                note=note, seconds=time.perf_counter() - start,
                video=np.stack(out_frames) if sink is None else None)


class _nullcontext:

    def __enter__(self):
        return None

    def __exit__(self, *exc) -> bool:
        return False


def enhance_video_file(inferencer, src: str, dst: str, results: dict,
                       cpu_tuning: bool = True, **kwargs) -> dict:
    """One video to one file, as ``tools/enhance.py INPUT.mp4 OUT.mp4``.

    Args:
        inferencer (SemiLLIEInferencer): The model.
        src (str): The input video.
        dst (str): The output video.
        results (dict): ``outputs`` gets ``dst`` once it is written.
        cpu_tuning (bool): Run under :func:`~.cpu_tuning.cpu_tuning` on the
            CPU (restored at the end). Default: True.
        **kwargs: Of :func:`enhance_video`.

    Returns:
        dict: What :func:`enhance_video` returns.

    Raises:
        VideoError: See :func:`enhance_video`.
    """
    from .cpu_tuning import cpu_tuning as cpu_tuning_context
    from .tiling import _net_device
    on_cpu = _net_device(inferencer.get_network(
        kwargs.get('network'))).type == 'cpu'
    with cpu_tuning_context(cpu_tuning and on_cpu) as before_tile:
        res = enhance_video(inferencer, src, dst, before_tile=before_tile,
                            **kwargs)
    results['outputs'].append(dst)
    return res


def check_video_args(src: str, dst: str, temporal_smoothing: float) -> None:
    """The video checks of ``tools/enhance.py``, before the model loads.

    Args:
        src (str): INPUT: a video file is probed (:func:`probe_video`).
        dst (str): OUTPUT: for a video INPUT, a video file of a writable
            extension, or a folder (no video or image extension).
        temporal_smoothing (float): Must be in ``[0, 1)``.

    Raises:
        ValueError: One line: the first problem found (a
            :class:`VideoError` for a bad video).
    """
    if not 0 <= temporal_smoothing < 1:
        raise ValueError(f'--temporal-smoothing {temporal_smoothing}: must '
                         'be in [0, 1) (0: off)')
    if not (osp.isfile(src) and is_video(src)):
        return
    from .image_io import IMG_EXTENSIONS
    ext = osp.splitext(dst)[1].lower()
    if ext in IMG_EXTENSIONS:
        raise ValueError(f'output {dst}: the input is a video; name a video '
                         f'file ({" ".join(VIDEO_WRITE_CODECS)}) or a folder')
    if is_video(dst) and ext not in VIDEO_WRITE_CODECS:
        raise ValueError(f'output {dst}: cannot write {ext} videos; use one '
                         f'of {" ".join(VIDEO_WRITE_CODECS)}')
    probe_video(src)


def split_video_inputs(inputs) -> Tuple[List[dict], list, set]:
    """Take the videos out of an inferencer's inputs.

    Args:
        inputs: What :meth:`SemiLLIEInferencer.__call__` accepts: a path, an
            array, a dict or a list of these; a dict with ``video_path``
            (and optionally ``rel``) is a video, as returned here.

    Returns:
        tuple[list[dict], list, set[str]]: The videos as ``dict(
        video_path=..., rel=...)`` (``rel``: the name relative to the folder
        it was found in, or the base name), the other inputs (folders stay:
        their images are listed as before) and the video paths found in
        folders (not to be reported as ignored files).
    """
    single = isinstance(inputs, (str, np.ndarray, dict)) or hasattr(
        inputs, '__fspath__')
    videos, rest, in_folders = [], [], set()
    for item in ([inputs] if single else list(inputs)):
        if isinstance(item, dict) and 'video_path' in item:
            videos.append(dict(video_path=item['video_path'],
                               rel=item.get('rel') or osp.basename(
                                   item['video_path'])))
            continue
        if isinstance(item, (str, os.PathLike)):
            path = os.fspath(item)
            if osp.isfile(path) and is_video(path):
                videos.append(dict(video_path=path, rel=osp.basename(path)))
                continue
            if osp.isdir(path):
                for root, dirs, files in os.walk(path):
                    dirs.sort()
                    for name in sorted(files):
                        if not name.startswith('.') and is_video(name):
                            p = osp.join(root, name)
                            videos.append(dict(video_path=p,
                                               rel=osp.relpath(p, path)))
                            in_folders.add(p)
        rest.append(item)
    return videos, rest, in_folders


def plan_video_outputs(videos: List[dict], out_dir: str,
                       skip_existing: bool = False
                       ) -> Tuple[List[dict], List[str]]:
    """Check where the videos go under ``out_dir``, before any is read.

    Args:
        videos (list[dict]): From :func:`split_video_inputs`.
        out_dir (str): The output folder.
        skip_existing (bool): Leave out the videos whose output exists.

    Returns:
        tuple[list[dict], list[str]]: The videos to enhance, and the
        existing outputs whose videos were left out.

    Raises:
        OutputConflictError: An output would be an input, or two videos
            map to one output (:func:`~.output_plan.check_output_plan`).
    """
    from .output_plan import check_output_plan
    dsts = [osp.join(out_dir, video_output_name(v['rel'])) for v in videos]
    check_output_plan([(v['video_path'], d) for v, d in zip(videos, dsts)])
    if not skip_existing:
        return list(videos), []
    there = [osp.exists(d) for d in dsts]
    return ([v for v, t in zip(videos, there) if not t],
            [d for d, t in zip(dsts, there) if t])


def enhance_videos(inferencer, videos: Sequence[dict], results: dict,
                   out_dir: str = '', on_error: str = 'raise',
                   return_preds: bool = True, before_tile=None,
                   **kwargs) -> dict:
    """Enhance the videos of one inferencer call into ``results``.

    Args:
        inferencer (SemiLLIEInferencer): The model.
        videos (Sequence[dict]): From :func:`split_video_inputs` (and
            :func:`~.output_plan.plan_outputs`).
        results (dict): The call's results: ``outputs``, ``notes``,
            ``skipped`` and ``predictions`` are extended.
        out_dir (str): Output folder (names from :func:`video_output_name`);
            empty: the frames are returned in ``predictions``.
        on_error (str): ``'skip'`` logs and lists bad videos in
            ``skipped``; ``'raise'`` raises their :class:`VideoError`.
        return_preds (bool): Add the ``TxHxWx3`` frames to ``predictions``
            (only without ``out_dir``).
        before_tile (callable, optional): See :func:`enhance_video`.
        **kwargs: ``batch_size``, ``tile_size``, ``tile_overlap``,
            ``network``, ``temporal_smoothing`` of :func:`enhance_video`.

    Returns:
        dict: ``results``.
    """
    for item in videos:
        src = item['video_path']
        dst = osp.join(out_dir, video_output_name(item['rel'])) \
            if out_dir else None
        try:
            res = enhance_video(inferencer, src, dst,
                                before_tile=before_tile, **kwargs)
        except VideoError as err:
            if on_error != 'skip':
                raise
            reason = str(err)
            reason = reason[len(src) + 2:] if reason.startswith(
                f'{src}: ') else reason
            logger.warning('skipped %s: %s', src, reason)
            results['skipped'].append(dict(path=src, reason=reason))
            continue
        if dst:
            results['outputs'].append(dst)
        elif return_preds:
            results['predictions'].append(res['video'])
    return results


__all__ = [
    'VIDEO_EXTENSIONS', 'VIDEO_WRITE_CODECS', 'VideoError', 'VideoInfo',
    'VideoSink', 'GainSmoother', 'is_video', 'video_output_name',
    'probe_video', 'read_frames', 'enhance_video', 'enhance_videos',
    'split_video_inputs', 'plan_video_outputs', 'dropped_line',
    'enhance_video_file', 'check_video_args'
]
