"""The training run: `torchrun --nproc_per_node=N -m trainer ...` or `vrestore train ...`.

Read top to bottom: set up ranks and networks, maybe resume, then one flat loop of
fetch -> pix2pix step -> log -> (validate, save) with stop conditions agreed by all ranks.
"""
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from models import DiscriminatorConfig, GANLoss, GeneratorConfig, build_discriminator, build_generator
from pipeline.atomic import write_json_atomic
from pipeline.precision import amp_dtype
from trainer import distributed
from trainer.checkpoint import CHECKPOINT, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from trainer.config import TrainConfig
from trainer.dali_input import load_shard_set, train_batches
from trainer.pix2pix_step import LOSS_NAMES, Pix2Pix
from trainer.run_log import RunLog
from trainer.validate import format_metrics, validate


class NonFiniteLosses(RuntimeError):
    pass


@dataclass
class TrainResult:
    step: int
    epoch: int
    stopped: str  # "done", "max-steps", "max-minutes", "signal"
    val: dict = field(default_factory=dict)
    skipped_steps: int = 0


class StopRequest:
    """SIGTERM/SIGINT ask the loop to save and stop at the next step; a second SIGINT stops now."""

    def __init__(self):
        self.signal: Optional[int] = None
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}

    def _handle(self, signum, frame):
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    def restore(self):
        for s, h in self._old.items():
            signal.signal(s, h)


def lr_at(cfg: TrainConfig, epoch: int, epoch_step: int, steps_per_epoch: int) -> float:
    """Constant, then linear to zero over the last `decay_epochs` (pix2pix's 'linear' policy,
    applied per step rather than per epoch)."""
    if cfg.decay_epochs == 0:
        return cfg.lr
    e = epoch + epoch_step / steps_per_epoch
    return cfg.lr * min(1.0, (cfg.epochs - e) / cfg.decay_epochs)


def network_configs(cfg: TrainConfig):
    g = GeneratorConfig.for_crop(cfg.crop, ngf=cfg.ngf, norm=cfg.norm, dropout=cfg.dropout)
    return g, DiscriminatorConfig(ndf=cfg.ndf, norm=cfg.norm)


def prepare_out(cfg: TrainConfig, d) -> Optional[dict]:
    """Refuse to train over an earlier run's checkpoint unless told; load it for --resume."""
    has_checkpoint = (cfg.out / CHECKPOINT).is_file()
    if has_checkpoint and not (cfg.resume or cfg.overwrite):
        raise ValueError(f"{cfg.out} holds a checkpoint of an earlier run; --resume continues it, --overwrite starts over")
    if not cfg.resume:
        return None
    state = load_checkpoint(cfg.out)
    g, dc = network_configs(cfg)
    differ = [f"{k}: {state['G_config'][k]} in the checkpoint, {v} now" for k, v in g.to_dict().items() if state["G_config"].get(k) != v]
    differ += [f"critic {k}: {state['D_config'][k]} in the checkpoint, {v} now" for k, v in dc.to_dict().items() if state["D_config"].get(k) != v]
    if differ:
        raise ValueError("--resume with a different architecture (" + "; ".join(differ) + ")")
    return state


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


def train(cfg: TrainConfig) -> TrainResult:
    d = distributed.setup(cfg.device)
    try:
        return run(cfg, d)
    finally:
        distributed.teardown(d)


