"""`TrainConfig`: every setting of a training run, one field per command-line option; and
`PreviewConfig`, the settings of `vrestore preview` (one batch of the training input)."""
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from vrestore.models.networks import ARCHS, DEPTH, NORMS, TEMPORAL, GeneratorConfig
from vrestore.pipeline.degrade.degradations import DegradationSpec
from vrestore.pipeline.degrade.real_world import PRESETS, RealSpec
from vrestore.pipeline.options import comma_ints, option
from vrestore.pipeline.devices import AMP_MODES

GAN_MODES = ("vanilla", "lsgan")
RESUME_MODES = ("auto", "require", "never")

# What may change between the launches of one run: where things are, how long the run may go,
# how it is computed and reported. Every other field defines the run (the networks, the data,
# the degradations, the optimisation), and a resume with a different value is refused.
# --epochs and --max-minutes reshape the rest of the lr schedule when changed (a run extended
# on purpose); the start of the next launch says so.
LAUNCH_FIELDS = frozenset({
    "shards", "videos", "val_shards", "out", "epochs", "max_steps", "max_minutes", "amp", "channels_last", "sync_bn",
    "compile", "cuda_graphs", "resume", "deterministic", "overwrite", "lock_stale_minutes", "val_every", "val_interval",
    "save_every_minutes", "samples", "log_every", "max_bad_steps", "device", "num_threads", "prefetch", "progress",
    # compared in their resolved form instead (None means "the shards'"): the networks' configs
    # hold the frame count, residual and preset
    "frames", "residual", "preset",
})

CROP = 128  # the training crop by default (train and preview --crop)


def check_crop(crop: int, min_side: Optional[int] = None) -> None:
    """Training and preview crops: multiples of 32 (the shallowest generator's 2^levels; train
    checks its own generator's too); and, once the shards are known, no larger than their
    smallest frame side."""
    if crop < 32 or crop % 32:
        raise ValueError(f"--crop {crop}: must be a multiple of 32 (64, 96, 128, 256)")
    if min_side is not None and crop > min_side:
        raise ValueError(f"--crop {crop}: larger than the smallest frame side in the shards ({min_side})")


