"""Encoded frames parked on local disk while make-shards mixes a window of videos into shards.

make-shards decodes a window of videos (--mix-window), shuffles their samples and writes them
into shards; the frames wait for that in between. Held in memory they made a process's size
grow with the videos' length (15 KB a 320x240 frame: 500 MB for a 10-minute clip, tens of GB
for a film). Here each video's frames go to a file of its own in $TMPDIR (node-local scratch
on a cluster), an anonymous file the system removes with the process, however it ends; memory
holds an offset and a size per frame. A stored frame reads back with one positional read.
"""
import os
import tempfile


class Stored:
    """One image in a Spool: `len()` is its size, `read()` its bytes."""

    __slots__ = ("spool", "offset", "size")

    def __init__(self, spool: "Spool", offset: int, size: int):
        self.spool, self.offset, self.size = spool, offset, size

    def __len__(self) -> int:
        return self.size

    def read(self) -> bytes:
        return self.spool.read(self.offset, self.size)


class Spool:
    """An append-only file of images: written by one thread (the video's decoder), read after."""

    def __init__(self):
        self.file = tempfile.TemporaryFile(prefix="vrestore-spool-")  # unlinked at once: nothing is left behind
        self.size, self.dirty = 0, False

    def put(self, data: bytes) -> Stored:
        self.file.write(data)
        stored = Stored(self, self.size, len(data))
        self.size, self.dirty = self.size + len(data), True
        return stored

    def read(self, offset: int, size: int) -> bytes:
        if self.dirty:  # the last writes may still sit in the file object's buffer
            self.file.flush()
            self.dirty = False
        return os.pread(self.file.fileno(), size, offset)

    def close(self) -> None:
        self.file.close()


def materialize(value):
    """The bytes of a sample member, stored or not."""
    return value.read() if isinstance(value, Stored) else value
