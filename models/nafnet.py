"""A NAFNet-style U-Net generator (Chen et al. 2022, "Simple Baselines for Image Restoration"),
for T frames, with an optional temporal shift inside the network (after Shift-Net and TSM).

Block (NAFNet's): LayerNorm2d -> 1x1 conv c->2c -> 3x3 depthwise -> SimpleGate -> simplified
channel attention -> 1x1 conv, added to the input scaled by a learnable beta (0 at init); then
LayerNorm2d -> 1x1 conv c->2c -> SimpleGate -> 1x1 conv, added scaled by gamma (0 at init). No
activation function anywhere else. U-Net: 2x2 stride-2 conv down, 1x1 conv + PixelShuffle up,
additive skips, and a global residual: the output is the centre frame plus what the net adds.

temporal "early": the T frames stacked on channels at the input (as the pix2pix U-Net here).
temporal "shift": the full-resolution level runs per frame (shared weights); before each of its
blocks a quarter of the channels moves one frame forward and a quarter one frame back (zeros at
the window's ends), so each frame's features see its neighbours' at every block; then a 1x1
conv fuses the T frames into one stream for the rest of the U-Net. Departures from the papers:
the shift covers only the first level (the only one run T times), and no frame alignment.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerNorm2d(nn.Module):
    """LayerNorm over channels of an NCHW tensor. On a channels_last tensor, the NHWC view is
    contiguous, so torch's fused layer_norm runs on it without a copy."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x):
        y = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class SimpleGate(nn.Module):
    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.norm1, self.norm2 = LayerNorm2d(c), LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, 2 * c, 1)
        self.conv2 = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)  # depthwise
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c, 1))  # simplified channel attention
        self.conv3 = nn.Conv2d(c, c, 1)
        self.conv4 = nn.Conv2d(c, 2 * c, 1)
        self.conv5 = nn.Conv2d(c, c, 1)
        self.gate = SimpleGate()
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp):
        x = self.gate(self.conv2(self.conv1(self.norm1(inp))))
        x = self.conv3(x * self.sca(x))
        y = inp + x * self.beta
        x = self.conv5(self.gate(self.conv4(self.norm2(y))))
        return y + x * self.gamma


def temporal_shift(x: torch.Tensor, frames: int, fraction: float = 0.25) -> torch.Tensor:
    """(N*T, C, H, W) features of T frames per sample: the first `fraction` of channels comes
    from the previous frame, the next `fraction` from the following one (zeros past the ends)."""
    nt, c, h, w = x.shape
    k = int(c * fraction)
    v = x.view(nt // frames, frames, c, h, w)
    out = torch.zeros_like(v)
    out[:, 1:, :k] = v[:, :-1, :k]  # from t-1
    out[:, :-1, k : 2 * k] = v[:, 1:, k : 2 * k]  # from t+1
    out[:, :, 2 * k :] = v[:, :, 2 * k :]
    return out.view(nt, c, h, w)


class ShiftBlock(nn.Module):
    def __init__(self, c: int, frames: int):
        super().__init__()
        self.block, self.frames = NAFBlock(c), frames

    def forward(self, x):
        return self.block(temporal_shift(x, self.frames))


class NAFNetGenerator(nn.Module):
    """(N, 3 * frames, H, W) degraded frames t-k .. t+k, frame-major -> (N, 3, H, W) frame t.
    H and W multiples of 2 ** len(enc_blocks) (restore pads to that)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        t, w = cfg.frames, cfg.ngf
        self.shift = cfg.temporal == "shift" and t > 1
        self.intro = nn.Conv2d(3 if self.shift else 3 * t, w, 3, padding=1)
        self.encoders, self.downs, self.decoders, self.ups = (nn.ModuleList() for _ in range(4))
        chan = w
        for i, n in enumerate(cfg.enc_blocks):
            make = (lambda c: ShiftBlock(c, t)) if self.shift and i == 0 else NAFBlock
            self.encoders.append(nn.Sequential(*[make(chan) for _ in range(n)]))
            if self.shift and i == 0:
                self.fuse = nn.Conv2d(t * chan, chan, 1)  # T frames' features -> one stream
            self.downs.append(nn.Conv2d(chan, 2 * chan, 2, 2))
            chan *= 2
        self.middle = nn.Sequential(*[NAFBlock(chan) for _ in range(cfg.middle_blocks)])
        for n in cfg.dec_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(chan, 2 * chan, 1, bias=False), nn.PixelShuffle(2)))
            chan //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(chan) for _ in range(n)]))
        self.ending = nn.Conv2d(w, 3, 3, padding=1)

    def forward(self, frames):
        n, _, h, w = frames.shape
        t = self.cfg.frames
        centre = frames[:, 3 * (t // 2) : 3 * (t // 2) + 3]
        x = self.intro(frames.reshape(n * t, 3, h, w) if self.shift else frames)
        skips = []
        for i, (encoder, down) in enumerate(zip(self.encoders, self.downs)):
            x = encoder(x)
            if self.shift and i == 0:
                x = self.fuse(x.reshape(n, -1, h, w))
            skips.append(x)
            x = down(x)
        x = self.middle(x)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            x = decoder(up(x) + skip)
        return self.ending(x) + centre

