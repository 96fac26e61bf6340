"""The pix2pix update (Isola et al. 2017), one place: D on the detached fake, then G with D
frozen. One AMP path for fp32/bf16/fp16; each optimiser steps at most once per iteration.

The step never waits for the GPU: whether an update is applied (its gradients are finite) is
decided on the device. The fused Adam kernel reads that decision (`found_inf`, the hook
GradScaler uses) and leaves parameters, moments and step count alone when it is set; the
batch-norm buffers the forward pass already moved are put back in a few kernels.
"""
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from vrestore.models import GANLoss, centre_frame
from vrestore.trainer.torch_compat import copy_all_, step_unless

LOSS_NAMES = ("G_GAN", "G_L1", "D_real", "D_fake")


def make_adam(params, lr: float, beta1: float, graphed: bool = False) -> torch.optim.Adam:
    """Fused Adam: one kernel for all parameters, and the only implementation that can skip a
    non-finite step on the device. Fused on the CPU too (measured no slower than foreach there,
    README), so the skip path the GPU runs is the one the CPU tests run. `graphed`: for a CUDA
    graph, the step count and the learning rate live in device tensors (capturable), so a new
    rate needs no recapture."""
    params = list(params)
    if graphed:
        lr = torch.tensor(lr, device=params[0].device)
    return torch.optim.Adam(params, lr=lr, betas=(beta1, 0.999), fused=True, capturable=graphed)


def load_adam_state(opt: torch.optim.Adam, state: dict, graphed: bool) -> None:
    """Load a saved optimiser state into `opt` as `make_adam(..., graphed)` built it. torch
    restores each group's `lr` and `capturable` as saved, so a checkpoint of a plain run would
    leave a graphed run with a float lr (a recapture per change, or a frozen rate) and
    capturable off (capture refused), and the reverse a tensor lr; both are put back here."""
    opt.load_state_dict(state)
    for group in opt.param_groups:
        lr = float(group["lr"])
        device = group["params"][0].device
        group["capturable"] = graphed
        group["lr"] = torch.tensor(lr, device=device) if graphed else lr
        if graphed:  # a capturable step reads its count on the device
            for p in group["params"]:
                if "step" in opt.state.get(p, {}):
                    opt.state[p]["step"] = opt.state[p]["step"].to(device)


class BufferGuard:
    """A snapshot of networks' buffers (batch-norm running statistics) taken before the forward
    pass, put back where `bad` is set: a non-finite batch poisons them even when its update is
    skipped. Buffers of one dtype travel as one flat tensor, so this costs a handful of kernels
    however many layers there are, and no host sync."""

    def __init__(self, nets):
        self.groups = {}
        for net in nets:
            for b in net.buffers():
                self.groups.setdefault(b.dtype, []).append(b)
        self.saved = {}

    @staticmethod
    def _flat(buffers):
        return torch.cat([b.reshape(-1) for b in buffers])

    def save(self) -> None:
        self.saved = {dtype: self._flat(bs) for dtype, bs in self.groups.items()}

    def restore_where(self, bad: torch.Tensor) -> None:
        for dtype, bs in self.groups.items():
            kept = torch.where(bad.bool(), self.saved[dtype], self._flat(bs))
            copy_all_(bs, [v.view_as(b) for v, b in zip(kept.split([b.numel() for b in bs]), bs)])


