"""The trainer, run for real: DALI on the CPU, gloo DDP under torchrun, tiny networks."""
import json
from pathlib import Path
import os
import signal
import subprocess
import sys
import time
from contextlib import nullcontext

import numpy as np
import pytest
import torch

from cli_helpers import cli_run
from vrestore.models import DiscriminatorConfig, GANLoss, GeneratorConfig, build_discriminator, build_generator
from vrestore.models.weights import WeightsError, load_network, save_weights
from vrestore.trainer.config import TrainConfig
from vrestore.trainer.pix2pix_step import Pix2Pix, load_adam_state, make_adam, set_requires_grad
from vrestore.pipeline.degrade.degradations import DegradationSpec
from vrestore.pipeline.dataset.shard_set import load_shard_set
from vrestore.trainer.ema import GeneratorEMA
from vrestore.trainer.schedule import lr_at, progress
from vrestore.trainer.train import train
from vrestore.trainer.validate import validate, validation_set

TINY = dict(crop=32, depth=5, ngf=4, ndf=4, batch_size=4, val_frames=2, samples=2, num_threads=1, progress=False)


def tiny_cli(shards, out, *extra):
    return ["--shards", str(shards), "--out", str(out), "--crop", "32", "--depth", "5", "--ngf", "4", "--ndf", "4",
            "--batch-size", "4", "--val-frames", "2", "--num-threads", "1", "--quiet", *map(str, extra)]


def torchrun(nproc, args, **kw):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "vrestore", "train", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, **kw)


def check_two_rank_run(r, out, norm: str, frames: int, steps: int = 3, spacing: int = 1) -> None:
    """What a 2-rank run of `steps` steps leaves (test_shared_machines runs one with batch norm
    on two nodes, test_preemption one with instance norm and windows of 3 frames): every file,
    loadable networks of the asked norm and frames (`spacing` source frames apart, the shards'
    stride), and ranks that agree."""
    assert r.returncode == 0, r.stderr[-3000:]
    assert "training on 2 x cpu" in r.stderr
    for name in ("generator.pth", "discriminator.pth", "checkpoint.pt", "config.json", "metrics.jsonl"):
        assert (out / name).is_file(), name
    assert list((out / "samples").glob("step_*.png"))
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == steps and len(ckpt["ranks"]) == 2
    # after DDP steps the two ranks hold the same parameters and buffers (batch-norm statistics
    # averaged over ranks before the save): a checksum each rank computed of its own networks
    assert ckpt["ranks"][0]["checksum"] == ckpt["ranks"][1]["checksum"]
    assert "hold different weights" not in r.stderr
    # both ranks' input streams were saved, and they are at different places
    assert ckpt["ranks"][0]["data"]["dali"] != ckpt["ranks"][1]["data"]["dali"]
    G = load_network(out / "generator.pth", "generator")  # weights_only inside
    D = load_network(out / "discriminator.pth", "discriminator")
    assert G.cfg == GeneratorConfig(ngf=4, depth=5, norm=norm, frames=frames, frame_spacing=spacing) and D.cfg.ndf == 4 and D.cfg.norm == norm
    with torch.no_grad():
        y = G.eval()(torch.zeros(1, 3 * frames, 32, 32))
    assert y.shape == (1, 3, 32, 32) and torch.isfinite(y).all()
    line = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert line["step"] == steps and line["val"]["frames"] == 2 and set(line["train"]) == {"G_GAN", "G_L1", "D_real", "D_fake"}


