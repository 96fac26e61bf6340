"""vrestore.trainer: the pix2pix training run under torchrun or in one process.

train.py is the loop; pix2pix_step.py the update; dali_input.py the DALI input; validate.py,
ema.py, checkpoint.py, run_log.py, distributed.py and preview.py what the loop uses. Imports
vrestore.pipeline and vrestore.models, never vrestore.cli.
"""
