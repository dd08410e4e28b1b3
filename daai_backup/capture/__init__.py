"""Continuous change capture: every tenant's changes, as encrypted segments in its folder.

One cluster-wide MongoDB change stream (expanded events, never ``updateLookup``) is routed by
database to the tenants of the registry and stored per tenant as *change segments*: DBK1
files (content type ``CHANGE_SEGMENT``, the tenant's key) holding the raw change events, each
covering a closed range of cluster times named in its object name. ``docs/format.md``
("Change segments") specifies them; ``docs/decisions.md`` ("Continuous change capture")
says why it is built this way.

What callers use:

- :func:`read_changes` (replay): a tenant's events in ``(after, until]``, in stream order,
  deduplicated; :func:`coverage`: the closed ranges of cluster times covered (gaps between);
  :func:`gaps`: the recorded history losses; :func:`list_segments`.
- :class:`Capture` / :func:`run_capture`: the capture loop (``daai-backup capture``, the
  ``capture`` flow); :class:`CaptureOutcome` says what a run stored, lag and history loss.
- :func:`check_change_streams`: whether the cluster can give change streams (``doctor``).
- :mod:`daai_backup.capture.state`: the resume point in the control database.

No Prefect here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daai_backup.capture.runner import (
        Capture,
        CaptureOutcome,
        check_change_streams,
        run_capture,
    )
    from daai_backup.capture.segments import (
        Gap,
        SegmentName,
        coverage,
        gaps,
        list_segments,
        read_changes,
    )

__all__ = [
    "Capture",
    "CaptureOutcome",
    "Gap",
    "SegmentName",
    "check_change_streams",
    "coverage",
    "gaps",
    "list_segments",
    "read_changes",
    "run_capture",
]

_RUNNER = {"Capture", "CaptureOutcome", "check_change_streams", "run_capture"}


def __getattr__(name: str) -> Any:
    # Imported on demand: reading segments (restore) needs no pymongo client machinery.
    if name in _RUNNER:
        from daai_backup.capture import runner

        return getattr(runner, name)
    if name in __all__:
        from daai_backup.capture import segments

        return getattr(segments, name)
    raise AttributeError(name)