@dataclass
class TrainConfig:
    shards: Optional[Path] = option(None, "Training shards (a make-shards OUT folder).", path={"exists": True, "file_okay": False})
    videos: Optional[Path] = option(None, "Or a folder of videos: sharded into OUT/shards first (reused when the settings "
                                    "match), one process only.", path={"exists": True, "file_okay": False})
    split_file: Optional[Path] = option(None, "With --videos: a UCF-101 trainlist/testlist selecting them.")
    use_first_100: bool = option(False, "With --videos: only the first 100 videos in sorted order (the original scripts' "
                                 "quick mode).")
    val_shards: Optional[Path] = option(None, "Validation shards. Default: with --videos, held-out videos (--val-fraction); "
                                        "with --shards, the training shards' first samples (warned: that measures fit).",
                                        path={"exists": True, "file_okay": False})
    val_split_file: Optional[Path] = option(None, "With --videos: the validation videos' list (e.g. sample-videos' "
                                            "vallist01.txt), sharded into OUT/shards/val; they are left out of training.")
    val_fraction: float = option(0.1, "With --videos and no --val-shards: the share of videos (whole UCF-101 groups) held "
                                 "out for validation, seeded by --seed.")
    out: Path = option(Path("saved_models"), "generator.pth, discriminator.pth, checkpoint.pt, metrics.jsonl, samples/.",
                       path={"file_okay": False})
    epochs: int = option(50, "Epochs of the schedule (the lr decays over its last --decay-fraction).")
    batch_size: int = option(16, "Samples per step, per rank.")
    crop: int = option(CROP, "Square training crop, a multiple of the generator's 2^levels (unet: 2^--depth).")
    frames: Optional[int] = option(None, "Frames the generator sees (odd): the centre and its neighbours. Default: the "
                                   "shards' make-shards --clip-len; shards of the frames layout also give any smaller odd T "
                                   "(clips-layout shards only their own).")
    max_steps: Optional[int] = option(None, "Stop (and save) after this many steps in all.")
    max_minutes: Optional[float] = option(None, "Stop (and save) after this many minutes of training in all: the run's "
                                          "time, summed over every launch that resumed it (saved in the checkpoint).")
    lr: float = option(2e-4, "Adam learning rate of both networks, as in pix2pix.")
    beta1: float = 0.5
    decay_fraction: float = option(0.3, "The last part of training (by steps, or by the clock under --max-minutes) decays "
                                   "the lr linearly to 0, as pix2pix does; 0: constant (bench/recipe.py).")
    ema_decay: float = option(0.999, "Exponential moving average of the generator's weights, used for validation, samples "
                              "and generator.pth; 0: off.")
    arch: str = option("unet", "Generator: unet (pix2pix's U-Net) or nafnet (NAFNet blocks in a U-Net; bench/arch.py "
                       "compares them).", choices=ARCHS)
    temporal: str = option("early", "nafnet with several frames: early (stacked at the input) or shift (channels shifted "
                           "between the frames' features inside the network).", choices=TEMPORAL)
    enc_blocks: tuple = option((1, 1, 1, 2), "nafnet: blocks per encoder level, comma-separated (the level count L makes "
                               "frames pad to 2^L).", parse=comma_ints)
    middle_blocks: int = option(2, "nafnet: blocks at the lowest resolution.")
    dec_blocks: tuple = option((1, 1, 1, 1), "nafnet: blocks per decoder level, innermost first, comma-separated.", parse=comma_ints)
    depth: int = option(DEPTH, "unet: stride-2 levels, at least 5. Frames pad to multiples of 2^depth (restore pads and "
                        "crops back: 1080 rows pad to 1088 at 6) and --crop must be one. Recorded in the weights.")
    ngf: int = option(64, "Generator width (unet: the outer layer's; nafnet: the first level's).")
    residual: Optional[bool] = option(None, "unet: the net predicts a correction added to the centre frame instead of "
                                      "redrawing every pixel (NAFNet always does), so lightly damaged footage passes "
                                      "through. Default: on for the real preset, off for the seed preset "
                                      "(docs/degradations.md).")
    ndf: int = option(64, "Critic width.")
    norm: str = option("batch", "Normalisation of both networks: batch (running statistics averaged over ranks at each "
                       "save) or instance.", choices=NORMS)
    dropout: bool = option(True, "pix2pix dropout in the innermost decoder blocks.")
    gan_mode: str = option("vanilla", "vanilla: BCE on logits; lsgan: least squares.", choices=GAN_MODES)
    lambda_l1: float = option(100.0, "Weight of the L1 term in G's loss.")
    amp: str = option("auto", "auto: bf16 on GPUs that have it, else fp16 with a GradScaler; off on the CPU.", choices=AMP_MODES)
    channels_last: bool = option(True, "Networks and batches in channels_last memory format.")
    sync_bn: bool = option(False, "Batch-norm statistics over all ranks' batches (multi-GPU runs; refused on the CPU).")
    compile: bool = option(False, "torch.compile the networks (worth it on GPUs for long runs; minutes of warm-up).")
    cuda_graphs: bool = option(False, "Capture the whole training step as one CUDA graph after 3 warm-up steps (one GPU; "
                               "--amp bf16 or off).")
    resume: str = option("auto", "auto: continue the run in OUT when it holds a checkpoint, else start one, so one "
                         "command serves the first launch and every relaunch (a checkpoint of another configuration is "
                         "refused, naming what differs); require (also --resume alone): refuse to start a new run; never: "
                         "refuse an OUT that holds a checkpoint (unless --overwrite).", choices=RESUME_MODES, bare="require")
    deterministic: bool = option(False, "Deterministic kernels, no cudnn autotuning: what a bit-exact resume on a GPU needs "
                                 "(CPU resumes are exact without it; not yet checked on a GPU). Slower.")
    overwrite: bool = option(False, "Start over although OUT holds a checkpoint (removes it and its fallback first). Not "
                             "for a command that is relaunched: each relaunch would start over again.")
    lock_stale_minutes: float = option(5.0, "OUT's lock is a lease the run refreshes every tenth of this (at least every "
                                       "minute); a lock not refreshed for this long (its host died) is taken over. A "
                                       "relaunch of the same Slurm job or torchelastic run takes it at once.")
    seed: int = option(0, "Seed of the input order, crops, degradations, dropout and the validation hold-out.")
    val_every: Optional[int] = option(None, "Also validate and save every N steps.")
    val_interval: float = option(60.0, "Seconds: an epoch end validates and saves only if this long has passed since the "
                                 "last time (0: every epoch).")
    save_every_minutes: float = option(10.0, "Also save the checkpoint (without validating) when this many minutes have "
                                       "passed since the last save, agreed across ranks; 0: only at validations and the end.")
    val_frames: int = option(16, "Validation size: whole frames of --val-shards, degraded once with a fixed seed.")
    samples: int = 8  # rows in the samples/ picture
    log_every: int = option(10, "Steps between loss readouts (each one waits for the GPU).")
    max_bad_steps: int = 50  # consecutive non-finite steps before giving up
    device: str = option("auto", "auto (cuda when available), cuda, cpu; under torchrun each rank takes its LOCAL_RANK's "
                         "GPU (cuda:N is refused there).")
    num_threads: int = option(2, "DALI threads per rank.")
    prefetch: int = option(2, "DALI batches prepared ahead of the training step.")
    spec: DegradationSpec = field(default_factory=DegradationSpec)
    # seed: DALI and torch degrade clean shards with `spec`; real: the shards hold each frame's
    # damaged copy (make-shards --preset real; with --videos made so with `real`). None: the shards'
    preset: Optional[str] = None
    real: RealSpec = field(default_factory=RealSpec)
    progress: bool = True

    def __post_init__(self):
        if (self.shards is None) == (self.videos is None):
            raise ValueError("give --shards (a make-shards folder) or --videos (a folder of videos), one of them")
        self.out = Path(self.out)
        self.shards = Path(self.shards) if self.shards else None
        self.videos = Path(self.videos) if self.videos else None
        self.split_file = Path(self.split_file) if self.split_file else None
        self.val_shards = Path(self.val_shards) if self.val_shards else None
        self.val_split_file = Path(self.val_split_file) if self.val_split_file else None
        checks = [
            (self.amp in AMP_MODES, f"amp must be one of {AMP_MODES}"),
            (self.gan_mode in GAN_MODES, f"gan mode must be one of {GAN_MODES}"),
            (self.epochs >= 1, f"--epochs {self.epochs}: must be >= 1"),
            (self.batch_size >= 1, f"--batch-size {self.batch_size}: must be >= 1"),
            (0 <= self.decay_fraction <= 1, "--decay-fraction must be in [0, 1]"),
            (0 <= self.val_fraction < 1, f"--val-fraction {self.val_fraction}: must be in [0, 1)"),
            (0 <= self.ema_decay < 1, "--ema-decay must be in [0, 1) (0 turns the EMA off)"),
            (not self.sync_bn or self.norm == "batch", "--sync-bn applies to --norm batch only"),
            (self.ngf >= 1 and self.ndf >= 1, "--ngf and --ndf must be >= 1"),
            (self.frames is None or (self.frames >= 1 and self.frames % 2 == 1), "--frames must be odd and >= 1 (1, 3, 5)"),
            (self.lr > 0 and self.lambda_l1 >= 0, "--lr must be > 0 and --lambda-l1 >= 0"),
            (self.val_frames >= 1 and self.log_every >= 1 and self.num_threads >= 1 and self.prefetch >= 1,
             "--val-frames, --log-every, --num-threads and --prefetch must be >= 1"),
            (self.val_interval >= 0, "--val-interval must be >= 0"),
            (self.save_every_minutes >= 0, f"--save-every-minutes {self.save_every_minutes:g}: must be >= 0 (0: off)"),
            (self.max_steps is None or self.max_steps >= 1, f"--max-steps {self.max_steps}: must be >= 1"),
            (self.max_minutes is None or self.max_minutes > 0, f"--max-minutes {self.max_minutes}: must be > 0"),
            (self.resume in RESUME_MODES, f"--resume {self.resume}: choose from {', '.join(RESUME_MODES)}"),
            (not (self.resume == "require" and self.overwrite), "--resume require and --overwrite contradict each other"),
            (self.lock_stale_minutes > 0, f"--lock-stale-minutes {self.lock_stale_minutes:g}: must be > 0"),
            (self.val_split_file is None or self.videos is not None, "--val-split-file goes with --videos (with --shards, give --val-shards)"),
            (self.val_split_file is None or self.val_shards is None, "give --val-split-file or --val-shards, not both"),
            (self.val_every is None or self.val_every >= 1, f"--val-every {self.val_every}: must be >= 1"),
            (self.preset is None or self.preset in PRESETS, f"--preset {self.preset}: choose from {', '.join(PRESETS)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        check_crop(self.crop)
        GeneratorConfig(arch=self.arch, depth=self.depth, enc_blocks=self.enc_blocks, dec_blocks=self.dec_blocks).check_crop(self.crop)

    def __setattr__(self, name, value):
        if name in ("enc_blocks", "dec_blocks") and value is not None:
            value = tuple(value)
        super().__setattr__(name, value)

    def differences(self, saved: dict) -> list:
        """'--option: saved value in the checkpoint, value now' for every field that defines the
        run and differs from `saved` (a checkpoint's config); fields an older checkpoint lacks
        are taken as equal. The degradation spec's fields are options of their own."""
        def flat(d: dict, prefix: str = "") -> dict:
            out = {}
            for k, v in d.items():
                key = k if prefix in ("", "spec.") else prefix + k
                out |= flat(v, key + ".") if isinstance(v, dict) else {key: list(v) if isinstance(v, tuple) else v}
            return out

        now = flat({k: v for k, v in self.to_dict().items() if k not in LAUNCH_FIELDS})
        old = flat({k: v for k, v in saved.items() if k not in LAUNCH_FIELDS})
        return [f"--{k.replace('_', '-')}: {old[k]} in the checkpoint, {v} now" for k, v in now.items() if k in old and old[k] != v]

    def to_dict(self) -> dict:
        """Plain types only, for config.json and checkpoint.pt (weights_only loads it)."""
        d = asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


MAX_ROWS = 256  # a grid taller than this is no longer looked at, and the batch grows with it


@dataclass
class PreviewConfig:
    shards: Path
    out: Path = option(Path("preview.png"), "PNG to write.", path={"dir_okay": False})
    num: int = option(8, "Samples (rows).", short="-n")
    crop: int = option(CROP, "Training crop size (a multiple of 32), as train --crop.")
    device: str = option("auto", "cuda, cuda:N, cpu, or auto (cuda when available).")
    seed: int = option(0, "Seed of the crops and the degradations.")
    preset: Optional[str] = option(None, "Check the shards carry this preset (make-shards --preset); default: theirs. A "
                                   "real-preset grid shows the damaged copies the shards hold.", choices=PRESETS, show_default=False)
    spec: DegradationSpec = field(default_factory=DegradationSpec)

    def __post_init__(self):
        self.shards, self.out = Path(self.shards), Path(self.out)
        if not 1 <= self.num <= MAX_ROWS:
            raise ValueError(f"--num {self.num}: must be 1 to {MAX_ROWS} (one batch of that many samples is held in memory)")
        if self.out.suffix.lower() != ".png":
            raise ValueError(f"--out {self.out}: the picture is a PNG; give a name ending in .png")
        check_crop(self.crop)
