#!/usr/bin/python3
"""check_figure: decodes the PNGs that `test_figure DIR` writes with an independent reader
(struct + zlib only: signature, IHDR, every chunk's CRC, inflate, all five PNG filters) and
checks their pixels against the layout rules in apps/figure.h:

- bars.png: each bar fills its documented sub-slot in its series' Okabe-Ito colour, bar
  heights are proportional to the values, the NaN bar is absent;
- bars_log.png: decade ticks equally spaced, the top of bar 10^k on tick k, annotations drawn;
- line_log.png: markers of series A on the (x tick, decade tick) grid, series B's markers at
  log10(2) and log10(200), no line across its NaN point;
- hist.png: counts 4 / 1 / 1 in bins 0 / 5 / 9 (NaN, Inf skipped, -5 and 7 clamped);
- hist_overlay.png / hist_side.png: alpha blend colours and side-by-side sub-bars;
- heat_*.png: every cell pixel equals the colour map (own viridis / RdBu tables, lerp) of
  its value, NaN cells light grey;
- bars_ci.png: black error bars from the CI's low to its high end, value labels above them,
  "n=K" under the groups (none for a NaN count);
- line_ci.png: error bars at the points that have an interval, none at the one without;
- heat_zero.png: an all-zero matrix is drawn as the bottom colour of the scale (viridis 0);
- the degenerate figures decode and say something ("no data" text, grey cells);
- every .pdf is one page whose MediaBox is the PNG's size at 0.75 pt per pixel (its own
  parser of the uncompressed page objects cairo writes), every .svg has that size in pt.
The data of each figure is repeated from tests/figure/test_figure.c.
"""
import math
import os
import struct
import subprocess
import sys
import tempfile
import zlib

AXIS = (51, 51, 51)
TEXT = (17, 17, 17)
WHITE = (255, 255, 255)
NAN_GREY = (211, 211, 211)
OKABE_ITO = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (230, 159, 0)]
VIRIDIS = [(68, 1, 84), (71, 45, 123), (59, 82, 139), (44, 114, 142), (33, 144, 140),
           (39, 173, 129), (93, 200, 99), (170, 220, 50), (253, 231, 37)]
RDBU = [(33, 102, 172), (67, 147, 195), (146, 197, 222), (209, 229, 240), (247, 247, 247),
        (253, 219, 199), (244, 165, 130), (214, 96, 77), (178, 24, 43)]

failures = 0
checks = 0


def check(cond, msg):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print("FAIL:", msg, file=sys.stderr)


