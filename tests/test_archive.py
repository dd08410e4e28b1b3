"""DBK1: round trips, every tamper case, tenants, keys, names, legacy gzip, bounded memory."""

from __future__ import annotations

import gc
import gzip
import io
import itertools
import shutil
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dbk1_vectors import header_v1, header_v2, parse_v2, seal_v1
from hypothesis import given, settings
from hypothesis import strategies as st

from daai_backup.errors import (
    ArchiveCorrupt,
    ArchiveError,
    InvalidName,
    NameMismatch,
    NotAnArchive,
    UnsupportedFormat,
    WrongKey,
    WrongTenant,
)
from daai_backup.format.dbk1 import (
    ENCRYPTED_SUFFIX,
    LEGACY_SUFFIX,
    ArchiveHeader,
    ContentType,
    EncryptingWriter,
    check_name_binding,
    detect_format,
    open_plaintext,
    read_header,
)
from daai_backup.format.keys import Keyring, MasterKey

KEY = MasterKey(bytes(range(32)))
OTHER = MasterKey(bytes(range(1, 33)))
RING = Keyring(KEY, [])
SEG = 16
TAG = 16
DAMAGED = "damaged or was altered"
WHEN = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
NAME = "manual_20260102T030405Z_0badcafe.gz.enc"
BACKUP = ContentType.BACKUP_ARCHIVE
RENAMED = "15-day_20991231T000000Z_aaaaaa17.gz.enc"


def seal(
    data: bytes,
    *,
    tenant: str = "acme",
    key: MasterKey = KEY,
    seg: int = SEG,
    name: str = NAME,
    content_type: ContentType = BACKUP,
) -> bytes:
    sink = io.BytesIO()
    with EncryptingWriter(
        sink, key, tenant, WHEN, name=name, content_type=content_type, _segment_size=seg
    ) as w:
        w.write(data)
    assert not sink.closed
    return sink.getvalue()


def unseal(
    blob: bytes,
    *,
    tenant: str = "acme",
    ring: Keyring = RING,
    name: str | None = NAME,
    content_type: ContentType = BACKUP,
) -> bytes:
    return open_plaintext(
        io.BytesIO(blob), ring, tenant, name=name, content_type=content_type
    ).read()


def header_len(blob: bytes) -> int:
    return int.from_bytes(blob[6:8], "big")


def segments(blob: bytes, seg: int = SEG) -> list[bytes]:
    body = blob[header_len(blob) :]
    return [body[i : i + seg + TAG] for i in range(0, len(body), seg + TAG)]


def n_segments(n: int, seg: int = SEG) -> int:
    return n // seg + (1 if n % seg or n == 0 else 0)


# --- round trips -------------------------------------------------------------------------

BOUNDARY_SIZES = sorted({0, 1, *(k * SEG + d for k in range(1, 5) for d in (-1, 0, 1))})


@pytest.mark.parametrize("n", BOUNDARY_SIZES)
def test_round_trip_at_every_segment_boundary(n: int) -> None:
    data = bytes((i * 7) % 251 for i in range(n))
    blob = seal(data)
    assert len(blob) == header_len(blob) + n + TAG * n_segments(n)
    assert unseal(blob) == data


@settings(max_examples=150, deadline=None)
@given(
    data=st.binary(max_size=300),
    cuts=st.lists(st.integers(0, 300), max_size=8),
    read_size=st.integers(1, 70),
    seg=st.sampled_from([1, 3, 16, 64]),
)
def test_round_trip_any_write_split_and_read_size(
    data: bytes, cuts: list[int], read_size: int, seg: int
) -> None:
    sink = io.BytesIO()
    w = EncryptingWriter(sink, KEY, "t-1", name=NAME, content_type=BACKUP, _segment_size=seg)
    points = sorted({c for c in cuts if c <= len(data)} | {0, len(data)})
    for a, b in itertools.pairwise(points):
        assert w.write(memoryview(data)[a:b]) == b - a
    w.close()
    blob = sink.getvalue()
    assert len(blob) == header_len(blob) + len(data) + TAG * n_segments(len(data), seg)
    reader = open_plaintext(io.BytesIO(blob), RING, "t-1", name=NAME)
    out = bytearray()
    while chunk := reader.read(read_size):
        out += chunk
    assert bytes(out) == data


