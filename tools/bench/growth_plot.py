#!/usr/bin/env python3
"""Turns tools/bench/growth.sh's results (TSV: metric, x, side, value, note)
into a Markdown table on stdout and a hand-written SVG plot (standard library
only, so that the benchmark needs nothing installed)."""

import argparse
import csv
import math
from collections import OrderedDict
from xml.sax.saxutils import escape

SIDES = ("ours", "upstream")
COLOURS = {"ours": "#c0501f", "upstream": "#0a8fb3"}

# metric: (row label for x, unit, panel title, x axis, log x)
METRICS = OrderedDict(
    [
        ("fanout", ("CPU per published msg, {x} on one topic, a consumer each", "ns",
                    "CPU per published message vs channels", "channels on one topic (one consumer each)", True)),
        ("topics", ("CPU per published msg, {x} with a channel each, round-robin", "ns",
                    "CPU per published message vs topics", "topics (one channel each, no consumers)", True)),
        ("idle", ("idle CPU, {x} topics with a channel each, no clients", "% of a core",
                  "Idle CPU, 10,000 topics and channels", "", False)),
        ("create", ("ms per 1,000 topics created over HTTP (topic + channel)", "ms",
                    "Time per 1,000 topics created (HTTP)", "topics created", False)),
        ("create_total", ("creating 10,000 topics with a channel each over HTTP", "s",
                          "", "", False)),
        ("conns_rss", ("RSS per idle consumer connection, {x} connections", "B",
                       "RSS per idle consumer connection", "connections", False)),
        ("conns_cpu", ("CPU with {x} idle consumer connections, 5 s heartbeats", "% of a core",
                       "CPU with idle consumer connections", "connections", False)),
        ("memory", ("RSS per queued message, {x} B bodies, MPUB x 200, memory mode", "B",
                    "RSS per queued message", "body size, published by", False)),
        ("memory_pub", ("RSS per queued message, {x} B bodies, PUB, memory mode", "B",
                        "", "", False)),
    ]
)


def load(path):
    rows = OrderedDict()  # metric -> x -> side -> (value, note)
    with open(path, newline="") as f:
        for metric, x, side, value, note in csv.reader(f, delimiter="\t"):
            rows.setdefault(metric, OrderedDict()).setdefault(x, {})[side] = (value, note)
    return rows


def number(text):
    try:
        return float(text)
    except ValueError:
        return None


def fmt(value):
    v = number(value)
    if v is None:
        return value or "-"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}".rstrip("0").rstrip(".") if v else "0"


def ratio(ours, upstream):
    a, b = number(ours), number(upstream)
    if not a or b is None:
        return "-"
    return f"{b / a:.2f}"


def counted(metric, x):
    """`x` with its noun where the label needs one: "1 channel", "4 channels"."""
    noun = {"fanout": "channel", "topics": "topic"}.get(metric)
    n = int(x)
    if noun is None:
        return f"{n:,}"
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def markdown(rows, title, params):
    out = ["# How nsqd's cost grows: ours against upstream's", "", title + ".", params + ".", "",
           "Made by `tools/bench/growth.sh` (its header says what each phase does). Each point runs "
           "one nsqd alone on loopback with a fresh data directory under /tmp, then kills it. "
           "CPU is nsqd's utime+stime from /proc/PID/stat over the phase; memory is its VmRSS. "
           "The clients are `bench_growth` (Rust, protocol only); its consumers write every FIN "
           "on its own, as go-nsq does. `upstream / ours` above 1 means upstream costs more.", "",
           "| measurement | unit | ours | upstream | upstream / ours | notes: ours; upstream |",
           "|---|---|---|---|---|---|"]
    for metric, points in rows.items():
        label, unit = METRICS[metric][0], METRICS[metric][1]
        if metric == "create":
            series = {s: ", ".join(fmt(p[s][0]) for p in points.values() if s in p) for s in SIDES}
            out.append(f"| {label} | {unit} | {series['ours']} | {series['upstream']} | | "
                       f"each 1,000 in turn |")
            continue
        if metric == "create_total":
            by_side = {s: (v, n) for p in points.values() for s, (v, n) in p.items()}
            o, u = by_side.get("ours", ("-", "")), by_side.get("upstream", ("-", ""))
            out.append(f"| {label} | {unit} | {fmt(o[0])} | {fmt(u[0])} | | {o[1]}; {u[1]} |")
            continue
        for x, p in points.items():
            o, u = p.get("ours", ("-", "")), p.get("upstream", ("-", ""))
            out.append(f"| {label.format(x=counted(metric, x))} | {unit} | {fmt(o[0])} | {fmt(u[0])} | "
                       f"{ratio(o[0], u[0])} | {o[1]}; {u[1]} |")
    return "\n".join(out) + "\n"


