"""Split the byte stream of ffmpeg's image2pipe into whole encoded images.

ffmpeg writes JPEG or PNG files back to back on a pipe with no length prefix. Parsing the
container structure (JPEG markers, PNG chunks) finds the exact boundaries without decoding a
pixel; searching for a JPEG end marker alone could be fooled by the same two bytes inside a
quantisation table.
"""
import struct

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class StreamSplitter:
    """Feed bytes in any chunking; get back complete images in order."""

    def __init__(self):
        self._buf = bytearray()
        self._scan = 0  # how far into the current image we have parsed already

    def feed(self, data: bytes) -> list:
        self._buf += data
        images = []
        while True:
            end = self._image_end()
            if end is None:
                return images
            images.append(bytes(self._buf[:end]))
            del self._buf[:end]
            self._scan = 0

    def leftover(self) -> int:
        """Bytes of an incomplete image at the end of the stream (a truncated write)."""
        return len(self._buf)

    def _image_end(self):
        raise NotImplementedError


class JpegSplitter(StreamSplitter):
    def __init__(self):
        super().__init__()
        self._in_scan_data = False

    def _image_end(self):
        b = self._buf
        if self._scan == 0:
            if len(b) < 2:
                return None
            if b[0] != 0xFF or b[1] != 0xD8:
                raise ValueError("JPEG stream out of sync: no start-of-image marker")
            self._scan, self._in_scan_data = 2, False
        i = self._scan
        while True:
            if self._in_scan_data:
                # Entropy-coded data: 0xFF is followed by 0x00 (stuffing) or a restart marker
                # unless it starts the next real marker.
                while True:
                    j = b.find(b"\xff", i)
                    if j < 0 or j + 1 >= len(b):
                        self._scan = i if j < 0 else j
                        return None
                    nxt = b[j + 1]
                    if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:
                        i = j + (1 if nxt == 0xFF else 2)
                        continue
                    i, self._in_scan_data = j, False
                    break
            if i + 2 > len(b):
                self._scan = i
                return None
            if b[i] != 0xFF:
                raise ValueError(f"JPEG stream out of sync at byte {i}")
            marker = b[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker == 0xD9:
                return i + 2
            if marker == 0x01 or 0xD0 <= marker <= 0xD8:
                i += 2
                continue
            if i + 4 > len(b):
                self._scan = i
                return None
            (length,) = struct.unpack_from(">H", b, i + 2)
            if i + 2 + length > len(b):
                self._scan = i
                return None
            i += 2 + length
            if marker == 0xDA:
                self._in_scan_data = True


class PngSplitter(StreamSplitter):
    def _image_end(self):
        b = self._buf
        if self._scan == 0:
            if len(b) < 8:
                return None
            if bytes(b[:8]) != PNG_SIGNATURE:
                raise ValueError("PNG stream out of sync: no signature")
            self._scan = 8
        i = self._scan
        while True:
            if i + 8 > len(b):
                self._scan = i
                return None
            length, ctype = struct.unpack_from(">I4s", b, i)
            end = i + 12 + length  # length, type, data, crc
            if end > len(b):
                self._scan = i
                return None
            if ctype == b"IEND":
                return end
            i = end


def make_splitter(image_format: str) -> StreamSplitter:
    if image_format == "jpg":
        return JpegSplitter()
    if image_format == "png":
        return PngSplitter()
    raise ValueError(f"unknown image format {image_format!r}")


def image_size(image: bytes):
    """(width, height) from a JPEG's frame header or a PNG's IHDR chunk, without decoding."""
    if image.startswith(PNG_SIGNATURE):
        return struct.unpack_from(">II", image, 16)
    i = 2
    while i + 9 < len(image):
        if image[i] != 0xFF:
            raise ValueError("not a JPEG")
        marker = image[i + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            h, w = struct.unpack_from(">HH", image, i + 5)
            return w, h
        (length,) = struct.unpack_from(">H", image, i + 2)
        i += 2 + length
    raise ValueError("JPEG has no frame header")
