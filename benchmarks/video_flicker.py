"""Flicker of the shipped model on video: frame-to-frame change, in and out.

Makes the test clip of :func:`semillie_mm.datasets.demo_video.make_pan_clip`
(a slow pan over a shipped photo with a brightness ramp, darkened by the
demo's low-light synthesis), writes it losslessly (FFV1 ``.mkv``), enhances
it with ``tools/enhance.py``'s code path
(:func:`semillie_mm.apis.video.enhance_video`) once per
``--temporal-smoothing`` value, reads the lossless outputs back and prints
:func:`semillie_mm.evaluation.functional.temporal.temporal_change` of the
clean clip, the dark input and each output. Not a timing benchmark.

    nice python benchmarks/video_flicker.py [--frames 30] [--size 96 128]
        [--alphas 0 0.5 0.8 0.9] [--config C --checkpoint W] [--json FILE]
"""
import argparse
import json
import os
import os.path as osp
import sys
import tempfile

os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--frames', type=int, default=30)
    parser.add_argument('--size', type=int, nargs=2, default=(96, 128),
                        metavar=('H', 'W'))
    parser.add_argument('--alphas', type=float, nargs='+',
                        default=(0.0, 0.5, 0.8, 0.9))
    parser.add_argument('--config', default=None,
                        help='default: the shipped model')
    parser.add_argument('--checkpoint', default=None)
    parser.add_argument('--json', default=None, help='also write the rows')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from semillie_mm.apis import SemiLLIEInferencer
    from semillie_mm.apis.video import VideoSink, enhance_video, read_frames
    from semillie_mm.datasets.demo_video import make_pan_clip
    from semillie_mm.evaluation.functional.temporal import temporal_change

    import numpy as np
    inferencer = SemiLLIEInferencer(args.config or 'semillie_target',
                                    args.checkpoint, device='cpu',
                                    show_progress=False)
    dark, clean = make_pan_clip(frames=args.frames, size=tuple(args.size))
    rows = [dict(clip='clean (before darkening)', **temporal_change(clean)),
            dict(clip='input (dark)', **temporal_change(dark))]
    with tempfile.TemporaryDirectory() as tmp:
        src = osp.join(tmp, 'night.mkv')
        with VideoSink(src, 10.0, (args.size[1], args.size[0])) as sink:
            for f in dark:
                sink.write(f)
        assert all(np.array_equal(a, b)
                   for a, b in zip(read_frames(src), dark)), 'FFV1 lossy?'
        for alpha in args.alphas:
            dst = osp.join(tmp, f'out_{alpha}.mkv')
            enhance_video(inferencer, src, dst, temporal_smoothing=alpha,
                          show_progress=False)
            rows.append(dict(clip=f'enhanced, --temporal-smoothing {alpha:g}',
                             **temporal_change(read_frames(dst))))
    print(f'clip: {args.frames} frames {args.size[1]}x{args.size[0]}, '
          'coffee (skimage), 2 px/frame pan, exposure 0.03 -> 0.1')
    print('| clip | mean abs change | mean level | relative change | '
          'brightness jitter | relative jitter |')
    print('|---|---:|---:|---:|---:|---:|')
    for r in rows:
        print(f"| {r['clip']} | {r['mean_abs_change']:.2f} | "
              f"{r['mean_level']:.1f} | {r['relative_change']:.4f} | "
              f"{r['brightness_jitter']:.3f} | {r['relative_jitter']:.5f} |")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == '__main__':
    sys.exit(main() and 0)
