"""Change segments and gap records in a tenant's folder: their names, bytes, coverage, reader.

Layout (``docs/format.md``, "Change segments")::

    db-changes/<start>-<end>_<events>_<checksum>.chg.enc     a change segment
    db-changes/<start>-<end>_<8 hex>.gap.json               a gap record

``<start>`` and ``<end>`` are cluster times written ``<t>.<i>`` with both numbers zero-padded
to 10 digits, so names sort by start time as text. A segment *covers* the closed range
``[start, end]``: it holds every change event of the tenant whose ``clusterTime`` lies in it
(or, for the first segment after a crash, the events it read again: readers deduplicate). A
segment with 0 events says "nothing happened in this range" (an idle tenant's heartbeat).
``<events>`` is the number of events and ``<checksum>`` the first 16 hex digits of the
SHA-256 of the uncompressed plaintext (the events' BSON, one after another). The name is
bound to the file by the DBK1 header, so a LIST gives the coverage, counts and checksums of a
tenant's history without a single GET, and they cannot be altered undetected.

The plaintext is gzip of the events as consecutive BSON documents exactly as the server sent
them (resume token ``_id``, ``clusterTime``, ``wallTime``, ``txnNumber``/``lsid``,
``operationType``, ``ns``, ``documentKey``, ``fullDocument`` of inserts and replaces,
``updateDescription``, DDL fields), in stream order.

Re-reading the same events after a crash writes segments that overlap stored ones; readers
deduplicate by (``clusterTime``, resume token), which identifies an event's position in the
stream. Nothing here is specific to one capture process: any number of overlapping segments
of one tenant read back as one history.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import secrets
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO, Final

import bson
from bson import Timestamp

from daai_backup.errors import ArchiveCorrupt, ChangesNotCovered, InvalidName, ObjectNotFound
from daai_backup.format.compression import open_gzip_reader, open_gzip_writer
from daai_backup.format.dbk1 import ContentType, EncryptingWriter, open_plaintext
from daai_backup.format.keys import Keyring, MasterKey
from daai_backup.repository.folder import BackupFolder
from daai_backup.storage import join_key, put_bytes, read_bytes

SEGMENT_SUFFIX: Final = ".chg.enc"
GAP_SUFFIX: Final = ".gap.json"
CHECKSUM_HEX: Final = 16
MAX_EVENT_BYTES: Final = 64 * 1024 * 1024
"""Larger than any change event MongoDB sends (16 MiB documents, pre/post images)."""

_TS: Final = r"(\d{10})\.(\d{10})"
_SEGMENT_RE: Final = re.compile(
    rf"^{_TS}-{_TS}_(0|[1-9]\d{{0,9}})_([0-9a-f]{{{CHECKSUM_HEX}}})\.chg\.enc$"
)
_GAP_RE: Final = re.compile(rf"^{_TS}-{_TS}_([0-9a-f]{{8}})\.gap\.json$")
_LENGTH: Final = struct.Struct("<i")


def successor(ts: Timestamp) -> Timestamp:
    """The next cluster time after ``ts``."""
    if ts.inc >= 0xFFFFFFFF:
        return Timestamp(ts.time + 1, 0)
    return Timestamp(ts.time, ts.inc + 1)


def ts_text(ts: Timestamp) -> str:
    """``1795868103.0000000008``-style text of a cluster time (as in names)."""
    return f"{ts.time:010d}.{ts.inc:010d}"


def ts_datetime(ts: Timestamp) -> datetime:
    """The UTC second a cluster time stands for."""
    return datetime.fromtimestamp(ts.time, UTC)


def _ts(t: str, i: str) -> Timestamp:
    return Timestamp(int(t), int(i))


@dataclass(frozen=True, order=True)
class SegmentName:
    """What a change segment's object name says (see the module docstring)."""

    start: Timestamp
    end: Timestamp
    events: int
    checksum: str

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise InvalidName(f"segment ends ({self.end}) before it starts ({self.start})")
        if not 0 <= self.events < 10**10:
            raise InvalidName(f"segment event count {self.events} out of range")

    @property
    def filename(self) -> str:
        return (
            f"{ts_text(self.start)}-{ts_text(self.end)}_{self.events}_{self.checksum}"
            f"{SEGMENT_SUFFIX}"
        )

    @classmethod
    def parse(cls, filename: str) -> SegmentName:
        match = _SEGMENT_RE.fullmatch(filename)
        if match is None:
            raise InvalidName(f"{filename!r} is not a change segment name")
        t1, i1, t2, i2, events, checksum = match.groups()
        return cls(_ts(t1, i1), _ts(t2, i2), int(events), checksum)


@dataclass(frozen=True)
class Gap:
    """A range of cluster times whose changes of the tenant were lost (never captured)."""

    start: Timestamp
    end: Timestamp
    reason: str
    recorded_at: datetime
    file: str = ""

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "start": {"t": self.start.time, "i": self.start.inc},
                "end": {"t": self.end.time, "i": self.end.inc},
                "reason": self.reason,
                "recorded_at": self.recorded_at.isoformat(),
            },
            sort_keys=True,
        ).encode()


