"""pix2pix networks (Isola et al. 2017): a U-Net generator and a 70x70 PatchGAN critic.

Architecture settings live in small dataclasses of plain types, saved next to the weights so a
checkpoint rebuilds its own model and loads with `torch.load(..., weights_only=True)`.
"""
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

NORMS = ("batch", "instance")
# U-Net stride-2 levels by default: frames pad to multiples of 2^6 = 64 (1080 rows to 1088), and
# a 64 px crop reaches a 1x1 bottleneck (the demo's network); larger crops keep the same network
DEPTH = 6
ARCHS = ("unet", "nafnet")
TEMPORAL = ("early", "shift")


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    raise ValueError(f"norm must be one of {NORMS}, not {kind!r}")


@dataclass(frozen=True)
class GeneratorConfig:
    in_channels: int = 3
    out_channels: int = 3
    ngf: int = 64  # width of the outermost layer (U-Net: inner layers go up to 8x; NAFNet: doubles per level)
    depth: int = DEPTH  # U-Net: stride-2 downsamplings (its own option: the crop no longer sets it)
    norm: str = "batch"  # U-Net only (NAFNet blocks use layer norm)
    dropout: bool = True  # U-Net: 0.5 in the innermost decoder blocks, the pix2pix noise source
    frames: int = 1  # odd: the centre frame and its neighbours
    arch: str = "unet"  # unet: the pix2pix reference; nafnet: models/nafnet.py. Absent in old files: unet
    enc_blocks: tuple = (1, 1, 1, 2)  # NAFNet: blocks per encoder level (the level count sets the multiple)
    middle_blocks: int = 2  # NAFNet
    dec_blocks: tuple = (1, 1, 1, 1)  # NAFNet: blocks per decoder level, innermost first
    temporal: str = "early"  # NAFNet: early (frames stacked at the input) or shift (mixed inside, models/nafnet.py)
    preset: str = "seed"  # the damage it was trained to undo (train --preset); absent in old files: seed
    residual: bool = False  # U-Net only (NAFNet's is built in): output = centre frame + the net's; absent in old files: False
    # source frames between the neighbours of its training windows (make-shards --frame-stride):
    # restore feeds windows with the same spacing; absent in old files: 1 (consecutive frames)
    frame_spacing: int = 1

    def __post_init__(self):
        # JSON and weights files hold lists; the config keeps tuples (hashable, comparable)
        object.__setattr__(self, "enc_blocks", tuple(self.enc_blocks))
        object.__setattr__(self, "dec_blocks", tuple(self.dec_blocks))
        if self.arch not in ARCHS:
            raise ValueError(f"--arch {self.arch!r}: must be one of {', '.join(ARCHS)}")
        if self.temporal not in TEMPORAL:
            raise ValueError(f"--temporal {self.temporal!r}: must be one of {', '.join(TEMPORAL)}")
        if self.arch == "unet" and self.depth < 5:
            raise ValueError(f"--depth {self.depth}: must be >= 5 (the U-Net's outer four levels are fixed)")
        if self.arch == "nafnet" and (len(self.enc_blocks) != len(self.dec_blocks) or not self.enc_blocks
                                      or min(self.enc_blocks + self.dec_blocks) < 0 or self.middle_blocks < 0):
            raise ValueError(f"--enc-blocks {','.join(map(str, self.enc_blocks))} and --dec-blocks {','.join(map(str, self.dec_blocks))}: "
                             "one count per level, the same number of levels, none negative")
        if self.frames < 1 or self.frames % 2 == 0:
            raise ValueError(f"frames must be odd and >= 1 (1, 3, 5), not {self.frames}")
        if self.frame_spacing < 1:
            raise ValueError(f"frame_spacing must be >= 1, not {self.frame_spacing}")
        norm_layer(self.norm, 1)

    def check_crop(self, crop: int) -> None:
        """Training crops are multiples of the generator's 2^levels: every level halves them."""
        if crop % self.multiple:
            levels = f"{len(self.enc_blocks)} levels" if self.arch == "nafnet" else f"--depth {self.depth}"
            raise ValueError(f"--crop {crop}: must be a multiple of {self.multiple}, the generator's 2^levels ({levels})")

    @property
    def multiple(self) -> int:
        """Frame sides must be multiples of this (restore pads to it)."""
        return 2 ** (len(self.enc_blocks) if self.arch == "nafnet" else self.depth)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DiscriminatorConfig:
    in_channels: int = 6  # (degraded, candidate) stacked
    ndf: int = 64
    n_layers: int = 3  # 3: the 70x70 PatchGAN
    norm: str = "batch"

    def __post_init__(self):
        norm_layer(self.norm, 1)

    def to_dict(self) -> dict:
        return asdict(self)


