"""Offline data preparation: ffmpeg decodes videos, frames go into WebDataset tar shards."""
