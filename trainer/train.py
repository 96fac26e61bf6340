"""The training run: `torchrun --nproc_per_node=N -m vrestore train ...` or `vrestore train ...`.

Read top to bottom: set up ranks and networks, maybe resume, then one flat loop of
fetch -> pix2pix step -> log -> (validate, save) with stop conditions agreed by all ranks.
"""
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from vrestore.models import GANLoss, build_discriminator, build_generator
from vrestore.pipeline.atomic import check_writable, remove_dead_temp_files, write_json_atomic
from vrestore.pipeline.cluster.slurm import requeue_this_job
from vrestore.pipeline.host.lease import Lease
from vrestore.pipeline.devices import amp_dtype
from vrestore.trainer import distributed
from vrestore.models.weights import first_line
from vrestore.trainer.checkpoint import CHECKPOINT, LOCK, rng_state, save_checkpoint, set_rng_state, write_weights
from vrestore.trainer.config import TrainConfig
from vrestore.trainer.run_start import network_configs, prepare_out, shards_preset, stream_state, training_shards
from vrestore.trainer.dali_input import batches_per_epoch, train_batches
from vrestore.trainer.ema import GeneratorEMA
from vrestore.trainer.pix2pix_step import LOSS_NAMES, GraphedStep, Pix2Pix, load_adam_state, make_adam
from vrestore.trainer.run_log import RunLog
from vrestore.trainer.stop_request import LEASE_LOST, REASONS, StopRequest
from vrestore.trainer.schedule import describe_schedule, lr_at, progress, swing
from vrestore.trainer.validate import format_metrics, validate, validation_set


class NonFiniteLosses(RuntimeError):
    pass


@dataclass
class TrainResult:
    step: int
    epoch: int
    stopped: str  # "done", "max-steps", "max-minutes", "signal" (SIGTERM, Ctrl-C), "warning" (SIGUSR1), "lease-lost", "finished" (nothing left)
    val: dict = field(default_factory=dict)
    skipped_steps: int = 0
    images_per_s: Optional[float] = None  # all ranks, from the first loss readout to the last step (validations and saves between included)
    note: str = ""  # what the end of the run has to tell (the requeue, the lost lease)


@dataclass
class LoopHooks:
    """What a caller may put into the loop (tests/entry/train_entry.py, under torchrun, gives
    each rank a clock of its own or an error at some step, as Lightning's callbacks do): the
    clock this rank reads (agreed across ranks after every step), and a call before each step
    with (rank, step)."""
    clock: Callable[[], float] = time.monotonic
    on_step: Optional[Callable[[int, int], None]] = None


def train(cfg: TrainConfig, hooks: Optional[LoopHooks] = None) -> TrainResult:
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for deterministic results
    stop = StopRequest()  # from the start: Slurm's warning during start-up is kept for the first step
    d = distributed.setup(cfg.device)
    try:
        if cfg.sync_bn and d.device.type != "cuda":
            raise ValueError("--sync-bn needs GPUs: torch's SyncBatchNorm runs on CUDA tensors only")
        if cfg.cuda_graphs and (d.device.type != "cuda" or d.enabled or cfg.compile):
            raise ValueError("--cuda-graphs needs one GPU (no torchrun ranks) and no --compile")
        if cfg.videos is not None and cfg.shards is None:
            raise ValueError("--videos is turned into shards by the command line (vrestore.train_data); pass --shards here")
        # every rank checks --out (a shared folder on several nodes): a usage error is met by all
        # ranks at once and each exits 2, none is left waiting for the one that failed
        check_writable(cfg.out, "--out")
        if not d.is_main:
            return run(cfg, d, hooks or LoopHooks(), stop, None)
        # A second run into one --out stops at once; a lock whose holder died is taken over
        # (pipeline/host/lease.py). A lost lease is only noted here: the loop stops on it, agreed by all ranks.
        with Lease(cfg.out / LOCK, f"--out {cfg.out}", cfg.lock_stale_minutes, on_lost=lambda message: None) as lease:
            remove_dead_temp_files(cfg.out)  # a killed run's half-written saves (this host's only)
            return run(cfg, d, hooks or LoopHooks(), stop, lease)
    except Exception as e:
        if d.enabled:
            # One rank's error stops every rank within seconds, each naming the rank that failed
            # first (a rank waiting in a collective for a dead peer fails with a socket error).
            other, code = distributed.other_rank_failure(d)
            usage = isinstance(e, (ValueError, FileNotFoundError, NotADirectoryError))  # the CLI's exit 2
            distributed.report_failure(d, f"stopped: {other.removeprefix('error: ')}" if other else first_line(e),
                                       code if other else (2 if usage else 1))
        raise
    finally:
        stop.restore()
        distributed.teardown(d)