def test_default_segment_size_multi_segment_round_trip_and_copyfileobj() -> None:
    data = bytes(range(256)) * 9000  # ~2.2 MiB: more than two 1 MiB segments
    sink = io.BytesIO()
    with EncryptingWriter(sink, KEY, "acme", name=NAME, content_type=BACKUP) as w:
        w.write(data[:100])
        w.write(data[100:])
    out = io.BytesIO()
    shutil.copyfileobj(open_plaintext(io.BytesIO(sink.getvalue()), RING, "acme", name=NAME), out)
    assert out.getvalue() == data


def test_gzip_inside_dbk1_round_trip() -> None:
    data = b"mongodump archive bytes " * 5000
    sink = io.BytesIO()
    with (
        EncryptingWriter(sink, KEY, "acme", name=NAME, content_type=BACKUP) as enc,
        gzip.GzipFile(fileobj=enc, mode="wb") as gz,
    ):
        gz.write(data)
    plain = open_plaintext(io.BytesIO(sink.getvalue()), RING, "acme", name=NAME)
    with gzip.GzipFile(fileobj=plain, mode="rb") as gz:
        assert gz.read() == data


def test_fresh_salt_and_nonce_per_file() -> None:
    a, b = seal(b"same"), seal(b"same")
    ha, hb = a[: header_len(a)], b[: header_len(b)]
    assert ha[28:60] != hb[28:60]  # salt
    assert ha[60:67] != hb[60:67]  # nonce prefix
    assert a[header_len(a) :] != b[header_len(b) :]


# --- header ------------------------------------------------------------------------------


def test_read_header_needs_no_key() -> None:
    blob = seal(b"hello", tenant="tenant-42")
    header = read_header(io.BytesIO(blob))
    assert header == ArchiveHeader(
        version=2,
        algorithm="AES256_GCM_HKDF_SHA256_STREAM",
        key_fingerprint=KEY.fingerprint,
        tenant_id="tenant-42",
        created_at=WHEN,
        content_type=ContentType.BACKUP_ARCHIVE,
        name=NAME,
    )
    assert header.created_at.tzinfo is not None


def test_detect_and_suffixes() -> None:
    assert detect_format(b"DBK1\x01") == "dbk1"
    assert detect_format(b"\x1f\x8b\x08") == "gzip"
    assert ENCRYPTED_SUFFIX == ".gz.enc"
    assert LEGACY_SUFFIX == ".gz"


@pytest.mark.parametrize("blob", [b"", b"x", b"DB", b"PK\x03\x04zip", b"\x8b\x1f", b"dbk1...."])
def test_not_an_archive(blob: bytes) -> None:
    with pytest.raises(NotAnArchive) as err:
        open_plaintext(io.BytesIO(blob), RING, "acme", name=NAME)
    assert "\n" not in str(err.value)
    with pytest.raises(NotAnArchive):
        read_header(io.BytesIO(blob))
    if not blob:
        assert "empty" in str(err.value)


@pytest.mark.parametrize(("offset", "value"), [(4, 3), (4, 0), (4, 255), (5, 2), (5, 0)])
def test_unknown_version_or_algorithm_refused(offset: int, value: int) -> None:
    blob = bytearray(seal(b"data"))
    blob[offset] = value
    with pytest.raises(UnsupportedFormat, match="upgrade daai-backup"):
        unseal(bytes(blob))
    with pytest.raises(UnsupportedFormat):
        read_header(io.BytesIO(bytes(blob)))


def test_writer_refuses_bad_tenant_and_naive_time() -> None:
    with pytest.raises(InvalidName):
        EncryptingWriter(io.BytesIO(), KEY, "Bad/Tenant", name=NAME, content_type=BACKUP)
    with pytest.raises(ValueError, match="timezone"):
        EncryptingWriter(
            io.BytesIO(), KEY, "acme", datetime(2026, 1, 1), name=NAME, content_type=BACKUP
        )