def nice_max(v):
    if v <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * e:
            return m * e
    return 10 * e


def short(v):
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:.3g}k"
    return f"{v:.3g}"


def size_label(x):
    n = int(x)
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} B"


class Panel:
    W, H = 330, 270
    L, R, T, B = 58, 14, 40, 46

    def __init__(self, svg, ox, oy, title, unit, xlabel):
        self.svg, self.ox, self.oy = svg, ox, oy
        self.pw = self.W - self.L - self.R
        self.ph = self.H - self.T - self.B
        svg.append(f'<text x="{ox + self.W / 2}" y="{oy + 18}" text-anchor="middle" '
                   f'font-weight="bold">{escape(title)}</text>')
        svg.append(f'<text x="{ox + 14}" y="{oy + self.T + self.ph / 2}" text-anchor="middle" '
                   f'transform="rotate(-90 {ox + 14} {oy + self.T + self.ph / 2})">{escape(unit)}</text>')
        svg.append(f'<text x="{ox + self.L + self.pw / 2}" y="{oy + self.H - 8}" '
                   f'text-anchor="middle">{escape(xlabel)}</text>')

    def px(self, f):
        return self.ox + self.L + f * self.pw

    def py(self, v):
        if self.log_y:
            lo, hi = math.log10(self.ymin), math.log10(self.ymax)
            f = (math.log10(max(v, self.ymin)) - lo) / (hi - lo)
        else:
            f = v / self.ymax
        return self.oy + self.T + self.ph * (1 - f)

    def y_axis(self, ymax, ymin=None):
        """Linear from 0, or logarithmic over powers of ten when ymin is given."""
        self.log_y = ymin is not None
        if self.log_y:
            self.ymin = 10 ** math.floor(math.log10(max(ymin, 1e-9)))
            self.ymax = 10 ** math.ceil(math.log10(max(ymax, self.ymin * 10)))
            ticks = [10 ** e for e in range(round(math.log10(self.ymin)), round(math.log10(self.ymax)) + 1)]
            self.axis(ticks)
            return
        self.ymax = nice_max(ymax)
        self.axis([self.ymax * i / 4 for i in range(5)])

    def axis(self, ticks):
        for v in ticks:
            y = self.py(v)
            self.svg.append(f'<line x1="{self.px(0)}" x2="{self.px(1)}" y1="{y}" y2="{y}" stroke="#ddd"/>')
            self.svg.append(f'<text x="{self.px(0) - 4}" y="{y + 4}" text-anchor="end">{short(v)}</text>')
        self.svg.append(f'<line x1="{self.px(0)}" x2="{self.px(0)}" y1="{self.py(ticks[0])}" '
                        f'y2="{self.py(self.ymax)}" stroke="#888"/>')

    def lines(self, series, log_x, note="", log_y=False):
        """series: side -> [(x, y)]"""
        xs = sorted({x for pts in series.values() for x, _ in pts})
        if not xs:
            return
        lo, hi = min(xs), max(xs)
        if log_x:
            f = (lambda x: 0.5) if lo == hi else (lambda x: (math.log(x) - math.log(lo)) / (math.log(hi) - math.log(lo)))
        else:
            lo = 0
            f = lambda x: x / hi if hi else 0.5
        ys = [y for pts in series.values() for _, y in pts]
        self.y_axis(max(ys), min(ys) if log_y else None)
        bottom = self.oy + self.T + self.ph
        for x in xs:
            self.svg.append(f'<text x="{self.px(f(x))}" y="{bottom + 16}" text-anchor="middle">{short(x)}</text>')
        for side in SIDES:
            pts = series.get(side, [])
            if not pts:
                continue
            path = " ".join(f"{self.px(f(x)):.1f},{self.py(y):.1f}" for x, y in pts)
            self.svg.append(f'<polyline points="{path}" fill="none" stroke="{COLOURS[side]}" stroke-width="2"/>')
            for x, y in pts:
                self.svg.append(f'<circle cx="{self.px(f(x)):.1f}" cy="{self.py(y):.1f}" r="3" fill="{COLOURS[side]}"/>')
        if note:
            self.svg.append(f'<text x="{self.ox + self.W / 2}" y="{self.oy + 30}" text-anchor="middle" '
                            f'font-size="10">{escape(note)}</text>')

    def bars(self, groups):
        """groups: [(label, {side: y})]"""
        self.y_axis(max([y for _, g in groups for y in g.values()] or [0]))
        slot = 1 / max(len(groups), 1)
        bw = slot * self.pw * 0.3
        for i, (label, g) in enumerate(groups):
            centre = self.px(slot * (i + 0.5))
            self.svg.append(f'<text x="{centre}" y="{self.py(0) + 16}" text-anchor="middle" font-size="10">{escape(label)}</text>')
            for j, side in enumerate(SIDES):
                if side not in g:
                    continue
                x = centre - bw + j * bw
                y = self.py(g[side])
                self.svg.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw * 0.92:.1f}" '
                                f'height="{self.py(0) - y:.1f}" fill="{COLOURS[side]}"/>')
                self.svg.append(f'<text x="{x + bw * 0.46:.1f}" y="{y - 3:.1f}" text-anchor="middle" '
                                f'font-size="10">{short(round(g[side], 2))}</text>')


