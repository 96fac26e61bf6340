"""An exponential moving average of the generator's weights (and batch-norm buffers).

A GAN's weights at any one step are a lottery ticket: the critic keeps pushing them around a
good point. The average over recent steps sits nearer that point and moves smoothly, so
validation, samples and `generator.pth` use it. torch's `AveragedModel` holds it (the copy of
the network, the count, the checkpoint's state dict); the update is ours, for two reasons:
- a warm-up, decay_t = min(decay, (1 + t) / (10 + t)), so the first steps' random weights are
  forgotten quickly instead of lingering for ~1/(1 - decay) steps;
- no host sync. `AveragedModel.update_parameters` copies its count to the device (or tests it
  there) on every call, which on a GPU waits for the step in flight; here the count stays on
  the host and the update is two foreach calls over tensor lists gathered once.
`tests/test_train.py` checks that the update is `AveragedModel.update_parameters`'s, value for
value.
"""
from itertools import chain

import torch
from torch.optim.swa_utils import AveragedModel

from vrestore.trainer.torch_compat import copy_all_


class GeneratorEMA:
    def __init__(self, G: torch.nn.Module, decay: float):
        """`G` as it is trained (its tensors are updated in place, so they are gathered once).
        use_buffers: running batch-norm statistics are averaged too, so they match the
        averaged weights they normalise for."""
        self.decay = decay
        self.model = AveragedModel(G, use_buffers=True)
        self.model.n_averaged = self.model.n_averaged.cpu()
        averaged = list(chain(self.model.module.parameters(), self.model.module.buffers()))
        current = [t.detach() for t in chain(G.parameters(), G.buffers())]
        floats = [torch.is_floating_point(t) for t in averaged]
        self.averaged = [t.detach() for t, f in zip(averaged, floats) if f]
        self.current = [t for t, f in zip(current, floats) if f]
        # num_batches_tracked: a counter, not a statistic; it follows the network
        self.averaged_ints = [t.detach() for t, f in zip(averaged, floats) if not f]
        self.current_ints = [t for t, f in zip(current, floats) if not f]

    @property
    def module(self) -> torch.nn.Module:
        """The averaged generator, an ordinary network with the generator's config."""
        return self.model.module

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Move the average toward G's tensors as they are now (the first call copies them)."""
        first = int(self.model.n_averaged) == 0
        if self.averaged_ints:  # none with instance norm
            copy_all_(self.averaged_ints, self.current_ints)
        if first:
            copy_all_(self.averaged, self.current)
        else:
            torch._foreach_lerp_(self.averaged, self.current, 1.0 - self.decay_at(step))
        self.model.n_averaged += 1

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)  # in place: the gathered tensors stay the module's
        self.model.n_averaged = self.model.n_averaged.cpu()
