"""`checkpoint.pt`: everything `--resume` needs to continue as if never stopped.

Both networks and the generator's EMA, both optimisers, the GradScaler, epoch and step (the lr
schedule is a function of them), the best validation so far, and per rank: the torch RNGs
(dropout) and the input stream's position and RNGs. Plain types and tensors only, so it loads
with `weights_only=True`. Written to a temporary name and renamed; `generator.pth` /
`discriminator.pth` are written beside it at the same moments.
"""
from pathlib import Path

import torch

from vrestore.pipeline.atomic import atomic_path
from vrestore.models.weights import first_line, save_weights

CHECKPOINT = "checkpoint.pt"
FORMAT = 2  # 2: the generator's EMA and the best validation


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(out: Path, G, D, ema, opt_G, opt_D, scaler, epoch: int, step: int, epoch_step: int, ranks: list,
                    config: dict, best: dict) -> None:
    """G and D are the unwrapped networks (no DDP/compile prefixes in the keys); `ema` the
    GeneratorEMA or None. `ranks` is every rank's {"rng", "data"} in rank order; `best` the best
    validation so far. generator.pth gets the EMA weights when there are any."""
    out.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "G": G.state_dict(), "D": D.state_dict(),
        "G_ema": ema.state_dict() if ema else None,
        "best": best,
        "G_config": G.cfg.to_dict(), "D_config": D.cfg.to_dict(),
        "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch, "step": step, "epoch_step": epoch_step,
        "ranks": ranks,
        "config": config,
    }
    with atomic_path(out / CHECKPOINT) as tmp:
        torch.save(state, tmp)
    write_weights(out / "generator.pth", ema.module if ema else G)
    write_weights(out / "discriminator.pth", D)


def write_weights(path: Path, net) -> None:
    """A weights file (models/weights.py) under a temporary name, renamed when complete."""
    with atomic_path(path) as tmp:
        save_weights(tmp, net)


def load_checkpoint(out: Path) -> dict:
    path = Path(out) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no {CHECKPOINT} in {out}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: pickle/zip errors of many kinds
        raise ValueError(f"{path}: unreadable checkpoint ({first_line(e)}); --overwrite starts over") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not a checkpoint of format {FORMAT}")
    return state
