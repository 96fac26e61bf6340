"""The training step on a GPU waits for nothing: run with CUDA's sync debug mode set to error,
so any device-to-host synchronisation in the step raises. Skipped where torch sees no GPU."""
import pytest
import torch

from vrestore.models import DiscriminatorConfig, GANLoss, GeneratorConfig, build_discriminator, build_generator
from vrestore.trainer.pix2pix_step import Pix2Pix, make_adam

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


@pytest.mark.parametrize("dtype,norm", [(torch.bfloat16, "batch"), (None, "instance")])
def test_the_step_never_syncs_with_the_host(dtype, norm):
    device = torch.device("cuda")
    G = build_generator(GeneratorConfig(ngf=8, depth=5, norm=norm)).to(device, memory_format=torch.channels_last)
    D = build_discriminator(DiscriminatorConfig(ndf=8, norm=norm)).to(device, memory_format=torch.channels_last)
    model = Pix2Pix(G, D, D, make_adam(G.parameters(), 2e-4, 0.5), make_adam(D.parameters(), 2e-4, 0.5),
                    torch.amp.GradScaler("cuda", enabled=False), GANLoss().to(device), 100.0, device, dtype)
    x = torch.rand(4, 3, 32, 32, device=device).mul(2).sub(1).contiguous(memory_format=torch.channels_last)
    good = {"clean": x, "degraded": x * 0.5}
    bad = {"clean": x, "degraded": torch.full_like(x, float("nan"))}
    model.optimize(good)  # first step: optimiser state is created (allocations, not syncs)
    torch.cuda.synchronize()
    before = {k: v.clone() for k, v in G.state_dict().items()}
    torch.cuda.set_sync_debug_mode("error")
    try:
        _, skipped_bad = model.optimize(bad)
        _, skipped_good = model.optimize(good)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert skipped_bad.item() == 1.0 and skipped_good.item() == 0.0
    after = G.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the good step moved the weights


def test_graphed_step_matches_the_eager_step_and_skips_alike():
    from vrestore.trainer.pix2pix_step import GraphedStep

    device = torch.device("cuda")

    def model(graphed):
        torch.manual_seed(0)
        G = build_generator(GeneratorConfig(ngf=8, depth=5, dropout=False)).to(device, memory_format=torch.channels_last)
        D = build_discriminator(DiscriminatorConfig(ndf=8)).to(device, memory_format=torch.channels_last)
        m = Pix2Pix(G, D, D, make_adam(G.parameters(), 2e-4, 0.5, graphed), make_adam(D.parameters(), 2e-4, 0.5, graphed),
                    torch.amp.GradScaler("cuda", enabled=False), GANLoss().to(device), 100.0, device, None)
        return m, (GraphedStep(m, warmup=2).optimize if graphed else m.optimize)

    # deterministic convolutions: the comparison is of the maths, not of the order of atomic adds
    # (which Adam, normalising every gradient, turns into differences of the order of the lr)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    eager, eager_step = model(False)
    graphed, graphed_step = model(True)
    g = torch.Generator(device=device).manual_seed(1)
    for i in range(7):
        x = torch.rand(4, 3, 32, 32, device=device, generator=g).mul(2).sub(1).contiguous(memory_format=torch.channels_last)
        batch = {"clean": x, "degraded": torch.full_like(x, float("nan")) if i == 5 else x * 0.5}
        if i == 3:
            for m in (eager, graphed):
                m.set_lr(1e-3)  # a new rate reaches the graph without a recapture
        _, skipped_eager = eager_step(batch)
        _, skipped_graphed = graphed_step(batch)
        assert skipped_eager.item() == skipped_graphed.item() == float(i == 5)
    for a, b in zip(eager.G.state_dict().values(), graphed.G.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), (a - b).abs().max()


@pytest.mark.parametrize("graphed", [False, True])
@pytest.mark.parametrize("shape_on", ["cpu", "cuda"])
def test_the_trainer_loops_per_step_work_never_syncs(graphed, shape_on):
    """Everything the training loop does per step besides reading DALI: the batch assembled from
    DALI's outputs (boxes drawn in torch; the frame shapes arrive on the host or the device
    depending on DALI's placement), the learning rate set, the step, the EMA update, the losses
    counted. A sync anywhere here would make the host wait for each step before preparing the
    next; the loop's only sync is its loss readout every --log-every steps."""
    pytest.importorskip("nvidia.dali")  # trainer.dali_input imports it (a GPU machine may lack it)
    from vrestore.pipeline.degrade.degradations import DegradationSpec
    from vrestore.trainer.dali_input import assemble_batch
    from vrestore.trainer.ema import GeneratorEMA
    from vrestore.trainer.pix2pix_step import GraphedStep
    from vrestore.trainer.train import LossMeter

    device = torch.device("cuda")
    G = build_generator(GeneratorConfig(ngf=8, depth=5, frames=3)).to(device, memory_format=torch.channels_last)
    D = build_discriminator(DiscriminatorConfig(ndf=8)).to(device, memory_format=torch.channels_last)
    model = Pix2Pix(G, D, D, make_adam(G.parameters(), 2e-4, 0.5, graphed), make_adam(D.parameters(), 2e-4, 0.5, graphed),
                    torch.amp.GradScaler("cuda", enabled=False), GANLoss().to(device), 100.0, device, torch.bfloat16)
    optimize = GraphedStep(model, warmup=2).optimize if graphed else model.optimize
    ema, meter = GeneratorEMA(G, 0.999), LossMeter(device)
    boxes = torch.Generator(device=device).manual_seed(0)
    shapes = torch.tensor([[240, 320, 3]] * 4, dtype=torch.int32, device=shape_on)  # made here: a host-to-device tensor syncs

    def dali_like_batch():
        out = {"clean": torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8, device=device),
               "degraded": torch.randint(0, 256, (4, 3, 32, 32, 3), dtype=torch.uint8, device=device)}
        out["frame_shape"] = shapes.clone()
        return out

    def iteration(step):
        batch = assemble_batch(dali_like_batch(), 3, DegradationSpec(), boxes, device)
        model.set_lr(2e-4 * (1 - step / 100))
        losses, skipped = optimize(batch)
        ema.update(step)
        meter.add(losses, 4, skipped)

    for step in range(1, 5):  # warm-up, capture, first EMA copy, pinned-memory pool
        iteration(step)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(5, 10):
            iteration(step)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    named, _ = meter.read()
    assert meter.skipped == 0 and all(v == v for v in named.values())