def test_rank_average_of_buffers_is_the_mean_a_single_process_computes(tmp_path):
    """Two gloo ranks hold different batch-norm statistics; after the trainer's average_buffers
    each holds, for every floating buffer, the mean of the two that a single process computes
    here from what they held before (not merely the same value on both ranks: a sum would be
    that too)."""
    entry = Path(__file__).parent / "entry" / "average_buffers_entry.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(entry), str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    before = [torch.load(tmp_path / f"before{i}.pt", weights_only=True) for i in range(2)]
    after = [torch.load(tmp_path / f"rank{i}.pt", weights_only=True) for i in range(2)]
    buffers = [{n for n, b in net.named_buffers() if b.is_floating_point()}
               for net in (build_generator(GeneratorConfig(ngf=4, depth=5)), build_discriminator(DiscriminatorConfig(ndf=4)))]
    checked = 0
    for net, names in enumerate(buffers):
        for name in names:
            b0, b1 = before[0][net][name], before[1][net][name]
            reference = (b0.float() + b1.float()) / 2
            assert not torch.equal(b0, b1)  # the ranks really differed
            # the all-reduced mean of two float32 values may differ from this one by a rounding of
            # the sum and one of the halving: 2 ulps of the larger value; 4 ulps allowed
            tol = 4 * torch.finfo(torch.float32).eps * torch.maximum(b0.float().abs(), b1.float().abs())
            for rank in range(2):
                assert ((after[rank][net][name].float() - reference).abs() <= tol).all(), (net, name, rank)
            checked += 1
    assert checked >= 4  # running means and variances of both networks' norm layers


def two_rank_run(shards, out, *extra, hooks=(), timeout=240):
    """2 CPU ranks under torchrun; `hooks` ("--clock-scale", "1=1000", ...) go to the test entry
    (tests/entry/train_entry.py), which runs the CLI's train with them in the loop."""
    entry = Path(__file__).parent / "entry" / "train_entry.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(entry), *hooks, "--",
           *tiny_cli(shards, out, *extra)]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=timeout)
    return r, time.monotonic() - t0


def rank_checksums(out):
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    return [r["checksum"] for r in ckpt["ranks"]], ckpt


@pytest.mark.slow
def test_max_minutes_runs_end_with_identical_ranks(tiny_shards, tmp_path):
    """Under --max-minutes the lr follows the clock; rank 1's runs 1.5 times as fast, yet both
    ranks step with the same rates (the agreed clock) and stop at the same step."""
    out = tmp_path / "run"
    r, _ = two_rank_run(tiny_shards, out, "--epochs", 1000, "--max-minutes", 0.15, "--lr", "1e-3",
                        hooks=("--clock-scale", "1=1.5"))
    assert r.returncode == 0, r.stderr[-3000:]
    sums, ckpt = rank_checksums(out)
    assert sums[0] == sums[1] and ckpt["step"] > 10
    assert "(max-minutes," in r.stderr


@pytest.mark.slow
def test_an_error_on_one_rank_stops_every_rank_with_its_message(tiny_shards, tmp_path):
    r, seconds = two_rank_run(tiny_shards, tmp_path / "run", "--epochs", 1000, hooks=("--fail-at", "1=3"), timeout=120)
    assert r.returncode != 0
    assert "error: rank 1: RuntimeError: test failure on rank 1 at step 3" in r.stderr
    # rank 0 stopped too, naming rank 1's error, well before any collective timeout
    assert "error: rank 0: stopped: rank 1: RuntimeError: test failure on rank 1" in r.stderr, r.stderr[-3000:]
    assert seconds < 60


