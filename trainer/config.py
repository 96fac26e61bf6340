"""`TrainConfig`: every setting of a training run, one field per command-line option."""
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from vrestore.pipeline.degrade.degradations import DegradationSpec
from vrestore.pipeline.degrade.real_world import PRESETS, RealSpec
from vrestore.pipeline.precision import AMP_MODES

GAN_MODES = ("vanilla", "lsgan")


def check_crop(crop: int, min_side: Optional[int] = None) -> None:
    """Training and preview crops: the U-Net's depth is log2(crop), so a power of two; and, once
    the shards are known, no larger than their smallest frame side."""
    if crop < 32 or crop & (crop - 1):
        raise ValueError(f"--crop {crop}: must be a power of two >= 32 (64, 128, 256)")
    if min_side is not None and crop > min_side:
        raise ValueError(f"--crop {crop}: larger than the smallest frame side in the shards ({min_side})")


@dataclass
class TrainConfig:
    shards: Optional[Path] = None  # folder written by make-shards (manifest.json, tars, idx)
    videos: Optional[Path] = None  # or a folder of videos, sharded into out/shards first
    split_file: Optional[Path] = None  # with videos: a UCF-101 list selecting them
    use_first_100: bool = False  # with videos: the first 100 only (the original scripts' quick mode)
    val_shards: Optional[Path] = None  # default: --videos holds out videos; --shards validates on its own first samples (warned)
    val_split_file: Optional[Path] = None  # with videos: a list of validation videos (vallist01.txt) instead of a hold-out
    val_fraction: float = 0.1  # with --videos and no --val-shards: groups (UCF-101) or videos held out for validation
    out: Path = Path("saved_models")
    epochs: int = 50
    batch_size: int = 16  # per rank
    crop: int = 128  # square training crop; 128 -> U-Net depth 7, 256 -> 8
    frames: Optional[int] = None  # frames the generator sees (odd); None: the shards' clip length
    max_steps: Optional[int] = None  # stop early (still saving) after this many steps in all
    max_minutes: Optional[float] = None  # ...or after this much wall time in this launch
    lr: float = 2e-4  # Adam, both networks, as in pix2pix
    beta1: float = 0.5
    decay_fraction: float = 0.3  # the last part of training decays the lr linearly to 0 (pix2pix: n_epochs_decay); bench/recipe.py
    ema_decay: float = 0.999  # EMA of the generator's weights (validation, samples, generator.pth); 0: off
    arch: str = "unet"  # generator: unet (pix2pix) or nafnet (models/nafnet.py); bench/arch.py compares them
    temporal: str = "early"  # nafnet: frames stacked at the input (early) or mixed inside (shift)
    enc_blocks: tuple = (1, 1, 1, 2)  # nafnet: blocks per encoder level
    middle_blocks: int = 2  # nafnet
    dec_blocks: tuple = (1, 1, 1, 1)  # nafnet: blocks per decoder level
    ngf: int = 64  # generator width
    residual: Optional[bool] = None  # unet: predict a correction to the centre frame (NAFNet always does); None: on for the real preset
    ndf: int = 64  # critic width
    norm: str = "batch"  # batch | instance
    dropout: bool = True  # pix2pix's dropout in the innermost decoder blocks
    gan_mode: str = "vanilla"  # vanilla (BCE) | lsgan
    lambda_l1: float = 100.0
    amp: str = "auto"  # auto: bf16 on GPUs that have it, else fp16 (+GradScaler); off on CPU
    channels_last: bool = True
    sync_bn: bool = False  # batch-norm statistics over all ranks' batches (GPUs only)
    compile: bool = False  # torch.compile the networks (GPU; minutes of warm-up)
    cuda_graphs: bool = False  # capture the whole step as one CUDA graph (one GPU, bf16 or fp32)
    resume: bool = False  # continue from out/checkpoint.pt
    deterministic: bool = False  # deterministic kernels, cudnn.benchmark off: GPU resumes as exact as CPU ones
    overwrite: bool = False  # start over even though out/ holds a checkpoint
    seed: int = 0
    val_every: Optional[int] = None  # also validate (and save) every N steps, besides epoch ends
    val_interval: float = 60.0  # seconds: epoch ends validate and save only if this long has passed since the last
    save_every_minutes: float = 10.0  # also save (no validation) when this long has passed since the last save; 0: off
    val_frames: int = 16  # validation size: whole frames (fixed, with fixed degradations)
    samples: int = 8  # rows in the samples/ picture
    log_every: int = 10  # steps between loss readouts (each one is a CPU-GPU sync)
    max_bad_steps: int = 50  # consecutive non-finite steps before giving up
    device: str = "auto"  # auto: cuda when available; cpu; cuda
    num_threads: int = 2  # DALI worker threads per rank
    prefetch: int = 2  # DALI batches prepared ahead of the step
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
            (not (self.resume and self.overwrite), "--resume and --overwrite contradict each other"),
            (self.val_split_file is None or self.videos is not None, "--val-split-file goes with --videos (with --shards, give --val-shards)"),
            (self.val_split_file is None or self.val_shards is None, "give --val-split-file or --val-shards, not both"),
            (self.val_every is None or self.val_every >= 1, f"--val-every {self.val_every}: must be >= 1"),
            (self.preset is None or self.preset in PRESETS, f"--preset {self.preset}: choose from {', '.join(PRESETS)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        check_crop(self.crop)

    def __setattr__(self, name, value):
        if name in ("enc_blocks", "dec_blocks") and value is not None:
            value = tuple(value)
        super().__setattr__(name, value)

    def to_dict(self) -> dict:
        """Plain types only, for config.json and checkpoint.pt (weights_only loads it)."""
        d = asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}
