"""The timeline as a chart (PNG): changes per bucket, stacked by kind, bursts marked.

matplotlib with the Agg backend (no display needed, safe in workers and threads as long as
each chart uses its own figure, which :func:`timeline_png` does). The picture holds counts
and collection names only, never document contents.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from daai_backup.inspection.timeline import KINDS
from daai_backup.repository.catalog import zone

if TYPE_CHECKING:
    from daai_backup.inspection.timeline import Timeline

#: The chart's size in pixels (width, height): WIDTH_IN x DPI by HEIGHT_IN x DPI.
WIDTH_IN: Final = 12.0
HEIGHT_IN: Final = 4.5
DPI: Final = 100
SIZE: Final = (int(WIDTH_IN * DPI), int(HEIGHT_IN * DPI))

_COLORS: Final = {
    "inserts": "#2e7d32",
    "updates": "#1565c0",
    "replaces": "#6a1b9a",
    "deletes": "#c62828",
    "ddl": "#ef6c00",
}


def timeline_png(timeline: Timeline) -> bytes:
    """The chart as PNG bytes, exactly :data:`SIZE` pixels."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    axes = figure.add_subplot()
    where = zone(timeline.tz)
    step = timeline.bucket_seconds
    frame = timeline.minutes
    width_days = step / 86400 * 0.9
    if not frame.empty:
        frame = frame.assign(bucket=frame["minute"] - frame["minute"] % step)
        per = frame.pivot_table(
            index="bucket", columns="kind", values="count", aggfunc="sum", fill_value=0
        ).reindex(columns=list(KINDS), fill_value=0)
        times = [_num(datetime.fromtimestamp(int(s), UTC)) for s in per.index]
        bottom = [0.0] * len(per)
        for kind in KINDS:
            values = [float(v) for v in per[kind]]
            if any(values):
                axes.bar(
                    times,
                    values,
                    width=width_days,
                    bottom=bottom,
                    align="edge",
                    color=_COLORS[kind],
                    label=kind,
                )
                bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    for number, burst in enumerate(timeline.bursts, start=1):
        axes.axvline(float(_num(burst.first)), color="black", linestyle="--", linewidth=0.8)
        axes.annotate(
            f"{number}: {burst.what} {burst.collection}",
            xy=(float(_num(burst.first)), 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            fontsize=7,
        )
    axes.set_title(
        f"{timeline.tenant}: changes per {_bucket_words(step)} "
        f"({timeline.start:%Y-%m-%d %H:%M} to {timeline.end:%Y-%m-%d %H:%M} {timeline.tz})"
    )
    axes.set_ylabel("changes")
    start, end = _num(timeline.start), _num(timeline.end)
    axes.set_xlim(float(start), float(max(end, start + width_days)))
    axes.xaxis_date(where)
    if not frame.empty:
        axes.legend(loc="upper left", fontsize=8)
    figure.autofmt_xdate()
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


def _num(moment: datetime) -> float:
    """matplotlib's date number (days since 1970-01-01 UTC, its default epoch)."""
    return moment.timestamp() / 86400


def _bucket_words(seconds: int) -> str:
    if seconds % 86400 == 0:
        return "day" if seconds == 86400 else f"{seconds // 86400} days"
    if seconds % 3600 == 0:
        return "hour" if seconds == 3600 else f"{seconds // 3600} hours"
    return "minute" if seconds == 60 else f"{seconds // 60} minutes"
