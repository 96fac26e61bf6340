"""The autocast choice shared by training and restoring."""
import torch

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
