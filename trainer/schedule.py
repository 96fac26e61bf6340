"""The learning-rate schedule (pix2pix's linear decay, by steps or by the clock under
--max-minutes) and the validation swing printed at the end of a run."""
from vrestore.trainer.config import TrainConfig


def progress(cfg: TrainConfig, step: int, schedule_steps: int, seconds: float) -> float:
    """How far training is, 0..1: by steps of the --epochs schedule, or by the run's training
    time (`seconds`, summed over its launches) under --max-minutes, whichever is further (a
    time budget is where a demo or a quick run ends). --max-steps only stops a run; it does not
    reshape the schedule, so a run stopped by it and resumed continues exactly."""
    p = step / schedule_steps
    if cfg.max_minutes:
        p = max(p, seconds / (cfg.max_minutes * 60))
    return min(p, 1.0)


def lr_at(cfg: TrainConfig, progress: float) -> float:
    """pix2pix's 'linear' policy per step: constant, then linear to zero over the last
    `decay_fraction` of training."""
    if cfg.decay_fraction == 0:
        return cfg.lr
    return cfg.lr * min(1.0, (1.0 - progress) / cfg.decay_fraction)


def describe_schedule(cfg: TrainConfig, schedule_steps: int) -> str:
    if cfg.decay_fraction == 0:
        return f"lr {cfg.lr:g} constant"
    start = round(schedule_steps * (1 - cfg.decay_fraction))
    clock = f" (or from minute {cfg.max_minutes * (1 - cfg.decay_fraction):g} of {cfg.max_minutes:g}, whichever comes first)" if cfg.max_minutes else ""
    return f"lr {cfg.lr:g} until step {start}, then linear to 0 at step {schedule_steps}{clock}"


def swing(values: list) -> float:
    """Largest change between consecutive validations in the last third of them."""
    tail = values[len(values) - max(2, len(values) // 3):]
    return max((abs(b - a) for a, b in zip(tail, tail[1:])), default=0.0)
