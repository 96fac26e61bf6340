"""WebDataset tar shards, each with the index file DALI's `fn.readers.webdataset` reads.

A shard and its index are written under temporary names and renamed only once both are
complete (index first, tar last): a tar under its real name is always a finished shard.
"""
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from vrestore.pipeline.atomic import naming, temp_path_for
from vrestore.pipeline.dataset.samples import TAR_HEADER  # bytes before each member, near enough for a size cap
from vrestore.pipeline.dataset.spool import materialize


@dataclass
class ShardInfo:
    tar: str
    index: str
    samples: int
    bytes: int


def shard_names(prefix: str, number: int):
    stem = f"{prefix}-{number:06d}"
    return f"{stem}.tar", f"{stem}.idx"


def write_dali_index(tar_path: Path, idx_path: Path) -> None:
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        from wds2idx import IndexCreator  # DALI's own index writer (the train extra: nvidia-dali)

        with IndexCreator(str(tar_path), str(idx_path), verbose=False) as creator:
            creator.create_index()


class ShardWriter:
    """Write samples into numbered shards, starting a new one when a cap would be passed."""

    def __init__(self, out_dir: Path, prefix: str, max_samples: int, max_bytes: int, first_number: int = 0, on_close=None):
        self.out_dir, self.prefix = Path(out_dir), prefix
        self.max_samples, self.max_bytes = max_samples, max_bytes
        self.number = first_number
        self.on_close = on_close  # called with the ShardInfo after each rename
        self._tar = None
        self._tmp_files = []  # what is under a temporary name now (the tar, then its index)

    def write(self, key: str, sample: dict) -> None:
        self.write_group([(key, sample)])

    def write_group(self, group: list) -> None:
        """Write (key, sample) pairs into one shard: the shard closes before a group that would
        pass a cap (a group larger than the caps gets a shard of its own)."""
        size = sum(len(v) + TAR_HEADER for _, sample in group for v in sample.values())
        if self._tar is not None and (
            self._samples + len(group) > self.max_samples or self._bytes + size > self.max_bytes
        ):
            self.close_shard()
        for key, sample in group:
            self._write(key, sample)

    def _write(self, key: str, sample: dict) -> None:
        size = sum(len(v) + TAR_HEADER for v in sample.values())
        if self._tar is None:
            self._open()
        with naming(self.out_dir / shard_names(self.prefix, self.number)[0]):
            # members may wait in a spool on disk (make-shards): read back one sample at a time
            self._tar.write({"__key__": key, **{k: materialize(v) for k, v in sample.items()}})
        self._samples += 1
        self._bytes += size

    def _open(self):
        tar_name, _ = shard_names(self.prefix, self.number)
        self._tmp_tar = temp_path_for(self.out_dir / tar_name)
        self._tmp_files = [self._tmp_tar]
        self._file = open(self._tmp_tar, "wb")
        # mtime fixed at 0 so the same samples always give the same bytes (resume checks that).
        import webdataset as wds  # the train extra; imported here so the CLI loads without it

        self._tar = wds.TarWriter(self._file, encoder=False, mtime=0, user="", group="")
        self._samples, self._bytes = 0, 0

    def close_shard(self):
        if self._tar is None:
            return None
        tar_name, idx_name = shard_names(self.prefix, self.number)
        with naming(self.out_dir / tar_name):
            self._close_shard(tar_name, idx_name)
        info = ShardInfo(tar_name, idx_name, self._samples, (self.out_dir / tar_name).stat().st_size)
        self.number += 1
        if self.on_close:
            self.on_close(info)
        return info

    def _close_shard(self, tar_name, idx_name):
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._tar = None
        tmp_idx = temp_path_for(self.out_dir / idx_name)
        self._tmp_files.append(tmp_idx)
        write_dali_index(self._tmp_tar, tmp_idx)
        os.replace(tmp_idx, self.out_dir / idx_name)
        os.replace(self._tmp_tar, self.out_dir / tar_name)
        self._tmp_files = []

    def abandon(self):
        """Drop the shard being written or closed (after an error or interrupt, wherever it came);
        leaves no file behind."""
        if self._tar is not None:
            # The tar stream is closed first, while its file is still open: closed the other way
            # round, its destructor later fails on the closed file ("Exception ignored in
            # _Stream.__del__" after a Ctrl-C).
            with contextlib.suppress(Exception):
                self._tar.close()
            with contextlib.suppress(Exception):
                self._file.close()
            self._tar = None
        for p in self._tmp_files:
            p.unlink(missing_ok=True)
        self._tmp_files = []
