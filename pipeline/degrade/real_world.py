"""The `real` degradation preset: damage as real footage carries it, after Real-ESRGAN's and
RealBasicVSR's pipelines (one pass of blur -> resize -> noise -> JPEG, then film grain and a
colour fade, and compression by a real video encoder last), with every parameter drawn once per
video, so a video's frames share one camera, one encoder and one fade (only noise and grain are
new in every frame, as they are in film and sensors).

Frame operations run in torch on 0..255 NCHW float frames; JPEG goes through Pillow's libjpeg
and the video codec through ffmpeg (libx264 at a CRF, or mpeg4 at a quantiser): the damage
real encoders do, not a model of it. `vrestore degrade --preset real` and `make-shards --preset
real` both call `RealDegrader`, so training and test inputs come from one definition.

Departures from the papers: one order-one pass (Real-ESRGAN runs two), the frame size is kept
(the down-scale is scaled back up, restoration is not super-resolution here), and film scratches
and dust ("Bringing Old Films Back to Life") are not drawn.
"""
import io
import math
import random
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vrestore.pipeline.degrade.degradations import gaussian_kernel, gaussian_noise
from vrestore.pipeline.media.video_io import Codec

PRESETS = ("seed", "real")  # seed: degradations.py's blur, noise, boxes (the default); real: this file
VIDEO_CODECS = ("libx264", "mpeg4")
RANGES = {  # name: (low, high) of a uniform draw per video; the option is --real-NAME LOW,HIGH
    "blur_sigma": (0.2, 2.0),  # Gaussian sigma along each axis, pixels (anisotropic: drawn twice)
    "resize_scale": (0.5, 1.0),  # down-scale factor, then back up to the frame's size (bicubic)
    "noise_std": (1.0, 12.0),  # additive Gaussian, 0..255
    "shot_noise": (0.5, 3.0),  # Poisson: photons per level = 1 / this (more = noisier)
    "jpeg_quality": (40, 95),  # Pillow / libjpeg quality
    "grain_std": (2.0, 8.0),  # film grain: monochrome noise softened by a 3x3 blur, new per frame
    "fade": (0.05, 0.3),  # blend towards a warm, low-contrast version of the frame
    "x264_crf": (30, 42),  # libx264 constant rate factor (higher: fewer bits, more blocking)
    "mpeg4_qscale": (8, 24),  # mpeg4 quantiser (higher: coarser)
}
# name: chance per video that the operation is on; the option is --real-p-NAME. Lower than
# Real-ESRGAN's for the frame operations: compression is the damage most real video carries.
# With these 9 videos in 10 are encoded, about 1 in 20 with nothing else and 1 in 5 with one
# other operation. codec_only: chance that a draw is the encoder alone (a clean capture, then
# compressed; 1 trains a model for compressed footage only); drawn last, so every other draw
# of a seed is as it was without it. 0 by default: 0.25 (with make-shards --real-draws 4) did
# not help on the validation split (docs/degradations.md)
PROBABILITIES = {
    "blur": 0.5, "anisotropic": 0.5, "resize": 0.3, "noise": 0.5, "shot_noise": 0.3, "gray_noise": 0.4,
    "jpeg": 0.3, "grain": 0.2, "fade": 0.2, "codec": 0.9, "codec_only": 0.0,
}
BLUR_WINDOW = 13  # covers 3 sigma of the widest blur