def _changes_key(folder: BackupFolder, filename: str) -> str:
    return join_key(folder.changes_prefix, filename)


def encode_segment(events: Sequence[bytes]) -> tuple[bytes, str]:
    """(plaintext gzip bytes, checksum) of raw BSON events."""
    digest = hashlib.sha256()
    raw = io.BytesIO()
    with open_gzip_writer(raw) as gz:
        for event in events:
            digest.update(event)
            gz.write(event)
    return raw.getvalue(), digest.hexdigest()[:CHECKSUM_HEX]


def seal_segment(
    master: MasterKey,
    tenant_id: str,
    start: Timestamp,
    end: Timestamp,
    events: Sequence[bytes],
) -> tuple[SegmentName, bytes]:
    """The segment's name and its DBK1 bytes (content type ``CHANGE_SEGMENT``)."""
    plain, checksum = encode_segment(events)
    name = SegmentName(start, end, len(events), checksum)
    sink = io.BytesIO()
    with EncryptingWriter(
        sink, master, tenant_id, name=name.filename, content_type=ContentType.CHANGE_SEGMENT
    ) as writer:
        writer.write(plain)
    return name, sink.getvalue()


def write_segment(
    folder: BackupFolder,
    master: MasterKey,
    tenant_id: str,
    start: Timestamp,
    end: Timestamp,
    events: Sequence[bytes],
) -> SegmentName:
    """Store one segment (atomically, like every object); returns its name.

    Storing the same events over the same range again writes the same name: harmless.
    """
    name, sealed = seal_segment(master, tenant_id, start, end, events)
    put_bytes(folder.storage, _changes_key(folder, name.filename), sealed)
    return name


def list_segments(folder: BackupFolder) -> list[SegmentName]:
    """Every change segment of the tenant (one LIST), by start then end."""
    prefix = folder.changes_prefix + "/"
    found: list[SegmentName] = []
    for info in folder.storage.list(prefix):
        rel = info.key[len(prefix) :]
        if "/" in rel or not rel.endswith(SEGMENT_SUFFIX):
            continue
        try:
            found.append(SegmentName.parse(rel))
        except InvalidName:
            continue  # not ours: left alone
    return sorted(found)


def merge_ranges(
    ranges: Iterable[tuple[Timestamp, Timestamp]],
) -> list[tuple[Timestamp, Timestamp]]:
    """Union of closed ranges; ranges that overlap or touch (end, successor(end)) merge."""
    merged: list[tuple[Timestamp, Timestamp]] = []
    for start, end in sorted(ranges):
        if merged and start <= successor(merged[-1][1]):
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def coverage(folder: BackupFolder) -> list[tuple[Timestamp, Timestamp]]:
    """The closed ranges of cluster times the tenant's segments cover, oldest first.

    Anything between two ranges is a gap: changes there are not captured (the capture was
    not running for the tenant, the tenant was suspended, or history was lost: see
    :func:`gaps`). One LIST, no GET.
    """
    return merge_ranges((s.start, s.end) for s in list_segments(folder))


def open_segment(
    folder: BackupFolder, keyring: Keyring, tenant_id: str, name: SegmentName
) -> Iterator[bytes]:
    """The raw BSON events of one segment, in stream order.

    Every DBK1 check applies (tenant, name binding, content type, key, every chunk's tag);
    the event count and checksum in the name are checked at the end (``ArchiveCorrupt``).
    """
    with folder.storage.open_read(_changes_key(folder, name.filename)) as source:
        plain = open_plaintext(
            source,
            keyring,
            tenant_id,
            name=name.filename,
            encrypted=True,
            content_type=ContentType.CHANGE_SEGMENT,
        )
        yield from _events(open_gzip_reader(plain), name)


def _events(stream: BinaryIO, name: SegmentName) -> Iterator[bytes]:
    digest = hashlib.sha256()
    count = 0
    while True:
        head = stream.read(4)
        if not head:
            break
        if len(head) < 4:
            raise ArchiveCorrupt(f"change segment {name.filename!r} ends inside an event")
        (length,) = _LENGTH.unpack(head)
        if not 5 <= length <= MAX_EVENT_BYTES:
            raise ArchiveCorrupt(f"change segment {name.filename!r} holds a malformed event")
        body = stream.read(length - 4)
        if len(body) != length - 4:
            raise ArchiveCorrupt(f"change segment {name.filename!r} ends inside an event")
        event = head + body
        digest.update(event)
        count += 1
        yield event
    if count != name.events or digest.hexdigest()[:CHECKSUM_HEX] != name.checksum:
        raise ArchiveCorrupt(
            f"change segment {name.filename!r} does not hold what its name says "
            f"({count} events): it was altered; capture the tenant's changes again from a "
            "fresh backup"
        )


