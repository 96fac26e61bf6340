"""How restored frames are judged: PSNR/SSIM and the pooled box and temporal scores (metrics.py),
and the pictures that show them (pictures.py). Imports only the root modules."""