@dataclass(frozen=True)
class RealSpec:
    """The ranges and probabilities of the `real` preset; defaults in RANGES and PROBABILITIES."""
    ranges: dict = field(default_factory=lambda: dict(RANGES))
    probabilities: dict = field(default_factory=lambda: dict(PROBABILITIES))
    codecs: tuple = VIDEO_CODECS
    boxes: bool = False  # the seed's gray boxes on top (torch, after the codec)

    def __post_init__(self):
        for name, (low, high) in self.ranges.items():
            if name not in RANGES:
                raise ValueError(f"--real-{name.replace('_', '-')}: unknown range; known: {', '.join(RANGES)}")
            if not low <= high:
                raise ValueError(f"--real-{name.replace('_', '-')} {low},{high}: need low <= high")
        for name, p in self.probabilities.items():
            if name not in PROBABILITIES or not 0 <= p <= 1:
                raise ValueError(f"--real-p-{name.replace('_', '-')} {p}: must be a known operation with 0 <= p <= 1")
        if not self.codecs or set(self.codecs) - set(VIDEO_CODECS):
            raise ValueError(f"--real-codecs {','.join(self.codecs)}: choose from {', '.join(VIDEO_CODECS)}")
        bounds = {"blur_sigma": (1e-3, 50), "resize_scale": (1e-3, 1), "noise_std": (0, 255), "shot_noise": (0, 255),
                  "jpeg_quality": (1, 100), "grain_std": (0, 255), "fade": (0, 1), "x264_crf": (0, 51), "mpeg4_qscale": (1, 31)}
        for name, (low, high) in self.ranges.items():
            if not bounds[name][0] <= low <= high <= bounds[name][1]:
                raise ValueError(f"--real-{name.replace('_', '-')} {low},{high}: must lie in {bounds[name][0]}..{bounds[name][1]}")

    def to_json(self) -> dict:
        return {"ranges": {k: list(v) for k, v in self.ranges.items()}, "probabilities": dict(self.probabilities),
                "codecs": list(self.codecs), "boxes": self.boxes}

    @classmethod
    def from_json(cls, d: dict) -> "RealSpec":
        return cls({k: tuple(v) for k, v in d["ranges"].items()}, dict(d["probabilities"]), tuple(d["codecs"]), d["boxes"])


@dataclass(frozen=True)
class RealDraw:
    """One video's concrete damage (None: that operation is off)."""
    blur: Optional[tuple] = None  # (sigma_y, sigma_x, angle in radians)
    resize: Optional[float] = None
    noise_std: Optional[float] = None
    shot_noise: Optional[float] = None
    gray_noise: bool = False
    jpeg_quality: Optional[int] = None
    grain_std: Optional[float] = None
    fade: Optional[float] = None
    codec: Optional[tuple] = None  # ("libx264", crf) or ("mpeg4", qscale)

    def describe(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, False)}


def draw(spec: RealSpec, seed: int) -> RealDraw:
    """The damage of one video, from its seed (the same seed: the same draw, on any machine)."""
    rng = random.Random(seed)
    on = lambda name: rng.random() < spec.probabilities[name]
    uniform = lambda name: rng.uniform(*spec.ranges[name])
    whole = lambda name: rng.randint(int(spec.ranges[name][0]), int(spec.ranges[name][1]))
    blur = None
    if on("blur"):
        sy = uniform("blur_sigma")
        blur = (sy, uniform("blur_sigma"), rng.uniform(0, math.pi)) if on("anisotropic") else (sy, sy, 0.0)
    resize = uniform("resize_scale") if on("resize") else None
    noise = uniform("noise_std") if on("noise") else None
    shot = uniform("shot_noise") if on("shot_noise") else None
    gray = on("gray_noise")
    jpeg = whole("jpeg_quality") if on("jpeg") else None
    grain = uniform("grain_std") if on("grain") else None
    fade = uniform("fade") if on("fade") else None

    def encoder():
        name = rng.choice(spec.codecs)
        return name, whole("x264_crf") if name == "libx264" else whole("mpeg4_qscale")

    codec = encoder() if on("codec") else None
    # old shards' specs have no codec_only: 0, as they were made
    if rng.random() < spec.probabilities.get("codec_only", 0.0):
        return RealDraw(codec=codec or encoder())
    return RealDraw(blur, resize, noise, shot, gray, jpeg, grain, fade, codec)


def blur(x: torch.Tensor, d: RealDraw) -> torch.Tensor:
    """The seed preset's Gaussian (`gaussian_kernel`), here anisotropic and wider."""
    n, c, h, w = x.shape
    k = gaussian_kernel(BLUR_WINDOW, *d.blur).to(x.device)
    r = k.shape[0] // 2
    padded = F.pad(x.reshape(n * c, 1, h, w), (r, r, r, r), mode="reflect")
    return F.conv2d(padded, k[None, None]).reshape(n, c, h, w)


