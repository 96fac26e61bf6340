"""Where and how a command computes: `--device` for every command (one rule, checked before any
work starts), and `--amp`, the autocast choice training and restoring share."""
import torch


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """auto: cuda when torch sees a GPU, else cpu. `cuda` without an index is the process's
    local rank (one GPU per torchrun worker). Raises ValueError with one line otherwise."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name!r}: not a device; use auto, cpu, cuda or cuda:N")
    if device.type == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        why = "this torch build has no CUDA support" if torch.version.cuda is None else "torch sees no GPU"
        raise ValueError(f"--device {name}: {why}; use --device cpu")
    index = local_rank if device.index is None else device.index
    if index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: GPU {index} asked for, torch sees {torch.cuda.device_count()}")
    return torch.device("cuda", index)

AMP_MODES = ("auto", "bf16", "fp16", "off")


def amp_dtype(mode: str, device: torch.device):
    """None for full precision. auto: bf16 on GPUs that have it, fp16 on older ones; off on the
    CPU, where bf16 autocast is slower than fp32 on most machines (not all: see README)."""
    if mode not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, not {mode!r}")
    if mode == "auto":
        if device.type != "cuda":
            return None
        mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[mode]
