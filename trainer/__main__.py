"""`torchrun --standalone --nproc_per_node=N -m trainer --shards ...`: the same command as
`vrestore train`, one process per rank."""
from vrestore.cli import train_cmd

train_cmd(prog_name="python -m trainer")