def build(cfg: TrainConfig, d, state: Optional[dict], mine: Optional[dict], frames: int, preset: str, spacing: int):
    """The networks (unwrapped, for saving), the generator's EMA (rank 0, or None), the pix2pix
    step around the wrapped networks, and the (epoch, step, epoch_step) to start at."""
    g_cfg, d_cfg = network_configs(cfg, frames, preset, spacing)
    G, D = build_generator(g_cfg), build_discriminator(d_cfg)
    if state:
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
    if cfg.sync_bn:
        # Statistics of the whole batch across ranks; the saved state dict keeps plain
        # batch-norm names, so generator.pth loads into the ordinary network.
        G, D = torch.nn.SyncBatchNorm.convert_sync_batchnorm(G), torch.nn.SyncBatchNorm.convert_sync_batchnorm(D)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    G, D = G.to(d.device, memory_format=fmt), D.to(d.device, memory_format=fmt)
    if cfg.deterministic:
        # Autotuned and atomics-based kernels may differ from launch to launch, so a resumed GPU
        # run would drift from an uninterrupted one; these settings trade speed for the same bits.
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    elif d.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one crop and batch all run long: time the kernels once, keep the fastest
    ema = None
    if cfg.ema_decay:  # on every rank: its batch-norm buffers are averaged across ranks with G's before saving
        ema = GeneratorEMA(G, cfg.ema_decay)
        if state and state.get("G_ema"):
            ema.load_state_dict(state["G_ema"])
    opt_G = make_adam(G.parameters(), cfg.lr, cfg.beta1, graphed=cfg.cuda_graphs)
    opt_D = make_adam(D.parameters(), cfg.lr, cfg.beta1, graphed=cfg.cuda_graphs)
    dtype = amp_dtype(cfg.amp, d.device)
    scaler = torch.amp.GradScaler(d.device.type, enabled=dtype == torch.float16)
    start = (0, 0, 0)
    if state:
        load_adam_state(opt_G, state["opt_G"], graphed=cfg.cuda_graphs)
        load_adam_state(opt_D, state["opt_D"], graphed=cfg.cuda_graphs)
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
    return G, D, ema, model, start


class LossMeter:
    """Losses and skipped steps counted on the device, so a step costs no sync; read every
    `log_every` steps. A skipped step's losses (not finite) are left out of the means."""

    def __init__(self, device):
        self.sums, self.kept, self.n = torch.zeros(len(LOSS_NAMES), device=device), torch.zeros((), device=device), 0
        self.since_val, self.kept_val = torch.zeros(len(LOSS_NAMES)), 0.0
        self.images, self.t = 0, time.monotonic()
        self.skips = torch.zeros(2, device=device)  # [skipped steps in all, skipped in a row now]
        self.skipped, self.bad_run = 0, 0  # as of the last read

    def add(self, losses: dict, images: int, skipped: torch.Tensor) -> None:
        values = torch.stack([losses[k].float() for k in LOSS_NAMES])
        self.sums += torch.where(skipped.bool(), torch.zeros_like(values), values)  # NaN * 0 is NaN: a select, not a product
        self.kept += 1 - skipped
        self.skips[0] += skipped
        self.skips[1] = (self.skips[1] + 1) * skipped
        self.n, self.images = self.n + 1, self.images + images

    def read(self) -> tuple:
        """(mean losses of the applied steps since the last read, or {} when every one was
        skipped; images/s); the loop's one sync point."""
        self.skipped, self.bad_run = (int(v) for v in self.skips.tolist())
        sums, kept = self.sums.cpu(), float(self.kept)
        self.since_val += sums
        self.kept_val += kept
        now = time.monotonic()
        rate = self.images / (now - self.t)
        self.sums.zero_()
        self.kept.zero_()
        self.n, self.images, self.t = 0, 0, now
        return (dict(zip(LOSS_NAMES, (sums / kept).tolist())) if kept else {}), rate

    def pop_since_validation(self) -> dict:
        means = dict(zip(LOSS_NAMES, (self.since_val / self.kept_val).tolist())) if self.kept_val else {}
        self.since_val.zero_()
        self.kept_val = 0.0
        return means


