
import pytest
import torch

from vrestore.models import (
    DiscriminatorConfig, GANLoss, GeneratorConfig, PatchDiscriminator, UNetGenerator,
    build_discriminator, build_generator, pad_to_multiple,
)


@pytest.mark.parametrize("crop,grid,depth", [(96, 10, 5), (128, 14, 6), (128, 14, 7), (256, 30, 8)])
def test_shapes_at_the_training_crops(crop, grid, depth):
    g_cfg = GeneratorConfig(ngf=8, depth=depth)
    g_cfg.check_crop(crop)
    g, d = build_generator(g_cfg), build_discriminator(DiscriminatorConfig(ndf=8))
    x = torch.rand(2, 3, crop, crop) * 2 - 1
    y = g(x)
    assert y.shape == x.shape and y.abs().max() <= 1  # Tanh
    assert d(x, y).shape == (2, 1, grid, grid)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_restore_size_round_trip_on_a_240x320_frame(norm):
    g = build_generator(GeneratorConfig(ngf=8, depth=7, norm=norm)).eval()
    frame = torch.rand(1, 3, 240, 320) * 2 - 1
    padded, crop_back = pad_to_multiple(frame, g.cfg.multiple)
    assert padded.shape[-2:] == (256, 384)
    assert torch.equal(crop_back(padded), frame)  # the crop undoes the pad exactly
    with torch.no_grad():
        out = crop_back(g(padded))
    assert out.shape == frame.shape


def test_eval_mode_is_deterministic_and_train_mode_is_not():
    # dropout and batch statistics make train-mode output vary frame to frame (video flicker)
    g = build_generator(GeneratorConfig(ngf=8))
    x = torch.rand(2, 3, 128, 128)
    g.train()
    assert not torch.equal(g(x), g(x))
    g.eval()
    with torch.no_grad():
        assert torch.equal(g(x), g(x))


def test_init_and_bias_follow_pix2pix():
    d = build_discriminator(DiscriminatorConfig(ndf=16))
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    w = torch.cat([c.weight.flatten() for c in convs])
    assert abs(w.mean().item()) < 2e-3 and 0.018 < w.std().item() < 0.022
    assert convs[1].bias is None  # batch norm follows: no conv bias
    inst = PatchDiscriminator(DiscriminatorConfig(ndf=16, norm="instance"))
    assert [m for m in inst.modules() if isinstance(m, torch.nn.Conv2d)][1].bias is not None


def test_weights_and_config_round_trip_with_weights_only(tmp_path):
    g = build_generator(GeneratorConfig(ngf=8, norm="instance"))
    torch.save({"config": g.cfg.to_dict(), "state_dict": g.state_dict()}, tmp_path / "g.pth")
    saved = torch.load(tmp_path / "g.pth", weights_only=True)
    rebuilt = UNetGenerator(GeneratorConfig(**saved["config"]))
    rebuilt.load_state_dict(saved["state_dict"])
    x = torch.rand(1, 3, 128, 128)
    g.eval(), rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(g(x), rebuilt(x))


def test_gan_losses():
    logits = torch.zeros(2, 1, 14, 14)
    assert GANLoss("vanilla")(logits, True).item() == pytest.approx(0.6931, abs=1e-4)
    assert GANLoss("lsgan")(logits, True).item() == 1.0 and GANLoss("lsgan")(logits, False).item() == 0.0
    with pytest.raises(ValueError):
        GANLoss("wgan")


def test_bad_configs_are_refused():
    for bad, words in ((lambda: GeneratorConfig(depth=6).check_crop(96), "--crop 96: must be a multiple of 64"),
                       (lambda: GeneratorConfig(arch="nafnet").check_crop(40), "--crop 40: must be a multiple of 16"),
                       (lambda: GeneratorConfig(norm="group"), "norm"), (lambda: GeneratorConfig(depth=3), "--depth 3")):
        with pytest.raises(ValueError, match=words):
            bad()


def test_depth_is_its_own_choice_and_the_crop_does_not_change_the_network():
    # the crop used to set the depth (log2): a smaller crop to save memory changed the network
    # and restore's padding; now one network trains on any crop that is a multiple of 2^depth
    from vrestore.trainer.config import TrainConfig
    nets = {crop: TrainConfig(shards=".", crop=crop) for crop in (64, 128, 256)}
    assert {c.depth for c in nets.values()} == {6}
    g = build_generator(GeneratorConfig(ngf=8, depth=6)).eval()
    for crop in (64, 128):
        with torch.no_grad():
            assert g(torch.rand(1, 3, crop, crop)).shape[-1] == crop
    assert GeneratorConfig(depth=6).multiple == 64  # 1080 rows pad to 1088, not 1280 as at a 256 crop's depth 8
    with pytest.raises(ValueError, match="--crop 96: must be a multiple of 64"):
        TrainConfig(shards=".", crop=96)
    assert TrainConfig(shards=".", crop=96, depth=5).depth == 5


def test_residual_unet_adds_its_output_to_the_centre_frame():
    # --residual: a net whose last layer outputs nothing passes the centre frame through
    # unchanged (so lightly damaged footage is not redrawn); the plain U-Net outputs zero there
    cfgs = {r: GeneratorConfig(ngf=8, frames=3, residual=r) for r in (False, True)}
    x = torch.rand(2, 9, 64, 64) * 2 - 1
    for residual, cfg in cfgs.items():
        g = build_generator(cfg).eval()
        last = g.model.model[-2]  # the outermost ConvTranspose2d, before Tanh
        torch.nn.init.zeros_(last.weight), torch.nn.init.zeros_(last.bias)
        with torch.no_grad():
            y = g(x)
        assert torch.equal(y, x[:, 3:6]) if residual else torch.equal(y, torch.zeros_like(y))
    assert GeneratorConfig(**{k: v for k, v in cfgs[True].to_dict().items() if k != "residual"}).residual is False  # old files