# --- tampering ---------------------------------------------------------------------------

PLAIN = bytes(range(50))  # 4 segments of 16: 16, 16, 16, 2 (last)


def test_truncation_anywhere_fails() -> None:
    blob = seal(PLAIN)
    for cut in range(len(blob)):
        with pytest.raises(ArchiveError) as err:
            unseal(blob[:cut])
        if cut >= 4:
            assert isinstance(err.value, ArchiveCorrupt), cut


def test_truncation_at_segment_boundary_says_truncated() -> None:
    for n in (PLAIN, PLAIN[:48]):  # last segment partial, last segment full
        blob = seal(n)
        hl = header_len(blob)
        for k in range(len(segments(blob))):
            with pytest.raises(ArchiveCorrupt, match="truncated"):
                unseal(blob[: hl + k * (SEG + TAG)])


def test_error_surfaces_on_read_after_good_data() -> None:
    blob = seal(PLAIN)
    reader = open_plaintext(
        io.BytesIO(blob[: header_len(blob) + 2 * (SEG + TAG)]), RING, "acme", name=NAME
    )
    assert reader.read(SEG) == PLAIN[:SEG]
    with pytest.raises(ArchiveCorrupt, match="truncated"):
        reader.read()
    with pytest.raises(ArchiveCorrupt):  # stays failed; never a quiet EOF
        reader.read()


def test_every_single_bit_flip_fails() -> None:
    blob = seal(PLAIN)
    name_at = 69 + len("acme")  # name_length, then the name
    for pos in range(len(blob)):
        for bit in (0x01, 0x80):
            bad = bytearray(blob)
            bad[pos] ^= bit
            with pytest.raises(ArchiveError) as err:
                unseal(bytes(bad))
            # Fields checked only by authentication or the name, and every ciphertext byte:
            if 6 <= pos < 20 or 28 <= pos < 67 or pos == 68 or name_at <= pos:
                assert isinstance(err.value, ArchiveCorrupt), pos
                message = str(err.value)
                assert DAMAGED in message or "truncated" in message or "renamed" in message
            if pos == 67:  # content type 0 or 0x81: unknown
                assert isinstance(err.value, UnsupportedFormat), pos


def test_segment_reordering_fails() -> None:
    blob = seal(PLAIN)
    hl = header_len(blob)
    s = segments(blob)
    for order in ([1, 0, 2, 3], [0, 2, 1, 3], [0, 1, 3, 2], [3, 1, 2, 0]):
        with pytest.raises(ArchiveCorrupt, match=DAMAGED):
            unseal(blob[:hl] + b"".join(s[i] for i in order))
    with pytest.raises(ArchiveCorrupt):  # a segment dropped from the middle
        unseal(blob[:hl] + s[0] + s[2] + s[3])


@pytest.mark.parametrize("extra", [b"\x00", b"x" * TAG, b"y" * (SEG + TAG)])
def test_extension_fails(extra: bytes) -> None:
    for plain in (PLAIN, PLAIN[:48]):
        blob = seal(plain)
        with pytest.raises(ArchiveCorrupt):
            unseal(blob + extra)


def test_extension_with_a_copied_final_segment_fails() -> None:
    blob = seal(PLAIN[:48])
    with pytest.raises(ArchiveCorrupt):
        unseal(blob + segments(blob)[-1])


def test_splicing_segments_between_files_fails() -> None:
    a, b = seal(PLAIN), seal(PLAIN)
    hl = header_len(a)
    with pytest.raises(ArchiveCorrupt):
        unseal(a[:hl] + segments(b)[0] + b"".join(segments(a)[1:]))


def test_forged_created_at_fails() -> None:
    blob = bytearray(seal(PLAIN))
    blob[12:20] = (0).to_bytes(8, "big")
    assert read_header(io.BytesIO(bytes(blob))) is not None  # parses, but ...
    with pytest.raises(ArchiveCorrupt, match=DAMAGED):
        unseal(bytes(blob))  # ... no longer authenticates