def build(cfg: TrainConfig, d, state: Optional[dict], mine: Optional[dict]):
    """The networks (unwrapped, for saving), the pix2pix step around their wrapped forms, and
    the (epoch, step, epoch_step) to start at."""
    g_cfg, d_cfg = network_configs(cfg)
    G, D = build_generator(g_cfg), build_discriminator(d_cfg)
    if state:
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    G, D = G.to(d.device, memory_format=fmt), D.to(d.device, memory_format=fmt)
    opt_G = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    dtype = amp_dtype(cfg.amp, d.device)
    scaler = torch.amp.GradScaler(d.device.type, enabled=dtype == torch.float16)
    start = (0, 0, 0)
    if state:
        opt_G.load_state_dict(state["opt_G"])
        opt_D.load_state_dict(state["opt_D"])
        scaler.load_state_dict(state["scaler"])
        start = (state["epoch"], state["step"], state["epoch_step"] if mine else 0)
        if mine:
            set_rng_state(mine["rng"], d.device)

    # forward_sync_buffers=False: no broadcast of batch-norm running stats before every forward
    # (a collective per call, and the source of GAN+DDP+BN in-place errors when a buffer that
    # autograd saved is rewritten before backward). Each rank keeps its own running stats,
    # from its own batches; rank 0's are saved.
    G_train = DDP(G, forward_sync_buffers=False) if d.enabled else G
    D_train = DDP(D, forward_sync_buffers=False) if d.enabled else D
    D_frozen = D
    if cfg.compile:
        G_train, D_train, D_frozen = torch.compile(G_train), torch.compile(D_train), torch.compile(D)
    model = Pix2Pix(G_train, D_train, D_frozen, opt_G, opt_D, scaler, GANLoss(cfg.gan_mode).to(d.device),
                    cfg.lambda_l1, d.device, dtype)
    return G, D, model, start


class LossMeter:
    """Losses summed on the device, so a step costs no sync; read every `log_every` steps."""

    def __init__(self, device):
        self.sums, self.n = torch.zeros(len(LOSS_NAMES), device=device), 0
        self.since_val, self.n_val = torch.zeros(len(LOSS_NAMES)), 0
        self.images, self.t = 0, time.monotonic()

    def add(self, losses: dict, images: int) -> None:
        self.sums += torch.stack([losses[k].float() for k in LOSS_NAMES])
        self.n, self.images = self.n + 1, self.images + images

    def read(self) -> tuple:
        """(mean losses since the last read, images/s); the loop's one sync point."""
        means = (self.sums / max(self.n, 1)).cpu()
        self.since_val += means * self.n
        self.n_val += self.n
        now = time.monotonic()
        rate = self.images / (now - self.t)
        self.sums.zero_()
        self.n, self.images, self.t = 0, 0, now
        return dict(zip(LOSS_NAMES, means.tolist())), rate

    def pop_since_validation(self) -> dict:
        means = dict(zip(LOSS_NAMES, (self.since_val / self.n_val).tolist())) if self.n_val else {}
        self.since_val.zero_()
        self.n_val = 0
        return means


