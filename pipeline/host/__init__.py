"""What a job takes from the machine it runs on and from the folders it shares with other hosts:
lease locks on shared folders that a dead host cannot hold (lease.py), and the job's own CPU and
memory limits, read from its affinity and cgroup rather than the host's totals (limits.py).
Imports: the root modules only."""
