"""Validation: the generator in eval mode (no dropout noise, running batch-norm statistics, as
restore runs it) on fixed crops with fixed degradations; L1, PSNR and SSIM, and a picture."""
import torch

from pipeline.metrics import psnr, ssim, to_255
from pipeline.pictures import hwc_uint8
from trainer.dali_input import val_batches


@torch.no_grad()
def validate(G, shards, spec, crop: int, batch_size: int, max_batches: int, device, autocast, samples: int = 8, num_threads: int = 2):
    """Returns (metrics, grid columns): metrics are means over validated images, L1 on the
    0..255 scale; columns are uint8 NHWC degraded | restored | clean for the first `samples`."""
    was_training = G.training
    G.eval()
    totals = {"l1": 0.0, "psnr": 0.0, "ssim": 0.0, "psnr_input": 0.0, "ssim_input": 0.0}
    n, shown = 0, None
    try:
        for i, batch in enumerate(val_batches(shards, spec, batch_size, crop, device, num_threads=num_threads)):
            if i >= max_batches:
                break
            with autocast():
                restored = G(batch["degraded"])
            x, y, c = to_255(batch["degraded"]), to_255(restored), to_255(batch["clean"])
            totals["l1"] += (y - c).abs().flatten(1).mean(1).sum().item()
            totals["psnr"] += psnr(y, c).sum().item()
            totals["ssim"] += ssim(y, c).sum().item()
            totals["psnr_input"] += psnr(x, c).sum().item()
            totals["ssim_input"] += ssim(x, c).sum().item()
            n += len(c)
            if shown is None:
                shown = [hwc_uint8(t[:samples]) for t in (x, y, c)]
    finally:
        G.train(was_training)
    return {k: v / max(n, 1) for k, v in totals.items()} | {"images": n}, shown


def format_metrics(m: dict) -> str:
    if not m or not m.get("images"):
        return "no validation images"
    gain = m["psnr"] - m["psnr_input"]
    return (f"val L1 {m['l1']:.2f}  PSNR {m['psnr']:.2f} dB (input {m['psnr_input']:.2f}, "
            f"{gain:+.2f})  SSIM {m['ssim']:.4f} (input {m['ssim_input']:.4f})")
