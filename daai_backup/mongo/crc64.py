"""CRC-64/XZ, the checksum a mongodump archive stores per namespace.

Go's ``crc64.MakeTable(crc64.ECMA)``: reflected polynomial ``0xC96C5795D7870F42``, initial
value and final XOR all ones. ``fastcrc`` computes it in native code (about 6 GB/s here; a
pure-Python table loop manages a few MB/s, far too slow for a backup stream).
"""

from __future__ import annotations

from fastcrc import crc64 as _crc64

_MASK = (1 << 64) - 1


class Crc64:
    """An incremental CRC-64/XZ over a sequence of byte strings."""

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Fold ``data`` into the running checksum."""
        if data:
            self._value = _crc64.xz(data, initial=self._value)

    @property
    def value(self) -> int:
        """The checksum so far as an unsigned 64-bit integer (0 for no data)."""
        return self._value

    @property
    def signed(self) -> int:
        """The checksum as the signed int64 an archive stores."""
        return to_signed(self._value)


def to_signed(value: int) -> int:
    """Two's complement of an unsigned 64-bit value, as BSON int64 stores it."""
    value &= _MASK
    return value - (1 << 64) if value >= 1 << 63 else value


def to_unsigned(value: int) -> int:
    """The unsigned 64-bit value of a stored signed int64."""
    return value & _MASK
