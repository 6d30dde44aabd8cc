"""Server-side SVG charts: geometry computed here, drawn by the templates in `templates/charts/`
(`bars.svg.html`; the dashboard's `grouped_bars.svg.html` and `line.svg.html`).

No JavaScript and no CDN: the page and its CSV show the same figures, and the chart prints.
"""

import math
from collections.abc import Callable, Sequence
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
class Frame:
    """What every chart shares: its size, the plot's left and right edges, its baseline and the
    y ticks, and where the tick and x labels go."""

    title: str
    width: int
    height: int
    plot_left: int
    plot_right: int
    baseline: float
    ticks: list[Tick]

    @property
    def tick_x(self) -> int:
        return self.plot_left - 8

    @property
    def label_y(self) -> float:
        return round(self.baseline + 18, 1)


@dataclass(frozen=True)
class BarChart(Frame):
    bars: list[Bar]

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


# --- charts over months: grouped bars and lines (the staff dashboard) ---------------------------

# Series colours, in order; the stylesheet names them `.series-0` ... so a theme can change them.
SERIES = 4


@dataclass(frozen=True)
class SeriesBar:
    series: int
    name: str
    value: int
    text: str
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Group:
    label: str
    centre: float
    bars: list[SeriesBar]


@dataclass(frozen=True)
class Legend:
    series: int
    name: str
    x: float


@dataclass(frozen=True)
class Axes(Frame):
    """What every month chart shares: the frame with a top, a y label and the legend."""

    y_label: str
    plot_top: int
    legend: list[Legend]

    @property
    def y_label_y(self) -> float:
        return round((self.plot_top + self.baseline) / 2, 1)

    @property
    def legend_y(self) -> int:
        return self.plot_top - 14


@dataclass(frozen=True)
class GroupedBarChart:
    axes: Axes
    groups: list[Group]

    @property
    def empty(self) -> bool:
        return not any(bar.value for group in self.groups for bar in group.bars)


@dataclass(frozen=True)
class LinePoint:
    label: str
    value: Decimal
    text: str
    x: float
    y: float


@dataclass(frozen=True)
class Line:
    series: int
    name: str
    points: list[LinePoint]

    @property
    def path(self) -> str:
        return " ".join(
            f"{'M' if n == 0 else 'L'}{point.x},{point.y}" for n, point in enumerate(self.points)
        )


@dataclass(frozen=True)
class LineChart:
    axes: Axes
    labels: list[tuple[str, float]]  # x axis: (label, x)
    lines: list[Line]

    @property
    def empty(self) -> bool:
        return not any(point.value for line in self.lines for point in line.points)


def _axes(
    title: str,
    y_label: str,
    names: Sequence[str],
    largest: Decimal | int,
    *,
    width: int,
    height: int,
    text: Callable[[int], str],
) -> tuple[Axes, int, int, int]:
    """The frame of a month chart; also the plot's left edge, width and the axis maximum."""
    left, right, top, bottom = 84, 12, 40, 36
    plot_height = height - top - bottom
    top_value = max(math.ceil(largest), 0)
    step = nice_step(top_value)
    maximum = max(step, math.ceil(top_value / step) * step)
    baseline = top + plot_height
    ticks = [
        Tick(y=round(baseline - plot_height * tick / maximum, 1), text=text(tick))
        for tick in range(0, maximum + 1, step)
    ]
    legend = [
        Legend(series=n % SERIES, name=name, x=left + 150 * n) for n, name in enumerate(names)
    ]
    axes = Axes(
        title=title,
        width=width,
        height=height,
        plot_left=left,
        plot_right=width - right,
        baseline=baseline,
        ticks=ticks,
        y_label=y_label,
        plot_top=top,
        legend=legend,
    )
    return axes, left, width - left - right, maximum


def grouped_bar_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
    *,
    y_label: str = "",
    width: int = 760,
    height: int = 280,
) -> GroupedBarChart:
    """Bars side by side for each label, one per series (e.g. issued, redeemed, expired)."""
    largest = max((max(values, default=0) for _, values in series), default=0)
    axes, left, plot_width, maximum = _axes(
        title, y_label, [name for name, _ in series], largest, width=width, height=height,
        text=intcomma,
    )  # fmt: skip
    plot_height = axes.baseline - axes.plot_top
    slot = plot_width / max(len(labels), 1)
    bar_width = slot * 0.8 / max(len(series), 1)
    groups = []
    for index, label in enumerate(labels):
        start = left + index * slot + slot * 0.1
        bars = []
        for n, (name, values) in enumerate(series):
            value = values[index]
            bar_height = plot_height * max(value, 0) / maximum
            bars.append(
                SeriesBar(
                    series=n % SERIES,
                    name=name,
                    value=value,
                    text=intcomma(value),
                    x=round(start + n * bar_width, 1),
                    y=round(axes.baseline - bar_height, 1),
                    width=round(bar_width * 0.92, 1),
                    height=round(bar_height, 1),
                )
            )
        groups.append(Group(label=label, centre=round(left + (index + 0.5) * slot, 1), bars=bars))
    return GroupedBarChart(axes=axes, groups=groups)


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[Decimal | int | None]]],
    *,
    y_label: str = "",
    text: Callable[[Decimal | int], str] = intcomma,
    width: int = 760,
    height: int = 260,
) -> LineChart:
    """One line per series over the labels; a None value leaves a gap in its line's points."""
    largest = max(
        (Decimal(v) for _, values in series for v in values if v is not None), default=Decimal(0)
    )
    axes, left, plot_width, maximum = _axes(
        title, y_label, [name for name, _ in series], largest, width=width, height=height,
        text=text,
    )  # fmt: skip
    plot_height = axes.baseline - axes.plot_top
    slot = plot_width / max(len(labels), 1)
    xs = [round(left + (index + 0.5) * slot, 1) for index in range(len(labels))]
    lines = []
    for n, (name, values) in enumerate(series):
        points = [
            LinePoint(
                label=labels[index],
                value=Decimal(value),
                text=text(value),
                x=xs[index],
                y=round(axes.baseline - plot_height * float(value) / maximum, 1),
            )
            for index, value in enumerate(values)
            if value is not None
        ]
        lines.append(Line(series=n % SERIES, name=name, points=points))
    return LineChart(axes=axes, labels=list(zip(labels, xs, strict=True)), lines=lines)
