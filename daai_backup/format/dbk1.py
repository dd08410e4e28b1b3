"""DBK1: the encrypted backup file format, and detection of legacy plaintext ``.gz`` files.

DBK1 is Tink's AES-GCM-HKDF streaming AEAD built on ``cryptography``'s ``AESGCM``, with the
DBK1 header as the associated data. ``docs/format.md`` is the specification (byte layout, key
schedule, MUST rules, test vectors); this module implements it::

    file          = header || segment_0 || ... || segment_n
    segment key   = HKDF-SHA256(ikm=tenant key, salt=header.salt, info=header bytes, L=32)
    nonce_i       = header.nonce_prefix (7) || uint32_be(i) || last_flag (1)
    segment_i     = AES-256-GCM(segment key, nonce_i, plaintext_i, aad="")  (ciphertext || tag)

Every plaintext segment holds exactly ``segment_size`` bytes except the last one, which
holds 0..segment_size bytes and is the only one sealed with ``last_flag = 1``.

Both directions stream: a writer holds at most one segment, a reader at most two.

Writers write version 2, whose header also carries a content type and the object's file name;
readers read versions 1 and 2. Because the header is authenticated, the name in a version 2
header binds the file to its name: :func:`check_name_binding` (applied by
:func:`open_plaintext`) refuses a file stored under any other name, so a renamed or copied
backup cannot pass for one of another time, label or id. Version 1 headers have no name; the
check falls back to their creation time (see the function).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import TYPE_CHECKING, BinaryIO, Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from daai_backup.errors import (
    ArchiveCorrupt,
    ArchiveError,
    InvalidName,
    NameMismatch,
    NotAnArchive,
    UnsupportedFormat,
    WrongTenant,
)
from daai_backup.format.keys import (
    FINGERPRINT_SIZE,
    Keyring,
    MasterKey,
    derive_tenant_key,
    validate_tenant_id,
)
from daai_backup.repository.names import BackupName

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "ENCRYPTED_SUFFIX",
    "LEGACY_SUFFIX",
    "ArchiveHeader",
    "ContentType",
    "EncryptingWriter",
    "check_name_binding",
    "detect_format",
    "open_plaintext",
    "read_header",
]

ENCRYPTED_SUFFIX: Final = ".gz.enc"
LEGACY_SUFFIX: Final = ".gz"

MAGIC: Final = b"DBK1"
GZIP_MAGIC: Final = b"\x1f\x8b"
FORMAT_VERSION: Final = 2  # what writers write
READ_VERSIONS: Final = (1, 2)  # what readers read
ALGORITHM_ID: Final = 1
ALGORITHM_NAME: Final = "AES256_GCM_HKDF_SHA256_STREAM"
DEFAULT_SEGMENT_SIZE: Final = 1024 * 1024  # chosen by measurement, see bench/RESULTS.md
MAX_SEGMENT_SIZE: Final = 64 * 1024 * 1024
SALT_SIZE: Final = 32
NONCE_PREFIX_SIZE: Final = 7
TAG_SIZE: Final = 16
MAX_SEGMENTS: Final = 2**32

# Offsets 0-66, the same in versions 1 and 2: magic, version, algorithm, header_length,
# segment_size, created_at_ms, fingerprint, salt, nonce_prefix. Then
#   version 1: tenant_length (1), tenant id
#   version 2: content_type (1), tenant_length (1), tenant id, name_length (1), name
_COMMON: Final = struct.Struct(f">4sBBHIq{FINGERPRINT_SIZE}s{SALT_SIZE}s{NONCE_PREFIX_SIZE}s")
_PREFIX_SIZE: Final = 8  # magic .. header_length: enough to detect, refuse and size a header
# Smallest and largest header_length: one- and 255-byte tenant ids (and names, version 2).
_HEADER_LENGTHS: Final = {
    1: (_COMMON.size + 1 + 1, _COMMON.size + 1 + 255),
    2: (_COMMON.size + 2 + 1 + 1 + 1, _COMMON.size + 2 + 255 + 1 + 255),
}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_TENANT_RE: Final = re.compile(rb"[a-z0-9-]{1,255}")
_OBJECT_NAME: Final = r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}"  # ASCII only, never a path
_OBJECT_NAME_RE: Final = re.compile(_OBJECT_NAME)
_OBJECT_NAME_BYTES_RE: Final = re.compile(_OBJECT_NAME.encode("ascii"))

_DAMAGED: Final = "the backup file is damaged or was altered: use another backup"
_TRUNCATED: Final = (
    "the backup file is truncated (it ends before its final segment): "
    "it is damaged or incomplete; use another backup"
)


class ContentType(IntEnum):
    """What a DBK1 file's plaintext is (version 2 header byte 67; version 1 holds only 1)."""

    BACKUP_ARCHIVE = 1
    """gzip of a mongodump archive: a backup (``*.gz.enc``)."""
    MANIFEST = 2
    """JSON: a backup's manifest (:mod:`daai_backup.repository.manifest`)."""
    CHANGE_SEGMENT = 3
    """gzip of raw BSON change events: a change segment (:mod:`daai_backup.capture`)."""
    LISTING_INDEX = 4
    """JSON: a tenant's listing index (:mod:`daai_backup.repository.index`)."""

    @property
    def label(self) -> str:
        """``backup-archive``, ``manifest``, ``change-segment`` or ``listing-index``."""
        return self.name.lower().replace("_", "-")


