"""Server-side SVG charts: geometry computed here, drawn by `templates/charts/bars.svg.html`.

No JavaScript and no CDN: the page and its CSV show the same figures, and the chart prints.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.humanize.templatetags.humanize import intcomma


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    text: str
    x: float
    y: float
    width: float
    height: float

    @property
    def centre(self) -> float:
        return round(self.x + self.width / 2, 1)

    @property
    def value_y(self) -> float:
        return round(self.y - 4, 1)


@dataclass(frozen=True)
class Tick:
    y: float
    text: str


@dataclass(frozen=True)
class BarChart:
    title: str
    width: int
    height: int
    plot_left: int
    plot_right: int
    baseline: float
    bars: list[Bar]
    ticks: list[Tick]

    @property
    def tick_x(self) -> int:
        return self.plot_left - 8

    @property
    def label_y(self) -> float:
        return round(self.baseline + 18, 1)

    @property
    def empty(self) -> bool:
        return not any(bar.value for bar in self.bars)


def nice_step(largest: int, steps: int = 4) -> int:
    """A round step (1, 2 or 5 times a power of ten) that covers `largest` in about `steps`."""
    if largest <= 0:
        return 1
    raw = Decimal(largest) / steps
    power = Decimal(10) ** (len(str(int(raw))) - 1) if raw >= 1 else Decimal(1)
    for factor in (1, 2, 5, 10):
        if power * factor >= raw:
            return int(power * factor)
    return int(power * 10)


def bar_chart(
    title: str, points: Sequence[tuple[str, int]], *, width: int = 760, height: int = 260
) -> BarChart:
    """Vertical bars for `(label, value)` pairs, on a y axis of round ticks from zero."""
    left, right, top, bottom = 64, 12, 16, 36
    plot_width, plot_height = width - left - right, height - top - bottom
    step = nice_step(max((value for _, value in points), default=0))
    largest = max(step, -(-max((value for _, value in points), default=0) // step) * step)
    slot = plot_width / max(len(points), 1)
    gap = slot * 0.2
    baseline = top + plot_height
    bars = []
    for index, (label, value) in enumerate(points):
        bar_height = plot_height * max(value, 0) / largest
        bars.append(
            Bar(
                label=label,
                value=value,
                text=intcomma(value),
                x=round(left + index * slot + gap / 2, 1),
                y=round(baseline - bar_height, 1),
                width=round(slot - gap, 1),
                height=round(bar_height, 1),
            )
        )
    ticks = [
        Tick(y=round(baseline - plot_height * tick / largest, 1), text=intcomma(tick))
        for tick in range(0, largest + 1, step)
    ]
    return BarChart(
        title=title,
        width=width,
        height=height,
        plot_left=left,
        plot_right=width - right,
        baseline=baseline,
        bars=bars,
        ticks=ticks,
    )
