"""Translation of pymongo errors into the daai-backup hierarchy, at the engine's edge."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from bson.errors import InvalidDocument
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DocumentTooLarge,
    OperationFailure,
    PyMongoError,
)

from daai_backup.errors import DatabaseError, SnapshotTooOld, TransientDatabaseError

SNAPSHOT_TOO_OLD = 239
DUPLICATE_KEY = 11000


def one_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's text, shortened: messages stay one line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bulk_message(exc: BulkWriteError) -> str:
    errors = exc.details.get("writeErrors") or []
    if errors:
        first = errors[0]
        code = first.get("code")
        prefix = "duplicate key" if code == DUPLICATE_KEY else f"write error {code}"
        first_message = one_line(Exception(first.get("errmsg", "")))
        return f"{prefix} ({len(errors)} failed write(s)), first: {first_message}"
    return one_line(exc)


@contextmanager
def translated(action: str) -> Iterator[None]:
    """Run a block, re-raising pymongo errors as DatabaseError subclasses naming ``action``.

    Also bson's ``InvalidDocument`` and its ``DocumentTooLarge``, which pymongo raises before
    sending and which are not ``PyMongoError``s.
    """
    try:
        yield
    except ConnectionFailure as exc:  # includes AutoReconnect, NetworkTimeout, server selection
        raise TransientDatabaseError(
            f"{action}: MongoDB is unreachable ({type(exc).__name__}: {one_line(exc, 200)}); "
            "check the server and try again"
        ) from exc
    except BulkWriteError as exc:
        raise DatabaseError(f"{action}: {_bulk_message(exc)}") from exc
    except OperationFailure as exc:
        if exc.code == SNAPSHOT_TOO_OLD:
            raise SnapshotTooOld(
                f"{action}: the read outlived the server's snapshot history window "
                "(SnapshotTooOld); raise minSnapshotHistoryWindowInSeconds on the server "
                "or back up when the database is less busy"
            ) from exc
        if exc.code == DUPLICATE_KEY:
            raise DatabaseError(f"{action}: duplicate key: {one_line(exc)}") from exc
        raise DatabaseError(f"{action}: {one_line(exc)} (code {exc.code})") from exc
    except PyMongoError as exc:
        raise DatabaseError(f"{action}: {type(exc).__name__}: {one_line(exc)}") from exc
    # Raised by pymongo before sending (bson's errors are not PyMongoErrors).
    except DocumentTooLarge as exc:
        raise DatabaseError(
            f"{action}: document too large for MongoDB's 16 MB limit ({one_line(exc)})"
        ) from exc
    except InvalidDocument as exc:
        raise DatabaseError(f"{action}: invalid document: {one_line(exc)}") from exc