_CONTENT_TYPES: Final = frozenset(int(t) for t in ContentType)


@dataclass(frozen=True)
class ArchiveHeader:
    """What a DBK1 header says; readable without a key (``daai-backup inspect``).

    ``name`` is the file name the writer gave the object (version 2), None for version 1,
    whose header has no name. Nothing here is authenticated until the first segment is.
    """

    version: int
    algorithm: str
    key_fingerprint: str
    tenant_id: str
    created_at: datetime
    content_type: ContentType
    name: str | None


@dataclass(frozen=True)
class _Parsed:
    header: ArchiveHeader
    raw: bytes
    segment_size: int
    salt: bytes
    nonce_prefix: bytes


def detect_format(prefix: bytes) -> Literal["dbk1", "gzip"]:
    """Classify a file by its first bytes (4 are enough); raise NotAnArchive otherwise."""
    if prefix[:4] == MAGIC:
        return "dbk1"
    if prefix[:2] == GZIP_MAGIC:
        return "gzip"
    if not prefix:
        raise NotAnArchive("the file is empty: it is not a backup archive")
    raise NotAnArchive(
        "not a backup archive: the file starts with neither the DBK1 nor the gzip magic bytes"
    )


def _read_exact(source: BinaryIO, n: int) -> bytes:
    """Read up to ``n`` bytes, fewer only at EOF (``read`` may return short counts)."""
    first = source.read(n)
    if len(first) == n or not first:
        return first
    parts = [first]
    got = len(first)
    while got < n:
        more = source.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _ms(created_at: datetime) -> int:
    if created_at.tzinfo is None:
        raise ValueError("created_at must be timezone-aware (UTC)")
    return (created_at - _EPOCH) // timedelta(milliseconds=1)


def _validate_object_name(name: str, content_type: ContentType) -> None:
    """Refuse a name a version 2 header cannot hold, or a backup archive not named as one."""
    if not isinstance(name, str) or not _OBJECT_NAME_RE.fullmatch(name):
        raise InvalidName(
            f"{name!r} cannot be a DBK1 object name: use 1-255 characters of A-Z, a-z, 0-9, "
            "'.', '_' and '-', starting with a letter or digit"
        )
    if content_type is ContentType.BACKUP_ARCHIVE and not BackupName.parse(name).encrypted:
        raise InvalidName(f"{name!r} cannot name an encrypted backup: it must end in .gz.enc")


