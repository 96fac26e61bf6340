"""`vrestore train` under torchrun, with what the tests put into the loop (trainer.train's
LoopHooks) instead of test switches in the package:

    torchrun ... tests/entry/train_entry.py [--clock-scale RANK=F] [--fail-at RANK=STEP] [--kill-at RANK=STEP] -- TRAIN ARGS

--clock-scale: that rank's clock runs F times as fast (as a slow rank's or another machine's
clock disagrees); --fail-at: that rank raises before that step; --kill-at: that rank's process
dies by SIGKILL before that step, in torchrun's first attempt only (a restarted group runs
through). Everything else is the CLI's own `train` command, its one-line errors and exit codes
included."""
import argparse
import os
import signal
import sys
import time

from vrestore import cli
from vrestore.trainer import train as training


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clock-scale", default="", help="RANK=FACTOR")
    ap.add_argument("--fail-at", default="", help="RANK=STEP")
    ap.add_argument("--kill-at", default="", help="RANK=STEP")
    ours, train_args = ap.parse_args(sys.argv[1 : sys.argv.index("--")]), sys.argv[sys.argv.index("--") + 1 :]
    rank = int(os.environ["RANK"])

    def for_me(option: str):
        r, _, value = option.partition("=")
        return float(value) if option and int(r) == rank else None

    scale, fail_at, kill_at = for_me(ours.clock_scale) or 1.0, for_me(ours.fail_at), for_me(ours.kill_at)
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    start = time.monotonic()

    def on_step(r, step):
        if fail_at is not None and step == int(fail_at):
            raise RuntimeError(f"test failure on rank {r} at step {step}")
        if kill_at is not None and step == int(kill_at) and first_attempt:
            os.kill(os.getpid(), signal.SIGKILL)

    hooks = training.LoopHooks(clock=lambda: start + (time.monotonic() - start) * scale, on_step=on_step)
    real_train = training.train
    training.train = lambda cfg: real_train(cfg, hooks)  # what the CLI's train command calls
    sys.argv = ["vrestore", "train", *train_args]
    cli.main()  # the CLI as `python -m vrestore train` runs it


if __name__ == "__main__":
    main()