# --- version 2: content type and name, bound to the file ----------------------------------


def test_v2_header_reports_content_type_and_name() -> None:
    blob = seal(PLAIN)
    assert blob[4] == 2
    header = read_header(io.BytesIO(blob))
    assert header is not None
    assert header.version == 2
    assert header.content_type is ContentType.BACKUP_ARCHIVE
    assert header.name == NAME
    assert unseal(blob) == PLAIN


def test_reserved_content_type_round_trip_and_expected_type() -> None:
    manifest = seal(b'{"backups": []}', content_type=ContentType.MANIFEST, name="manifest.json")
    header = read_header(io.BytesIO(manifest))
    assert header is not None
    assert header.content_type is ContentType.MANIFEST
    assert header.content_type.label == "manifest"
    read = unseal(manifest, name="manifest.json", content_type=ContentType.MANIFEST)
    assert read == b'{"backups": []}'
    with pytest.raises(ArchiveCorrupt, match="holds a manifest, not a backup archive"):
        unseal(manifest, name="manifest.json")  # a restore expects a backup archive


@pytest.mark.parametrize("value", [0, 5, 255])
def test_unknown_content_type_refused(value: int) -> None:
    blob = bytearray(seal(PLAIN))
    blob[67] = value
    with pytest.raises(UnsupportedFormat, match=f"content type {value} .*upgrade daai-backup"):
        unseal(bytes(blob))
    with pytest.raises(UnsupportedFormat):
        read_header(io.BytesIO(bytes(blob)))


def _reframe(blob: bytes, **edits: object) -> bytes:
    """The same file with its header rebuilt (well-formed) from edited fields."""
    fields = parse_v2(blob)
    body = blob[header_len(blob) :]
    return header_v2(**{**fields, **edits}) + body  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("edit", "open_as"),
    [
        ({"segment_size": SEG + 1}, {}),
        ({"created_ms": 0}, {}),
        ({"salt": bytes(32)}, {}),
        ({"nonce_prefix": bytes(7)}, {}),
        ({"content_type": 2}, {"content_type": ContentType.MANIFEST}),
        ({"content_type": 3}, {"content_type": ContentType.CHANGE_SEGMENT}),
        ({"tenant_id": "acmf"}, {"tenant": "acmf"}),
        ({"name": RENAMED}, {"name": RENAMED}),
        ({"name": NAME[:-1] + "x"}, {"name": NAME[:-1] + "x"}),
        ({"name": "manual_20260102T030405Z_0badcafe.gz.enc2"}, {"name": None}),
        ({"version": 3}, {}),
    ],
    ids=lambda x: ",".join(map(str, x)),
)
def test_every_header_field_edit_fails_to_decrypt(
    edit: dict[str, object], open_as: dict[str, object]
) -> None:
    """Each field edited to another well-formed value, opened as the edit claims: the header
    is the segment key's HKDF info, so authentication fails (or the version is refused)."""
    blob = seal(PLAIN)
    assert _reframe(blob) == blob  # the test's own header builder is the format
    forged = _reframe(blob, **edit)
    with pytest.raises((ArchiveCorrupt, UnsupportedFormat)) as err:
        unseal(forged, **open_as)  # type: ignore[arg-type]
    if "version" not in edit:
        assert isinstance(err.value, ArchiveCorrupt)
        assert not isinstance(err.value, NameMismatch)
        assert DAMAGED in str(err.value)


def test_forged_fingerprint_in_v2_header_fails() -> None:
    blob = seal(PLAIN, key=OTHER)
    forged = _reframe(blob, fingerprint=bytes.fromhex(KEY.fingerprint))
    with pytest.raises(ArchiveCorrupt, match=DAMAGED):
        unseal(forged, ring=Keyring(OTHER, [KEY]))


