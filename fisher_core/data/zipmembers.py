"""Zip archives read from the upload's bytes through a compact table of members.

zipfile keeps a ``ZipInfo`` object of about 500 bytes per member, plus a dict entry: with
100,000 tiny images that is twice the decoded dataset. This module parses the central
directory (ZIP64 included, as zipfile does) into a few numpy columns and the names, about 80
bytes a member, and reads members straight from the upload: stored or deflated data,
decompressed at most up to what is asked for, checked against the declared size and CRC
when read to the end. Errors are zipfile's (``BadZipFile``) or zlib's, for
:func:`.streams.member_errors` to name.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from .errors import DatasetError

__all__ = ["MemberTable"]

_EOCD = struct.Struct("<4s4H2LH")  # end of central directory: 22 bytes
_EOCD64_LOCATOR = struct.Struct("<4sLQL")  # 20 bytes, just before the EOCD
_EOCD64 = struct.Struct("<4sQ2H2L4Q")  # 56 bytes, just before the locator
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # one central directory entry: 46 bytes
_LOCAL = struct.Struct("<4s22xHH")  # local header: signature ... name and extra lengths
_STEP = 1 << 16  # compressed bytes handed to zlib at a time
_FULL32 = 0xFFFFFFFF


@dataclass
class MemberTable:
    """Where each member's data lies in ``data``, and how to check it.

    Attributes
    ----------
    data : memoryview
        The whole archive.
    names : list of str
        Member names (N), decoded as zipfile decodes them.
    offset, csize, usize : ndarray of shape (N,), int64
        Local header offset, compressed and uncompressed size.
    crc : ndarray of shape (N,), uint32
    method, flags : ndarray of shape (N,), uint16
        Compression method (0 stored, 8 deflated, ...) and general-purpose flags.
    """

    data: memoryview
    names: list[str]
    offset: np.ndarray
    csize: np.ndarray
    usize: np.ndarray
    crc: np.ndarray
    method: np.ndarray
    flags: np.ndarray

    @classmethod
    def read_directory(cls, data: bytes, max_entries: int, what: str) -> MemberTable:
        """Parse the central directory of the zip archive ``data`` (named ``what``).

        Raises
        ------
        zipfile.BadZipFile
            If ``data`` is not a zip archive, or its directory is corrupt.
        DatasetError
            If it declares more than ``max_entries`` members (before they are parsed).
        """
        try:
            return cls._read_directory(data, max_entries, what)
        except (struct.error, IndexError, UnicodeDecodeError) as exc:
            raise zipfile.BadZipFile(f"corrupt central directory: {exc}") from None

    @classmethod
    def _read_directory(cls, data: bytes, max_entries: int, what: str) -> MemberTable:
        mv = memoryview(data)
        pos = data.rfind(b"PK\x05\x06", max(0, len(data) - _EOCD.size - 0xFFFF))
        if pos < 0 or pos + _EOCD.size > len(data):
            raise zipfile.BadZipFile("File is not a zip file")
        _, _, _, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(mv, pos)
        end = pos
        loc = pos - _EOCD64_LOCATOR.size
        if loc >= 0 and mv[loc: loc + 4] == b"PK\x06\x07":
            end = loc - _EOCD64.size
            if end < 0 or mv[end: end + 4] != b"PK\x06\x06":
                raise zipfile.BadZipFile("corrupt ZIP64 end of central directory")
            *_, count, cd_size, cd_offset = _EOCD64.unpack_from(mv, end)
        if count > max_entries:
            raise DatasetError(
                f"{what} holds {count} entries, more than the limit of {max_entries}."
            )
        concat = end - cd_size - cd_offset  # bytes prepended to the archive (zipfile's term)
        start = cd_offset + concat
        if start < 0 or start + cd_size > end:
            raise zipfile.BadZipFile("Bad offset for central directory")
        cols = np.zeros((max(count, 16), 4), np.int64)  # offset, csize, usize, crc
        meta = np.zeros((max(count, 16), 2), np.uint16)  # method, flags
        names: list[str] = []
        p = start
        while p < start + cd_size:
            if len(names) == len(cols):  # more entries than declared (a 16-bit count wrapped)
                if len(names) >= max_entries:
                    raise DatasetError(f"{what} holds over {max_entries} entries, more than the "
                                       f"limit of {max_entries}.")
                cols = np.resize(cols, (min(2 * len(cols), max_entries), 4))
                meta = np.resize(meta, (len(cols), 2))
            (sig, _, _, _, _, flags, method, _, _, crc, csize, usize, n_name, n_extra,
             n_comment, _, _, _, offset) = _CENTRAL.unpack_from(mv, p)  # struct.error if cut
            if sig != b"PK\x01\x02":
                raise zipfile.BadZipFile("Bad magic number for central directory")
            raw = bytes(mv[p + _CENTRAL.size: p + _CENTRAL.size + n_name])
            name = raw.decode("utf-8") if flags & 0x800 else raw.decode("cp437")
            extra = mv[p + _CENTRAL.size + n_name: p + _CENTRAL.size + n_name + n_extra]
            if _FULL32 in (usize, csize, offset):
                usize, csize, offset = _zip64(extra, usize, csize, offset)
            k = len(names)
            names.append(name.split("\x00", 1)[0])  # as zipfile: cut at a NUL byte
            cols[k] = offset + concat, csize, usize, crc
            meta[k] = method, flags
            p += _CENTRAL.size + n_name + n_extra + n_comment
        n = len(names)
        return cls(mv, names, cols[:n, 0].copy(), cols[:n, 1].copy(), cols[:n, 2].copy(),
                   cols[:n, 3].astype(np.uint32), meta[:n, 0].copy(), meta[:n, 1].copy())

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, index: list[int]) -> MemberTable:
        """The members ``index``, in that order."""
        i = np.asarray(index, dtype=np.int64)
        return MemberTable(self.data, [self.names[k] for k in index], self.offset[i],
                           self.csize[i], self.usize[i], self.crc[i], self.method[i],
                           self.flags[i])

    def read(self, k: int, limit: int | None = None) -> bytes:
        """Member ``k``: all of it (checked against its size and CRC), or its first
        ``limit`` bytes."""
        usize = int(self.usize[k])
        whole = limit is None or limit >= usize
        want = usize if whole else limit
        raw = self._raw(k)
        out = _inflate(raw, want) if self.method[k] == zipfile.ZIP_DEFLATED else bytes(raw[:want])
        if whole and (len(out) != usize or zlib.crc32(out) != int(self.crc[k])):
            raise zipfile.BadZipFile(f"Bad CRC-32 or size for file {self.names[k]!r}")
        return out

    def open(self, k: int) -> BinaryIO:
        """A stream of member ``k``, decompressed as it is read; its CRC is checked when it
        is read to the end."""
        return io.BufferedReader(_MemberReader(self, k), buffer_size=_STEP)

    def _raw(self, k: int) -> memoryview:
        """The compressed bytes of member ``k`` (a view, no copy)."""
        off, size = int(self.offset[k]), int(self.csize[k])
        head = self.data[off: off + _LOCAL.size] if off >= 0 else b""
        if len(head) < _LOCAL.size:
            raise zipfile.BadZipFile("truncated local header")
        sig, name_len, extra_len = _LOCAL.unpack(head)
        if sig != b"PK\x03\x04":
            raise zipfile.BadZipFile("Bad magic number for file header")
        start = off + _LOCAL.size + name_len + extra_len
        raw = self.data[start: start + size]
        if len(raw) < size:
            raise zipfile.BadZipFile("truncated member data")
        return raw


def _zip64(extra: memoryview, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    """The 64-bit sizes and offset of a ZIP64 extra field, for those marked 0xFFFFFFFF."""
    p = 0
    while p + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, p)
        if tag == 1:
            values = list(struct.unpack_from(f"<{size // 8}Q", extra, p + 4))
            if usize == _FULL32:
                usize = values.pop(0)
            if csize == _FULL32:
                csize = values.pop(0)
            if offset == _FULL32:
                offset = values.pop(0)
            return usize, csize, offset
        p += 4 + size
    raise zipfile.BadZipFile("corrupt ZIP64 extra field")


def _inflate(raw: memoryview, want: int) -> bytes:
    """At most ``want`` bytes of the raw deflate stream ``raw``, fed to zlib in small steps
    (zlib copies what it has not consumed, so a large input would be copied whole)."""
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    parts: list[bytes] = []
    got = pos = 0
    while got < want and not d.eof:
        if d.unconsumed_tail:
            chunk = d.unconsumed_tail
        elif pos < len(raw):
            chunk, pos = raw[pos: pos + _STEP], pos + _STEP
        else:
            break
        part = d.decompress(chunk, want - got)
        parts.append(part)
        got += len(part)
    return b"".join(parts)


class _MemberReader(io.RawIOBase):
    """Raw stream of one member: never yields more than its declared size."""

    def __init__(self, table: MemberTable, k: int) -> None:
        self._name, self._crc_expected = table.names[k], int(table.crc[k])
        self._raw = table._raw(k)
        self._left = int(table.usize[k])
        self._zlib = zlib.decompressobj(-zlib.MAX_WBITS) \
            if table.method[k] == zipfile.ZIP_DEFLATED else None
        self._pos = self._out = self._crc = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._out

    def readinto(self, b) -> int:
        n = min(len(b), self._left)
        if n <= 0:
            return 0
        chunk = self._next(n)
        if not chunk:
            raise zipfile.BadZipFile(f"member {self._name!r} ends before its declared size")
        b[: len(chunk)] = chunk
        self._left -= len(chunk)
        self._out += len(chunk)
        self._crc = zlib.crc32(chunk, self._crc)
        if self._left == 0 and self._crc != self._crc_expected:
            raise zipfile.BadZipFile(f"Bad CRC-32 for file {self._name!r}")
        return len(chunk)

    def _next(self, n: int) -> bytes:
        if self._zlib is None:
            chunk = bytes(self._raw[self._pos: self._pos + n])
            self._pos += len(chunk)
            return chunk
        while not self._zlib.eof:
            if self._zlib.unconsumed_tail:
                data = self._zlib.unconsumed_tail
            elif self._pos < len(self._raw):
                data = self._raw[self._pos: self._pos + _STEP]
                self._pos += len(data)
            else:
                break
            chunk = self._zlib.decompress(data, n)
            if chunk:
                return chunk
        return b""