def resize(x: torch.Tensor, d: RealDraw) -> torch.Tensor:
    h, w = x.shape[-2:]
    small = (max(1, round(h * d.resize)), max(1, round(w * d.resize)))
    x = F.interpolate(x, size=small, mode="area")
    return F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)


def noise(x: torch.Tensor, d: RealDraw, generator) -> torch.Tensor:
    """Gaussian (std levels) and shot noise (Poisson, variance proportional to the level); gray
    noise is one draw for the three channels, as a sensor's luminance noise."""
    shape = (x.shape[0], 1, *x.shape[2:]) if d.gray_noise else x.shape
    if d.noise_std:
        x = x + gaussian_noise(shape, d.noise_std, generator, x.device)
    if d.shot_noise:
        level = x.clamp(0, 255) if not d.gray_noise else x.clamp(0, 255).mean(1, keepdim=True)
        x = x + gaussian_noise(shape, (level * d.shot_noise).sqrt(), generator, x.device)
    return x


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Each frame through libjpeg (Pillow) at `quality`, 4:2:0 as cameras and the web store it."""
    out = []
    for frame in x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy():
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=int(quality))
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().to(x.device)


def grain(x: torch.Tensor, d: RealDraw, generator) -> torch.Tensor:
    """Film grain: monochrome, a little soft (3x3 box), stronger in the mid-tones, new per frame."""
    g = gaussian_noise((x.shape[0], 1, *x.shape[2:]), 1.0, generator, x.device)
    g = F.avg_pool2d(F.pad(g, (1, 1, 1, 1), mode="reflect"), 3, stride=1) * 3  # box blur, std back to ~1
    mid = 1 - ((x.mean(1, keepdim=True) / 127.5) - 1) ** 2  # 1 at mid-grey, 0 at black and white
    return x + g * d.grain_std * (0.5 + 0.5 * mid)


SEPIA = torch.tensor([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])


def fade(x: torch.Tensor, amount: float) -> torch.Tensor:
    """Colour fade of old film: towards sepia, contrast lowered about the frame's mean."""
    toned = torch.einsum("oc,nchw->nohw", SEPIA.to(x.device), x).clamp(0, 255)
    flat = toned.mean(dim=(1, 2, 3), keepdim=True) + 0.7 * (toned - toned.mean(dim=(1, 2, 3), keepdim=True))
    return (1 - amount) * x + amount * flat


def frame_damage(frames: torch.Tensor, d: RealDraw, generator=None) -> torch.Tensor:
    """The frame operations of one draw on 0..255 NCHW frames of one video, in their order;
    whole levels out, as an 8-bit video holds them. The codec is applied by the caller (ffmpeg)."""
    x = frames.float()
    if d.blur:
        x = blur(x, d)
    if d.resize:
        x = resize(x, d)
    if d.noise_std or d.shot_noise:
        x = noise(x, d, generator)
    if d.jpeg_quality:
        x = jpeg(x, d.jpeg_quality)
    if d.grain_std:
        x = grain(x, d, generator)
    if d.fade:
        x = fade(x, d.fade)
    return x.round_().clamp_(0, 255)


def damage_codec(codec: tuple, width: int, height: int) -> Codec:
    """The lossy encoder of a draw's ("libx264", crf) or ("mpeg4", qscale), as a VideoWriter
    codec. 4:2:0 chroma as delivered video has it; an odd frame side cannot be 4:2:0, so such
    frames go to libx264 at 4:4:4 with the same CRF (mpeg4 has no 4:4:4)."""
    name, value = codec
    even = width % 2 == 0 and height % 2 == 0
    if name == "mpeg4" and even:
        return Codec("avi", "mpeg4", "yuv420p", (("q:v", value),))
    crf = value if name == "libx264" else 30
    return Codec("mp4", "libx264", "yuv420p" if even else "yuv444p", (("crf", crf), ("preset", "medium")))