def _build_header(
    *,
    segment_size: int,
    created_ms: int,
    fingerprint: str,
    salt: bytes,
    nonce_prefix: bytes,
    tenant_id: str,
    content_type: ContentType,
    name: str,
) -> bytes:
    """A version 2 header (the only version written)."""
    tenant = tenant_id.encode("ascii")
    object_name = name.encode("ascii")
    common = _COMMON.pack(
        MAGIC,
        FORMAT_VERSION,
        ALGORITHM_ID,
        _COMMON.size + 2 + len(tenant) + 1 + len(object_name),
        segment_size,
        created_ms,
        bytes.fromhex(fingerprint),
        salt,
        nonce_prefix,
    )
    return (
        common
        + bytes((content_type, len(tenant)))
        + tenant
        + bytes((len(object_name),))
        + object_name
    )


def _parse_header(prefix: bytes, source: BinaryIO) -> _Parsed:
    """Parse a DBK1 header whose first bytes (``prefix``) are already read."""
    if len(prefix) < _PREFIX_SIZE:
        raise ArchiveCorrupt(_TRUNCATED)
    version, algorithm, header_length = prefix[4], prefix[5], int.from_bytes(prefix[6:8], "big")
    if version not in READ_VERSIONS:
        raise UnsupportedFormat(
            f"DBK1 format version {version} is not supported (this build reads versions "
            f"{' and '.join(map(str, READ_VERSIONS))}): upgrade daai-backup to read this backup"
        )
    if algorithm != ALGORITHM_ID:
        raise UnsupportedFormat(
            f"DBK1 algorithm id {algorithm} is not supported (this build knows {ALGORITHM_ID}, "
            f"{ALGORITHM_NAME}): upgrade daai-backup to read this backup"
        )
    shortest, longest = _HEADER_LENGTHS[version]
    if not shortest <= header_length <= longest:
        raise ArchiveCorrupt(_DAMAGED)
    rest = _read_exact(source, header_length - _PREFIX_SIZE)
    raw = prefix[:_PREFIX_SIZE] + rest
    if len(raw) < header_length:
        raise ArchiveCorrupt(_TRUNCATED)
    (_, _, _, _, segment_size, created_ms, fingerprint, salt, nonce_prefix) = _COMMON.unpack_from(
        raw
    )
    at = _COMMON.size
    if version == 1:
        content_byte = int(ContentType.BACKUP_ARCHIVE)
    else:
        content_byte = raw[at]
        at += 1
        if content_byte not in _CONTENT_TYPES:
            raise UnsupportedFormat(
                f"DBK1 content type {content_byte} is not known to this build: upgrade "
                "daai-backup to read this file"
            )
    tenant_length = raw[at]
    tenant = raw[at + 1 : at + 1 + tenant_length]
    tail = raw[at + 1 + tenant_length :]
    name: bytes | None = None
    if version == 1:
        well_formed = not tail
    else:
        name = tail[1:]
        well_formed = (
            len(tail) >= 1
            and len(name) == tail[0]
            and _OBJECT_NAME_BYTES_RE.fullmatch(name) is not None
        )
    if (
        not well_formed
        or len(tenant) != tenant_length
        or not _TENANT_RE.fullmatch(tenant)
        or not 0 < segment_size <= MAX_SEGMENT_SIZE
    ):
        raise ArchiveCorrupt(_DAMAGED)
    try:
        created_at = _EPOCH + timedelta(milliseconds=created_ms)
    except OverflowError as exc:
        raise ArchiveCorrupt(_DAMAGED) from exc
    header = ArchiveHeader(
        version=version,
        algorithm=ALGORITHM_NAME,
        key_fingerprint=fingerprint.hex(),
        tenant_id=tenant.decode("ascii"),
        created_at=created_at,
        content_type=ContentType(content_byte),
        name=None if name is None else name.decode("ascii"),
    )
    return _Parsed(header, raw, segment_size, salt, nonce_prefix)


def _segment_aead(tenant_key: bytes, salt: bytes, header: bytes) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=header)
    return AESGCM(hkdf.derive(tenant_key))


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def read_header(source: BinaryIO) -> ArchiveHeader | None:
    """The DBK1 header of ``source`` (consumed), or None for a legacy gzip file. No key needed.

    The header is not authenticated yet (that needs the key and the first segment), and the
    caller checks it against the file's name with :func:`check_name_binding`.
    """
    prefix = _read_exact(source, _PREFIX_SIZE)
    if detect_format(prefix) == "gzip":
        return None
    return _parse_header(prefix, source).header


