"""What the comparison benchmarks (lab/bench/all and the benchmarks it runs) share:
percentiles, CPU time and memory of process trees from /proc, the machine and version
lines every result carries, a CSV per benchmark, SVG plots of distributions written
directly (no plotting library: a strip of every sample with its quartile box per series),
and splicing a generated section into docs/benchmarks.md between markers."""

import csv
import math
import os
import platform
import subprocess
import time
from pathlib import Path

from .util import REPO_DIR

DOCS = REPO_DIR / "docs"
RESULTS = DOCS / "bench"
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- statistics -------------------------------------------------------------------------------

def pct(values, p):
    """Nearest-rank percentile of a non-empty list."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def summary(values):
    """(n, min, median, p95, max) of the non-None values (None for each when empty)."""
    v = [x for x in values if x is not None]
    if not v:
        return (0, None, None, None, None)
    return (len(v), min(v), pct(v, 50), pct(v, 95), max(v))


def fmt_ms(seconds, digits=None):
    """Seconds as milliseconds for a table: 3 significant figures, '-' for None."""
    if seconds is None:
        return "-"
    v = seconds * 1000
    if digits is not None:
        return f"{v:.{digits}f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


# -- processes ------------------------------------------------------------------------------------

def _stat(pid):
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def children(pid):
    """Direct children of pid (every thread's children file)."""
    kids = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                kids += [int(x) for x in (task / "children").read_text().split()]
            except OSError:
                pass
    except OSError:
        pass
    return kids


def tree(pid):
    """pid and all its descendants (bounded walk)."""
    seen, todo = [], [pid]
    while todo and len(seen) < 10000:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo += children(p)
    return seen


def cpu_seconds(pid, with_children=True):
    """utime + stime of pid, plus cutime + cstime (its reaped children: a checker's curl
    processes) when with_children; 0 for a process that is gone."""
    st = _stat(pid)
    if not st:
        return 0.0
    # Fields 14-17 of /proc/PID/stat; st starts at field 3 (state).
    ut, stime, cut, cst = (int(x) for x in st[11:15])
    return (ut + stime + ((cut + cst) if with_children else 0)) / TICKS


def sched_cpu(pid):
    """CPU seconds of pid's live threads from /proc/PID/task/*/schedstat (nanoseconds, so
    finer than the 10 ms clock ticks of /proc/PID/stat; threads that already exited are
    not in it)."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        pass
    return total / 1e9


def tree_sched_cpu(pid):
    return sum(sched_cpu(p) for p in tree(pid))


def tree_cpu(pid):
    """CPU seconds of a process tree: every live member's own time and what each reaped."""
    return sum(cpu_seconds(p) for p in tree(pid))


def rss_bytes(pid):
    """Resident set size now (VmRSS) and its peak (VmHWM), in bytes."""
    rss = hwm = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, hwm


def tree_rss(pid):
    return sum(rss_bytes(p)[0] for p in tree(pid))


def rss_split(pid):
    """(anonymous, file-backed + shared) resident bytes (RssAnon, RssFile + RssShmem): what
    the process allocated against what it maps from its binary and libraries."""
    anon = other = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                anon = int(line.split()[1]) * 1024
            elif line.startswith(("RssFile:", "RssShmem:")):
                other += int(line.split()[1]) * 1024
    except OSError:
        pass
    return anon, other


def tree_rss_split(pid):
    parts = [rss_split(p) for p in tree(pid)]
    return sum(a for a, _ in parts), sum(f for _, f in parts)


# -- where and with what ------------------------------------------------------------------------

def deb_version(pkg):
    p = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
    return f"{pkg} {p.stdout.strip()}" if p.returncode == 0 and p.stdout.strip() else f"{pkg} (not installed)"


def loadavg():
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine():
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) // 1024 // 1024
    return f"{os.cpu_count()} vCPUs ({model}), {mem} GiB, Linux {platform.release()}"


