"""What one backup holds, shown to people: the `describe` command and its markdown artifact.

Everything comes from the backup's manifest (:mod:`daai_backup.repository.manifest`), so
describing a backup reads one small object, never the backup. Two parts: the header facts
(label, when, who, why, how consistent, the snapshot's cluster time, sizes) and one row per
collection, view or time-series collection.

Plain rows, no DataFrame: a backup has tens of collections and nothing here is computed
over them, while importing pandas would cost the command most of its start time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.table import Table

from daai_backup.repository.catalog import human_size, zone
from daai_backup.repository.manifest import Manifest

NAMESPACE_COLUMNS = ("Collection", "Kind", "Documents", "Data", "Indexes", "Options")
DIGEST_SHOWN = 12
"""Hex digits of an options digest shown: enough to tell two backups' options apart."""


def cluster_time_text(cluster_time: tuple[int, int] | None, tz: str) -> str:
    """``Timestamp(1795741200, 3), 2026-11-27 06:30:00 IST``; "unknown" without one."""
    if cluster_time is None:
        return "unknown"
    t, i = cluster_time
    when = datetime.fromtimestamp(t, UTC).astimezone(zone(tz))
    return f"Timestamp({t}, {i}), {when:%Y-%m-%d %H:%M:%S %Z}"


def header_rows(manifest: Manifest, tz: str) -> list[tuple[str, str]]:
    """The backup's own facts as (label, value) pairs, times in the tenant's zone."""
    m = manifest
    taken = m.taken_at.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M:%S %Z")
    consistency = m.consistency
    if m.catalog_changes:
        consistency += f" (changed while it ran: {'; '.join(m.catalog_changes)})"
    return [
        ("File", m.file),
        ("Label", m.label),
        ("Taken", taken),
        ("Actor", m.actor or "-"),
        ("Note", m.note or "-"),
        ("Consistency", consistency),
        ("Cluster time", cluster_time_text(m.cluster_time, tz)),
        ("Consistent at", cluster_time_text(m.consistent_at, tz)),
        (
            "Dump changes",
            "-"
            if m.changes is None
            else f"{m.changes.events:,} change events replayed by a restore",
        ),
        ("Documents", f"{m.documents:,}"),
        ("Data", human_size(m.data_bytes)),
        ("Archive", human_size(m.plain_bytes) + " uncompressed"),
        ("Stored", human_size(m.stored_bytes) + (" encrypted" if m.key_fingerprint else "")),
        ("Key", m.key_fingerprint or "none (legacy plaintext)"),
        ("Server", m.server_version),
        ("Manifest", "written with the backup" if m.source == "backup" else "built from it"),
    ]


def namespace_rows(manifest: Manifest) -> list[dict[str, str]]:
    """One row of display strings per namespace, by name."""
    return [
        {
            "Collection": n.name,
            "Kind": n.kind,
            "Documents": "-" if n.kind == "view" else f"{n.documents:,}",
            "Data": "-" if n.kind == "view" else human_size(n.data_bytes),
            "Indexes": ", ".join(n.indexes) or "-",
            "Options": n.options_digest[:DIGEST_SHOWN],
        }
        for n in manifest.namespaces
    ]


def to_json(manifest: Manifest, tz: str) -> dict[str, Any]:
    """The manifest as JSON, plus the taken time in the tenant's zone."""
    data = manifest.to_json()
    data["taken_local"] = manifest.taken_at.astimezone(zone(tz)).isoformat()
    return data


def render(manifest: Manifest, tz: str, title: str | None = None) -> Group:
    """Both parts as rich tables, for the terminal."""
    facts = Table(title=title, show_header=False, title_justify="left")
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    for label, value in header_rows(manifest, tz):
        facts.add_row(label, value)
    table = Table(title=f"{len(manifest.namespaces)} collections and views", title_justify="left")
    for column in NAMESPACE_COLUMNS:
        right = column in ("Documents", "Data")
        table.add_column(column, justify="right" if right else "left", overflow="fold")
    for row in namespace_rows(manifest):
        table.add_row(*(row[c] for c in NAMESPACE_COLUMNS))
    return Group(facts, table)


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def to_markdown(manifest: Manifest, tz: str, title: str) -> str:
    """Both parts as GitHub-flavoured markdown, for a Prefect artifact."""
    lines = [f"## {_cell(title)}", "", "| | |", "|---|---|"]
    lines += [f"| **{label}** | {_cell(value)} |" for label, value in header_rows(manifest, tz)]
    rows = namespace_rows(manifest)
    lines += ["", f"### {len(rows)} collections and views", ""]
    if rows:
        lines.append("| " + " | ".join(NAMESPACE_COLUMNS) + " |")
        lines.append("|" + "---|" * len(NAMESPACE_COLUMNS))
        lines += ["| " + " | ".join(_cell(r[c]) for c in NAMESPACE_COLUMNS) + " |" for r in rows]
    else:
        lines.append("The database was empty.")
    return "\n".join(lines)
