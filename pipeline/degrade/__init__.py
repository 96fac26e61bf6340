"""The one definition of each degradation preset: degradations.py (seed: blur, noise, boxes; the
reference the DALI ops are tested against) and real_world.py (real: blur, resize, noise, JPEG,
grain, fade and a real video encoder, drawn per video); and `vrestore degrade`
(degrade_videos.py), which applies either to videos. Imports media/ and cluster/."""