def anyguard_version(binary):
    p = subprocess.run([binary, "--version"], capture_output=True, text=True)
    rev = subprocess.run(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return f"{(p.stdout or '').strip() or 'anyguard'} (commit {rev.stdout.strip()}, release build)"


def now_utc():
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


# -- outputs ---------------------------------------------------------------------------------------

def write_csv(name, header, rows):
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _nice_ticks(lo, hi, log):
    if log:
        ticks = []
        k = math.floor(math.log10(lo))
        while 10 ** k <= hi * 1.0001 and len(ticks) < 40:
            for m in (1, 2, 5):
                v = m * 10 ** k
                if lo <= v <= hi:
                    ticks.append(v)
            k += 1
        return ticks
    span = hi - lo
    step = 10 ** math.floor(math.log10(span / 5)) if span > 0 else 1
    for m in (1, 2, 5, 10):
        if span / (step * m) <= 8:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _tick_label(v, unit):
    if unit == "ms" and v >= 1000:
        return f"{v / 1000:g} s"
    return f"{v:g} {unit}" if unit else f"{v:g}"


def strip_svg(name, title, series, unit="ms", log=True, note=""):
    """One row per series (label, values): every sample as a dot (spread vertically by a
    fixed pattern so that equal values stay visible), the box from p25 to p75, a bar at the
    median, whiskers to min and max. `log` puts the x axis on a log scale (values must be
    positive). Writes docs/bench/NAME.svg and returns its path."""
    series = [(label, [v for v in values if v is not None]) for label, values in series]
    series = [(label, v) for label, v in series if v]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.svg"
    allv = [x for _, v in series for x in v]
    if not allv:
        path.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="400" height="40"><text x="10" y="25">'
                        'no samples</text></svg>\n')
        return path
    if log:
        allv = [max(x, 1e-3) for x in allv]
    lo, hi = min(allv), max(allv)
    if log:
        lo, hi = 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi))
    else:
        lo, hi = min(0, lo), hi * 1.05 if hi > 0 else 1
    label_w = max(200, 7 * max(len(label) for label, _ in series) + 20)
    plot_w, row_h, top = 560, 34, 40
    width, height = label_w + plot_w + 30, top + row_h * len(series) + 50

    def x(v):
        if log:
            v = max(v, lo)
            return label_w + plot_w * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
        return label_w + plot_w * (v - lo) / (hi - lo)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="20" font-size="14" font-weight="bold">{_esc(title)}</text>']
    for t in _nice_ticks(lo, hi, log):
        xt = x(t)
        out.append(f'<line x1="{xt:.1f}" y1="{top - 5}" x2="{xt:.1f}" y2="{top + row_h * len(series)}" '
                   'stroke="#ddd"/>')
        out.append(f'<text x="{xt:.1f}" y="{top + row_h * len(series) + 16}" text-anchor="middle" '
                   f'fill="#444">{_esc(_tick_label(t, unit))}</text>')
    for i, (label, v) in enumerate(series):
        yc = top + row_h * i + row_h / 2
        colour = "#1f6fb4" if label.startswith("anyguard") else "#c0504d"
        out.append(f'<text x="{label_w - 8}" y="{yc + 4:.1f}" text-anchor="end">{_esc(label)}</text>')
        mn, q1, med, q3, mx = min(v), pct(v, 25), pct(v, 50), pct(v, 75), max(v)
        out.append(f'<line x1="{x(mn):.1f}" y1="{yc:.1f}" x2="{x(mx):.1f}" y2="{yc:.1f}" stroke="#888"/>')
        out.append(f'<rect x="{x(q1):.1f}" y="{yc - 9:.1f}" width="{max(x(q3) - x(q1), 1):.1f}" height="18" '
                   f'fill="{colour}" fill-opacity="0.15" stroke="{colour}"/>')
        out.append(f'<line x1="{x(med):.1f}" y1="{yc - 11:.1f}" x2="{x(med):.1f}" y2="{yc + 11:.1f}" '
                   f'stroke="{colour}" stroke-width="3"/>')
        for j, val in enumerate(v):
            dy = ((j * 7) % 13 - 6) * 1.1
            out.append(f'<circle cx="{x(val):.1f}" cy="{yc + dy:.1f}" r="2" fill="{colour}" fill-opacity="0.6"/>')
    if note:
        out.append(f'<text x="10" y="{height - 8}" fill="#444">{_esc(note)}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")
    return path


def bar_svg(name, title, bars, unit="", note=""):
    """Horizontal bars (label, value) on a linear axis: for single figures (CPU, RSS)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.svg"
    bars = [(label, v) for label, v in bars if v is not None]
    hi = max([v for _, v in bars] + [1e-9]) * 1.1
    label_w = max(200, 7 * max([len(label) for label, _ in bars] + [0]) + 20)
    plot_w, row_h, top = 560, 26, 40
    width, height = label_w + plot_w + 90, top + row_h * len(bars) + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="20" font-size="14" font-weight="bold">{_esc(title)}</text>']
    for i, (label, v) in enumerate(bars):
        y = top + row_h * i
        colour = "#1f6fb4" if label.startswith("anyguard") else "#c0504d"
        w = plot_w * v / hi
        out.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end">{_esc(label)}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 4}" width="{max(w, 1):.1f}" height="16" fill="{colour}" '
                   'fill-opacity="0.7"/>')
        out.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 16}">{v:.3g} {_esc(unit)}</text>')
    if note:
        out.append(f'<text x="10" y="{height - 8}" fill="#444">{_esc(note)}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")
    return path


def splice_doc(name, text, doc=DOCS / "benchmarks.md"):
    """Replaces the block between `<!-- bench15:NAME:begin -->` and its end marker in
    docs/benchmarks.md with `text` (appended at the end, with its markers, the first time)."""
    begin, end = f"<!-- bench15:{name}:begin -->", f"<!-- bench15:{name}:end -->"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    cur = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if begin in cur and end in cur:
        head, rest = cur.split(begin, 1)
        cur = head + block + rest.split(end, 1)[1]
    else:
        cur = cur.rstrip() + "\n\n" + block + "\n"
    doc.write_text(cur)