def _when(moment: datetime) -> str:
    spec = "milliseconds" if moment.microsecond else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def check_name_binding(header: ArchiveHeader, filename: str) -> None:
    """Refuse a DBK1 file found under ``filename`` when its header says it is another file.

    The one place this rule lives (``docs/format.md``, "Name binding"); :func:`open_plaintext`
    applies it before returning. Raises NameMismatch:

    - version 2: the header's name MUST equal ``filename``. The header is authenticated, so
      a renamed or copied file cannot pass and an edited header cannot decrypt.
    - version 1 (no name in the header): ``filename`` MUST be a ``.gz.enc`` backup name whose
      time is the header's ``created_at`` (this product's version 1 writer set it to exactly
      the name's time). That catches a re-dated copy; a copy with another label or id and
      the same time passes: version 1 cannot tell.
    """
    if header.name is not None:
        if filename != header.name:
            raise NameMismatch(
                f"{filename!r} is not the file its name claims: its header says it is "
                f"{header.name!r}, so it was renamed or copied; use the original or another "
                "backup"
            )
        return
    claimed = None
    with contextlib.suppress(InvalidName):
        claimed = BackupName.parse(filename)
    made = _when(header.created_at)
    if claimed is None or not claimed.encrypted:
        raise NameMismatch(
            f"{filename!r} is not named as an encrypted backup, but its header says it is one "
            f"made at {made}: it was renamed or copied; use the original or another backup"
        )
    if claimed.taken_at != header.created_at:
        raise NameMismatch(
            f"{filename!r} claims a backup taken at {_when(claimed.taken_at)}, but its header "
            f"says {made}: it was renamed or copied; use the original or another backup"
        )


def _write_all(sink: BinaryIO, data: Buffer) -> None:
    view = memoryview(data)
    written = sink.write(view)
    # A raw sink may write less than asked; a buffered one returns len or None.
    while written is not None and written < len(view):
        view = view[written:]
        written = sink.write(view)