def plot(rows, title, path):
    panels = [m for m in METRICS if m in rows and METRICS[m][2]]
    cols = 4
    n = len(panels) + 1
    nrows = math.ceil(n / cols)
    width, height = cols * Panel.W, nrows * Panel.H + 40
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="20" font-size="13">nsqd, how cost grows: {escape(title)}</text>']
    for i, metric in enumerate(panels):
        _, unit, ptitle, xlabel, log_x = METRICS[metric]
        if metric == "create":
            unit += " (log scale)"
        p = Panel(svg, (i % cols) * Panel.W, 40 + (i // cols) * Panel.H, ptitle, unit, xlabel)
        points = rows[metric]
        if metric in ("fanout", "topics", "create"):
            series = {s: [(float(x), number(v[s][0])) for x, v in points.items()
                          if s in v and number(v[s][0]) is not None] for s in SIDES}
            note = ""
            if metric == "create":
                made = {s: int(x) for x, v in rows.get("create_total", {}).items() for s in v}
                if made.get("upstream", 0) < made.get("ours", 0):
                    note = f"upstream stopped at the cap after {made['upstream']:,}"
            # Upstream's creation time grows by orders of magnitude.
            p.lines(series, log_x, note, log_y=metric == "create")
        else:
            def group(label, v):
                return (label, {s: number(v[s][0]) for s in SIDES if s in v and number(v[s][0]) is not None})
            if metric == "memory":
                groups = [group(f"{size_label(x)} MPUB", v) for x, v in points.items()]
                groups += [group(f"{size_label(x)} PUB", v) for x, v in rows.get("memory_pub", {}).items()]
            else:
                groups = [group(short(float(x)), v) for x, v in points.items()]
            p.bars(groups)
    # The legend in the last slot.
    i = len(panels)
    ox, oy = (i % cols) * Panel.W + 40, 40 + (i // cols) * Panel.H + 60
    for j, side in enumerate(SIDES):
        svg.append(f'<rect x="{ox}" y="{oy + j * 24}" width="16" height="12" fill="{COLOURS[side]}"/>')
        name = "ours (Rust)" if side == "ours" else "upstream v1.3.0 (Go)"
        svg.append(f'<text x="{ox + 24}" y="{oy + j * 24 + 11}">{name}</text>')
    svg.append(f'<text x="{ox}" y="{oy + 64}" font-size="10">CPU: nsqd utime+stime; memory: nsqd VmRSS.</text>')
    svg.append(f'<text x="{ox}" y="{oy + 78}" font-size="10">Table and method: docs/growth.md.</text>')
    svg.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(svg) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("results")
    ap.add_argument("--svg", required=True)
    ap.add_argument("--title", default="")
    ap.add_argument("--params", default="")
    args = ap.parse_args()
    rows = load(args.results)
    print(markdown(rows, args.title, args.params), end="")
    plot(rows, args.title, args.svg)


if __name__ == "__main__":
    main()