def run(cfg: TrainConfig, d, hooks: LoopHooks, stop: StopRequest, lease: Optional[Lease]) -> TrainResult:
    torch.manual_seed(cfg.seed * 1000 + d.rank)  # dropout draws differ per rank
    shards, val_shards = training_shards(cfg)
    frames = shards.clip_len
    preset = shards_preset(cfg, shards, val_shards)
    state, run_id = prepare_out(cfg, d, frames, preset, shards.frame_spacing)
    trained = state["trained_seconds"] if state else 0.0  # the run's training time before this launch
    steps_per_epoch = batches_per_epoch(shards.num_samples, cfg.batch_size, d.world_size)
    schedule_steps = cfg.epochs * steps_per_epoch
    total_steps = min(schedule_steps, cfg.max_steps or math.inf)
    if state and (state["step"] >= total_steps or (cfg.max_minutes and trained >= cfg.max_minutes * 60)):
        # a relaunch of a finished run (a requeue that came late, the same script again): nothing to do
        note = (f"{cfg.out} holds a finished run (step {state['step']}, {trained / 60:.1f} training minutes): nothing left to do; "
                f"raise --epochs, --max-steps or --max-minutes to train on")
        if d.is_main:
            print(note, file=sys.stderr)
        return TrainResult(state["step"], state["epoch"], "finished", note=note)
    mine = stream_state(cfg, d, state)
    G, D, ema, model, (epoch, step, epoch_step) = build(cfg, d, state, mine, frames, preset, shards.frame_spacing)
    batches = train_batches(shards, cfg.spec, cfg.batch_size, cfg.crop, d.device, d.rank, d.world_size,
                            cfg.seed, cfg.num_threads, state=mine and mine["data"], prefetch=cfg.prefetch)

    log, vset, best, history = None, None, (state or {}).get("best") or {"psnr": -math.inf, "step": None}, []
    if d.is_main:
        write_json_atomic(cfg.out / "config.json", cfg.to_dict())
        # a resumed run's logs forget what the launch before it logged past its checkpoint: those steps run again
        log = RunLog(cfg.out, resume_step=state["step"] if state else None)
        if state and best["step"] == step:
            # the best was this very checkpoint's step, and generator_best.pth is written after the
            # checkpoint: a launch killed between the two left it older
            write_weights(cfg.out / "generator_best.pth", ema.module if ema else G)
        vset = validation_set(val_shards, cfg.spec, cfg.val_frames, d.device)
        print(f"training on {d.world_size} x {d.device} ({str(model.dtype).split('.')[-1] if model.dtype else 'fp32'}"
              f"{', channels_last' if cfg.channels_last else ''}{', compiled' if cfg.compile else ''}): "
              f"{shards.num_samples} {'frames' if frames == 1 else f'windows of {frames} frames'}, {steps_per_epoch} steps per epoch of {cfg.batch_size} x {d.world_size}, "
              f"{total_steps} steps in all" + (f" or {cfg.max_minutes:g} training minutes, whichever comes first" if cfg.max_minutes else "")
              + (f", resuming at step {step} after {trained / 60:.1f} training minutes" if state else "")
              + f"; {describe_schedule(cfg, schedule_steps)}; "
              + (f"EMA of G with decay {cfg.ema_decay:g}" if ema else "no EMA") + f"; validation on {len(vset)} whole frames; "
              + f"generator: {G.cfg.arch}{' (residual)' if G.cfg.arch == 'unet' and G.cfg.residual else ''} for the {preset} preset"
              + (f", neighbours {G.cfg.frame_spacing} source frames apart (make-shards --frame-stride)" if G.cfg.frame_spacing > 1 else ""),
              file=sys.stderr)
        if cfg.val_shards is None:
            print(f"warning: no --val-shards: validation and generator_best.pth use frames of the training shards "
                  f"{cfg.shards}, so they measure fit, not restoration of unseen video", file=sys.stderr)

    optimize = GraphedStep(model).optimize if cfg.cuda_graphs else model.optimize
    meter = LossMeter(d.device)
    # The run's training seconds as all ranks agree on them: what earlier launches trained, plus
    # the largest of the ranks' clocks since this launch's loop began (agreed after every step;
    # start-up and time lost to a kill are not counted). The lr under --max-minutes, the time
    # limit and validate-and-save all follow it.
    clock = last_segment = last_save = trained
    bar = tqdm(total=total_steps, initial=step, unit="step", disable=not (cfg.progress and d.is_main), dynamic_ncols=True)
    last_val, stopped, timed, loop_end = {}, None, None, None

    def end_segment(with_validation=True, last=False):
        """Validate (rank 0) and save (all ranks send their RNG and input position). After a
        signal only save: torchrun kills its workers 30 s after it. `last`: the run's end."""
        nonlocal last_save
        val, last_save, note = {}, clock, ""
        distributed.average_buffers(d, [G, D] + ([ema.module] if ema else []))  # one network on every rank before judging and saving it
        G_eval = ema.module if ema else G  # what generator.pth holds
        if d.is_main and with_validation:
            val, columns = validate(G_eval, vset, model.autocast, cfg.samples)
            if ema:
                val["psnr_raw"] = validate(G, vset, model.autocast)[0]["psnr"]
            picture = log.validation(step, epoch, meter.pop_since_validation(), val, model.lr(), columns, last)
            history.append((val["psnr"], val.get("psnr_raw")))
            if val["psnr"] > best["psnr"]:
                best.update(psnr=val["psnr"], step=step)
                note = ", best so far -> generator_best.pth"
            bar.write(f"step {step} (epoch {epoch + epoch_step / steps_per_epoch:.2f}): {format_metrics(val)} -> {picture}{note}")
        ranks = distributed.gather_to_main(d, {"rng": rng_state(d.device), "data": batches.state(),
                                                "checksum": distributed.weights_checksum([G, D] + ([ema.module] if ema else []))})
        if d.is_main:
            if len({r["checksum"] for r in ranks}) > 1:
                print(f"warning: step {step}: the ranks hold different weights ({[r['checksum'] for r in ranks]})", file=sys.stderr)
            save_checkpoint(cfg.out, G, D, ema, model.opt_G, model.opt_D, model.scaler, epoch, step, epoch_step, ranks,
                            cfg.to_dict(), best, run_id, clock)
            if note:  # after the checkpoint, which records this best (a resume rewrites it, see above)
                write_weights(cfg.out / "generator_best.pth", G_eval)
        return val

    try:
        stop.looping = True  # from here a signal saves at the next step instead of stopping at once
        t0 = hooks.clock()
        while epoch < cfg.epochs and stopped is None:
            for batch in batches:
                model.set_lr(lr_at(cfg, progress(cfg, step, schedule_steps, clock)))
                if hooks.on_step:
                    hooks.on_step(d.rank, step)
                losses, skipped = optimize(batch)
                step, epoch_step = step + 1, epoch_step + 1
                if ema:
                    ema.update(step)  # a skipped step left G as it was: the EMA moves toward the same weights
                meter.add(losses, batch["clean"].shape[0] * d.world_size, skipped)
                if step % cfg.log_every == 0 or step == total_steps:
                    named, rate = meter.read()
                    if timed is None:  # the clock starts after the first steps (warm-up, first batches)
                        timed = (step, time.monotonic())
                    if meter.bad_run >= cfg.max_bad_steps:
                        raise NonFiniteLosses(
                            f"losses or gradients were not finite for {meter.bad_run} steps in a row (step {step}); "
                            f"the last checkpoint in {cfg.out} is untouched. Try a lower --lr, or --amp bf16/off.")
                    if d.is_main and named:
                        log.scalars(step, "train", named | {"lr": model.lr()})
                        bar.set_postfix(L1=f"{named['G_L1']:.4f}", G=f"{named['G_GAN']:.3f}",
                                        D=f"{(named['D_real'] + named['D_fake']) / 2:.3f}", img_s=f"{rate:.1f}", refresh=False)
                bar.update(1)
                loop_end = (step, time.monotonic())  # the final save is left out of the rate

                asked = max(stop.code, LEASE_LOST if lease is not None and lease.lost else 0)
                launch, asked = distributed.agree(d, hooks.clock() - t0, asked)
                clock = trained + launch
                stopped = stop_reason(cfg, step, clock, asked)
                end_of_epoch = epoch_step == steps_per_epoch
                if cfg.val_every and step % cfg.val_every == 0 and not (stopped or end_of_epoch):
                    last_val, last_segment = end_segment(), clock
                elif cfg.save_every_minutes and clock - last_save >= 60 * cfg.save_every_minutes and not (stopped or end_of_epoch):
                    end_segment(with_validation=False)  # a machine that dies without a signal loses at most this long
                # At an epoch's last batch let the loop end by itself, so the input stream is
                # saved past its epoch boundary and a resume starts the next epoch cleanly.
                if stopped and not end_of_epoch:
                    break
            else:
                epoch, epoch_step = epoch + 1, 0
            if stopped == "lease-lost":
                break  # another run owns --out now: write nothing more there
            # Small epochs on a fast GPU last seconds: validating each would halve throughput.
            if stopped or epoch >= cfg.epochs or clock - last_segment >= cfg.val_interval:
                last_val, last_segment = end_segment(stopped not in ("signal", "warning"), bool(stopped) or epoch >= cfg.epochs), clock
        note = ""
        if stopped == "warning" and d.is_main:
            note = requeue_this_job()  # the checkpoint is saved: now the job may be put back in the queue
        elif stopped == "lease-lost" and d.is_main:
            note = lease.lost
    finally:
        bar.close()
        if log:
            log.close()
    if d.is_main and len(history) >= 3:
        ours, raw = [h[0] for h in history], [h[1] for h in history]
        print(f"validation PSNR swing over the last third of {len(history)} validations: {swing(ours):.2f} dB"
              + (f" (EMA weights; the raw weights: {swing(raw):.2f} dB)" if ema else ""), file=sys.stderr)
    if d.is_main and best["step"] is not None:
        print(f"best validation PSNR {best['psnr']:.2f} dB at step {best['step']}: {cfg.out}/generator_best.pth; "
              f"{cfg.out}/generator.pth holds the {'EMA ' if ema else ''}weights of the last step", file=sys.stderr)
    meter.read()
    skipped = meter.skipped
    if d.is_main and stopped != "lease-lost":
        print(f"saved {cfg.out}/generator.pth, discriminator.pth, {CHECKPOINT} at step {step} "
              f"({stopped or 'done'}, {clock / 60:.1f} training minutes in all); {skipped} steps skipped for non-finite values"
              + (" (fp16 loss scaling skips a few while it calibrates)" if skipped and model.dtype == torch.float16 else ""),
              file=sys.stderr)
    if note:
        print(note, file=sys.stderr)
    rate = None
    if timed and loop_end and loop_end[0] > timed[0]:
        rate = (loop_end[0] - timed[0]) * cfg.batch_size * d.world_size / (loop_end[1] - timed[1])
    return TrainResult(step, epoch, stopped or "done", last_val, skipped, rate, note)


def stop_reason(cfg: TrainConfig, step: int, clock: float, asked: int) -> Optional[str]:
    """Why to stop after this step, from values every rank agreed on (so the same answer everywhere)."""
    if asked:
        return REASONS[asked]
    if cfg.max_minutes and clock > cfg.max_minutes * 60:
        return "max-minutes"
    if cfg.max_steps and step >= cfg.max_steps:
        return "max-steps"
    return None
