"""One video's scores while it streams: its frames against the original's (FrameQueue lines the
two streams up, FrameScores keeps metrics.VideoScores for the input and the output) and NIQE of
evenly spaced frames (NIQEPool)."""
from typing import Optional

import numpy as np
import torch

from vrestore.pipeline.evaluation.metrics import VideoScores
from vrestore.pipeline.evaluation.niqe import NIQEUnavailable, frame_features, luminance, niqe_of_features, sample_indices


class FrameQueue:
    """The next n frames of a stream of frame batches, whatever its batch sizes (the restored
    stream comes in other chunks than the originals' reader gives)."""

    def __init__(self, batches):
        self.batches, self.buf = batches, []

    def take(self, n: int):
        while len(self.buf) < n:
            batch = next(self.batches, None)
            if batch is None:
                break
            self.buf.extend(batch)
        out, self.buf = self.buf[:n], self.buf[n:]
        return np.stack(out) if out else None

    def exhausted(self) -> bool:
        return self.take(1) is None


class FrameScores:
    """The input's and the output's scores against the original, on the frames in memory
    (before encoding): vrestore.pipeline.evaluation.metrics.VideoScores for each."""

    def __init__(self):
        self.input, self.restored = VideoScores(), VideoScores()

    def add(self, degraded, restored, original, mask=None):
        to = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float()
        o, m = to(original), None if mask is None else torch.from_numpy(mask[..., :1] > 127).permute(0, 3, 1, 2)
        self.input.add(to(degraded), o, m)
        self.restored.add(to(restored), o, m)

    def sums(self) -> dict:
        return {"input": self.input.sums(), "restored": self.restored.sums()}

    def means(self) -> dict:
        """The report row's columns: psnr_input, psnr_restored, ... (metrics.Scores.named)."""
        return self.input.result().named("input") | self.restored.result().named("restored")


class NIQEPool:
    """NIQE features of up to `max_frames` evenly spaced frames per stream (input, restored,
    original), pooled into one score per stream at the end (evaluation/niqe.py)."""

    def __init__(self, count: Optional[int], max_frames: int):
        # without a frame count in the header: every 25th frame, up to max_frames
        self.wanted = set(sample_indices(count, max_frames)) if count else set(range(0, 25 * max_frames, 25))
        self.feats, self.problem = {}, None

    def add(self, first: int, streams: dict) -> None:
        for i in range(len(next(iter(streams.values())))):
            if first + i in self.wanted and self.problem is None:
                for name, frames in streams.items():
                    try:
                        self.feats.setdefault(name, []).append(frame_features(luminance(frames[i])))
                    except NIQEUnavailable as e:
                        self.problem = str(e)

    def scores(self) -> dict:
        if self.problem:
            return {}
        out = {}
        for name, feats in self.feats.items():
            try:
                out[name] = niqe_of_features(np.vstack(feats))
            except NIQEUnavailable as e:
                self.problem = str(e)
        return out
