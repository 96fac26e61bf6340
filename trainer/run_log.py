"""What a run leaves to read: metrics.jsonl, samples/*.png, curves.png (when matplotlib is
installed) and TensorBoard (when installed). Rank 0 only."""
import json
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from vrestore.pipeline.atomic import atomic_path
from vrestore.pipeline.evaluation.metrics import Scores
from vrestore.pipeline.evaluation.pictures import image_grid, write_png


def draw_curves(metrics: Path, out: Path) -> bool:
    """curves.png from metrics.jsonl: validation PSNR (EMA, raw, input; temporal PSNR), SSIM, and
    the training losses against steps. False when matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure  # no pyplot: no global figure state, no display
    except ImportError:
        return False
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in rows]
    val = lambda k: [r["val"].get(k) for r in rows]
    fig = Figure(figsize=(15, 4))
    a, b, c = fig.subplots(1, 3)
    a.plot(steps, val("psnr"), "o-", label="restored (generator.pth)")
    if any(v is not None for v in val("psnr_raw")):
        a.plot(steps, val("psnr_raw"), ".--", label="raw weights")
    a.plot(steps, val("psnr_input"), ":", label="degraded input")
    if any(v is not None for v in val("temporal_psnr")):  # T > 1
        a.plot(steps, val("temporal_psnr"), "s-", ms=3, label=f"restored, {Scores.about('temporal_psnr')['short']}")
    a.set(title=f"validation {Scores.about('psnr')['label']}, whole frames", xlabel="step")
    b.plot(steps, val("ssim"), "o-", label="restored")
    b.plot(steps, val("ssim_input"), ":", label="degraded input")
    b.set(title=f"validation {Scores.about('ssim')['label']}", xlabel="step")
    for name in ("G_L1", "G_GAN", "D_real", "D_fake"):
        c.plot(steps, [r["train"].get(name) for r in rows], ".-", label=name)
    c.set(title="training losses (mean since the last validation)", xlabel="step", yscale="log")
    for ax in (a, b, c):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    # fixed margins: tight_layout measured every label and took 2/3 of the drawing time
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.12, top=0.92, wspace=0.18)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    return True


CURVES_EVERY_S = 60.0


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62  # a torn last line (the launch was killed while appending): dropped


class RunLog:
    def __init__(self, out: Path, tensorboard: bool = True, resume_step: Optional[int] = None):
        """resume_step None: a new run, so metrics.jsonl and curves.png start empty instead of
        mixing an earlier run's lines into this one's curves. Else the step of the checkpoint this
        launch resumed: what the launch before it logged after that step (then lost, and run
        again now) is dropped, from metrics.jsonl and from TensorBoard (purge_step)."""
        self.out = Path(out)
        self.start = time.time()
        metrics = self.out / "metrics.jsonl"
        if resume_step is None:
            for name in ("metrics.jsonl", "curves.png"):
                (self.out / name).unlink(missing_ok=True)
        elif metrics.is_file():
            lines = metrics.read_text().splitlines(keepends=True)
            kept = [line for line in lines if line.strip() and _step_of(line) <= resume_step]
            if len(kept) != len(lines):
                with atomic_path(metrics) as tmp:
                    tmp.write_text("".join(kept))
        self.tb, self.curves_note, self.drawn = None, False, -CURVES_EVERY_S
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                purge = None if resume_step is None else resume_step + 1
                self.tb = SummaryWriter(str(self.out / "tensorboard"), purge_step=purge)
            except ImportError:  # tensorboard is optional
                pass

    def scalars(self, step: int, prefix: str, values: dict) -> None:
        if self.tb:
            for k, v in values.items():
                self.tb.add_scalar(f"{prefix}/{k}", v, step)

    def validation(self, step: int, epoch: int, train_losses: dict, val: dict, lr: float, columns, last: bool = False) -> Path:
        """Append one line to metrics.jsonl and write samples/step_NNNNNNNN.png
        (degraded | restored | clean); redraw curves.png at the run's last validation and at
        most once a minute before it (a drawing costs a few tenths of a second)."""
        record = {"step": step, "epoch": epoch, "time_s": round(time.time() - self.start, 1), "lr": lr,
                  "train": train_losses, "val": val}
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if last or time.monotonic() - self.drawn >= CURVES_EVERY_S:
            self.drawn = time.monotonic()
            if not draw_curves(self.out / "metrics.jsonl", self.out / "curves.png") and not self.curves_note:
                print("curves.png is not drawn: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
                self.curves_note = True
        self.scalars(step, "val", {k: v for k, v in val.items() if k != "frames" and v is not None})
        picture = self.out / "samples" / f"step_{step:08d}.png"
        if columns is not None:
            grid = image_grid(columns)
            write_png(picture, grid)
            if self.tb:
                self.tb.add_image("val/degraded|restored|clean", np.ascontiguousarray(grid), step, dataformats="HWC")
        return picture

    def close(self) -> None:
        if self.tb:
            self.tb.close()
