"""vrestore.pipeline: everything between video files and the networks, by concern.

    media/       ffmpeg in and out: probing, decoding to frames or encoded images, encoding,
                 finding the videos to work on (imports: the root modules only)
    cluster/     --engine ray (workers, retries, whole-job progress) and Slurm arrays
                 (imports: the root modules only)
    dataset/     make-shards (local and Ray), the shard writer and manifest, reading shards
                 back, held-out videos, sample videos (imports: media/, cluster/)
    degrade/     the one definition of the degradations, and `vrestore degrade`
                 (imports: media/, cluster/)
    evaluation/  PSNR/SSIM and the pooled box and temporal scores, comparison pictures
    inference/   restore, sliding frame windows, export
                 (imports: media/, evaluation/, degrade/, cluster/, models)

Left at the root, usable by all: atomic.py (temporary-name writes), devices.py (`--device`),
precision.py (the autocast choice). Nothing here imports vrestore.trainer or vrestore.cli.
"""
