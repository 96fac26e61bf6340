"""The trainer, run for real: DALI on the CPU, gloo DDP under torchrun, tiny networks."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from models import DiscriminatorConfig, GANLoss, GeneratorConfig, build_discriminator, build_generator
from pipeline.weights import WeightsError, load_network, save_weights
from trainer.config import TrainConfig
from trainer.pix2pix_step import Pix2Pix
from trainer.train import lr_at, train

TINY = dict(crop=32, ngf=4, ndf=4, batch_size=4, val_batches=1, samples=2, num_threads=1, progress=False)


def tiny_cli(shards, out, *extra):
    return ["--shards", str(shards), "--out", str(out), "--crop", "32", "--ngf", "4", "--ndf", "4",
            "--batch-size", "4", "--val-batches", "1", "--num-threads", "1", "--quiet", *map(str, extra)]


def torchrun(nproc, args, **kw):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "trainer", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, **kw)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_torchrun_two_ranks_writes_loadable_weights(sample_shards, tmp_path, norm):
    out = tmp_path / "run"
    r = torchrun(2, tiny_cli(sample_shards, out, "--max-steps", 3, "--norm", norm))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "training on 2 x cpu" in r.stderr
    for name in ("generator.pth", "discriminator.pth", "checkpoint.pt", "config.json", "metrics.jsonl"):
        assert (out / name).is_file(), name
    assert list((out / "samples").glob("step_*.png"))
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 3 and len(ckpt["ranks"]) == 2
    # both ranks' input streams were saved, and they are at different places
    assert ckpt["ranks"][0]["data"]["dali"] != ckpt["ranks"][1]["data"]["dali"]
    G = load_network(out / "generator.pth", "generator")  # weights_only inside
    D = load_network(out / "discriminator.pth", "discriminator")
    assert G.cfg == GeneratorConfig(ngf=4, depth=5, norm=norm) and D.cfg.ndf == 4 and D.cfg.norm == norm
    with torch.no_grad():
        y = G.eval()(torch.zeros(1, 3, 32, 32))
    assert y.shape == (1, 3, 32, 32) and torch.isfinite(y).all()
    line = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert line["step"] == 3 and line["val"]["images"] == 4 and set(line["train"]) == {"G_GAN", "G_L1", "D_real", "D_fake"}


def test_sigterm_saves_and_resume_continues_at_saved_step(sample_shards, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "trainer", *tiny_cli(sample_shards, out, "--epochs", 1000)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    line = proc.stderr.readline()
    assert "training on" in line, line
    time.sleep(3)  # some steps
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, rest
    saved = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    assert saved > 0 and f"at step {saved} (signal)" in rest

    # without --resume, the earlier run is not overwritten
    r = subprocess.run([sys.executable, "-m", "trainer", *tiny_cli(sample_shards, out, "--max-steps", saved + 2)], capture_output=True, text=True)
    assert r.returncode == 2 and "--resume" in r.stderr
    r = subprocess.run([sys.executable, "-m", "trainer", *tiny_cli(sample_shards, out, "--max-steps", saved + 2, "--resume")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming at step {saved}" in r.stderr
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == saved + 2


@pytest.fixture(scope="module")
def tiny_shards(sample_tree, tmp_path_factory):
    """One clip, every 4th frame, 10 frames per shard: an epoch is a handful of steps."""
    from pipeline.make_shards import ShardConfig, make_shards

    out = tmp_path_factory.mktemp("tiny_shards")
    make_shards(ShardConfig(sample_tree, out, limit=1, frame_stride=4, max_frames=10, progress=False, workers=1))
    return out


def test_resume_is_exact(tiny_shards, tmp_path):
    """Stopped at an epoch's end, then mid-epoch, and resumed each time, a run ends with the very
    weights of an uninterrupted one: weights, optimisers, scaler, RNGs and the input stream's
    position all came back."""
    from trainer.dali_input import batches_per_epoch, load_shard_set

    spe = batches_per_epoch(load_shard_set(tiny_shards).num_samples, TINY["batch_size"], 1)
    assert spe >= 3
    end = 2 * spe + 2
    whole = train(TrainConfig(tiny_shards, out=tmp_path / "whole", max_steps=end, **TINY))
    for i, stop in enumerate([spe, spe + 1, end]):
        part = train(TrainConfig(tiny_shards, out=tmp_path / "split", max_steps=stop, resume=i > 0, **TINY))
        assert part.step == stop
    assert whole.step == end and whole.epoch == part.epoch == 2
    a = torch.load(tmp_path / "whole" / "generator.pth", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "split" / "generator.pth", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a run with another seed differs, so the comparison above can fail
    train(TrainConfig(tiny_shards, out=tmp_path / "other", max_steps=end, seed=1, **TINY))
    c = torch.load(tmp_path / "other" / "generator.pth", weights_only=True)["state_dict"]
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_resume_refuses_another_architecture(sample_shards, tmp_path):
    train(TrainConfig(sample_shards, out=tmp_path, max_steps=1, **TINY))
    with pytest.raises(ValueError, match="ngf: 4 in the checkpoint, 8 now"):
        train(TrainConfig(sample_shards, out=tmp_path, max_steps=2, resume=True, **(TINY | {"ngf": 8})))


def test_overfit_lowers_validation_l1(sample_shards, tmp_path):
    """A small run learns: validation L1 (fixed crops and degradations) falls by a fifth or more
    between step 40 and step 200, and ends below the degraded input's error."""
    cfg = TrainConfig(sample_shards, out=tmp_path, max_steps=200, val_every=40, **(TINY | {"ngf": 8, "ndf": 8, "batch_size": 8, "val_batches": 4}))
    result = train(cfg)
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    first, last = lines[0]["val"], lines[-1]["val"]
    assert lines[0]["step"] == 40 and lines[-1]["step"] == 200 == result.step
    assert last["l1"] < 0.8 * first["l1"], (first, last)
    assert last["psnr"] > first["psnr"] + 1.0, (first, last)


def test_lr_schedule_decays_linearly_to_zero():
    cfg = TrainConfig("x", epochs=10, decay_epochs=4, lr=1e-3)
    assert lr_at(cfg, 0, 0, 100) == lr_at(cfg, 6, 0, 100) == 1e-3
    assert lr_at(cfg, 8, 0, 100) == pytest.approx(5e-4)
    assert lr_at(cfg, 9, 50, 100) == pytest.approx(1.25e-4)


def test_non_finite_step_is_skipped_and_weights_kept():
    G = build_generator(GeneratorConfig(ngf=4, depth=5))
    D = build_discriminator(DiscriminatorConfig(ndf=4))
    opt_G, opt_D = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    model = Pix2Pix(G, D, D, opt_G, opt_D, torch.amp.GradScaler("cpu", enabled=False), GANLoss(), 100.0, torch.device("cpu"))
    before = {k: v.clone() for k, v in G.state_dict().items()}
    batch = {"clean": torch.zeros(2, 3, 32, 32), "degraded": torch.full((2, 3, 32, 32), float("nan"))}
    losses, ok = model.optimize(batch)
    assert not ok
    # parameters and batch-norm running stats alike are as they were
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())
    batch["degraded"] = torch.zeros(2, 3, 32, 32)
    assert model.optimize(batch)[1]


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