def test_v2_reframed_as_v1_fails() -> None:
    """Dropping the name and content type (a downgrade to version 1) does not authenticate."""
    blob = seal(PLAIN)
    fields = parse_v2(blob)
    del fields["name"], fields["content_type"]
    downgraded = header_v1(**fields) + blob[header_len(blob) :]
    header = read_header(io.BytesIO(downgraded))
    assert header is not None
    assert header.version == 1
    with pytest.raises(ArchiveCorrupt, match=DAMAGED):
        unseal(downgraded, name=None)


@pytest.mark.parametrize(
    "header_edit",
    [
        lambda h: h[:-1] + b"/",  # a name byte outside the alphabet
        lambda h: h[:-1] + b"\xe9",  # not ASCII
        lambda h: h[: 69 + 4] + bytes((h[69 + 4] + 1,)) + h[69 + 4 + 1 :],  # name_length too long
        lambda h: h[: 69 + 4] + b"\x00" + h[69 + 4 + 1 :],  # name_length 0
        lambda h: h[:68] + b"\xff" + h[69:],  # tenant_length past the end
    ],
)
def test_malformed_v2_header_is_damaged(header_edit) -> None:  # type: ignore[no-untyped-def]
    blob = seal(PLAIN)
    hl = header_len(blob)
    with pytest.raises(ArchiveCorrupt, match=DAMAGED):
        unseal(header_edit(blob[:hl]) + blob[hl:], name=None)


def test_renamed_v2_file_is_refused_before_any_key_use() -> None:
    blob = seal(PLAIN)
    with pytest.raises(NameMismatch) as err:
        unseal(blob, name=RENAMED, ring=Keyring(None, []))  # no key: refused by name first
    message = str(err.value)
    assert RENAMED in message
    assert NAME in message
    assert "renamed or copied; use the original or another backup" in message
    assert "\n" not in message
    assert isinstance(err.value, ArchiveCorrupt)
    for other in (
        NAME.replace("manual", "pre-restore"),  # another label
        NAME.replace("0badcafe", "0badcaff"),  # another id
        NAME.replace("T030405Z", "T030406Z"),  # another time
        NAME.removesuffix(".enc"),  # named as plain gzip
        "copy-of-" + NAME,
    ):
        with pytest.raises(NameMismatch):
            unseal(blob, name=other)
    assert unseal(blob, name=None) == PLAIN  # the name is unknown: nothing to compare


def test_wrong_tenant_is_reported_before_the_name() -> None:
    with pytest.raises(WrongTenant):
        unseal(seal(PLAIN, tenant="tenant-a"), tenant="tenant-b", name=RENAMED)


def test_writer_requires_a_name_and_a_content_type() -> None:
    with pytest.raises(TypeError):
        EncryptingWriter(io.BytesIO(), KEY, "acme")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        EncryptingWriter(io.BytesIO(), KEY, "acme", name=NAME)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="ContentType"):
        EncryptingWriter(io.BytesIO(), KEY, "acme", name=NAME, content_type=9)  # type: ignore[arg-type]
    for bad in ("", "../" + NAME, "a/b", ".hidden", "x" * 256, "café", "a b", "a\x00"):
        with pytest.raises(InvalidName):
            EncryptingWriter(io.BytesIO(), KEY, "acme", name=bad, content_type=BACKUP)
    for not_a_backup in ("notes.txt", NAME.removesuffix(".enc"), "weekly_20260101_x.gz.enc"):
        with pytest.raises(InvalidName):
            EncryptingWriter(io.BytesIO(), KEY, "acme", name=not_a_backup, content_type=BACKUP)
    longest = "m" * 255
    blob = seal(b"", name=longest, content_type=ContentType.MANIFEST)
    assert read_header(io.BytesIO(blob)).name == longest  # type: ignore[union-attr]


# --- version 1 files: still read, bound by time -------------------------------------------

V1_TIME = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)  # whole seconds, as the v1 writer used
V1_NAME = "15-day_20260102T030405Z_3f9a1c2b.gz.enc"


def seal_v1_file(data: bytes = PLAIN, when: datetime = V1_TIME) -> bytes:
    return seal_v1(data, bytes(range(32)), "acme", when, segment_size=SEG)


