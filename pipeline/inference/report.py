"""restore's report: one row per video (VideoReport), the run's outcome (RestoreResult), the
"all" row pooled over every video, the table printed at the end, and the JSON + CSV files."""
import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from vrestore.pipeline.atomic import atomic_path, write_json_atomic
from vrestore.pipeline.evaluation.metrics import DEFINITIONS, Scores, VideoScores


@dataclass
class VideoReport:
    video: str  # relative to INPUT
    output: str
    frames: int
    fps: str
    size: str
    seconds: float
    original: Optional[str] = None
    mask: Optional[str] = None  # NAME_mask.* beside the input: in/out-of-box scores
    # every score (metrics.Scores, by its names) of the input and the output against the
    # original, {"psnr_input": .., "psnr_restored": .., ...}; empty: not scored. And NIQE (no
    # reference, lower is more natural; evaluation/niqe.py) of up to --niqe-frames evenly spaced
    # frames, niqe_input/_restored always, niqe_original when there is one.
    scores: dict = field(default_factory=dict)
    niqe_note: Optional[str] = None  # why there is no NIQE (frames under 96x96)
    sums: Optional[dict] = None  # {"input", "restored"}: VideoScores.sums(), pooled into the "all" row
    mismatch: Optional[str] = None  # why no figures, when an original was there but did not pair
    warning: Optional[str] = None  # ffmpeg complained but frames decoded: restored what decoded (partial)
    audio: Optional[str] = None  # how the audio was carried, when not copied as it was
    not_carried: Optional[str] = None  # what the output leaves out of the source (subtitles, bits past 8)
    plan: Optional[str] = None  # how frames went through the generator: whole, or tiles of N px (Restorer.plan)

    def score(self, name: str) -> Optional[float]:
        """One of `scores` ("psnr_restored", "niqe_input", ...); None: not measured."""
        return self.scores.get(name)

    @property
    def psnr_gain(self):
        return None if self.score("psnr_restored") is None else self.score("psnr_restored") - self.score("psnr_input")

    def row(self) -> dict:
        """The report's row: the fields with the scores spread in as columns of their own
        (the running sums left out) and the PSNR gain."""
        d = {}
        for k, v in asdict(self).items():
            if k == "scores":
                d |= v
            elif k != "sums":
                d[k] = v
        return d | {"psnr_gain": self.psnr_gain}


@dataclass
class RestoreResult:
    videos: list = field(default_factory=list)  # VideoReport
    skipped: list = field(default_factory=list)  # outputs that already existed
    partial: list = field(default_factory=list)  # (video, ffmpeg's complaint): restored what decoded
    failed: list = field(default_factory=list)  # (video, reason)
    no_original: list = field(default_factory=list)
    model: dict = field(default_factory=dict)  # what the generator is: preset it was trained for, arch, frames
    gallery: Optional[Path] = None  # gallery.html, when asked for and written
    plans: list = field(default_factory=list)  # the generator's plans in words, one per frame size


def niqe_means(reports: list) -> Optional[dict]:
    """Mean NIQE over the videos that have one (a per-video score; no pooling across videos)."""
    out = {}
    for which in ("input", "restored", "original"):
        values = [r.score(f"niqe_{which}") for r in reports if r.score(f"niqe_{which}") is not None]
        if values:
            out[f"niqe_{which}"] = float(np.mean(values))
    return out or None


def overall(reports: list) -> Optional[dict]:
    """The "all" row: every scored video's frames as one set (metrics.DEFINITIONS): per-frame
    PSNR and SSIM averaged over all frames, box and temporal squared errors pooled over all
    videos; bench/quality.py computes the same figures with the same VideoScores."""
    scored = [r for r in reports if r.sums is not None]
    if not scored:
        return None
    m = {}
    for which in ("input", "restored"):
        m |= VideoScores.merged([r.sums[which] for r in scored]).result().named(which)
    return m | {"psnr_gain": m["psnr_restored"] - m["psnr_input"], "frames": sum(r.frames for r in scored), "videos": len(scored)}


def format_table(result: RestoreResult) -> str:
    """Per-video scores of the input and the restored output against the originals (in -> out),
    and the means over all frames; videos that could not be paired are listed below with the
    reason. Boxes / outside: PSNR inside and outside the occlusion boxes (with masks beside the
    inputs); temporal: PSNR of consecutive-frame differences (flicker lowers it)."""
    others = Scores.names()[1:]  # after PSNR, which has its own in, out and gain columns
    head = ("video", "frames", "PSNR in", "PSNR out", "gain", *(f"{Scores.about(k)['short']} in -> out" for k in others))
    pair = lambda m, k: ("-" if m[f"{k}_input"] is None
                         else f"{m[f'{k}_input']:{Scores.about(k)['fmt']}} -> {m[f'{k}_restored']:{Scores.about(k)['fmt']}}")
    row = lambda name, frames, m: (name, str(frames), f"{m['psnr_input']:.2f}", f"{m['psnr_restored']:.2f}",
                                   f"{m['psnr_restored'] - m['psnr_input']:+.2f}", *(pair(m, k) for k in others))
    rows = [row(r.video, r.frames, r.scores) for r in result.videos if r.score("psnr_restored") is not None]
    if (m := overall(result.videos)) is not None:
        rows.append(row(f"all ({m['videos']} videos)", m["frames"], m))
    lines = []
    if rows:
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        lines = ["  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)) for r in [head, *rows]]
    if rows:
        lines.append("PSNR, SSIM: per frame, averaged over frames; boxes, outside, temporal: one PSNR of the squared error "
                     "pooled over all their pixels (the all row pools every video's)")
    if (n := niqe_means(result.videos)) and "niqe_restored" in n:
        count = sum(r.score("niqe_restored") is not None for r in result.videos)
        lines.append(f"NIQE (no reference; lower is more natural), mean of {count} videos: input {n['niqe_input']:.2f} -> restored "
                     f"{n['niqe_restored']:.2f}" + (f" (originals {n['niqe_original']:.2f})" if "niqe_original" in n else ""))
    lines += [f"no NIQE: {r.video}: {r.niqe_note}" for r in result.videos if r.niqe_note]
    lines += [f"not scored: {r.video}: {r.mismatch}" for r in result.videos if r.mismatch]
    lines += [f"not scored: {v}: no original found" for v in result.no_original]
    return "\n".join(lines)


def write_report(path: Path, result: RestoreResult) -> None:
    """JSON with every video and the overall means, and a CSV of the per-video rows beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [r.row() for r in result.videos]
    doc = {"model": result.model, "definitions": DEFINITIONS, "videos": rows, "overall": overall(result.videos),
           "niqe_mean": niqe_means(result.videos), "failed": [{"video": v, "reason": why} for v, why in result.failed],
           "partial": [{"video": v, "warning": why} for v, why in result.partial],
           "no_original": result.no_original, "skipped_existing": result.skipped}
    write_json_atomic(path, doc)
    # surrogateescape: a file name that is not valid UTF-8 goes into the CSV as its own bytes
    with atomic_path(path.with_suffix(".csv")) as tmp, open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        cols = list(rows[0]) if rows else ["video"]
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows([{k: spreadsheet_safe(v) for k, v in row.items()} for row in rows])


def spreadsheet_safe(value):
    """A text cell a spreadsheet would run as a formula (=, +, -, @ first: a file named
    `=HYPERLINK(...).avi`) gets a leading apostrophe, as OWASP advises; numbers stay numbers."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