class EncryptingWriter(io.BufferedIOBase, BinaryIO):
    """A writable file whose bytes land in ``sink`` as a DBK1 archive.

    ``close()`` seals the final segment and flushes ``sink`` but never closes it. Leaving a
    ``with`` block by an exception does *not* seal the archive, so a failed backup can never
    look complete: the partial file fails to decrypt as truncated. The same holds for a
    writer that is garbage-collected without ``close()``.

    The header is always version 2: ``name`` MUST be the object's final file name in the
    tenant's folder (readers refuse the file under any other name) and ``content_type`` says
    what the plaintext is; a backup archive's name must be an encrypted backup name.

    ``_salt``, ``_nonce_prefix`` and ``_segment_size`` exist only for test vectors and tests;
    production code MUST leave them unset (a fresh random salt and nonce prefix per file).
    """

    def __init__(
        self,
        sink: BinaryIO,
        key: MasterKey,
        tenant_id: str,
        created_at: datetime | None = None,
        *,
        name: str,
        content_type: ContentType,
        _salt: bytes | None = None,
        _nonce_prefix: bytes | None = None,
        _segment_size: int = DEFAULT_SEGMENT_SIZE,
    ) -> None:
        super().__init__()
        self._sink = sink
        self._buf = bytearray()
        validate_tenant_id(tenant_id)
        content_type = ContentType(content_type)
        _validate_object_name(name, content_type)
        if not 0 < _segment_size <= MAX_SEGMENT_SIZE:
            raise ValueError(f"segment size must be 1..{MAX_SEGMENT_SIZE}")
        salt = os.urandom(SALT_SIZE) if _salt is None else _salt
        nonce_prefix = os.urandom(NONCE_PREFIX_SIZE) if _nonce_prefix is None else _nonce_prefix
        if len(salt) != SALT_SIZE or len(nonce_prefix) != NONCE_PREFIX_SIZE:
            raise ValueError("bad salt or nonce prefix length")
        header = _build_header(
            segment_size=_segment_size,
            created_ms=_ms(created_at or datetime.now(UTC)),
            fingerprint=key.fingerprint,
            salt=salt,
            nonce_prefix=nonce_prefix,
            tenant_id=tenant_id,
            content_type=content_type,
            name=name,
        )
        self._aead = _segment_aead(derive_tenant_key(key, tenant_id), salt, header)
        self._nonce_prefix = nonce_prefix
        self._segment_size = _segment_size
        self._index = 0
        self._sealed = False
        _write_all(sink, header)

    def writable(self) -> bool:
        return True

    def _emit(self, plaintext: bytes | bytearray | memoryview, last: bool) -> None:
        if self._index >= MAX_SEGMENTS:
            raise ArchiveError("backup too large for one DBK1 file (2^32 segments)")
        nonce = _nonce(self._nonce_prefix, self._index, last)
        # encrypt() returns fresh bytes, so a sink may keep a reference to what it is given.
        _write_all(self._sink, self._aead.encrypt(nonce, plaintext, None))
        self._index += 1

    def write(self, data: Buffer) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError("write to a closed EncryptingWriter")
        view = memoryview(data).cast("B")
        total = len(view)
        size = self._segment_size
        offset = 0
        while offset < total:
            if len(self._buf) == size:
                # A full segment followed by more data: it is not the last one.
                self._emit(self._buf, last=False)
                self._buf.clear()
            if not self._buf and total - offset > size:
                # Whole segments straight from the caller's buffer, no copy.
                self._emit(view[offset : offset + size], last=False)
                offset += size
                continue
            take = min(size - len(self._buf), total - offset)
            self._buf += view[offset : offset + take]
            offset += take
        return total

    def flush(self) -> None:
        # Only whole non-final segments can leave early; the buffer is held on purpose.
        if not self.closed and hasattr(self._sink, "flush"):
            self._sink.flush()

    def close(self) -> None:
        """Seal the last segment and flush the sink (which stays open)."""
        if self.closed:
            return
        try:
            self._emit(self._buf, last=True)
            self._buf.clear()
            self._sealed = True
            if hasattr(self._sink, "flush"):
                self._sink.flush()
        finally:
            super().close()

    def abort(self) -> None:
        """Close without sealing: what was written stays an invalid (truncated) archive."""
        self._buf.clear()
        super().close()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:
        # With bad arguments __init__ never ran: there is nothing to abort.
        if hasattr(self, "_buf") and not self.closed:
            self.abort()


class _DecryptingRaw(io.RawIOBase):
    """Plaintext of DBK1 segments, checked one segment at a time."""

    def __init__(self, source: BinaryIO, aead: AESGCM, parsed: _Parsed) -> None:
        super().__init__()
        self._source = source
        self._aead = aead
        self._nonce_prefix = parsed.nonce_prefix
        self._chunk_size = parsed.segment_size + TAG_SIZE
        self._next = _read_exact(source, self._chunk_size)  # one segment of lookahead
        self._index = 0
        self._plain = memoryview(b"")
        self._pos = 0
        self._done = False
        self._error: ArchiveCorrupt | None = None

    def readable(self) -> bool:
        return True

    def _advance(self) -> None:
        chunk = self._next
        if len(chunk) == self._chunk_size:
            self._next = _read_exact(self._source, self._chunk_size)
            last = not self._next
        else:
            self._next = b""
            last = True
        if len(chunk) < TAG_SIZE:
            raise ArchiveCorrupt(_TRUNCATED)
        try:
            plain = self._aead.decrypt(_nonce(self._nonce_prefix, self._index, last), chunk, None)
        except InvalidTag as exc:
            raise ArchiveCorrupt(self._diagnose(chunk, last)) from exc
        self._index += 1
        self._plain = memoryview(plain)
        self._pos = 0
        self._done = last

    def _diagnose(self, chunk: bytes, last: bool) -> str:
        """Tell a stream cut at a segment boundary (a valid non-final segment) from damage."""
        if last and len(chunk) == self._chunk_size:
            try:
                self._aead.decrypt(_nonce(self._nonce_prefix, self._index, False), chunk, None)
            except InvalidTag:
                return _DAMAGED
            return _TRUNCATED
        return _DAMAGED

    def readinto(self, buffer: Buffer) -> int:
        if self._error is not None:
            raise self._error
        out = memoryview(buffer).cast("B")
        try:
            while self._pos >= len(self._plain):
                if self._done:
                    return 0
                self._advance()
        except ArchiveCorrupt as exc:
            self._error = exc
            raise
        n = min(len(out), len(self._plain) - self._pos)
        out[:n] = self._plain[self._pos : self._pos + n]
        self._pos += n
        return n