def test_version_1_files_still_decrypt() -> None:
    blob = seal_v1_file()
    header = read_header(io.BytesIO(blob))
    assert header == ArchiveHeader(
        version=1,
        algorithm="AES256_GCM_HKDF_SHA256_STREAM",
        key_fingerprint=KEY.fingerprint,
        tenant_id="acme",
        created_at=V1_TIME,
        content_type=ContentType.BACKUP_ARCHIVE,
        name=None,
    )
    assert unseal(blob, name=V1_NAME) == PLAIN
    assert unseal(blob, name=None) == PLAIN
    blob_bad = bytearray(blob)
    blob_bad[-1] ^= 1
    with pytest.raises(ArchiveCorrupt, match=DAMAGED):
        unseal(bytes(blob_bad), name=V1_NAME)


def test_version_1_binding_by_time() -> None:
    blob = seal_v1_file()
    header = read_header(io.BytesIO(blob))
    assert header is not None
    check_name_binding(header, V1_NAME)
    # The limit of version 1: another label or id with the same time cannot be told apart.
    check_name_binding(header, "manual_20260102T030405Z_00000000.gz.enc")
    for redated in (
        "15-day_20991231T000000Z_3f9a1c2b.gz.enc",
        "pre-restore_20200101T000000Z_3f9a1c2b.gz.enc",
        "15-day_20260102T030406Z_3f9a1c2b.gz.enc",  # one second off
    ):
        with pytest.raises(NameMismatch, match="renamed or copied") as err:
            check_name_binding(header, redated)
        assert "2026-01-02T03:04:05Z" in str(err.value)
        with pytest.raises(NameMismatch):
            unseal(blob, name=redated)
    for not_encrypted in ("15-day_20260102T030405Z_3f9a1c2b.gz", "backup.bin"):
        with pytest.raises(NameMismatch, match="not named as an encrypted backup"):
            check_name_binding(header, not_encrypted)


def test_version_1_with_milliseconds_never_matches_a_name() -> None:
    """A v1 created_at with milliseconds (not written by this product) matches no name."""
    header = read_header(io.BytesIO(seal_v1_file(when=WHEN)))
    assert header is not None
    with pytest.raises(NameMismatch, match=r"2026-01-02T03:04:05\.678Z"):
        check_name_binding(header, V1_NAME)


# --- tenants and keys --------------------------------------------------------------------


def test_wrong_tenant_checked_from_header() -> None:
    blob = seal(PLAIN, tenant="tenant-a")
    with pytest.raises(WrongTenant) as err:
        unseal(blob, tenant="tenant-b")
    assert "tenant-a" in str(err.value)
    assert "tenant-b" in str(err.value)


def test_forged_tenant_in_header_fails_authentication() -> None:
    blob = seal(PLAIN, tenant="aaaa")
    forged = blob.replace(b"aaaa", b"bbbb", 1)
    assert read_header(io.BytesIO(forged)).tenant_id == "bbbb"  # type: ignore[union-attr]
    with pytest.raises(ArchiveCorrupt, match=DAMAGED):
        unseal(forged, tenant="bbbb")


def test_wrong_key_names_fingerprint() -> None:
    blob = seal(PLAIN, key=OTHER)
    with pytest.raises(WrongKey) as err:
        unseal(blob)
    msg = str(err.value)
    assert OTHER.fingerprint in msg
    assert KEY.fingerprint in msg
    assert "BACKUP_ENCRYPTION_PREVIOUS_KEYS" in msg


def test_forged_fingerprint_of_another_configured_key_fails() -> None:
    blob = seal(PLAIN, key=OTHER)
    forged = blob.replace(bytes.fromhex(OTHER.fingerprint), bytes.fromhex(KEY.fingerprint), 1)
    with pytest.raises(ArchiveCorrupt, match=DAMAGED):
        unseal(forged, ring=Keyring(OTHER, [KEY]))


def test_rotated_key_still_reads_old_archives() -> None:
    old_blob = seal(PLAIN, key=OTHER)
    ring = Keyring(KEY, [OTHER])
    assert unseal(old_blob, ring=ring) == PLAIN
    assert unseal(seal(PLAIN), ring=ring) == PLAIN
    assert unseal(old_blob, ring=Keyring(None, [OTHER])) == PLAIN


