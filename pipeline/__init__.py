"""vrestore.pipeline: everything between video files and the networks, by concern.

    host/        what a job takes from its machine and shared folders: lease locks a dead
                 host cannot hold, CPU and memory limits from the job's cgroup and affinity
                 (imports: the root modules only)
    media/       ffmpeg in and out: probing, decoding to frames or encoded images, encoding,
                 finding the videos to work on, which frames neighbour frame t (imports: host/)
    cluster/     --engine ray (workers, retries, whole-job progress) and Slurm arrays
                 (imports: host/)
    dataset/     make-shards (local and Ray), the shard writer and manifest, reading shards
                 back, held-out videos, sample videos (imports: host/, media/, cluster/, degrade/)
    degrade/     the one definition of the degradations, and `vrestore degrade`
                 (imports: host/, media/, cluster/)
    evaluation/  PSNR/SSIM and the pooled box and temporal scores, comparison pictures
    inference/   restore, sliding frame windows, export
                 (imports: host/, media/, evaluation/, degrade/, cluster/, models)

Left at the root, used by several rooms and by the trainer: atomic.py (temporary-name writes),
devices.py (`--device` and `--amp`), options.py (a config field is its command-line option).
Nothing here imports vrestore.trainer or vrestore.cli.
"""