@dataclass
class Pix2Pix:
    G: torch.nn.Module  # as trained: DDP- and/or compile-wrapped
    D: torch.nn.Module  # as trained (DDP) for the D step
    D_frozen: torch.nn.Module  # the unwrapped critic, for the G step: DDP must not see a
    # backward that produces no gradients for its parameters (its reducer would wait for them)
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    gan_loss: GANLoss
    lambda_l1: float
    device: torch.device
    dtype: object = None  # autocast dtype or None
    autocast_cache: bool = True  # off under a CUDA graph: the weight casts must be part of every replay
    guard: BufferGuard = field(init=False)

    def __post_init__(self):
        self.guard = BufferGuard([self.G, self.D_frozen])
        # Without batch norm, judging real and fake pairs in one critic call is the same maths
        # as two calls (with it, the two halves would share batch statistics: not pix2pix).
        self.joint_critic = not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in self.D_frozen.modules())

    def autocast(self):
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype, cache_enabled=self.autocast_cache)

    def backward_D(self, degraded, clean, fake) -> dict:
        with self.autocast():
            if self.joint_critic:
                pred_real, pred_fake = self.D(torch.cat([degraded, degraded]), torch.cat([clean, fake.detach()])).chunk(2)
            else:
                pred_real, pred_fake = self.D(degraded, clean), self.D(degraded, fake.detach())
            loss_real = self.gan_loss(pred_real, True)
            loss_fake = self.gan_loss(pred_fake, False)
            loss = 0.5 * (loss_real + loss_fake)
        self.scaler.scale(loss).backward()
        return {"D_real": loss_real.detach(), "D_fake": loss_fake.detach()}

    def backward_G(self, degraded, clean, fake) -> dict:
        with self.autocast():
            loss_gan = self.gan_loss(self.D_frozen(degraded, fake), True)
            loss_l1 = F.l1_loss(fake.float(), clean)
            loss = loss_gan + self.lambda_l1 * loss_l1
        self.scaler.scale(loss).backward()
        return {"G_GAN": loss_gan.detach(), "G_L1": loss_l1.detach()}

    def lr(self) -> float:
        """The current rate (a host read when it lives on the device: for logging only)."""
        return float(self.opt_G.param_groups[0]["lr"])

    def set_lr(self, lr: float) -> None:
        for opt in (self.opt_G, self.opt_D):
            for group in opt.param_groups:
                if isinstance(group["lr"], torch.Tensor):
                    group["lr"].fill_(lr)  # a graphed step reads it from the device
                else:
                    group["lr"] = lr

    def step(self, opt) -> torch.Tensor:
        """Apply `opt`'s update unless the gradients (already all-reduced, hence the same on
        every rank) are not finite. Returns that verdict as a device tensor, 1.0 = skipped."""
        self.scaler.unscale_(opt)
        grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
        found_inf = (~torch.isfinite(torch.nn.utils.get_total_norm(grads))).float()
        step_unless(opt, found_inf)  # the fused kernel reads it: a set flag leaves everything as it was
        return found_inf

    def optimize(self, batch: dict) -> tuple:
        """One iteration on a batch; returns (losses as 0-d tensors, skipped: a 0-d tensor, 1.0
        when a non-finite value made it skip the update). Nothing here waits for the device.
        G sees every frame of the clip; the critic judges (centre degraded frame, candidate)."""
        stack, clean = batch["degraded"], batch["clean"]
        degraded = centre_frame(stack)
        self.guard.save()
        with self.autocast():
            fake = self.G(stack)

        set_requires_grad(self.D_frozen, True)
        self.opt_D.zero_grad(set_to_none=True)
        losses = self.backward_D(degraded, clean, fake)
        bad_D = self.step(self.opt_D)

        set_requires_grad(self.D_frozen, False)
        self.opt_G.zero_grad(set_to_none=True)
        losses |= self.backward_G(degraded, clean, fake)
        bad_G = self.step(self.opt_G)
        self.scaler.update()
        skipped = torch.maximum(bad_D, bad_G)
        self.guard.restore_where(skipped)
        return losses, skipped


def set_requires_grad(net: torch.nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)


class GraphedStep:
    """`--cuda-graphs`: the whole step (forward, both backwards, both fused Adam updates, the
    skip decision, the buffer guard) captured once as a CUDA graph and replayed, one launch
    instead of about 1,300. Needs: one GPU (DDP's all-reduce is not captured), a fixed batch
    and crop (the DALI input fills every batch), no fp16 (the GradScaler's scale changes on the
    host), optimisers from `make_adam(..., graphed=True)`. The first `warmup` batches run as
    ordinary steps on a side stream, as capture requires; each batch is trained on once."""

    def __init__(self, model: Pix2Pix, warmup: int = 3):
        if model.device.type != "cuda" or model.dtype == torch.float16 or model.scaler.is_enabled():
            raise ValueError("--cuda-graphs needs a GPU and --amp bf16 or off (fp16's loss scale changes on the host)")
        self.model, self.warmup, self.calls = model, warmup, 0
        model.autocast_cache = False
        self.graph, self.static, self.out = None, None, None
        self.side = torch.cuda.Stream(model.device)

    def optimize(self, batch: dict) -> tuple:
        self.calls += 1
        if self.calls <= self.warmup:
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                out = self.model.optimize(batch)
            torch.cuda.current_stream().wait_stream(self.side)
            return out
        if self.graph is None:
            self.static = {k: batch[k].clone() for k in ("degraded", "clean")}
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.out = self.model.optimize(self.static)
        else:
            for k, t in self.static.items():
                t.copy_(batch[k])
        self.graph.replay()  # capture only recorded: the capturing batch is trained on here
        return self.out
