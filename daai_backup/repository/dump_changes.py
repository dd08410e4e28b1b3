"""``<backup>.changes``: the change events of a backup's dump, sealed like the backup.

DBK1 version 2, content type ``CHANGE_SEGMENT`` (3), the tenant's key, the object's own name
(``<backup file>.changes``) in the header; plaintext: gzip of the events as consecutive BSON
documents exactly as the change stream sent them, in stream order (the same plaintext as a
change segment of continuous capture). The manifest's ``changes`` (``ChangesFacts``) holds
their count and checksum, checked when they are read. ``docs/format.md`` specifies it.
"""

from __future__ import annotations

import hashlib
import io
import struct
from collections.abc import Iterator, Sequence
from typing import Final

from daai_backup.errors import ArchiveCorrupt
from daai_backup.format.compression import open_gzip_reader, open_gzip_writer
from daai_backup.format.dbk1 import ContentType, EncryptingWriter, open_plaintext
from daai_backup.format.keys import Keyring, MasterKey
from daai_backup.repository.folder import BackupFolder
from daai_backup.repository.layout import changes_name
from daai_backup.repository.manifest import ChangesFacts

CHECKSUM_HEX: Final = 16
MAX_EVENT_BYTES: Final = 64 * 1024 * 1024
_LENGTH: Final = struct.Struct("<i")


def seal_changes(
    master: MasterKey,
    tenant_id: str,
    backup_file: str,
    after: tuple[int, int],
    events: Sequence[bytes],
) -> tuple[ChangesFacts, bytes]:
    """The facts for the manifest and the object's bytes."""
    digest = hashlib.sha256()
    raw = io.BytesIO()
    with open_gzip_writer(raw) as gz:
        for event in events:
            digest.update(event)
            gz.write(event)
    facts = ChangesFacts(after, len(events), digest.hexdigest()[:CHECKSUM_HEX])
    sink = io.BytesIO()
    with EncryptingWriter(
        sink,
        master,
        tenant_id,
        name=changes_name(backup_file),
        content_type=ContentType.CHANGE_SEGMENT,
    ) as writer:
        writer.write(raw.getvalue())
    return facts, sink.getvalue()


def read_changes(
    folder: BackupFolder,
    keyring: Keyring,
    tenant_id: str,
    backup_file: str,
    facts: ChangesFacts,
) -> Iterator[bytes]:
    """The raw events of ``<backup_file>.changes``; ``ArchiveCorrupt`` if they are not what
    the manifest says (count, checksum), after every DBK1 check."""
    name = changes_name(backup_file)
    digest = hashlib.sha256()
    count = 0
    with folder.open_changes(backup_file) as source:
        plain = open_plaintext(
            source,
            keyring,
            tenant_id,
            name=name,
            encrypted=True,
            content_type=ContentType.CHANGE_SEGMENT,
        )
        stream = open_gzip_reader(plain)
        while head := stream.read(4):
            if len(head) < 4:
                raise ArchiveCorrupt(f"{name!r} ends inside an event")
            (length,) = _LENGTH.unpack(head)
            if not 5 <= length <= MAX_EVENT_BYTES:
                raise ArchiveCorrupt(f"{name!r} holds a malformed event")
            body = stream.read(length - 4)
            if len(body) != length - 4:
                raise ArchiveCorrupt(f"{name!r} ends inside an event")
            digest.update(head + body)
            count += 1
            yield head + body
    if count != facts.events or digest.hexdigest()[:CHECKSUM_HEX] != facts.checksum:
        raise ArchiveCorrupt(
            f"{name!r} does not hold what the backup's manifest says ({count} events, "
            f"{facts.events} expected): it was altered; restore another backup"
        )