def run(cfg: TrainConfig, d) -> TrainResult:
    t0 = time.monotonic()
    torch.manual_seed(cfg.seed * 1000 + d.rank)  # dropout draws differ per rank
    shards = load_shard_set(cfg.shards)
    val_shards = load_shard_set(cfg.val_shards) if cfg.val_shards else shards
    state = prepare_out(cfg, d)
    mine = stream_state(cfg, d, state)
    G, D, model, (epoch, step, epoch_step) = build(cfg, d, state, mine)
    batches = train_batches(shards, cfg.spec, cfg.batch_size, cfg.crop, d.device, d.rank, d.world_size,
                            cfg.seed, cfg.num_threads, state=mine and mine["data"])
    steps_per_epoch = len(batches)
    total_steps = min(cfg.epochs * steps_per_epoch, cfg.max_steps or math.inf)
    if step >= total_steps:
        raise ValueError(f"{cfg.out}/{CHECKPOINT} is at step {step}: nothing left to do (raise --epochs or --max-steps)")

    log = None
    if d.is_main:
        cfg.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(cfg.out / "config.json", cfg.to_dict())
        log = RunLog(cfg.out)
        print(f"training on {d.world_size} x {d.device} ({str(model.dtype).split('.')[-1] if model.dtype else 'fp32'}"
              f"{', channels_last' if cfg.channels_last else ''}{', compiled' if cfg.compile else ''}): "
              f"{shards.num_samples} frames, {steps_per_epoch} steps per epoch of {cfg.batch_size} x {d.world_size}, "
              f"{total_steps} steps in all" + (f" or {cfg.max_minutes:g} minutes, whichever comes first" if cfg.max_minutes else "")
              + (f", resuming at step {step}" if state else ""), file=sys.stderr)

    def end_segment(with_validation=True):
        """Validate (rank 0) and save (all ranks send their RNG and input position). After a
        signal only save: torchrun kills its workers 30 s after it."""
        val = {}
        if d.is_main and with_validation:
            val, columns = validate(G, val_shards, cfg.spec, cfg.crop, cfg.batch_size, cfg.val_batches, d.device,
                                    model.autocast, cfg.samples, cfg.num_threads)
            picture = log.validation(step, epoch, meter.pop_since_validation(), val, model.opt_G.param_groups[0]["lr"], columns)
            bar.write(f"step {step} (epoch {epoch + epoch_step / steps_per_epoch:.2f}): {format_metrics(val)} -> {picture}")
        ranks = distributed.gather_to_main(d, {"rng": rng_state(d.device), "data": batches.state()})
        if d.is_main:
            save_checkpoint(cfg.out, G, D, model.opt_G, model.opt_D, model.scaler, epoch, step, epoch_step, ranks, cfg.to_dict())
        return val

    stop, meter = StopRequest(), LossMeter(d.device)
    bar = tqdm(total=total_steps, initial=step, unit="step", disable=not (cfg.progress and d.is_main), dynamic_ncols=True)
    bad, skipped, last_val, stopped = 0, 0, {}, None
    try:
        while epoch < cfg.epochs and stopped is None:
            for batch in batches:
                model.set_lr(lr_at(cfg, epoch, epoch_step, steps_per_epoch))
                losses, ok = model.optimize(batch)
                step, epoch_step = step + 1, epoch_step + 1
                bad, skipped = (0 if ok else bad + 1), skipped + (not ok)
                if bad >= cfg.max_bad_steps:
                    raise NonFiniteLosses(
                        f"losses or gradients were not finite for {bad} steps in a row (step {step}); "
                        f"the last checkpoint in {cfg.out} is untouched. Try a lower --lr, or --amp bf16/off.")
                meter.add(losses, batch["clean"].shape[0] * d.world_size)
                if step % cfg.log_every == 0 or step == total_steps:
                    named, rate = meter.read()
                    if d.is_main:
                        log.scalars(step, "train", named | {"lr": model.opt_G.param_groups[0]["lr"]})
                        bar.set_postfix(L1=f"{named['G_L1']:.4f}", G=f"{named['G_GAN']:.3f}",
                                        D=f"{(named['D_real'] + named['D_fake']) / 2:.3f}", img_s=f"{rate:.1f}", refresh=False)
                bar.update(1)

                stopped = stop_reason(cfg, d, step, t0, stop)
                end_of_epoch = epoch_step == steps_per_epoch
                if cfg.val_every and step % cfg.val_every == 0 and not (stopped or end_of_epoch):
                    last_val = end_segment()
                # At an epoch's last batch let the loop end by itself, so the input stream is
                # saved past its epoch boundary and a resume starts the next epoch cleanly.
                if stopped and not end_of_epoch:
                    break
            else:
                epoch, epoch_step = epoch + 1, 0
            last_val = end_segment(with_validation=stopped != "signal")
    finally:
        stop.restore()
        bar.close()
        if log:
            log.close()
    if d.is_main:
        print(f"saved {cfg.out}/generator.pth, discriminator.pth, {CHECKPOINT} at step {step} "
              f"({stopped or 'done'}); {skipped} steps skipped for non-finite values"
              + (" (fp16 loss scaling skips a few while it calibrates)" if skipped and model.dtype == torch.float16 else ""),
              file=sys.stderr)
    return TrainResult(step, epoch, stopped or "done", last_val, skipped)


def stop_reason(cfg: TrainConfig, d, step: int, t0: float, stop: StopRequest) -> Optional[str]:
    """The same answer on every rank (a CPU all-reduce on the gloo control group)."""
    reason = None
    if stop.signal is not None:
        reason = "signal"
    elif cfg.max_minutes and time.monotonic() - t0 > cfg.max_minutes * 60:
        reason = "max-minutes"
    agreed = distributed.any_rank(d, reason is not None)
    if agreed:
        return reason or "signal"  # another rank saw the signal or the clock first
    if cfg.max_steps and step >= cfg.max_steps:
        return "max-steps"
    return None
