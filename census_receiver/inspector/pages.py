"""The inspector's HTML: Jinja2 templates with autoescaping, and the helpers they use.

No I/O but reading the package's templates once. Every value that reaches a
page goes through Jinja2's autoescaping; the helpers that build markup
themselves (``payload``, ``when``) escape each piece with ``html.escape``
before marking the result safe. Bar widths of the runs timeline are computed
here and drawn with the stylesheet's ``w-0`` ... ``w-100`` classes, since the
Content-Security-Policy allows no inline style.

Jinja2 is the ``inspector`` extra; it is imported when ``Pages`` is built.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..runs import duration_text

if TYPE_CHECKING:
    from ..journal import DeliveryRecord
    from ..runs import RunRecord

__all__ = ["Bar", "Pages", "duration", "highlight_json", "size", "timeline"]

INSTALL_HINT = "pip install 'census-receiver[inspector]'"
#: Shown for a missing value: an en dash.
NONE = "\u2013"


class Pages:
    """The inspector's templates, ready to render.

    Args:
        version: the package version, appended to static URLs so a new release
            is not served a cached stylesheet.

    Raises:
        ImportError: when Jinja2 is not installed, naming the extra to install.
    """

    def __init__(self, *, version: str) -> None:
        try:
            import jinja2
            import markupsafe
        except ImportError:
            raise ImportError(
                f"the inspector renders its pages with Jinja2: {INSTALL_HINT}", name="jinja2"
            ) from None
        markup = markupsafe.Markup
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader(__package__ or "census_receiver.inspector", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self._env.filters.update(
            when=lambda value: markup(when(value)),
            payload=lambda record: markup(payload(record)),
            duration=duration,
            size=size,
            percent=percent,
        )
        self._env.globals.update(version=version, timeline=timeline)

    def render(self, name: str, **context: Any) -> str:
        """Render template ``name`` with ``context``.

        Returns:
            The HTML text.
        """
        return self._env.get_template(name).render(**context)


def when(value: datetime | None) -> str:
    """A time as ``<time>`` markup: UTC date and time, the ISO form in ``datetime``."""
    if value is None:
        return NONE
    value = value.astimezone(UTC)
    iso = html.escape(value.isoformat(timespec="seconds"))
    return (
        f'<time datetime="{iso}" title="{iso}"><span class="date">'
        f"{value:%Y-%m-%d}</span> {value:%H:%M:%S}</time>"
    )


def duration(seconds: float | None) -> str:
    """A duration as ``census-receiver runs`` writes it (``duration_text``), ``NONE`` if none."""
    return NONE if seconds is None else duration_text(seconds)


def size(n: int) -> str:
    """A byte count: ``512 B``, ``1.5 KiB``, ``2.0 MiB``."""
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def percent(rate: float | None) -> str:
    """A fraction as a percentage (``NONE`` for ``None``)."""
    return NONE if rate is None else f"{rate * 100:.0f}%"


def payload(record: DeliveryRecord) -> str:
    """A delivery's body as escaped, highlighted, indented JSON (or escaped text)."""
    try:
        decoded = json.loads(record.body)
        return highlight_json(decoded)
    except (ValueError, RecursionError):
        return html.escape(record.body.decode("utf-8", "replace"))


def highlight_json(value: Any, depth: int = 0) -> str:
    """``value`` as indented JSON, each key and scalar escaped in a ``<span>`` by kind.

    Raises:
        RecursionError: for a value nested deeper than Python's recursion limit.
    """
    pad, end = "  " * (depth + 1), "  " * depth
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [
            f'{pad}<span class="k">{_json(key)}</span>: {highlight_json(item, depth + 1)}'
            for key, item in value.items()
        ]
        return "{\n" + ",\n".join(items) + f"\n{end}}}"
    if isinstance(value, list):
        if not value:
            return "[]"
        items = [pad + highlight_json(item, depth + 1) for item in value]
        return "[\n" + ",\n".join(items) + f"\n{end}]"
    if isinstance(value, str):
        kind = "s"
    elif value is None or isinstance(value, bool):
        kind = "l"
    else:
        kind = "n"
    return f'<span class="{kind}">{_json(value)}</span>'


def _json(value: Any) -> str:
    return html.escape(json.dumps(value, ensure_ascii=False))


@dataclass(frozen=True, slots=True)
class Bar:
    """One run on the timeline: its record and its two segments, in percent of the scale.

    Attributes:
        run: the run.
        queue: width of the queued segment (triggered to started), 0-100.
        work: width of the running segment (started to finished, or to now), 0-100.
        queued: seconds queued (to now while it waits).
        ran: seconds run (to now while it runs).
        open: whether the run has not finished (its bar grows until it does).
    """

    run: RunRecord
    queue: int
    work: int
    queued: float | None
    ran: float | None
    open: bool


def timeline(runs: Sequence[RunRecord], now: float) -> list[Bar]:
    """The bars of one sync's runs, on a common scale: the longest finished run is full width.

    Args:
        runs: the runs, in the order shown.
        now: the current epoch time, for runs still queued or running.

    Returns:
        One ``Bar`` per run.
    """
    spans: list[tuple[float | None, float | None, bool]] = []
    for run in runs:
        queued, ran = run.queued_seconds, run.duration_seconds
        is_open = not run.finished
        if is_open and run.started_at is None and run.triggered_at is not None:
            queued = max(0.0, now - run.triggered_at.timestamp())
        if is_open and run.started_at is not None:
            ran = max(0.0, now - run.started_at.timestamp())
        spans.append((queued, ran, is_open))
    # The finished runs set the scale: a run stuck for hours would flatten the others,
    # so an open run longer than the longest finished one is drawn full width.
    finished = [(q or 0.0) + (r or 0.0) for q, r, is_open in spans if not is_open]
    every = [(q or 0.0) + (r or 0.0) for q, r, _ in spans]
    scale = max(finished or every or [0.0]) or 1.0
    bars = []
    for run, (queued, ran, is_open) in zip(runs, spans, strict=True):
        queue = _width(queued, scale)
        work = min(_width(ran, scale), 100 - queue)
        bars.append(Bar(run, queue, work, queued, ran, is_open))
    return bars


def _width(seconds: float | None, scale: float) -> int:
    if not seconds or seconds <= 0:
        return 0
    return max(1, min(100, round(100 * seconds / scale)))