class Image:
    def __init__(self, w, h, rows):
        self.w, self.h, self.rows = w, h, rows

    def px(self, x, y):
        r = self.rows[y]
        return (r[3 * x], r[3 * x + 1], r[3 * x + 2])


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def read_png(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("bad signature")
    pos, chunks = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        typ, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        if zlib.crc32(typ + body) & 0xFFFFFFFF != crc:
            raise ValueError("CRC mismatch in %r" % typ)
        chunks.append((typ, body))
        pos += 12 + n
    if pos != len(data) or chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND":
        raise ValueError("chunk layout")
    w, h, depth, ctype, comp, filt, inter = struct.unpack(">IIBBBBB", chunks[0][1])
    if (depth, ctype, comp, filt, inter) != (8, 2, 0, 0, 0):
        raise ValueError("not 8-bit RGB: %r" % ((depth, ctype, comp, filt, inter),))
    raw = zlib.decompress(b"".join(b for t, b in chunks if t == b"IDAT"))
    stride = 3 * w
    if len(raw) != h * (stride + 1):
        raise ValueError("IDAT holds %d bytes, expected %d" % (len(raw), h * (stride + 1)))
    rows, prev, filters = [], bytearray(stride), set()
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        filters.add(f)
        for i in range(stride):
            a = line[i - 3] if i >= 3 else 0
            b, c = prev[i], prev[i - 3] if i >= 3 else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                line[i] = (line[i] + paeth(a, b, c)) & 255
            elif f != 0:
                raise ValueError("filter %d" % f)
        rows.append(bytes(line))
        prev = line
    return Image(w, h, rows)


def longest_run(img, colour, horizontal):
    """(length, fixed coordinate, start) of the longest straight run of colour."""
    pat = bytes(colour)
    best = (0, 0, 0)
    if horizontal:
        for y in range(img.h):
            r, x = img.rows[y], 0
            while x < img.w:
                if r[3 * x:3 * x + 3] == pat:
                    x0 = x
                    while x < img.w and r[3 * x:3 * x + 3] == pat:
                        x += 1
                    if x - x0 > best[0]:
                        best = (x - x0, y, x0)
                else:
                    x += 1
    else:
        for x in range(img.w):
            y = 0
            while y < img.h:
                if img.px(x, y) == colour:
                    y0 = y
                    while y < img.h and img.px(x, y) == colour:
                        y += 1
                    if y - y0 > best[0]:
                        best = (y - y0, x, y0)
                else:
                    y += 1
    return best


def plot_rect(img):
    """Plot area [x0, x1) x [y0, y1) from the axis lines (y axis at x0-1, x axis at y1)."""
    hl, y1, hx = longest_run(img, AXIS, True)
    vl, xa, vy = longest_run(img, AXIS, False)
    return xa + 1, vy, hx + hl, y1


def runs(values):
    """Centres of runs of consecutive integers."""
    out, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            out.append((start + v) / 2)
            start = None
    return out


def y_ticks(img, x0, y0, y1):
    """Rows of the major y ticks (6 px long; minor ticks are 3 px), bottom first."""
    return sorted(runs([y for y in range(y0 - 2, y1 + 2) if img.px(x0 - 1 - 5, y) == AXIS]), reverse=True)


def x_ticks(img, x0, x1, y1):
    return runs([x for x in range(x0 - 2, x1 + 2) if img.px(x, y1 + 5) == AXIS])


def bar_top(img, x, base, colour):
    y = base
    while y > 0 and img.px(x, y - 1) == colour:
        y -= 1
    return y if img.px(x, base) == colour else None


def near(a, b, tol):
    return a is not None and b is not None and abs(a - b) <= tol


def close(c, d, tol=0):
    return all(abs(p - q) <= tol for p, q in zip(c, d))


def mix(dst, src, a):
    return tuple(int(p * (1 - a) + q * a + 0.5) for p, q in zip(dst, src))


def cmap(table, t):
    t = 0.0 if not t > 0 else 1.0 if t > 1 else t
    pos = t * 8
    i = min(int(pos), 7)
    f = pos - i
    return tuple(int(a + (b - a) * f + 0.5) for a, b in zip(table[i], table[i + 1]))


def is_ink(p):
    """A text pixel: dark grey (antialiased glyphs are TEXT blended over white; the only
    other dark greys are the axis lines and ticks, kept out of the regions searched)."""
    return max(p) < 150 and max(p) - min(p) < 24


def has_text(img, xa, xb, ya, yb):
    return any(is_ink(img.px(x, y)) for x in range(max(xa, 0), min(xb, img.w))
               for y in range(max(ya, 0), min(yb, img.h)))


def check_bars(d):
    img = read_png(os.path.join(d, "bars.png"))
    check((img.w, img.h) == (900, 560), "bars: size %dx%d" % (img.w, img.h))
    x0, y0, x1, y1 = plot_rect(img)
    check(x1 - x0 > 600 and y1 - y0 > 300, "bars: plot rect %r" % ((x0, y0, x1, y1),))
    vals = [[2, 4, 6], [1, 3, None]]
    W, base = x1 - x0, y1 - 1
    unit = None
    for s in range(2):
        for g in range(3):
            slot0, slot = x0 + W * g / 3, W / 3
            xa = slot0 + slot * (0.1 + 0.8 * s / 2)
            xb = slot0 + slot * (0.1 + 0.8 * (s + 1) / 2)
            cols = range(int(xa) + 2, int(xb) - 1)
            v = vals[s][g]
            if v is None:
                check(all(img.px(x, base) != OKABE_ITO[1] for x in range(int(slot0), int(slot0 + slot))),
                      "bars: NaN bar (series 1, group 2) was drawn")
                continue
            ok = all(img.px(x, base) == OKABE_ITO[s] for x in cols)
            check(ok, "bars: series %d group %d does not fill columns %d..%d" % (s, g, cols[0], cols[-1]))
            outside = [int(xa) - 2, int(xb) + 1]
            if s == 0:
                check(img.px(outside[0], base) != OKABE_ITO[0], "bars: bar %d,%d starts before %d" % (s, g, xa))
            if s == 1:
                check(img.px(outside[1], base) not in OKABE_ITO[:2], "bars: bar %d,%d ends after %d" % (s, g, xb))
            top = bar_top(img, (int(xa) + int(xb)) // 2, base, OKABE_ITO[s])
            h = base - top
            if unit is None:
                unit = h / v
            check(near(h, v * unit, 1.5), "bars: bar %d,%d height %d, expected %.1f (value %g)" % (s, g, h, v * unit, v))
    ticks = y_ticks(img, x0, y0, y1)
    check(len(ticks) >= 4, "bars: %d y ticks" % len(ticks))
    # 0 at the bottom row; every tick step equal (linear axis)
    check(near(ticks[0], base, 0.5), "bars: tick 0 at row %s, expected %d" % (ticks[0], base))
    steps = [a - b for a, b in zip(ticks, ticks[1:])]
    check(max(steps) - min(steps) <= 1, "bars: linear ticks unevenly spaced %r" % steps)
    check(has_text(img, 0, 900, 0, 40), "bars: no title")


def check_bars_log(d):
    img = read_png(os.path.join(d, "bars_log.png"))
    x0, y0, x1, y1 = plot_rect(img)
    ticks = y_ticks(img, x0, y0, y1)
    steps = [a - b for a, b in zip(ticks, ticks[1:])]
    check(len(ticks) >= 4 and max(steps) - min(steps) <= 1, "bars_log: decade ticks %r unevenly spaced" % ticks)
    base, W = y1 - 1, x1 - x0
    for k in range(4):
        slot0, slot = x0 + W * k / 4, W / 4
        xm = int(slot0 + slot / 2)
        top = bar_top(img, xm, base, OKABE_ITO[0])
        check(near(top, ticks[k], 1), "bars_log: top of bar 10^%d at row %s, tick at %s" % (k, top, ticks[k]))
        if top is not None:
            check(has_text(img, int(slot0), int(slot0 + slot), top - 25, top - 1),
                  "bars_log: no annotation above bar 10^%d" % k)


def check_line_log(d):
    img = read_png(os.path.join(d, "line_log.png"))
    x0, y0, x1, y1 = plot_rect(img)
    yt = y_ticks(img, x0, y0, y1)
    xt = x_ticks(img, x0, x1, y1)
    check(len(yt) == 4, "line_log: %d decade ticks (1..1000), expected 4" % len(yt))
    check(len(xt) == 7, "line_log: %d x ticks (0, 0.5, .., 3), expected 7" % len(xt))
    if len(yt) != 4 or len(xt) != 7:
        return
    steps = [a - b for a, b in zip(yt, yt[1:])]
    check(max(steps) - min(steps) <= 1, "line_log: decades unevenly spaced %r" % yt)
    A, B = OKABE_ITO[0], OKABE_ITO[1]
    for k in range(4):  # A = (k, 10^k): a filled circle on tick (2k, k)
        cx, cy = int(round(xt[2 * k])), int(round(yt[k]))
        ok = all(img.px(cx + dx, cy + dy) == A for dx in (-2, 0, 2) for dy in (-2, 0, 2))
        check(ok, "line_log: no marker of A at (%d, %d) for point %d" % (cx, cy, k))
    for xi, v in ((1, 2.0), (5, 200.0)):  # B's squares at x = 0.5, 2.5
        e = int(math.floor(math.log10(v)))
        cy = yt[e] + (yt[e + 1] - yt[e]) * (math.log10(v) - e)
        cx = int(round(xt[xi]))
        got = [y for y in range(y0, y1) if img.px(cx, y) == B]
        centre = (got[0] + got[-1]) / 2 if got else None
        check(near(centre, cy, 1.5), "line_log: B's marker for %g centred at row %s, expected %.1f" % (v, centre, cy))
    # B's NaN at x = 1.5 breaks its line: no B pixel between the markers at 0.5 and 2.5
    gap = [x for x in range(int(xt[1]) + 12, int(xt[5]) - 11) for y in range(y0, y1) if img.px(x, y) == B]
    check(not gap, "line_log: B drawn across its NaN point (%d pixels)" % len(gap))


def check_hist(d):
    img = read_png(os.path.join(d, "hist.png"))
    x0, y0, x1, y1 = plot_rect(img)
    base, C = y1 - 1, OKABE_ITO[0]
    heights = []
    for b in range(10):
        xm = int(x0 + (b + 0.5) / 10 * (x1 - 1 - x0))
        top = bar_top(img, xm, base, C)
        heights.append(None if top is None else base - top)
    unit = heights[5] or 0
    want = [4, None, None, None, None, 1, None, None, None, 1]
    ok = unit > 10 and all(h == w if w is None else near(h, w * unit, 2) for h, w in zip(heights, want))
    check(ok, "hist: bin heights %r, expected proportional to %r" % (heights, want))


def majority(img, x, ya, yb):
    counts = {}
    for y in range(ya, yb):
        p = img.px(x, y)
        counts[p] = counts.get(p, 0) + 1
    return max(counts, key=counts.get)


def check_hist_overlay(d):
    img = read_png(os.path.join(d, "hist_overlay.png"))
    x0, y0, x1, y1 = plot_rect(img)
    base = y1 - 1
    xm = int(x0 + 0.1 * (x1 - 1 - x0))  # bin 0: s0 count 2, s1 count 1 (top of axis = 2)
    both = mix(mix(WHITE, OKABE_ITO[0], 0.5), OKABE_ITO[1], 0.5)
    only0 = mix(WHITE, OKABE_ITO[0], 0.5)
    mid = (base + y0) // 2
    check(close(majority(img, xm, mid + 5, base), both, 2), "hist_overlay: overlap colour %r, expected %r"
          % (majority(img, xm, mid + 5, base), both))
    check(close(majority(img, xm, y0 + 2, mid - 5), only0, 2), "hist_overlay: series 0 colour %r, expected %r"
          % (majority(img, xm, y0 + 2, mid - 5), only0))
    xm = int(x0 + 0.9 * (x1 - 1 - x0))  # bin 4: s1 only
    check(close(majority(img, xm, mid + 5, base), mix(WHITE, OKABE_ITO[1], 0.5), 2), "hist_overlay: bin 4 colour")

    img = read_png(os.path.join(d, "hist_side.png"))
    x0, y0, x1, y1 = plot_rect(img)
    base = y1 - 1
    xa, xb = x0, x0 + 0.2 * (x1 - 1 - x0)  # bin 0; sub-bars in its middle 90%
    w = (xb - xa) * 0.9 / 2
    for s, frac in ((0, 1.0), (1, 0.5)):
        xm = int(xa + (xb - xa) * 0.05 + w * (s + 0.5))
        top = bar_top(img, xm, base, OKABE_ITO[s])
        check(top is not None, "hist_side: series %d missing from bin 0" % s)
        if s == 0 and top is not None:
            full = base - top
        elif top is not None:
            check(near(base - top, full * frac, 1.5), "hist_side: fraction bar %d / %d" % (base - top, full))


def heat_frame(img):
    """Cell area [x0, x1) x [y0, y1) inside the 1 px border."""
    hl, ytop, xl = longest_run(img, AXIS, True)
    x0, x1, y0 = xl + 1, xl + hl - 1, ytop + 1
    y = y0
    while y < img.h and img.px(x0 - 1, y) == AXIS:
        y += 1
    return x0, y0, x1, y - 1


def check_heat(d, name, values, rows, cols, table, lo, hi, annotated):
    img = read_png(os.path.join(d, name))
    x0, y0, x1, y1 = heat_frame(img)
    W, H = x1 - x0, y1 - y0
    check(W > 100 and H > 100, "%s: heatmap frame %r" % (name, (x0, y0, x1, y1)))
    bad, worst, text = 0, 0, set()
    for y in range(y0, y1):
        r = min(int((y + 0.5 - y0) * rows / H), rows - 1)
        for x in range(x0, x1):
            c = min(int((x + 0.5 - x0) * cols / W), cols - 1)
            v = values[r * cols + c]
            want = NAN_GREY if v is None else cmap(table, (v - lo) / (hi - lo))
            got = img.px(x, y)
            if not close(got, want):
                # an annotation: antialiased dark or white text inside a finite cell, away
                # from the cell's edges
                cx0, cx1 = x0 + c * W / cols, x0 + (c + 1) * W / cols
                if annotated and v is not None and cx0 + 2 <= x < cx1 - 2:
                    text.add((r, c))
                    continue
                bad += 1
                worst = max(worst, max(abs(p - q) for p, q in zip(got, want)))
    check(bad == 0, "%s: %d cell pixels off the colour map (worst channel error %d)" % (name, bad, worst))
    if annotated:
        finite = {(i // cols, i % cols) for i, v in enumerate(values) if v is not None}
        check(text == finite, "%s: annotated cells %r, expected %r" % (name, sorted(text), sorted(finite)))
    return img, (x0, y0, x1, y1)


def check_heatmaps(d):
    N = None
    seq = [0, 0.5, 1, N, 0.25, 0.75, 2, -1, 0.1, 0.2, 0.3, 0.4]
    img, (x0, y0, x1, y1) = check_heat(d, "heat_seq.png", seq, 3, 4, VIRIDIS, 0.0, 1.0, False)
    cw, ch = (x1 - x0) / 4, (y1 - y0) / 3
    at = lambda r, c: img.px(int(x0 + (c + 0.5) * cw), int(y0 + (r + 0.5) * ch))  # noqa: E731
    check(at(0, 0) == (68, 1, 84) and at(0, 2) == (253, 231, 37) and at(0, 1) == (33, 144, 140),
          "heat_seq: viridis anchors %r %r %r" % (at(0, 0), at(0, 1), at(0, 2)))
    check(at(0, 3) == NAN_GREY, "heat_seq: NaN cell %r, expected light grey" % (at(0, 3),))
    check(at(1, 2) == at(0, 2) and at(1, 3) == at(0, 0), "heat_seq: out-of-range values not clamped")

    div = [-2, 0, 2, -1, 1, N]
    img, (x0, y0, x1, y1) = check_heat(d, "heat_div.png", div, 2, 3, RDBU, -2.0, 2.0, True)
    corner = lambda r, c: img.px(int(x0 + c * (x1 - x0) / 3) + 3, int(y0 + r * (y1 - y0) / 2) + 3)  # noqa: E731
    check(corner(0, 0) == (33, 102, 172) and corner(0, 1) == (247, 247, 247) and corner(0, 2) == (178, 24, 43),
          "heat_div: RdBu anchors %r %r %r" % (corner(0, 0), corner(0, 1), corner(0, 2)))
    check(corner(1, 2) == NAN_GREY, "heat_div: NaN cell %r" % (corner(1, 2),))

    tok = [(r - 1.5) * math.sin(c / 7.0) for r in range(4) for c in range(300)]
    m = max(abs(v) for v in tok)
    check_heat(d, "heat_tokens.png", tok, 4, 300, RDBU, -m, m, False)


def check_degenerate(d):
    for name in ("empty_bar.png", "nan_line.png", "empty_hist.png"):
        img = read_png(os.path.join(d, name))
        check((img.w, img.h) == (900, 560), "%s: size" % name)
        check(has_text(img, 350, 550, 240, 340), "%s: no 'no data' message in the middle" % name)
        check(longest_run(img, AXIS, True)[0] < 100, "%s: axes drawn without data" % name)
    img = read_png(os.path.join(d, "nan_heat.png"))
    x0, y0, x1, y1 = heat_frame(img)
    cells = {img.px(x, (y0 + y1) // 2) for x in range(x0, x1)}
    check(cells == {NAN_GREY}, "nan_heat: all-NaN cells %r" % cells)
    for name in ("equal_line.png", "equal_hist.png"):
        img = read_png(os.path.join(d, name))
        x0, y0, x1, y1 = plot_rect(img)
        n = sum(1 for y in range(y0, y1) for x in range(x0, x1, 3) if img.px(x, y) == OKABE_ITO[0])
        check(n > 50, "%s: series not drawn (%d pixels)" % (name, n))
    img = read_png(os.path.join(d, "tiny.png"))
    check((img.w, img.h) == (160, 120), "tiny: size %dx%d" % (img.w, img.h))


def check_bars_ci(d):
    img = read_png(os.path.join(d, "bars_ci.png"))
    x0, y0, x1, y1 = plot_rect(img)
    W, base = x1 - x0, y1 - 1
    vals, lo, hi = [[2, 4], [1, 3]], [[1.5, 3], [0.5, None]], [[2.5, 5], [1.5, None]]
    BLACK = (0, 0, 0)
    unit = None
    for s in range(2):
        for g in range(2):
            slot0, slot = x0 + W * g / 2, W / 2
            xa = round(slot0 + slot * (0.1 + 0.8 * s / 2))
            xb = round(slot0 + slot * (0.1 + 0.8 * (s + 1) / 2))
            xm = (xa + xb) // 2
            side = xa + 3  # a column of the bar away from its error bar
            top = bar_top(img, side, base, OKABE_ITO[s])
            if unit is None and top is not None:
                unit = (base - top) / vals[s][g]
            rows = [y for y in range(y0, y1) if img.px(xm, y) == BLACK]
            if hi[s][g] is None:
                check(not rows, "bars_ci: bar %d,%d has an error bar without an interval" % (s, g))
                continue
            check(bool(rows) and unit is not None, "bars_ci: no error bar on bar %d,%d" % (s, g))
            if not rows or unit is None:
                continue
            want_top, want_bot = base - hi[s][g] * unit, base - lo[s][g] * unit
            check(near(rows[0], want_top, 1.5) and near(rows[-1], want_bot, 1.5),
                  "bars_ci: error bar %d,%d spans rows %d..%d, expected %.1f..%.1f" % (s, g, rows[0], rows[-1],
                                                                                       want_top, want_bot))
            cap = [x for x in range(xa, xb) if img.px(x, rows[0]) == BLACK]
            check(len(cap) >= 5, "bars_ci: error bar %d,%d has no cap (%d px)" % (s, g, len(cap)))
            check(has_text(img, xa, xb, rows[0] - 22, rows[0] - 2), "bars_ci: no value label above bar %d,%d" % (s, g))
    # counts: gold has n per bar (10 and 7), mask only the draft's 8 (the target's is NaN)
    ny0, ny1 = y1 + 26, min(y1 + 46, img.h)
    for g, s, want in ((0, 0, True), (0, 1, True), (1, 0, False), (1, 1, True)):
        slot0, slot = x0 + W * g / 2, W / 2
        xa, xb = int(slot0 + slot * (0.1 + 0.4 * s)), int(slot0 + slot * (0.1 + 0.4 * (s + 1)))
        got = has_text(img, xa + 4, xb - 4, ny0, ny1)
        check(got == want, "bars_ci: count label under bar %d,%d %s" % (s, g, "missing" if want else "drawn for NaN"))


def check_line_ci(d):
    img = read_png(os.path.join(d, "line_ci.png"))
    x0, y0, x1, y1 = plot_rect(img)
    xt = x_ticks(img, x0, x1, y1)
    BLACK = (0, 0, 0)
    # x ticks at 0, 0.5, ..., 2 (or 0, 1, 2): the points sit on the first, middle and last
    pts = [xt[0], xt[len(xt) // 2], xt[-1]]
    for k, want in enumerate((True, False, True)):
        xm = int(round(pts[k]))
        n = sum(1 for x in range(xm - 2, xm + 3) for y in range(y0, y1) if img.px(x, y) == BLACK)
        check((n > 10) == want, "line_ci: point %d: %d black error bar pixels" % (k, n))


def check_heat_zero(d):
    img = read_png(os.path.join(d, "heat_zero.png"))
    x0, y0, x1, y1 = heat_frame(img)
    bottom = cmap(VIRIDIS, 0.0)
    cells = [img.px(int(x0 + (c + 0.5) * (x1 - x0) / 3), int(y0 + (r + 0.2) * (y1 - y0) / 2))
             for r in range(2) for c in range(3)]
    check(all(p == bottom for p in cells), "heat_zero: cells %r, expected the scale's bottom %r" % (cells, bottom))


def pdf_pages(data):
    """MediaBox of each /Type /Page object (cairo writes page objects uncompressed)."""
    import re
    boxes = []
    for m in re.finditer(rb"/Type\s*/Page\b(?!s)(.*?)>>", data, re.S):
        body = m.group(1)
        mb = re.search(rb"/MediaBox\s*\[\s*([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s*\]", body)
        boxes.append(tuple(float(v) for v in mb.groups()) if mb else None)
    if not boxes:  # the box may sit on the /Pages node
        mb = re.search(rb"/MediaBox\s*\[\s*([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s*\]", data)
        boxes = [tuple(float(v) for v in mb.groups())] if mb else []
    return boxes


def check_vector(d):
    names = sorted(n for n in os.listdir(d) if n.endswith(".pdf"))
    check(len(names) >= 19, "%d PDF files" % len(names))
    for name in names:
        data = open(os.path.join(d, name), "rb").read()
        check(data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF"), "%s: not a PDF file" % name)
        png = read_png(os.path.join(d, name[:-4] + ".png"))
        boxes = pdf_pages(data)
        want = (0.0, 0.0, png.w * 0.75, png.h * 0.75)
        check(len(boxes) == 1 and boxes[0] is not None and all(abs(a - b) < 0.01 for a, b in zip(boxes[0], want)),
              "%s: pages %r, expected one of %r" % (name, boxes, want))
        check(b"/FontFile" in data or b"/Font" in data, "%s: no embedded font" % name)
    svg = open(os.path.join(d, "bars.svg")).read()
    check('width="675pt"' in svg and 'height="420pt"' in svg, "bars.svg: size is not 675 x 420 pt")


def main():
    exe = sys.argv[1]
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run([exe, d], capture_output=True, text=True)
        sys.stderr.write(p.stderr)
        check(p.returncode == 0, "test_figure exited %d" % p.returncode)
        for step in (check_bars, check_bars_log, check_line_log, check_hist, check_hist_overlay,
                     check_heatmaps, check_degenerate, check_bars_ci, check_line_ci, check_heat_zero,
                     check_vector):
            try:
                step(d)
            except (OSError, ValueError, IndexError) as e:
                check(False, "%s: %s" % (step.__name__, e))
    print("check_figure: %d checks, %d failed" % (checks, failures), file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
