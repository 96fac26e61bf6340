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
def test_the_trainers_own_loop_never_syncs_between_loss_readouts(graphed, sample_tree, tmp_path):
    """The trainer's loop itself (trainer.train, DALI on the GPU, boxes in torch, lr, step, EMA,
    loss meter, the agreed clock), watched through its on_step hook: from step 6 to step 12 CUDA's
    sync debug mode is "error", so any device-to-host wait in that stretch raises and fails the
    run. The loop's only sync is its loss readout every --log-every steps (100 here)."""
    pytest.importorskip("nvidia.dali")  # trainer.dali_input imports it (a GPU machine may lack it)
    from vrestore.pipeline.dataset.make_shards import make_shards
    from vrestore.pipeline.dataset.shard_config import ShardConfig
    from vrestore.trainer.config import TrainConfig
    from vrestore.trainer.train import LoopHooks, train

    shards = tmp_path / "shards"
    make_shards(ShardConfig(sample_tree, shards, limit=2, clip_len=3, progress=False, workers=2))
    watched = []

    def on_step(rank, step):
        if step == 6:
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
        elif step == 12:
            torch.cuda.set_sync_debug_mode(0)
        watched.append(step)

    cfg = TrainConfig(shards=shards, out=tmp_path / "run", device="cuda", amp="bf16", cuda_graphs=graphed, max_steps=14,
                      log_every=100, val_interval=1e6, save_every_minutes=0, crop=32, depth=5, ngf=8, ndf=8, batch_size=4, val_frames=2,
                      samples=2, num_threads=1, progress=False)
    try:
        result = train(cfg, LoopHooks(on_step=on_step))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert result.step == 14 and {6, 11} <= set(watched) and result.skipped_steps == 0