def covered_range(folder: BackupFolder, after: Timestamp, until: Timestamp) -> list[SegmentName]:
    """The segments that cover ``(after, until]``; ``ChangesNotCovered`` if they do not."""
    segments = list_segments(folder)
    needed = [s for s in segments if s.end > after and s.start <= until]
    # (after, until] must lie inside one merged range of what the segments cover.
    for start, end in merge_ranges((s.start, s.end) for s in segments):
        if start <= successor(after) and until <= end:
            return needed
    shown = ", ".join(f"{ts_text(s)} to {ts_text(e)}" for s, e in coverage(folder)) or "none"
    raise ChangesNotCovered(
        f"the captured changes do not cover {ts_text(successor(after))} to {ts_text(until)} "
        f"(covered: {shown}): pick a moment inside a covered range"
    )


def read_changes(
    folder: BackupFolder,
    keyring: Keyring,
    tenant_id: str,
    after: Timestamp,
    until: Timestamp,
) -> Iterator[dict[str, Any]]:
    """The tenant's change events with ``after < clusterTime <= until``, decoded, in stream
    order, each exactly once.

    Raises ``ChangesNotCovered`` (before yielding anything) when the segments do not cover
    the whole range, and what :func:`open_segment` raises. Segments that overlap (events
    read again after a crash) are deduplicated by (``clusterTime``, resume token): segments
    are read by start time, and an event at or before the newest time already yielded is
    yielded only if its token was not (only events of that one newest time are remembered,
    so memory stays bounded by one transaction).
    """
    if until <= after:
        return
    segments = covered_range(folder, after, until)
    newest: Timestamp | None = None
    tokens_at_newest: set[bytes] = set()
    for name in segments:
        for raw in open_segment(folder, keyring, tenant_id, name):
            event = bson.decode(raw)
            at = event["clusterTime"]
            if not after < at <= until:
                continue
            token = bson.encode(event["_id"])
            if newest is not None and at < newest:
                continue  # an earlier segment covered this time whole
            if newest is not None and at == newest:
                if token in tokens_at_newest:
                    continue
            else:
                newest = at
                tokens_at_newest = set()
            tokens_at_newest.add(token)
            yield event


def write_gap(folder: BackupFolder, start: Timestamp, end: Timestamp, reason: str) -> Gap:
    """Record that the tenant's changes in ``[start, end]`` were lost."""
    if end < start:
        end = start
    gap = Gap(start, end, reason[:500], datetime.now(UTC))
    filename = f"{ts_text(start)}-{ts_text(end)}_{secrets.token_hex(4)}{GAP_SUFFIX}"
    put_bytes(folder.storage, _changes_key(folder, filename), gap.to_json())
    return Gap(gap.start, gap.end, gap.reason, gap.recorded_at, filename)


def gaps(folder: BackupFolder) -> list[Gap]:
    """Every gap record of the tenant, oldest first (one LIST, one small GET each)."""
    prefix = folder.changes_prefix + "/"
    found: list[Gap] = []
    for info in folder.storage.list(prefix):
        rel = info.key[len(prefix) :]
        match = _GAP_RE.fullmatch(rel)
        if match is None:
            continue
        t1, i1, t2, i2, _ = match.groups()
        try:
            data = json.loads(read_bytes(folder.storage, info.key, limit=64 * 1024))
            reason = str(data.get("reason", ""))
            recorded = datetime.fromisoformat(str(data["recorded_at"]))
        except (ObjectNotFound, ValueError, KeyError, TypeError):
            reason, recorded = "unreadable gap record", info.modified
        found.append(Gap(_ts(t1, i1), _ts(t2, i2), reason, recorded, rel))
    return sorted(found, key=lambda g: (g.start, g.end))


def delete_change_object(folder: BackupFolder, filename: str) -> None:
    """Delete one segment or gap record by its name (validated; retention's call)."""
    if not (_SEGMENT_RE.fullmatch(filename) or _GAP_RE.fullmatch(filename)):
        raise InvalidName(f"{filename!r} is not a change segment or gap record name")
    folder.storage.delete(_changes_key(folder, filename))


def apply_change_retention(
    folder: BackupFolder, cutoff: Timestamp, *, dry_run: bool = False
) -> list[str]:
    """Delete the segments and gap records that end before ``cutoff``; returns their names.

    The plan is :func:`daai_backup.policy.retention.plan_changes`; the caller holds the
    tenant's lease and computed the cutoff from the snapshots it keeps.
    """
    from daai_backup.policy.retention import plan_changes

    cut = (cutoff.time, cutoff.inc)
    items = [
        (s.filename, (s.start.time, s.start.inc), (s.end.time, s.end.inc))
        for s in list_segments(folder)
    ]
    items += [(g.file, (g.start.time, g.start.inc), (g.end.time, g.end.inc)) for g in gaps(folder)]
    doomed = plan_changes(items, cut)
    if not dry_run:
        for name in doomed:
            delete_change_object(folder, name)
    return doomed
