"""The one definition of the degradations (degradations.py: blur, noise, boxes; the reference the
DALI ops are tested against) and `vrestore degrade`, which applies it to videos. Imports media/ and cluster/."""
