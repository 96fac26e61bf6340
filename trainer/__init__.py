"""Training: the DALI input pipeline and (next) the pix2pix loop under torchrun."""
