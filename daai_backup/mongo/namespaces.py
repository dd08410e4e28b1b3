"""Which collection names a backup holds, which it refuses, and the restore's staging names.

One rule for both sides: the dump refuses a name the restore would refuse, so no backup that
cannot be restored is ever written. See ``docs/decisions.md`` (MongoDB section).
"""

from __future__ import annotations

import re

from daai_backup.errors import DatabaseError

#: Prefix of the restore's staging collections and journal; never backed up.
RESERVED_PREFIX = "__daai_restore."
#: The restore's own names exactly: the journal, staging ``<run>.c<n>`` and the rename probe's
#: ``<run>.probe-a``/``-b`` (``<run>``: 8 lowercase hex digits). Only these are ever dropped
#: as leftovers; any other name with the prefix is a user's, and refused by the dump.
_OURS = re.compile(
    re.escape(RESERVED_PREFIX) + r"(?:journal|[0-9a-f]{8}\.(?:c(?:0|[1-9][0-9]*)|probe-[ab]))"
)
#: The one ``system.*`` collection that is user data (stored JavaScript), as mongodump keeps it.
SYSTEM_JS = "system.js"
#: MongoDB's limit on ``<db>.<collection>`` in bytes.
MAX_NAMESPACE_BYTES = 255
_BUCKETS = "system.buckets."


def shown(name: str, limit: int = 60) -> str:
    """A name for a message: quoted, shortened when long (messages stay one readable line)."""
    return repr(name) if len(name) <= limit else repr(name[: limit - 3] + "...")


def is_ours(name: str) -> bool:
    """Whether ``name`` is one of the restore's own collections (journal, staging, probe)."""
    return _OURS.fullmatch(name) is not None


def is_listed(name: str) -> bool:
    """Whether the dump lists (and so checks) a collection: all but the restore's own and the
    server's ``system.*`` (except ``system.js``). A user's ``__daai_restore.*`` is listed, so
    the dump refuses it instead of leaving it out unseen."""
    if is_ours(name):
        return False
    return name == SYSTEM_JS or not name.startswith("system.")


def is_backed_up(name: str) -> bool:
    """Whether a listed collection belongs to a backup (and to the exact state a restore sets).

    Everything but ``__daai_restore.*`` and the server's ``system.*`` namespaces, except
    ``system.js``. The swap drops only backed-up names the snapshot lacks, so it never drops
    a ``__daai_restore.*`` collection that is not its own either.
    """
    if name.startswith(RESERVED_PREFIX):
        return False
    return name == SYSTEM_JS or not name.startswith("system.")


def check_collection_name(database: str, name: str, *, timeseries: bool = False) -> None:
    """Refuse a collection name that cannot be backed up and restored, with ``DatabaseError``.

    Refused: what MongoDB itself refuses (empty, NUL, ``$``, a leading ``.``, a namespace over
    255 bytes, for time-series counting the ``system.buckets.`` data namespace), the reserved
    ``__daai_restore.`` prefix and ``system.*`` other than ``system.js``. Any other name can
    be staged: staging names do not depend on it.
    """
    if not name or "\x00" in name or "$" in name or name.startswith("."):
        raise DatabaseError(
            f"invalid collection name {shown(name)} in database {database!r}: MongoDB refuses "
            "empty names, NUL, '$' and a leading '.'; rename the collection"
        )
    if name.startswith(RESERVED_PREFIX):
        raise DatabaseError(
            f"reserved collection name {shown(name)} in database {database!r}: the prefix "
            f"{RESERVED_PREFIX!r} belongs to daai-backup's restore; rename the collection"
        )
    if not is_backed_up(name):
        raise DatabaseError(
            f"reserved collection name {shown(name)} in database {database!r}: system.* (other "
            f"than {SYSTEM_JS}) is not user data; refusing it"
        )
    data = f"{_BUCKETS}{name}" if timeseries else name
    size = len(f"{database}.{data}".encode())
    if size > MAX_NAMESPACE_BYTES:
        raise DatabaseError(
            f"collection name {shown(name)} is too long for database {database!r}: its "
            f"namespace{' (time-series buckets)' if timeseries else ''} is {size} bytes, "
            f"MongoDB allows {MAX_NAMESPACE_BYTES}; rename the collection"
        )


def staging_name(run: str, number: int) -> str:
    """The staging collection of the ``number``-th collection of restore run ``run``.

    Short and independent of the collection's own name, so every name MongoDB accepts can be
    staged; the journal maps each staging name to its target.
    """
    return f"{RESERVED_PREFIX}{run}.c{number}"
