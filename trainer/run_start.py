"""What a launch of a training run starts from: the shards (and the preset they carry), the
networks' configs, and OUT: continue the run it holds, start a new one, or refuse a run of
another configuration (`--resume`), and whether the saved input stream still fits."""
import sys
from typing import Optional

from vrestore.models import DiscriminatorConfig, GeneratorConfig
from vrestore.pipeline.dataset.shard_set import load_shard_set
from vrestore.pipeline.degrade.real_world import RealSpec
from vrestore.trainer.checkpoint import CHECKPOINT, has_checkpoint, load_checkpoint, start_run
from vrestore.trainer.config import TrainConfig


def network_configs(cfg: TrainConfig, frames: int, preset: str = "seed", spacing: int = 1):
    """The networks' configs. `spacing`: source frames between the neighbours of the shards'
    windows (make-shards --frame-stride), recorded in the generator so restore feeds it alike."""
    # residual by default on the real preset: its mild codec damage must pass through nearly
    # unchanged, which the plain U-Net, redrawing every pixel, did not learn in the minutes
    # bench/presets.py gives it (docs/degradations.md); the seed preset keeps pix2pix's
    residual = cfg.residual if cfg.residual is not None else preset == "real"
    g = GeneratorConfig(depth=cfg.depth, ngf=cfg.ngf, norm=cfg.norm, dropout=cfg.dropout, frames=frames, arch=cfg.arch,
                                 temporal=cfg.temporal, enc_blocks=cfg.enc_blocks, middle_blocks=cfg.middle_blocks, dec_blocks=cfg.dec_blocks,
                                 preset=preset, residual=residual, frame_spacing=spacing if frames > 1 else 1)
    return g, DiscriminatorConfig(ndf=cfg.ndf, norm=cfg.norm)


def shards_preset(cfg: TrainConfig, shards, val_shards) -> str:
    """The preset the shards carry (make-shards --preset), which --preset, when given, and the
    validation shards must match: a real model validated on seed damage would be judged on
    what it never learned."""
    if cfg.preset is not None and cfg.preset != shards.preset:
        raise ValueError(f"--preset {cfg.preset}, but {cfg.shards} was made with --preset {shards.preset}; "
                         f"make shards with make-shards --preset {cfg.preset}")
    if cfg.videos is None and cfg.real != RealSpec():
        # the real preset's damage is drawn by make-shards into the shards; here it would only be recorded
        raise ValueError("--real-* options shape the damage make-shards writes into shards, and these shards are made: "
                         "pass them to make-shards --preset real (or train with --videos)")
    if val_shards.preset != shards.preset:
        raise ValueError(f"{cfg.val_shards} was made with --preset {val_shards.preset}, {cfg.shards} with --preset {shards.preset}: "
                         "make both with the same make-shards --preset")
    return shards.preset


def training_shards(cfg: TrainConfig):
    """(train, validation) shards as samples of the generator's frame count: --frames, or the
    train shards' clip length. Frames-layout shards give windows of any odd length up to
    theirs; clips-layout shards only their own (load_shard_set says which, in one line)."""
    shards = load_shard_set(cfg.shards, cfg.frames)
    val_shards = load_shard_set(cfg.val_shards, shards.clip_len) if cfg.val_shards else shards
    return shards, val_shards


def prepare_out(cfg: TrainConfig, d, frames: int, preset: str, spacing: int) -> tuple:
    """(checkpoint state or None, run id): continue the run OUT holds, or start a new one, as
    --resume and --overwrite say. A checkpoint of another configuration is refused, naming what
    differs, so `--resume auto` never continues a run the command does not describe."""
    found = has_checkpoint(cfg.out)
    if found and cfg.resume == "never" and not cfg.overwrite:
        raise ValueError(f"{cfg.out} holds a checkpoint of an earlier run; --resume auto continues it, --overwrite starts over")
    if not found and cfg.resume == "require":
        raise FileNotFoundError(f"--resume require: no {CHECKPOINT} in {cfg.out}")
    if cfg.overwrite or not found:
        # rank 0 clears and names the new run (only rank 0 writes); the others need no id
        return None, (start_run(cfg.out) if d.is_main else None)
    state = load_checkpoint(cfg.out)
    if "depth" not in state["config"]:
        # a run from before --depth (the crop set it): it keeps its own network
        cfg.depth = state["G_config"]["depth"]
    g, dc = network_configs(cfg, frames, preset, spacing)
    saved = GeneratorConfig(**state["G_config"]).to_dict()  # older checkpoints lack newer keys: their defaults
    differ = [f"generator {k}: {saved[k]} in the checkpoint, {v} now" for k, v in g.to_dict().items() if saved[k] != v]
    differ += [f"critic {k}: {state['D_config'][k]} in the checkpoint, {v} now" for k, v in dc.to_dict().items() if state["D_config"].get(k) != v]
    differ += cfg.differences(state["config"])
    if differ:
        raise ValueError(f"{cfg.out} holds a run of another configuration ({'; '.join(differ)}): the same options continue it, "
                         f"--overwrite starts a new run there, or choose another --out")
    if d.is_main:
        changed = [f"--{k.replace('_', '-')} {state['config'].get(k)} -> {getattr(cfg, k)}" for k in ("epochs", "max_minutes")
                   if k in state["config"] and state["config"][k] != getattr(cfg, k)]
        if changed:
            print(f"resume: {', '.join(changed)}: the rest of the lr schedule follows the new length", file=sys.stderr)
    return state, state["run_id"]


def stream_state(cfg: TrainConfig, d, state: Optional[dict]) -> Optional[dict]:
    """This rank's saved RNG and input position, if the run layout still matches them."""
    if state is None:
        return None
    old = state["config"]
    same = (len(state["ranks"]) == d.world_size and old["batch_size"] == cfg.batch_size
            and old["shards"] == str(cfg.shards) and old["crop"] == cfg.crop)
    if not same:
        if d.is_main:
            print("resume: ranks, batch size, crop or shards changed, so the input stream starts a new epoch order "
                  "(weights, optimisers, step and schedule are restored)", file=sys.stderr)
        return None
    return state["ranks"][d.rank]
