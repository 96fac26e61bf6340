"""Restore frames/s, and where the time goes: decode, model, encode.

    python bench/restore.py                    # CPU, default model (ngf 64), 320x240 and 1280x720
    python bench/restore.py --device cuda --frames 200

For each size, a clip made by ffmpeg (testsrc2 + noise) is restored end to end by
`restore_video` (decode pipe -> generator -> encode pipe), and each stage is also timed alone
on the same frames. The baseline is ffmpeg transcoding the same clip to the same codec with no
model in between (the I/O floor); the ratio says how far restoring is from it. Weights are
freshly initialised: speed does not depend on what the network learned.
"""
import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from vrestore.models import DEPTH, GeneratorConfig, build_generator
from vrestore.pipeline.media.probe import probe_video
from vrestore.pipeline.inference.restore_video import restore_video
from vrestore.pipeline.inference.restorer import Restorer
from vrestore.pipeline.media.video_io import VideoWriter, read_frames
from vrestore.models.weights import save_weights


def make_clip(path: Path, size: str, frames: int):
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25", "-frames:v", str(frames),
                    "-vf", "noise=alls=20:allf=t", "-c:v", "ffv1", str(path)], check=True)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def bench_size(size, frames, restorer, codec, batch, tmp: Path):
    clip = tmp / f"clip_{size}.avi"
    make_clip(clip, size, frames)
    info = probe_video(clip)
    decoded, t_decode = timed(lambda: list(read_frames(clip, batch, info)))
    restorer(decoded[0])  # warm-up (allocator, kernels)
    if restorer.device.type == "cuda":
        torch.cuda.synchronize()
    restored, t_model = timed(lambda: [restorer(f) for f in decoded])

    def encode():
        with VideoWriter(tmp / "enc.avi", info.width, info.height, info.fps, codec) as w:
            for f in restored:
                w.write(f)
    _, t_encode = timed(encode)
    _, t_total = timed(lambda: restore_video(clip, tmp / "out.avi", restorer, codec, batch))
    transcode = ["ffmpeg", "-v", "error", "-y", "-i", str(clip), "-c:v", codec, "-q:v", "2", str(tmp / "base.avi")]
    _, t_base = timed(lambda: subprocess.run(transcode, check=True))
    parts = t_decode + t_model + t_encode
    print(f"{size}: restore {frames / t_total:.1f} frames/s | ffmpeg transcode (baseline) {frames / t_base:.1f} frames/s "
          f"| ratio {t_base / t_total:.3f} | time alone: decode {t_decode / parts:.0%}, model {t_model / parts:.0%}, "
          f"encode {t_encode / parts:.0%} | model alone {frames / t_model:.1f} frames/s, end to end at "
          f"{t_model / t_total:.2f}x of it")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--depth", type=int, default=DEPTH, help="the U-Net's levels (frames pad to 2^depth)")
    p.add_argument("--sizes", nargs="+", default=["320x240", "1280x720"])
    p.add_argument("--frames", type=int, nargs="+", default=[50, 8], help="frames per size")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--codec", default="mjpeg")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_weights(tmp / "g.pth", build_generator(GeneratorConfig(depth=args.depth, ngf=args.ngf)))
        restorer = Restorer(tmp / "g.pth", args.device)
        name = torch.cuda.get_device_name(restorer.device) if restorer.device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        print(f"device: {name}; generator ngf {args.ngf}, depth {restorer.G.cfg.depth}; batch {args.batch_size}; codec {args.codec}; "
              f"autocast {restorer.dtype or 'off'}")
        for size, frames in zip(args.sizes, args.frames + args.frames[-1:] * len(args.sizes)):
            bench_size(size, frames, restorer, args.codec, args.batch_size, tmp)


if __name__ == "__main__":
    main()
