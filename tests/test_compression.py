"""gzip writer/reader: standard single-member gzip; every decoder failure is ArchiveCorrupt."""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daai_backup.errors import ArchiveCorrupt
from daai_backup.format.compression import open_gzip_reader, open_gzip_writer

DATA = b"".join(b"{'_id': %d, 'name': 'tenant user %d'}\n" % (i, i % 97) for i in range(20000))


def compress(data: bytes, *, pieces: int = 7) -> bytes:
    sink = io.BytesIO()
    with open_gzip_writer(sink) as gz:
        step = max(1, len(data) // pieces)
        for i in range(0, len(data), step):
            gz.write(data[i : i + step])
    assert not sink.closed
    return sink.getvalue()


def test_writes_one_standard_gzip_member() -> None:
    blob = compress(DATA)
    assert blob[:2] == b"\x1f\x8b"
    d = zlib.decompressobj(wbits=31)
    assert d.decompress(blob) == DATA
    assert d.eof
    assert d.unused_data == b""  # exactly one member, nothing after it
    assert gzip.decompress(blob) == DATA
    assert len(blob) < len(DATA) // 3


def test_gunzip_reads_it() -> None:
    """The real gunzip (Debian's gzip, always installed here) reads the output."""
    out = subprocess.run(["gunzip", "-c"], input=compress(DATA), capture_output=True, check=True)
    assert out.stdout == DATA


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=5000), read_size=st.integers(1, 4096))
def test_round_trip(data: bytes, read_size: int) -> None:
    reader = open_gzip_reader(io.BytesIO(compress(data)))
    out = bytearray()
    while chunk := reader.read(read_size):
        out += chunk
    assert bytes(out) == data


def test_reads_stdlib_gzip_and_copyfileobj() -> None:
    out = io.BytesIO()
    shutil.copyfileobj(open_gzip_reader(io.BytesIO(gzip.compress(DATA, 6))), out)
    assert out.getvalue() == DATA


def test_reader_does_not_close_source() -> None:
    source = io.BytesIO(compress(DATA))
    with open_gzip_reader(source) as r:
        r.read()
    assert not source.closed


def _read_all(blob: bytes) -> bytes:
    return open_gzip_reader(io.BytesIO(blob)).read()


@pytest.mark.parametrize("cut", [1, 5, 10, 20, 100, -9, -8, -4, -1])
def test_truncated_stream_is_archive_corrupt(cut: int) -> None:
    blob = compress(DATA)
    with pytest.raises(ArchiveCorrupt) as err:
        _read_all(blob[:cut])
    assert "\n" not in str(err.value)
    assert "use another backup" in str(err.value)


def test_empty_input_is_archive_corrupt_or_empty() -> None:
    # An empty stream is "no gzip member at all"; the reader yields nothing, like gzip.
    assert _read_all(b"") == b""


@pytest.mark.parametrize("pos", [0, 3, 40, 200, -6, -2])
def test_flipped_byte_is_archive_corrupt(pos: int) -> None:
    blob = bytearray(compress(DATA))
    blob[pos] ^= 0x55
    with pytest.raises(ArchiveCorrupt):
        _read_all(bytes(blob))


def test_crc_mismatch_is_archive_corrupt() -> None:
    blob = bytearray(compress(DATA))
    blob[-8] ^= 0x01  # CRC32 in the trailer
    with pytest.raises(ArchiveCorrupt, match="CRC"):
        _read_all(bytes(blob))


def test_not_gzip_is_archive_corrupt() -> None:
    with pytest.raises(ArchiveCorrupt):
        _read_all(b"this is not gzip at all")


def test_source_errors_pass_through_untranslated() -> None:
    class Failing(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b: memoryview) -> int:  # type: ignore[override]
            raise ConnectionResetError("network went away")

    with pytest.raises(ConnectionResetError):
        open_gzip_reader(Failing()).read()  # type: ignore[arg-type]


def test_full_pipeline_gzip_in_dbk1_and_tamper_surfaces_as_archive_corrupt() -> None:
    from daai_backup.format.dbk1 import ContentType, EncryptingWriter, open_plaintext
    from daai_backup.format.keys import Keyring, MasterKey

    key = MasterKey(bytes(32))
    sink = io.BytesIO()
    name = "manual_20260101T000000Z_0badcafe.gz.enc"
    with EncryptingWriter(
        sink, key, "acme", name=name, content_type=ContentType.BACKUP_ARCHIVE, _segment_size=4096
    ) as enc:
        with open_gzip_writer(enc) as gz:
            gz.write(DATA)
        assert not enc.closed
    blob = sink.getvalue()
    ring = Keyring(key, [])
    plain = open_gzip_reader(open_plaintext(io.BytesIO(blob), ring, "acme", name=name))
    assert plain.read() == DATA
    bad = bytearray(blob)
    bad[len(bad) // 2] ^= 0x04
    reader = open_gzip_reader(open_plaintext(io.BytesIO(bytes(bad)), ring, "acme", name=name))
    with pytest.raises(ArchiveCorrupt, match="damaged or was altered"):
        reader.read()