class _ReplayRaw(io.RawIOBase):
    """The bytes already read for detection, then the rest of ``source``, unchanged."""

    def __init__(self, prefix: bytes, source: BinaryIO) -> None:
        super().__init__()
        self._prefix = memoryview(prefix)
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Buffer) -> int:
        out = memoryview(buffer).cast("B")
        if self._prefix:
            n = min(len(out), len(self._prefix))
            out[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._source.read(len(out))
        out[: len(data)] = data
        return len(data)


def open_plaintext(
    source: BinaryIO,
    keyring: Keyring,
    tenant_id: str,
    *,
    name: str | None,
    encrypted: bool | None = None,
    content_type: ContentType = ContentType.BACKUP_ARCHIVE,
) -> BinaryIO:
    """A readable stream of the plaintext (gzip) bytes of a DBK1 or legacy ``.gz`` file.

    Raises at once for NotAnArchive, UnsupportedFormat, WrongTenant, NameMismatch and
    WrongKey; raises ArchiveCorrupt from ``read`` where a segment fails authentication or the
    file ends early. A legacy gzip file needs no key. The returned stream does not close
    ``source``.

    ``name`` is the file name the bytes were found under: a DBK1 header that disagrees with
    it is refused (:func:`check_name_binding`). It is required so that no reader forgets it;
    ``None`` says the name is unknown (a local file under a name of the user's choosing) and
    skips the check. A legacy gzip file has no header, so nothing binds its name.

    ``encrypted=True`` says the file is known to be DBK1 (its name ends ``.gz.enc``): plain
    gzip bytes are then refused as ``ArchiveCorrupt``. Without it, anyone able to write to
    storage could swap an encrypted backup for unauthenticated plaintext of their choosing.

    ``content_type`` is what the caller expects the plaintext to be; a DBK1 file holding
    anything else is refused (``ArchiveCorrupt``).
    """
    validate_tenant_id(tenant_id)
    prefix = _read_exact(source, _PREFIX_SIZE)
    if detect_format(prefix) == "gzip":
        if encrypted:
            raise ArchiveCorrupt(
                "this backup's name says it is encrypted but its content is plain gzip: it "
                "was replaced or altered; use another backup"
            )
        return io.BufferedReader(_ReplayRaw(prefix, source))
    parsed = _parse_header(prefix, source)
    if parsed.header.tenant_id != tenant_id:
        raise WrongTenant(
            f"this backup belongs to tenant {parsed.header.tenant_id!r}, not {tenant_id!r}: "
            f"pick a backup from {tenant_id!r}'s own list"
        )
    if name is not None:
        check_name_binding(parsed.header, name)
    expected = ContentType(content_type)
    if parsed.header.content_type != expected:
        raise ArchiveCorrupt(
            f"this file holds a {parsed.header.content_type.label.replace('-', ' ')}, not a "
            f"{expected.label.replace('-', ' ')}: it was replaced or altered; use another file"
        )
    master = keyring.find(parsed.header.key_fingerprint)
    aead = _segment_aead(derive_tenant_key(master, tenant_id), parsed.salt, parsed.raw)
    return io.BufferedReader(_DecryptingRaw(source, aead, parsed))
