"""`python -m vrestore ...` and `torchrun --nproc_per_node=N -m vrestore train ...`: the CLI."""
from vrestore.cli import main

main()
