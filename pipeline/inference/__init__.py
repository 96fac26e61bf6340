"""A trained generator at work: `vrestore restore` (restore.py), the mirrored windows of T frames
it slides along a video (frame_windows.py), and `vrestore export` (export.py).
Imports media/, evaluation/, degrade/, cluster/ and vrestore.models."""
