"""`checkpoint.pt`: everything a resume needs to continue as if never stopped.

Both networks and the generator's EMA, both optimisers, the GradScaler, epoch and step and the
run's training time so far (the lr schedule is a function of them), the best validation so
far, the run id, and per rank: the torch RNGs (dropout) and the input stream's position and
RNGs. Plain types and tensors only, so it loads with `weights_only=True`. Written to a
temporary name, fsynced and renamed, the previous one kept as `checkpoint.prev.pt` until the
new one is complete: a checkpoint torn by a crash (or a disk that lied) resumes from the one
before, with a one-line warning, but only when that one is of the same run.

`run.json` names the run OUT holds (its id, written when the run starts, before any
checkpoint), so the fallback can tell this run's `checkpoint.prev.pt` from one a discarded run
left. `generator.pth` / `discriminator.pth` are written beside the checkpoint at the same moments.
"""
import json
import sys
import time
import uuid
from pathlib import Path

import torch

from vrestore.pipeline.atomic import atomic_path, write_json_atomic
from vrestore.models.weights import first_line, save_file, save_weights

CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
LOCK = ".vrestore-train.lock"  # held by the run writing into --out (a lease: pipeline/host/lease.py)
RUN = "run.json"
FORMAT = 3  # 2: the generator's EMA and the best validation; 3: the run id and its training time
READABLE = (2, 3)  # format 2 loads as a run of unknown id that trained for 0 s


def start_run(out: Path) -> str:
    """A new run in `out`: earlier checkpoints removed (a fallback must never reach them), then
    run.json with a new id. Rank 0, holding OUT's lock."""
    for name in (PREVIOUS, CHECKPOINT):  # the fallback first: no moment where only it is left
        (Path(out) / name).unlink(missing_ok=True)
    run_id = uuid.uuid4().hex[:16]
    write_json_atomic(Path(out) / RUN, {"run_id": run_id, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return run_id


def run_id_of(out: Path):
    """The id run.json names, or None (no run.json: a run of an older version, or none yet)."""
    try:
        return json.loads((Path(out) / RUN).read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None


def has_checkpoint(out: Path) -> bool:
    return (Path(out) / CHECKPOINT).is_file() or (Path(out) / PREVIOUS).is_file()


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
                    config: dict, best: dict, run_id: str, trained_seconds: float) -> None:
    """G and D are the unwrapped networks (no DDP/compile prefixes in the keys); `ema` the
    GeneratorEMA or None. `ranks` is every rank's {"rng", "data"} in rank order; `best` the best
    validation so far; `trained_seconds` the run's training time over all its launches.
    generator.pth gets the EMA weights when there are any."""
    out.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "run_id": run_id, "trained_seconds": float(trained_seconds),
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
    with atomic_path(out / CHECKPOINT, durable=True, keep_previous=out / PREVIOUS) as tmp:
        save_file(state, tmp)
    write_weights(out / "generator.pth", ema.module if ema else G)
    write_weights(out / "discriminator.pth", D)


def write_weights(path: Path, net) -> None:
    """A weights file (models/weights.py) under a temporary name, renamed when complete."""
    with atomic_path(path, durable=True) as tmp:
        save_weights(tmp, net)


def read_checkpoint(path: Path) -> dict:
    """One checkpoint file, checked whole: loadable, of our format, every float tensor finite
    (a corrupted middle can still unpickle; NaN weights must not become generator.pth)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: pickle/zip errors of many kinds
        raise ValueError(f"{path}: unreadable checkpoint ({first_line(e)})") from None
    if not isinstance(state, dict) or state.get("format") not in READABLE:
        raise ValueError(f"{path}: not a checkpoint of format {FORMAT}")
    state.setdefault("run_id", None)
    state.setdefault("trained_seconds", 0.0)
    for key in ("G", "D", "G_ema"):
        for name, t in (state.get(key) or {}).items():
            if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all():
                raise ValueError(f"{path}: {key}.{name} holds NaN or infinite values (a corrupted file)")
    return state


def load_checkpoint(out: Path) -> dict:
    """The latest checkpoint of the run that run.json names; if it is missing or torn, the
    previous one of the same run, with a warning. A fallback of another run is never taken."""
    path, previous = Path(out) / CHECKPOINT, Path(out) / PREVIOUS
    run_id = run_id_of(out)
    if not path.is_file() and not previous.is_file():
        raise FileNotFoundError(f"--resume require: no {CHECKPOINT} in {out}")
    try:
        state = read_checkpoint(path) if path.is_file() else read_checkpoint(previous)
        if run_id is not None and state["run_id"] != run_id:
            raise ValueError(f"{path if path.is_file() else previous}: a checkpoint of run {state['run_id']}, "
                             f"not of run {run_id} that {RUN} names")
        return state
    except ValueError as e:
        if not previous.is_file() or not path.is_file():
            raise ValueError(f"{e}; --overwrite starts over") from None
        try:
            state = read_checkpoint(previous)
        except ValueError as e2:
            raise ValueError(f"{e}, and {e2}; --overwrite starts over") from None
        if state["run_id"] != run_id:
            raise ValueError(f"{e}; {previous} is of another run ({state['run_id']}, not {run_id}), so it is not "
                             f"resumed; --overwrite starts over") from None
        print(f"warning: {e}; resuming from the previous checkpoint {previous} (step {state['step']})", file=sys.stderr)
        return state
