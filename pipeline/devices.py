"""`--device` for every command: one rule, checked before any work starts."""
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
