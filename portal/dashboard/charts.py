"""A stacked bar chart as plain SVG geometry: readable with or without JavaScript."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from portal.dashboard.queries import DailySeries
from portal.money import MICRO, format_credits

PALETTE = ["#3a4fd8", "#12a594", "#e5484d", "#f5a524", "#8e4ec6", "#0b7fab", "#d6409f", "#6e7b91"]
WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 52, 8, 10, 28


@dataclass(frozen=True)
class Segment:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class XLabel:
    x: float
    label: str


@dataclass(frozen=True)
class StackedChart:
    width: int
    height: int
    segments: list[Segment]
    ticks: list[Tick]
    x_labels: list[XLabel]
    legend: list[tuple[str, str]]
    plot_left: int
    plot_right: int


def _nice_ceiling(value: int) -> int:
    """A round axis maximum (1, 2, 5 × 10^n credits) at or above ``value`` micro-credits."""
    credits = max(Decimal(value) / MICRO, Decimal(1))
    magnitude = Decimal(10) ** (len(str(int(credits))) - 1)
    for step in (1, 2, 5, 10):
        if credits <= step * magnitude:
            return int(step * magnitude * MICRO)
    return int(10 * magnitude * MICRO)


def stacked_daily_chart(series: DailySeries) -> StackedChart:
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    top_value = _nice_ceiling(max((series.total(day) for day in series.days), default=0))
    slot = plot_width / max(len(series.days), 1)
    bar = max(slot * 0.72, 1.0)
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(series.categories)}
    segments = []
    for index, day in enumerate(series.days):
        x = LEFT + index * slot + (slot - bar) / 2
        base = TOP + plot_height
        for name in series.categories:
            value = series.values.get((day, name), 0)
            if value <= 0:
                continue
            height = value / top_value * plot_height
            base -= height
            segments.append(
                Segment(
                    round(x, 2),
                    round(base, 2),
                    round(bar, 2),
                    round(max(height, 0.5), 2),
                    colors[name],
                    f"{day.isoformat()} · {name}: {format_credits(value)} credits",
                )
            )
    ticks = [
        Tick(round(TOP + plot_height - plot_height * i / 4, 2), format_credits(top_value * i // 4))
        for i in range(5)
    ]
    every = max(1, len(series.days) // 6)
    x_labels = [
        XLabel(round(LEFT + i * slot + slot / 2, 2), day.strftime("%b %d"))
        for i, day in enumerate(series.days)
        if i % every == 0
    ]
    return StackedChart(
        WIDTH,
        HEIGHT,
        segments,
        ticks,
        x_labels,
        [(name, colors[name]) for name in series.categories],
        LEFT,
        WIDTH - RIGHT,
    )
