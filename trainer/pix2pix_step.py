"""The pix2pix update (Isola et al. 2017), one place: D on the detached fake, then G with D
frozen. One AMP path for fp32/bf16/fp16; each optimiser steps at most once per iteration."""
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models import GANLoss

LOSS_NAMES = ("G_GAN", "G_L1", "D_real", "D_fake")


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

    def autocast(self):
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward_D(self, degraded, clean, fake) -> dict:
        with self.autocast():
            pred_real = self.D(degraded, clean)
            pred_fake = self.D(degraded, fake.detach())
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

    def set_lr(self, lr: float) -> None:
        for opt in (self.opt_G, self.opt_D):
            for group in opt.param_groups:
                group["lr"] = lr

    def step(self, opt) -> bool:
        """Step unless the (already all-reduced, hence rank-identical) gradients are not finite.
        Reading the norm is a CPU-GPU sync point, the price of never applying a NaN update."""
        self.scaler.unscale_(opt)
        params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
        finite = bool(torch.isfinite(torch.nn.utils.get_total_norm([p.grad for p in params])))
        if finite:
            self.scaler.step(opt)
        return finite

    def optimize(self, batch: dict) -> tuple:
        """One iteration on a batch; returns (losses as 0-d tensors, whether both steps applied)."""
        degraded, clean = batch["degraded"], batch["clean"]
        # A non-finite batch poisons batch-norm running stats in the forward pass even when the
        # update is skipped, so they are put back (a few KB of copies per step).
        buffers = [b for net in (self.G, self.D_frozen) for b in net.buffers()]
        saved = [b.clone() for b in buffers]
        with self.autocast():
            fake = self.G(degraded)

        set_requires_grad(self.D_frozen, True)
        self.opt_D.zero_grad(set_to_none=True)
        losses = self.backward_D(degraded, clean, fake)
        ok_D = self.step(self.opt_D)

        set_requires_grad(self.D_frozen, False)
        self.opt_G.zero_grad(set_to_none=True)
        losses |= self.backward_G(degraded, clean, fake)
        ok_G = self.step(self.opt_G)
        self.scaler.update()
        if not (ok_D and ok_G):
            for b, old in zip(buffers, saved):
                b.copy_(old)
        return losses, ok_D and ok_G


def set_requires_grad(net: torch.nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)
