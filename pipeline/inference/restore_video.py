"""One video through the generator: frames streamed from ffmpeg, restored, encoded, and scored
against its original on the way, so memory stays flat however long the video."""
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Optional

import numpy as np

from vrestore.pipeline.evaluation.pictures import side_by_side, write_png
from vrestore.pipeline.inference.originals import mask_beside, pair_check
from vrestore.pipeline.inference.report import VideoReport
from vrestore.pipeline.inference.restorer import Restorer
from vrestore.pipeline.inference.video_scores import FrameQueue, FrameScores, NIQEPool
from vrestore.pipeline.media.probe import probe_video
from vrestore.pipeline.media.video_io import VideoWriter, not_carried, prefetched, read_frames

NIQE_FRAMES = 16  # frames NIQE scores per video by default (restore --niqe-frames): evenly spaced, ~1 s of work
BATCH_FRAMES = 8  # frames through the generator at once by default (restore --batch-size)
CODEC = "mjpeg"  # restore's output codec by default (restore --codec)


class Sink:
    """Everything after the generator for one video: encode, score against the original, write
    the comparison. Runs in a worker thread so it overlaps the next batch's model pass."""

    def __init__(self, stack: ExitStack, out: VideoWriter, info, codec, originals=None, masks=None, comparison: Optional[Path] = None,
                 niqe_frames: int = 0):
        self.stack, self.out, self.info, self.codec = stack, out, info, codec
        self.originals = FrameQueue(originals) if originals is not None else None
        self.masks = FrameQueue(masks) if masks is not None else None
        self.comparison = comparison
        self.scores = FrameScores() if originals is not None else None
        self.mismatch, self.sbs = None, None
        self.picture_at = (info.frame_count or 1) // 2
        self.niqe = NIQEPool(info.frame_count, niqe_frames) if niqe_frames else None

    def consume(self, frames: np.ndarray, restored: np.ndarray) -> None:
        first = self.out.frames
        self.out.write(restored)
        columns = [frames, restored]
        ref = None
        if self.scores is not None:
            ref = self.originals.take(len(frames))
            mask = self.masks.take(len(frames)) if self.masks else None
            if ref is None or len(ref) != len(frames) or (mask is not None and len(mask) != len(frames)):
                self.mismatch, self.scores, ref = "original (or mask) and input differ in frame count", None, None
            else:
                self.scores.add(frames, restored, ref, mask)
                columns.append(ref)
        if self.niqe is not None:
            self.niqe.add(first, {"input": frames, "restored": restored, **({"original": ref} if ref is not None else {})})
        if self.comparison is not None:
            panel = side_by_side(columns)
            if self.sbs is None:
                self.comparison.parent.mkdir(parents=True, exist_ok=True)
                h, w = panel.shape[1:3]
                self.sbs = self.stack.enter_context(VideoWriter(self.comparison, w, h, self.info.fps, self.codec,
                                                                                color=self.info.color))
            if first <= self.picture_at < self.out.frames:
                write_png(self.comparison.with_suffix(".png"), panel[self.picture_at - first])
            self.sbs.write(panel)

    def finish(self) -> None:
        if self.scores is not None and not self.originals.exhausted():
            self.mismatch, self.scores = "original and input differ in frame count", None
        if self.mismatch:
            self.mismatch += f" (input {self.out.frames})"


def restore_video(src: Path, dst: Path, restorer: Restorer, codec=CODEC, batch_size=BATCH_FRAMES, original: Optional[Path] = None,
                  comparison: Optional[Path] = None, on_frames=None, niqe_frames: int = NIQE_FRAMES, replace: bool = True) -> VideoReport:
    """Restore one video into `dst` (audio copied); with `original`, score input and output
    against it (inside and outside the boxes too when NAME_mask.* lies beside `src`); with
    `comparison`, also write that video and a PNG of its middle frame.

    Three stages overlap: ffmpeg decoding (read ahead in a thread), the generator (this
    thread), and the sink (a worker thread); at most one batch waits at each, and a
    multi-frame generator holds 2k frames more, so memory stays flat however long the video."""
    t0 = time.monotonic()
    info = probe_video(src)
    originals, masks, mismatch, mask_path = None, None, None, None
    if original is not None:
        original_info = probe_video(original)
        mismatch = pair_check(info, original_info)
        if mismatch is None:
            originals = read_frames(original, batch_size, original_info, warnings=[])
            mask_path = mask_beside(src)
            masks = read_frames(mask_path, batch_size, warnings=[]) if mask_path else None
    dst.parent.mkdir(parents=True, exist_ok=True)
    warnings = []
    with ExitStack() as stack:
        for reader in (originals, masks):
            if reader is not None:
                stack.callback(reader.close)  # stops its ffmpeg if we stop reading early
        out = stack.enter_context(VideoWriter(dst, info.width, info.height, info.fps, codec, audio_from=src, audio_codec=info.audio_codec,
                                              start_time=info.start_time, sample_aspect=info.sample_aspect, audio_container=info.container,
                                              replace=replace, color=info.color))
        sink = Sink(stack, out, info, codec, originals, masks, comparison, niqe_frames)
        pool = stack.enter_context(ThreadPoolExecutor(1))
        pending = None
        for frames, restored in restorer.stream(prefetched(read_frames(src, batch_size, info, warnings=warnings))):
            if pending:
                pending.result()  # re-raises the sink's errors here
            pending = pool.submit(sink.consume, frames, restored)
            if on_frames:
                on_frames(len(frames))
        if pending:
            pending.result()
        sink.finish()
    report = VideoReport(src.name, str(dst), out.frames, f"{float(info.fps):g}", f"{info.width}x{info.height}",
                         round(time.monotonic() - t0, 2), str(original) if original else None,
                         mask=str(mask_path) if mask_path and sink.scores else None,
                         mismatch=mismatch or sink.mismatch, warning=warnings[-1] if warnings else None, audio=out.audio_note,
                         not_carried="; ".join(not_carried(info)) or None, plan=restorer.notes.get((info.height, info.width)))
    if sink.scores is not None:
        report.scores |= sink.scores.means()
        report.sums = sink.scores.sums()
    if sink.niqe is not None:
        report.scores |= {f"niqe_{k}": v for k, v in sink.niqe.scores().items()}
        report.niqe_note = sink.niqe.problem
    return report
