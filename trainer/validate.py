"""Validation on whole frames, as `vrestore restore` sees them.

A fixed set of frames from the validation shards is degraded once with the torch reference ops
(the very code `vrestore degrade` runs, with a fixed seed), so every validation of every run
scores the same inputs. The generator runs in eval mode (no dropout noise, running batch-norm
statistics) on each whole frame, mirror-padded to its multiple and cropped back. Figures: L1
and every score of metrics.Scores by its names: PSNR and SSIM per frame, PSNR inside and
outside the boxes pooled over all frames, and (T > 1) temporal PSNR over each sample's centre
and the frame after it, restored from its own window of the sample's frames (mirrored at the
sample's end, as restore mirrors at a video's).
"""
from dataclasses import dataclass

import numpy as np
import torch

from vrestore.models import centre_frame, pad_to_multiple
from vrestore.pipeline.degrade.degradations import DegradationSpec, add_boxes, degrade
from vrestore.pipeline.evaluation.metrics import Scores, VideoScores, pooled_psnr, temporal_squared_error, to_255
from vrestore.pipeline.evaluation.pictures import hwc_uint8
from vrestore.pipeline.dataset.shard_set import ShardSet
from vrestore.pipeline.media.neighbours import window_indices
from vrestore.trainer.dali_input import spread_samples

VAL_SEED = 12345


@dataclass
class ValidationSet:
    degraded: list  # (1, 3T, H, W) float in [-1, 1], on the device: a sample's T frames, frame-major
    clean: list  # (1, 3, H, W) levels 0..255, on the device: the centre frame
    masks: list  # (1, 1, H, W) bool, true inside the centre frame's boxes
    # T > 1: the window of the frame after the centre, and that frame, for the temporal score
    degraded_next: list = None
    clean_next: list = None
    input_metrics: dict = None  # the degraded centre frames' scores ("psnr_input", ...): fixed, so scored once

    def __len__(self):
        return len(self.clean)


def validation_set(shards: ShardSet, spec: DegradationSpec, num_samples: int, device) -> ValidationSet:
    """`num_samples` samples spread over `shards` (whole frames; T frames each for clip shards),
    degraded once with a fixed seed (the real preset: the damaged copy the shards hold)."""
    generator = torch.Generator().manual_seed(VAL_SEED)
    t, real = shards.clip_len, shards.preset == "real"
    vset = ValidationSet([], [], [], [] if t > 1 else None, [] if t > 1 else None)
    inputs, temporal = VideoScores(), torch.zeros(2, dtype=torch.float64)
    for sample in spread_samples(shards, num_samples):
        clean = torch.from_numpy(sample[:t]).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
        if not real:
            degraded, mask = degrade(clean, spec, generator)  # blur, noise and boxes drawn per frame
        elif (shards.real or {}).get("boxes"):  # the shards' damaged copy, the seed's boxes on top
            degraded, mask = add_boxes(torch.from_numpy(sample[t:]).permute(0, 3, 1, 2).float(), spec, generator)
        else:
            degraded = torch.from_numpy(sample[t:]).permute(0, 3, 1, 2).float()
            mask = torch.zeros_like(degraded[:, :1], dtype=torch.bool)
        centre = t // 2
        x, c = degraded.div(127.5).sub(1).flatten(0, 1)[None], clean[centre : centre + 1]
        xi = to_255(centre_frame(x))
        inputs.add(xi, c, mask[centre : centre + 1])
        inputs.end_video()  # samples are unrelated frames: no temporal pairs between them
        vset.degraded.append(x.to(device))
        vset.clean.append(c.to(device))
        vset.masks.append(mask[centre : centre + 1].to(device))
        if t > 1:
            x_next = degraded[window_indices(centre + 1, t, t)].div(127.5).sub(1).flatten(0, 1)[None]
            c_next = clean[centre + 1 : centre + 2]
            temporal += temporal_squared_error(to_255(centre_frame(x_next)), c_next, xi, c)
            vset.degraded_next.append(x_next.to(device))
            vset.clean_next.append(c_next.to(device))
    r = inputs.result()
    r.temporal_psnr = pooled_psnr(*temporal.tolist()) if t > 1 else None
    vset.input_metrics = r.named("input")
    return vset


@torch.no_grad()
def validate(G, vset: ValidationSet, autocast, samples: int = 0):
    """(metrics, picture columns): means over frames, L1 on the 0..255 scale; the columns are
    uint8 NHWC degraded | restored | clean for the first `samples` frames of the first frame's size."""
    was_training = G.training
    G.eval()
    scores, l1 = VideoScores(), 0.0  # the one score record restore and bench report (metrics.Scores)
    temporal = torch.zeros(2, dtype=torch.float64)
    shown = [[], [], []]

    def restore(x):
        padded, crop_back = pad_to_multiple(x, G.cfg.multiple)
        with autocast():
            return to_255(crop_back(G(padded)))

    try:
        for i, (x, c, m) in enumerate(zip(vset.degraded, vset.clean, vset.masks)):
            y = restore(x)
            l1 += (y - c).abs().mean().item()
            scores.add(y, c, m)
            scores.end_video()  # samples are unrelated frames: no temporal pairs between them
            if vset.degraded_next is not None:
                temporal += temporal_squared_error(restore(vset.degraded_next[i]), vset.clean_next[i], y, c)
            if len(shown[0]) < samples and c.shape == vset.clean[0].shape:
                for column, t in zip(shown, (to_255(centre_frame(x)), y, c)):
                    column.append(hwc_uint8(t)[0])
    finally:
        G.train(was_training)
    r = scores.result()
    r.temporal_psnr = pooled_psnr(*temporal.tolist()) if vset.degraded_next is not None else None
    metrics = {"l1": l1 / max(len(vset), 1), **{k: getattr(r, k) for k in Scores.names()}, "frames": len(vset)} | vset.input_metrics
    columns = [np.stack(col) for col in shown] if shown[0] else None
    return metrics, columns


def format_metrics(m: dict) -> str:
    """One log line: PSNR against the input's and its gain, then every other score of
    metrics.Scores measured, each with the input's."""
    if not m or not m.get("frames"):
        return "no validation frames"
    raw = f" [raw weights {m['psnr_raw']:.2f}]" if m.get("psnr_raw") is not None else ""
    line = f"val PSNR {m['psnr']:.2f} dB (input {m['psnr_input']:.2f}, {m['psnr'] - m['psnr_input']:+.2f}){raw}"
    for k in Scores.names()[1:]:
        if m.get(k) is not None:
            f = Scores.about(k)["fmt"]
            line += f"  {Scores.about(k)['short']} {m[k]:{f}} (input {m[f'{k}_input']:{f}})"
    return line + f"  L1 {m['l1']:.2f}"