@pytest.mark.slow
def test_sigterm_saves_and_resume_continues_at_saved_step(sample_shards, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "vrestore", "train", *tiny_cli(sample_shards, out, "--epochs", 1000)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    line = proc.stderr.readline()
    assert "training on" in line, line
    time.sleep(3)  # some steps
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, rest
    saved = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    assert saved > 0 and f"at step {saved} (signal" in rest

    # the same command continues it (both runs here in this process); --resume never refuses to
    r = cli_run("vrestore", "train", *tiny_cli(sample_shards, out, "--max-steps", saved + 2, "--resume", "never"))
    assert r.returncode == 2 and "--resume auto continues it" in r.stderr
    r = cli_run("vrestore", "train", *tiny_cli(sample_shards, out, "--max-steps", saved + 2))
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming at step {saved}" in r.stderr
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == saved + 2


@pytest.mark.slow
@pytest.mark.parametrize("arch,frames", [("unet", 1), ("nafnet", 3)])
def test_resume_is_exact(tiny_shards, tiny_frame_shards, tmp_path, arch, frames):
    """Stopped at an epoch's end, then mid-epoch, and resumed each time, a run ends with the very
    weights of an uninterrupted one: weights, optimisers, scaler, RNGs and the input stream's
    position (through the T-frame window index too) all came back."""
    from vrestore.trainer.dali_input import batches_per_epoch

    if frames > 1:
        tiny_shards = tiny_frame_shards
    spe = batches_per_epoch(load_shard_set(tiny_shards).num_samples, TINY["batch_size"], 1)
    assert spe >= 3
    end = 2 * spe + 2
    # 3 epochs: the lr decays from 1.5 epochs on, so the resumed parts cross into the decay
    tiny = TINY | {"arch": arch}
    whole = train(TrainConfig(tiny_shards, out=tmp_path / "whole", max_steps=end, epochs=3, **tiny))
    for stop in [spe, spe + 1, end]:
        part = train(TrainConfig(tiny_shards, out=tmp_path / "split", max_steps=stop, epochs=3, **tiny))
        assert part.step == stop
    assert whole.step == end and whole.epoch == part.epoch == 2
    a = torch.load(tmp_path / "whole" / "generator.pth", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "split" / "generator.pth", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    if (arch, frames) == ("unet", 1):  # a run with another seed differs, so the comparison above can fail
        train(TrainConfig(tiny_shards, out=tmp_path / "other", max_steps=end, epochs=3, seed=1, **tiny))
        c = torch.load(tmp_path / "other" / "generator.pth", weights_only=True)["state_dict"]
        assert not all(torch.equal(a[k], c[k]) for k in a)



def test_resume_refuses_another_architecture(sample_shards, tmp_path):
    train(TrainConfig(sample_shards, out=tmp_path, max_steps=1, **TINY))
    with pytest.raises(ValueError, match="generator ngf: 4 in the checkpoint, 8 now"):
        train(TrainConfig(sample_shards, out=tmp_path, max_steps=2, **(TINY | {"ngf": 8})))


@pytest.mark.slow
def test_overfit_lowers_validation_l1(sample_shards, tmp_path):
    """A small run learns: validation L1 (fixed whole frames and degradations) falls by a fifth
    or more between step 30 and step 90, and PSNR rises by more than 1 dB (measured here: L1
    0.61x, +3.7 dB)."""
    cfg = TrainConfig(sample_shards, out=tmp_path, max_steps=90, val_every=30, decay_fraction=0,
                      **(TINY | {"ngf": 8, "ndf": 8, "batch_size": 8, "val_frames": 4}))
    result = train(cfg)
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    first, last = lines[0]["val"], lines[-1]["val"]
    assert lines[0]["step"] == 30 and lines[-1]["step"] == 90 == result.step
    assert last["l1"] < 0.8 * first["l1"], (first, last)
    assert last["psnr"] > first["psnr"] + 1.0, (first, last)


def test_lr_schedule_decays_linearly_to_zero():
    cfg = TrainConfig("x", decay_fraction=0.4, lr=1e-3)
    assert lr_at(cfg, progress(cfg, 0, 1000, 0)) == lr_at(cfg, progress(cfg, 600, 1000, 0)) == 1e-3
    assert lr_at(cfg, progress(cfg, 800, 1000, 0)) == pytest.approx(5e-4)
    assert lr_at(cfg, progress(cfg, 1000, 1000, 0)) == 0
    # under --max-minutes the clock counts too, whichever is further along
    timed = TrainConfig("x", decay_fraction=0.5, lr=1e-3, max_minutes=10)
    assert lr_at(timed, progress(timed, 10, 10**6, 450)) == pytest.approx(5e-4)
    assert lr_at(TrainConfig("x", decay_fraction=0, lr=1e-3), 0.99) == 1e-3


def test_ema_moves_toward_the_weights_at_the_set_rate():
    torch.manual_seed(0)
    G = build_generator(GeneratorConfig(ngf=4, depth=5))
    ema = GeneratorEMA(G, decay=0.9)
    ema.update(step=1)  # the first update copies
    start = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in G.parameters():
            p.add_(1.0)
        for m in G.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.add_(2.0)
    assert ema.decay_at(5) == pytest.approx(6 / 15) and ema.decay_at(10**6) == 0.9  # warm-up, then the set decay
    ema.update(step=10**6)
    now, target = ema.module.state_dict(), G.state_dict()
    moved = [k for k in now if now[k].is_floating_point()]
    assert moved and any("running_mean" in k for k in moved)
    for k in moved:
        # the EMA's foreach lerp and this float32 expression each round 2-3 times: a few ulps of
        # values under 4 (weights + 1, means + 2), about 1e-6 on any CPU; allclose's default
        # rtol (1e-5 of the value) covers that, and a wrong decay (0.1 -> 0.11) moves it 1e-2
        assert torch.allclose(now[k], start[k] + 0.1 * (target[k] - start[k]), atol=1e-6), k
        assert not torch.equal(now[k], target[k]) or torch.equal(start[k], target[k])


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_ema_update_is_averaged_models_update(norm):
    """Ours skips AveragedModel's per-call host sync; the values must stay torch's, exactly,
    through real steps (weights, running statistics and the batch counter all moving) and a
    checkpoint round trip."""
    torch.manual_seed(0)
    G = build_generator(GeneratorConfig(ngf=4, depth=5, norm=norm))
    D = build_discriminator(DiscriminatorConfig(ndf=4, norm=norm))
    model = Pix2Pix(G, D, D, make_adam(G.parameters(), 1e-3, 0.5), make_adam(D.parameters(), 1e-3, 0.5),
                    torch.amp.GradScaler("cpu", enabled=False), GANLoss(), 100.0, torch.device("cpu"))
    ours = GeneratorEMA(G, decay=0.95)
    # torch's own EMA averaging (get_ema_multi_avg_fn), given the decay each step would use
    reference = torch.optim.swa_utils.AveragedModel(G, use_buffers=True)
    for step in range(1, 9):
        x = torch.rand(2, 3, 32, 32) * 2 - 1
        model.optimize({"clean": x, "degraded": x * 0.5})
        if step == 5:  # resume: a fresh EMA from the saved state carries on alike
            state = ours.state_dict()
            ours = GeneratorEMA(G, decay=0.95)
            ours.load_state_dict(state)
        ours.update(step)
        reference.multi_avg_fn = torch.optim.swa_utils.get_ema_multi_avg_fn(min(0.95, (1 + step) / (10 + step)))
        reference.update_parameters(G)
        mine, theirs = ours.state_dict(), reference.state_dict()
        assert mine.keys() == theirs.keys()
        for k in theirs:
            if theirs[k].is_floating_point():
                assert torch.equal(mine[k], theirs[k]), (step, k)
            elif k.endswith("num_batches_tracked"):  # a counter, not a statistic: ours follows G's
                assert torch.equal(mine[k], G.state_dict()[k.removeprefix("module.")]), (step, k)
    assert int(ours.model.n_averaged) == 8
    first = next(iter(G.state_dict()))
    assert not torch.equal(ours.module.state_dict()[first], G.state_dict()[first])  # an average, not a copy


def test_best_weights_are_the_best_validations(sample_shards, tmp_path):
    train(TrainConfig(sample_shards, out=tmp_path, max_steps=40, val_every=10, **(TINY | {"val_frames": 3})))
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    best = max(lines, key=lambda ln: ln["val"]["psnr"])
    assert len(lines) == 4 and "psnr_raw" in best["val"] and best["val"]["psnr_boxes"] is not None
    G = load_network(tmp_path / "generator_best.pth")
    vset = validation_set(load_shard_set(sample_shards), DegradationSpec(), 3, torch.device("cpu"))
    again = validate(G, vset, nullcontext)[0]
    assert again["psnr"] == pytest.approx(best["val"]["psnr"], abs=1e-6)
    # generator.pth is the last step's EMA, checkpoint.pt keeps raw and EMA weights
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    last = torch.load(tmp_path / "generator.pth", weights_only=True)["state_dict"]
    ema_state = {k.removeprefix("module."): v for k, v in ckpt["G_ema"].items() if k.startswith("module.")}
    assert all(torch.equal(last[k], ema_state[k]) for k in last)
    assert not all(torch.equal(last[k], ckpt["G"][k]) for k in last)
    # curves.png, drawn at the last validation (and at most once a minute before): a real PNG of the plotted figure
    from PIL import Image

    with Image.open(tmp_path / "curves.png") as picture:
        assert picture.format == "PNG" and picture.size == (1200, 320)
        assert np.unique(np.asarray(picture.convert("L"))).size > 10  # lines were drawn, not a blank canvas


@pytest.mark.slow
def test_sync_bn_weights_load_into_the_plain_network_and_gpu_options_are_refused_on_the_cpu(sample_shards, tmp_path):
    G = build_generator(GeneratorConfig(ngf=4, depth=5))
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(G)
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules())
    save_weights(tmp_path / "g.pth", synced)
    plain = load_network(tmp_path / "g.pth")
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in plain.modules())
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), synced.state_dict().values()))
    if torch.cuda.is_available():
        pytest.skip("the CPU refusal is for machines without a GPU")
    r = subprocess.run([sys.executable, "-m", "vrestore", "train", *tiny_cli(sample_shards, tmp_path / "run", "--sync-bn", "--device", "cpu")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == ["error: --sync-bn needs GPUs: torch's SyncBatchNorm runs on CUDA tensors only"]
    r = subprocess.run([sys.executable, "-m", "vrestore", "train", *tiny_cli(sample_shards, tmp_path / "run", "--cuda-graphs", "--device", "cpu")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == ["error: --cuda-graphs needs one GPU (no torchrun ranks) and no --compile"]


def tiny_pix2pix(seed=0, make_opt=make_adam, arch="unet"):
    torch.manual_seed(seed)
    G = build_generator(GeneratorConfig(ngf=4, depth=5, arch=arch))
    D = build_discriminator(DiscriminatorConfig(ndf=4))
    opt_G, opt_D = make_opt(G.parameters(), 2e-4, 0.5), make_opt(D.parameters(), 2e-4, 0.5)
    return Pix2Pix(G, D, D, opt_G, opt_D, torch.amp.GradScaler("cpu", enabled=False), GANLoss(), 100.0, torch.device("cpu"))


def test_non_finite_step_is_skipped_and_weights_kept():
    model = tiny_pix2pix()
    good = {"clean": torch.zeros(2, 3, 32, 32), "degraded": torch.rand(2, 3, 32, 32) * 2 - 1}
    assert model.optimize(good)[1].item() == 0.0  # one real step: Adam's moments exist and are non-zero
    opts = (model.opt_G, model.opt_D)
    before = {k: v.clone() for net in (model.G, model.D) for k, v in net.state_dict().items()}
    moments = [(s["exp_avg"].clone(), s["exp_avg_sq"].clone()) for opt in opts for s in opt.state.values()]
    assert len(moments) == sum(len(list(n.parameters())) for n in (model.G, model.D))
    assert all(m.abs().sum() > 0 for pair in moments for m in pair)
    bad = {"clean": torch.zeros(2, 3, 32, 32), "degraded": torch.full((2, 3, 32, 32), float("nan"))}
    losses, skipped = model.optimize(bad)
    assert skipped.item() == 1.0
    # parameters and batch-norm running stats (num_batches_tracked too) are as they were
    assert all(torch.equal(before[k], v) for net in (model.G, model.D) for k, v in net.state_dict().items())
    assert all(s["step"].item() == 1 for opt in opts for s in opt.state.values())
    after = [(s["exp_avg"], s["exp_avg_sq"]) for opt in opts for s in opt.state.values()]
    assert all(torch.equal(a, b) for pa, pb in zip(moments, after) for a, b in zip(pa, pb))
    assert model.optimize(good)[1].item() == 0.0


@pytest.mark.parametrize("saved_graphed,now_graphed", [(False, True), (True, False)])
def test_resume_across_cuda_graphs_resets_lr_and_capturable(saved_graphed, now_graphed):
    """A checkpoint of a plain run resumed with --cuda-graphs (and the reverse): the optimiser is
    as make_adam builds it for the new run, its moments and step as saved, and the next step
    follows a new lr (a graphed step reads the lr tensor in place)."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 3))]
    saved = make_adam(params, 1e-3, 0.5, graphed=saved_graphed)
    params[0].grad = torch.randn(4, 3)
    saved.step()
    opt = make_adam(params, 5e-4, 0.5, graphed=now_graphed)
    load_adam_state(opt, saved.state_dict(), graphed=now_graphed)
    group = opt.param_groups[0]
    assert group["capturable"] is now_graphed
    assert isinstance(group["lr"], torch.Tensor) is now_graphed and float(group["lr"]) == pytest.approx(1e-3)
    assert torch.equal(opt.state[params[0]]["exp_avg"], saved.state[params[0]]["exp_avg"])
    assert float(opt.state[params[0]]["step"]) == 1
    model = tiny_pix2pix()
    model.opt_G = opt
    model.set_lr(0.0)  # a zero rate: the next step leaves the weights as they are
    before = params[0].detach().clone()
    opt.step()
    assert torch.equal(params[0], before)


def reference_step(model: Pix2Pix, batch: dict) -> bool:
    """The step as it was before it went sync-free: foreach Adam, a host read of the gradient
    norm, and buffers cloned and copied back one by one."""
    def step(opt):
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        finite = bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))
        if finite:
            opt.step()
        return finite
    degraded, clean = batch["degraded"], batch["clean"]
    buffers = [b for net in (model.G, model.D_frozen) for b in net.buffers()]
    saved = [b.clone() for b in buffers]
    fake = model.G(degraded)
    set_requires_grad(model.D_frozen, True)
    model.opt_D.zero_grad(set_to_none=True)
    model.backward_D(degraded, clean, fake)
    ok_D = step(model.opt_D)
    set_requires_grad(model.D_frozen, False)
    model.opt_G.zero_grad(set_to_none=True)
    model.backward_G(degraded, clean, fake)
    ok_G = step(model.opt_G)
    if not (ok_D and ok_G):
        for b, old in zip(buffers, saved):
            b.copy_(old)
    return ok_D and ok_G


@pytest.mark.parametrize("arch", ["unet", "nafnet"])
def test_sync_free_step_matches_the_reference_step(arch):
    foreach = lambda params, lr, beta1: torch.optim.Adam(params, lr=lr, betas=(beta1, 0.999), foreach=True)
    new, ref = tiny_pix2pix(seed=3, arch=arch), tiny_pix2pix(seed=3, make_opt=foreach, arch=arch)
    g = torch.Generator().manual_seed(0)
    for i in range(5):
        batch = {"clean": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, "degraded": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1}
        if i == 2:
            batch["degraded"][0, 0, 0, 0] = float("nan")
        torch.manual_seed(i)  # dropout draws alike
        skipped = new.optimize(batch)[1].item()
        torch.manual_seed(i)
        ok = reference_step(ref, batch)
        assert skipped == (not ok) == (i == 2)
    # The tolerance follows from Adam, not from this CPU: whatever the gradient's scale, a step
    # moves a weight by about lr (2e-4). Fused and foreach kernels round in another order, and
    # where a gradient is near zero m / sqrt(v) magnifies that rounding, by at most the size of
    # the update itself; measured 2.4e-6 on an AMD EPYC and on this Intel machine after 4 steps.
    # A step wrongly applied or wrongly skipped moves weights by ~lr: 10x the tolerance.
    lr = 2e-4
    for a, b in zip(new.G.state_dict().values(), ref.G.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), rtol=0, atol=lr / 10), (a - b).abs().max()
    start = tiny_pix2pix(seed=3, arch=arch).G.state_dict()
    moved = max((a.float() - start[k].float()).abs().max().item() for k, a in new.G.state_dict().items())
    assert moved > lr  # the steps did move the weights, by more than the tolerance


def test_weights_file_errors(tmp_path):
    G = build_generator(GeneratorConfig(ngf=4, depth=5))
    save_weights(tmp_path / "g.pth", G)
    assert load_network(tmp_path / "g.pth").cfg == G.cfg
    with pytest.raises(WeightsError, match="no such file"):
        load_network(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(WeightsError, match="not a weights file"):
        load_network(tmp_path / "junk.pth")
    with pytest.raises(WeightsError, match="holds a generator, not a discriminator"):
        load_network(tmp_path / "g.pth", "discriminator")
    payload = torch.load(tmp_path / "g.pth", weights_only=True)
    payload["config"]["ngf"] = 8
    torch.save(payload, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="do not fit"):
        load_network(tmp_path / "bad.pth")


def test_tensorboard_scalars_and_pictures(tiny_shards, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(TrainConfig(tiny_shards, out=tmp_path, max_steps=4, log_every=2, **TINY))
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"train/G_L1", "train/D_fake", "val/psnr", "val/ssim"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/G_L1")] == [2, 4]
    assert events.Tags()["images"] == ["val/degraded|restored|clean"]


@pytest.mark.slow
def test_train_from_a_video_folder_shards_once_and_reuses_the_shards(tmp_path):
    """--videos without --val-shards holds out whole videos for validation (and says so); a
    second run reuses both shard sets."""
    from test_restore import make_video

    videos = tmp_path / "videos"
    for name in ("a.avi", "b.avi", "c.avi"):
        make_video(videos / name, size="64x48", rate=10, seconds=1, audio=False)
    out = tmp_path / "run"
    args = [sys.executable, "-m", "vrestore", "train", "--videos", str(videos), "--out", str(out), "--crop", "32", "--depth", "5", "--ngf", "4", "--ndf", "4",
            "--batch-size", "4", "--val-frames", "1", "--num-threads", "1", "--quiet", "--frames", "3"]
    r = subprocess.run([*args, "--max-steps", "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # 2 x 10 frames, each stored once (and each the centre of a window of 3)
    assert f"made {out / 'shards' / 'train'}: 20 samples from 2 videos" in r.stderr
    assert f"made {out / 'shards' / 'val'}: 10 samples from 1 videos" in r.stderr
    assert "validation: 1 videos (held out: 0.1 of the groups" in r.stderr and "warning: no --val-shards" not in r.stderr
    trained = {v["path"] for v in json.loads((out / "shards" / "train" / "manifest.json").read_text())["videos"]}
    held = {v["path"] for v in json.loads((out / "shards" / "val" / "manifest.json").read_text())["videos"]}
    assert not trained & held and trained | held == {"a.avi", "b.avi", "c.avi"}
    tar = next((out / "shards" / "train").glob("*.tar"))
    mtime = tar.stat().st_mtime_ns
    r = subprocess.run([*args, "--max-steps", "4", "--resume"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"reusing {out / 'shards' / 'train'}" in r.stderr and tar.stat().st_mtime_ns == mtime
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 4
    assert load_network(out / "generator.pth").cfg.frames == 3


def test_hold_out_keeps_ucf_groups_whole():
    from vrestore.pipeline.dataset.holdout import hold_out
    from vrestore.pipeline.media.discover import make_entry

    root = Path("/data")
    entries = [make_entry(root, root / f"{c}/v_{c}_g{g:02d}_c{k:02d}.avi") for c in ("A", "B") for g in range(1, 11) for k in (1, 2, 3)]
    train_e, val_e = hold_out(entries, 0.2, seed=0)
    groups = lambda es: {(e.cls, e.group) for e in es}
    assert len(groups(val_e)) == 4 and not groups(train_e) & groups(val_e) and len(train_e) + len(val_e) == 60
    assert hold_out(list(reversed(entries)), 0.2, seed=0)[1] == sorted(val_e, key=lambda e: -entries.index(e))  # order-free
    assert groups(hold_out(entries, 0.2, seed=1)[1]) != groups(val_e)
    assert hold_out(entries[:3], 0.5)[1] == []  # one group: nothing to hold out


@pytest.mark.slow
def test_train_from_videos_with_a_validation_list(sample_tree, tmp_path):
    """sample-videos' vallist01.txt as --val-split-file: those videos validate, the rest train."""
    out = tmp_path / "run"
    lists = sample_tree / "ucfTrainTestlist"
    r = subprocess.run([sys.executable, "-m", "vrestore", "train", "--videos", str(sample_tree), "--split-file", str(lists / "trainlist01.txt"),
                        "--val-split-file", str(lists / "vallist01.txt"), *tiny_cli(sample_tree, out)[2:], "--max-steps", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"from {lists / 'vallist01.txt'}" in r.stderr
    trained = {v["path"].split("/")[0] for v in json.loads((out / "shards" / "train" / "manifest.json").read_text())["videos"]}
    held = {v["path"].split("/")[0] for v in json.loads((out / "shards" / "val" / "manifest.json").read_text())["videos"]}
    assert trained == {"Astronaut"} and held == {"Cat"}


def test_residual_defaults_to_on_for_the_real_preset_only(tmp_path):
    from vrestore.trainer.config import TrainConfig
    from vrestore.trainer.run_start import network_configs
    residual = lambda preset, **kw: network_configs(TrainConfig(shards=tmp_path, crop=64, ngf=8, **kw), 5, preset)[0].residual
    assert residual("real") and not residual("seed")
    assert not residual("real", residual=False) and residual("seed", residual=True)  # --no-residual / --residual win
