"""What a run leaves to read: metrics.jsonl, samples/*.png, and TensorBoard when installed.
Rank 0 only."""
import json
import time
from pathlib import Path

import numpy as np

from pipeline.pictures import image_grid, write_png


class RunLog:
    def __init__(self, out: Path, tensorboard: bool = True):
        self.out = Path(out)
        self.start = time.time()
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(self.out / "tensorboard"))
            except ImportError:  # tensorboard is optional
                pass

    def scalars(self, step: int, prefix: str, values: dict) -> None:
        if self.tb:
            for k, v in values.items():
                self.tb.add_scalar(f"{prefix}/{k}", v, step)

    def validation(self, step: int, epoch: int, train_losses: dict, val: dict, lr: float, columns) -> Path:
        """Append one line to metrics.jsonl and write samples/step_NNNNNNNN.png
        (degraded | restored | clean)."""
        record = {"step": step, "epoch": epoch, "time_s": round(time.time() - self.start, 1), "lr": lr,
                  "train": train_losses, "val": val}
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
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
