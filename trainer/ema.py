"""An exponential moving average of the generator's weights (and batch-norm buffers).

A GAN's weights at any one step are a lottery ticket: the critic keeps pushing them around a
good point. The average over recent steps sits nearer that point and moves smoothly, so
validation, samples and `generator.pth` use it. Built on torch's `AveragedModel`; our only
addition is a warm-up, decay_t = min(decay, (1 + t) / (10 + t)), so the first steps' random
weights are forgotten quickly instead of lingering for ~1/(1 - decay) steps.
"""
import torch
from torch.optim.swa_utils import AveragedModel


class GeneratorEMA:
    def __init__(self, G: torch.nn.Module, decay: float):
        self.decay, self._now = decay, 0.0
        # use_buffers: running batch-norm statistics are averaged too, so they match the
        # averaged weights they normalise for.
        self.model = AveragedModel(G, multi_avg_fn=self._lerp, use_buffers=True)
        # The count stays on the host: AveragedModel tests it on every update, and on a GPU
        # that would be a device-to-host sync per step.
        self.model.n_averaged = self.model.n_averaged.cpu()

    @property
    def module(self) -> torch.nn.Module:
        """The averaged generator, an ordinary network with the generator's config."""
        return self.model.module

    @torch.no_grad()
    def _lerp(self, averaged: list, current: list, _n_averaged) -> None:
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1.0 - self._now)
        else:  # integer buffers (num_batches_tracked) follow the model
            for a, c in zip(averaged, current):
                a.copy_(c)

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

    def update(self, G: torch.nn.Module, step: int) -> None:
        self._now = self.decay_at(step)
        self.model.update_parameters(G)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
        self.model.n_averaged = self.model.n_averaged.cpu()

