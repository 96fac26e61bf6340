"""Work that outgrows one process: Ray (ray_engine.py: a local instance or a cluster by address;
long-lived workers holding a model, one video per task, retries, one progress bar for the whole
job) and Slurm arrays (slurm.py: which part of the input this array task takes). Generic: the
commands hand in their own per-video functions. Imports only the root modules."""