class UNetBlock(nn.Module):
    """One level of the U-Net: down, the inner levels, up, and the skip connection around them.

        x -> [down] -> inner -> [up] -> cat(x, .)      (outermost: no skip, Tanh out)
    """

    def __init__(self, outer_nc, inner_nc, in_nc=None, inner=None, outermost=False, innermost=False, norm="batch", dropout=False):
        super().__init__()
        self.outermost = outermost
        in_nc = in_nc or outer_nc
        bias = norm == "instance"  # BatchNorm has its own shift; InstanceNorm here has none
        down = [nn.Conv2d(in_nc, inner_nc, 4, 2, 1, bias=bias)]
        if outermost:
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1), nn.Tanh()]
            layers = down + [inner] + up
        elif innermost:
            # no norm on a 1x1 map: with batch 1 it would zero the signal
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner_nc, outer_nc, 4, 2, 1, bias=bias), norm_layer(norm, outer_nc)]
            layers = [nn.LeakyReLU(0.2, True)] + down + up
        else:
            down = [nn.LeakyReLU(0.2, True)] + down + [norm_layer(norm, inner_nc)]
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1, bias=bias), norm_layer(norm, outer_nc)]
            layers = down + [inner] + up + ([nn.Dropout(0.5)] if dropout else [])
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], dim=1)


def centre_frame(stack: torch.Tensor) -> torch.Tensor:
    """(N, 3T, H, W) frames t-k .. t+k, frame-major -> (N, 3, H, W) frame t (a view)."""
    k = stack.shape[1] // 6
    return stack[:, 3 * k : 3 * k + 3]


class UNetGenerator(nn.Module):
    """(N, 3 * frames, H, W) degraded frames t-k .. t+k, frame-major -> (N, 3, H, W) frame t.

    residual: the net predicts a correction added to the centre frame (as NAFNet, EDVR and
    BasicVSR do), so a lightly damaged frame passes through nearly unchanged from the first
    step; pix2pix's original (residual False) must learn to redraw every pixel.
    """

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        g, n = cfg.ngf, cfg.norm
        block = UNetBlock(g * 8, g * 8, innermost=True, norm=n)
        for _ in range(cfg.depth - 5):  # the innermost levels, 8*ngf wide, with dropout
            block = UNetBlock(g * 8, g * 8, inner=block, norm=n, dropout=cfg.dropout)
        block = UNetBlock(g * 4, g * 8, inner=block, norm=n)
        block = UNetBlock(g * 2, g * 4, inner=block, norm=n)
        block = UNetBlock(g, g * 2, inner=block, norm=n)
        self.model = UNetBlock(cfg.out_channels, g, in_nc=cfg.in_channels * cfg.frames, inner=block, outermost=True, norm=n)

    def forward(self, x):
        y = self.model(x)
        return centre_frame(x) + y if self.cfg.residual else y


class PatchDiscriminator(nn.Module):
    """Classifies overlapping 70x70 patches: a 128 crop gives a 14x14 grid of logits, 256 30x30."""

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.cfg = cfg
        bias = cfg.norm == "instance"
        d = cfg.ndf
        layers = [nn.Conv2d(cfg.in_channels, d, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for i in range(1, cfg.n_layers + 1):
            prev, mult = mult, min(2**i, 8)
            stride = 2 if i < cfg.n_layers else 1
            layers += [nn.Conv2d(d * prev, d * mult, 4, stride, 1, bias=bias), norm_layer(cfg.norm, d * mult), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(d * mult, 1, 4, 1, 1)]
        self.model = nn.Sequential(*layers)

    def forward(self, degraded, candidate):
        return self.model(torch.cat([degraded, candidate], dim=1))


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """N(0, 0.02) convolutions, N(1, 0.02) batch-norm scales, zero biases, as in pix2pix."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net


def generator_for(cfg: GeneratorConfig) -> nn.Module:
    """The network a config describes (weights as torch initialises them)."""
    if cfg.arch == "nafnet":
        from vrestore.models.nafnet import NAFNetGenerator

        return NAFNetGenerator(cfg)
    return UNetGenerator(cfg)


def build_generator(cfg: GeneratorConfig) -> nn.Module:
    """A new generator: pix2pix's N(0, 0.02) initialisation for the U-Net; NAFNet keeps torch's
    defaults, as its reference code does (beta = gamma = 0 start every block as the identity)."""
    net = generator_for(cfg)
    return net if cfg.arch == "nafnet" else init_weights(net)


def build_discriminator(cfg: DiscriminatorConfig) -> PatchDiscriminator:
    return init_weights(PatchDiscriminator(cfg))


class GANLoss(nn.Module):
    """'vanilla' (BCE on logits, the paper's) or 'lsgan' (least squares) against all-real or
    all-fake targets of the critic's output shape."""

    def __init__(self, mode: str = "vanilla"):
        super().__init__()
        if mode not in ("vanilla", "lsgan"):
            raise ValueError(f"GAN loss must be vanilla or lsgan, not {mode!r}")
        self.mode = mode

    def forward(self, logits: torch.Tensor, real: bool) -> torch.Tensor:
        target = torch.ones_like(logits) if real else torch.zeros_like(logits)
        if self.mode == "vanilla":
            return F.binary_cross_entropy_with_logits(logits, target)
        return F.mse_loss(logits, target)


def pad_to_multiple(x: torch.Tensor, multiple: int):
    """Mirror-pad H and W up to a multiple (a U-Net of depth d needs 2**d); returns the padded
    batch and a function that crops a result back. Never resizes."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return x, lambda y: y
    top, left = ph // 2, pw // 2
    # reflect needs the pad smaller than the side; replicate covers frames smaller than that
    mode = "reflect" if ph < h and pw < w else "replicate"
    padded = F.pad(x, (left, pw - left, top, ph - top), mode=mode)
    return padded, lambda y: y[..., top : top + h, left : left + w]
