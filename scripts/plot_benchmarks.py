"""Bar chart of the measured speed ratios (ours / official) in docs/benchmarks.md, as an SVG.

The numbers are read from the tables of docs/benchmarks.md — every table with a ``ratio`` column
(ours / official time) or a ``speed-up`` column (official / ours, drawn as its inverse) — so the chart
cannot disagree with the page. The SVG is written by hand (no plotting library needed)::

    python scripts/plot_benchmarks.py                     # → docs/images/benchmark-ratios.svg
    python scripts/plot_benchmarks.py --check             # exit 1 when the committed SVG is stale
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "benchmarks.md"
OUT = ROOT / "docs" / "images" / "benchmark-ratios.svg"

# layout, in SVG user units (pixels)
WIDTH = 760
LABEL_WIDTH = 380
BAR_HEIGHT = 18
GAP = 8
GROUP_GAP = 26
TOP = 48
AXIS_MAX = 1.2


@dataclass(frozen=True)
class Bar:
    group: str
    label: str
    ratio: float  # ours / official time: < 1 is faster


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _number(text: str) -> float | None:
    try:
        return float(text.replace("×", "").replace("*", "").strip())
    except ValueError:
        return None


def read_bars(markdown: str) -> list[Bar]:
    """Every row of a table with a ratio or speed-up column, labelled by the section it is in."""
    bars: list[Bar] = []
    group = ""
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            group = line[3:].strip()
        is_table = line.startswith("|") and i + 1 < len(lines) and set(lines[i + 1].strip()) <= set("|-: ")
        if not is_table:
            i += 1
            continue
        header = [cell.lower() for cell in _cells(line)]
        ratio_col = next((k for k, h in enumerate(header) if h.startswith("ratio")), None)
        speedup_col = next((k for k, h in enumerate(header) if h.startswith("speed-up")), None)
        i += 2
        while i < len(lines) and lines[i].startswith("|"):
            row = _cells(lines[i])
            i += 1
            label = " ".join(cell.replace("`", "") for cell in row[: 2 if speedup_col is not None else 1])
            if ratio_col is not None and (value := _number(row[ratio_col])) is not None:
                bars.append(Bar(group, label, value))
            elif speedup_col is not None and (value := _number(row[speedup_col])) is not None:
                bars.append(Bar(group, f"encoder {label}", 1.0 / value))
    return bars


def _short(group: str) -> str:
    return group.split("(")[0].split("—")[0].strip().rstrip(",")


def render(bars: list[Bar]) -> str:
    """The SVG document of ``bars`` (horizontal bars, one block per page section)."""
    groups: list[str] = []
    for bar in bars:
        if bar.group not in groups:
            groups.append(bar.group)
    plot_width = WIDTH - LABEL_WIDTH - 60
    x0 = LABEL_WIDTH

    def x(value: float) -> float:
        return x0 + plot_width * min(value, AXIS_MAX) / AXIS_MAX

    parts: list[str] = []
    y = TOP
    for group in groups:
        parts.append(f'<text x="8" y="{y + 12}" class="group">{escape(_short(group))}</text>')
        y += 20
        for bar in (b for b in bars if b.group == group):
            colour = "#3f51b5" if bar.ratio < 1 else "#e57373"
            parts.append(f'<text x="{x0 - 8}" y="{y + 13}" class="label">{escape(bar.label)}</text>')
            parts.append(
                f'<rect x="{x0}" y="{y}" width="{x(bar.ratio) - x0:.1f}" height="{BAR_HEIGHT}" '
                f'fill="{colour}"/>'
            )
            parts.append(
                f'<text x="{x(bar.ratio) + 4:.1f}" y="{y + 13}" class="value">{bar.ratio:.2f}</text>'
            )
            y += BAR_HEIGHT + GAP
        y += GROUP_GAP - GAP
    height = y + 30
    axis = [f'<line x1="{x0}" y1="{TOP - 6}" x2="{x0}" y2="{y - GROUP_GAP + 6}" class="axis"/>']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        axis.append(f'<text x="{x(tick):.1f}" y="{y + 8}" class="tick">{tick:g}</text>')
    axis.append(
        f'<line x1="{x(1.0):.1f}" y1="{TOP - 6}" x2="{x(1.0):.1f}" y2="{y - GROUP_GAP + 6}" class="one"/>'
    )
    axis.append(f'<text x="{x(1.0) + 4:.1f}" y="{TOP - 10}" class="tick">official = 1</text>')
    title = "Time of napari-sam relative to the official implementation (lower is faster)"
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
            "<style>.group{font-weight:bold}.label{text-anchor:end}.value{fill:#222}"
            ".tick{fill:#555;text-anchor:middle}.axis{stroke:#888}"
            ".one{stroke:#222;stroke-dasharray:4 3}</style>",
            '<rect width="100%" height="100%" fill="white"/>',
            f'<text x="8" y="20" class="group">{escape(title)}</text>',
            *axis,
            *parts,
            "</svg>",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", type=Path, default=PAGE, help="the benchmarks page to read")
    parser.add_argument("--out", type=Path, default=OUT, help="the SVG to write")
    parser.add_argument("--check", action="store_true", help="only check that --out is up to date")
    args = parser.parse_args(argv)
    bars = read_bars(args.page.read_text(encoding="utf-8"))
    if not bars:
        print(f"no ratio tables found in {args.page}", file=sys.stderr)
        return 1
    svg = render(bars)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != svg:
            print(f"{args.out} is out of date: run python scripts/plot_benchmarks.py", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(svg, encoding="utf-8")
    print(f"wrote {args.out} ({len(bars)} bars)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