# --- legacy gzip -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 5, 100_000])
def test_legacy_gzip_passes_through_without_any_key(size: int) -> None:
    legacy = gzip.compress(bytes(size))
    assert read_header(io.BytesIO(legacy)) is None
    plain = open_plaintext(io.BytesIO(legacy), Keyring(None, []), "acme", name=None)
    assert plain.read() == legacy
    # No header, so nothing binds a legacy file's name: any name is accepted.
    renamed = open_plaintext(io.BytesIO(legacy), Keyring(None, []), "acme", name="x_1.gz")
    assert renamed.read() == legacy


def test_legacy_gzip_from_a_short_reading_source() -> None:
    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = data

        def readable(self) -> bool:
            return True

        def readinto(self, b: memoryview) -> int:  # type: ignore[override]
            n = min(3, len(b), len(self._data))
            b[:n] = self._data[:n]
            self._data = self._data[n:]
            return n

    legacy = gzip.compress(b"abc" * 1000)
    ring = Keyring(None, [])
    assert open_plaintext(Trickle(legacy), ring, "acme", name=None).read() == legacy  # type: ignore[arg-type]
    blob = seal(PLAIN)
    assert open_plaintext(Trickle(blob), RING, "acme", name=NAME).read() == PLAIN  # type: ignore[arg-type]


# --- failed writes never look complete ---------------------------------------------------


def test_exception_in_with_block_leaves_unsealed_archive() -> None:
    sink = io.BytesIO()
    w = EncryptingWriter(sink, KEY, "acme", name=NAME, content_type=BACKUP, _segment_size=SEG)

    def failing_backup() -> None:
        with w:
            w.write(PLAIN)
            raise RuntimeError("dump failed")

    with pytest.raises(RuntimeError):
        failing_backup()
    assert w.closed
    assert not sink.closed
    with pytest.raises(ArchiveCorrupt, match="truncated"):
        unseal(sink.getvalue())


def test_unclosed_writer_garbage_collected_is_not_sealed() -> None:
    sink = io.BytesIO()
    w = EncryptingWriter(sink, KEY, "acme", name=NAME, content_type=BACKUP, _segment_size=SEG)
    w.write(PLAIN)
    del w
    gc.collect()
    with pytest.raises(ArchiveCorrupt, match="truncated"):
        unseal(sink.getvalue())


def test_write_after_close_refused() -> None:
    w = EncryptingWriter(io.BytesIO(), KEY, "acme", name=NAME, content_type=BACKUP)
    w.close()
    w.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        w.write(b"x")


# --- bounded memory ----------------------------------------------------------------------

TOTAL = 64 * 1024 * 1024


def _generated(total: int, chunk: int = 256 * 1024) -> Iterator[bytes]:
    block = bytes(range(256)) * (chunk // 256)
    for _ in range(total // chunk):
        yield block


class _Discard(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        return len(memoryview(b))  # type: ignore[arg-type]


def test_constant_memory_encrypt_and_decrypt(tmp_path: Path) -> None:
    tracemalloc.start()
    try:
        with EncryptingWriter(_Discard(), KEY, "acme", name=NAME, content_type=BACKUP) as w:  # type: ignore[arg-type]
            for chunk in _generated(TOTAL):
                w.write(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, peak  # input is 64 MiB

    path = tmp_path / f"x{ENCRYPTED_SUFFIX}"
    with (
        path.open("wb") as f,
        EncryptingWriter(f, KEY, "acme", name=NAME, content_type=BACKUP) as w,  # type: ignore[arg-type]
    ):
        for chunk in _generated(TOTAL // 4):
            w.write(chunk)
    tracemalloc.start()
    try:
        total = 0
        with path.open("rb") as src:
            reader = open_plaintext(src, RING, "acme", name=NAME)
            while chunk := reader.read(64 * 1024):
                total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == TOTAL // 4
    assert peak < 8 * 1024 * 1024, peak
