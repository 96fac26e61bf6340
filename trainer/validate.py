"""Validation on whole frames, as `vrestore restore` sees them.

A fixed set of frames from the validation shards is degraded once with the torch reference ops
(the very code `vrestore degrade` runs, with a fixed seed), so every validation of every run
scores the same inputs. The generator runs in eval mode (no dropout noise, running batch-norm
statistics) on each whole frame, mirror-padded to its multiple and cropped back. Figures: L1,
PSNR and SSIM per frame, and PSNR inside and outside the boxes pooled over all frames.
"""
from dataclasses import dataclass

import numpy as np
import torch

from vrestore.models import centre_frame, pad_to_multiple
from vrestore.pipeline.degrade.degradations import DegradationSpec, add_boxes, degrade
from vrestore.pipeline.evaluation.metrics import VideoScores, psnr, ssim, to_255
from vrestore.pipeline.evaluation.pictures import hwc_uint8
from vrestore.pipeline.dataset.shard_set import ShardSet
from vrestore.trainer.dali_input import spread_samples

VAL_SEED = 12345


@dataclass
class ValidationSet:
    degraded: list  # (1, 3T, H, W) float in [-1, 1], on the device: a sample's T frames, frame-major
    clean: list  # (1, 3, H, W) levels 0..255, on the device: the centre frame
    masks: list  # (1, 1, H, W) bool, true inside the centre frame's boxes
    input_metrics: dict = None  # the degraded centre frames' PSNR and SSIM: fixed, so scored once

    def __len__(self):
        return len(self.clean)


def validation_set(shards: ShardSet, spec: DegradationSpec, num_samples: int, device) -> ValidationSet:
    """`num_samples` samples spread over `shards` (whole frames; T frames each for clip shards),
    degraded once with a fixed seed (the real preset: the damaged copy the shards hold)."""
    generator = torch.Generator().manual_seed(VAL_SEED)
    vset = ValidationSet([], [], [])
    scores = torch.zeros(2, dtype=torch.float64)
    t, real = shards.clip_len, shards.preset == "real"
    for sample in spread_samples(shards, num_samples):
        clean = torch.from_numpy(sample[:t]).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
        if not real:
            degraded, mask = degrade(clean, spec, generator)  # blur, noise and boxes drawn per frame
        elif (shards.real or {}).get("boxes"):  # the shards' damaged copy, the seed's boxes on top
            degraded, mask = add_boxes(torch.from_numpy(sample[t:]).permute(0, 3, 1, 2).float(), spec, generator)
        else:
            degraded = torch.from_numpy(sample[t:]).permute(0, 3, 1, 2).float()
            mask = torch.zeros_like(degraded[:, :1], dtype=torch.bool)
        centre = len(clean) // 2
        x, c = degraded.div(127.5).sub(1).flatten(0, 1)[None], clean[centre : centre + 1]
        xi = to_255(centre_frame(x))
        scores += torch.tensor([psnr(xi, c).item(), ssim(xi, c).item()], dtype=torch.float64)
        vset.degraded.append(x.to(device))
        vset.clean.append(c.to(device))
        vset.masks.append(mask[centre : centre + 1].to(device))
    vset.input_metrics = dict(zip(("psnr_input", "ssim_input"), (scores / max(len(vset), 1)).tolist()))
    return vset


@torch.no_grad()
def validate(G, vset: ValidationSet, autocast, samples: int = 0):
    """(metrics, picture columns): means over frames, L1 on the 0..255 scale; the columns are
    uint8 NHWC degraded | restored | clean for the first `samples` frames of the first frame's size."""
    was_training = G.training
    G.eval()
    scores, l1 = VideoScores(), 0.0  # the one score record restore and bench report (metrics.Scores)
    shown = [[], [], []]
    try:
        for x, c, m in zip(vset.degraded, vset.clean, vset.masks):
            padded, crop_back = pad_to_multiple(x, G.cfg.multiple)
            with autocast():
                y = to_255(crop_back(G(padded)))
            l1 += (y - c).abs().mean().item()
            scores.add(y, c, m)
            scores.end_video()  # samples are unrelated frames: no temporal pairs between them
            if len(shown[0]) < samples and c.shape == vset.clean[0].shape:
                for column, t in zip(shown, (to_255(centre_frame(x)), y, c)):
                    column.append(hwc_uint8(t)[0])
    finally:
        G.train(was_training)
    r = scores.result()
    metrics = {"l1": l1 / max(len(vset), 1), "psnr": r.psnr, "ssim": r.ssim} | vset.input_metrics
    metrics |= {"psnr_boxes": r.psnr_boxes, "psnr_outside": r.psnr_outside, "frames": len(vset)}
    columns = [np.stack(col) for col in shown] if shown[0] else None
    return metrics, columns


def format_metrics(m: dict) -> str:
    if not m or not m.get("frames"):
        return "no validation frames"
    gain = m["psnr"] - m["psnr_input"]
    boxes = f", boxes {m['psnr_boxes']:.2f} / outside {m['psnr_outside']:.2f}" if m.get("psnr_boxes") is not None else ""
    raw = f" [raw weights {m['psnr_raw']:.2f}]" if m.get("psnr_raw") is not None else ""
    return (f"val PSNR {m['psnr']:.2f} dB (input {m['psnr_input']:.2f}, {gain:+.2f}{boxes}){raw}  "
            f"SSIM {m['ssim']:.4f} (input {m['ssim_input']:.4f})  L1 {m['l1']:.2f}")
