"""Numba kernels of the one-pass MaxBoxAcc curve (``wsol.metrics.boxacc``, ``method="fast"``).

Every numba kernel of wsol lives here. ``boxacc_counts`` scores a batch of maps in ONE call: per map it
quantises, fills the holes, sweeps the level sets once, scores every contour box against the GT boxes and adds
the correct-image counts of every threshold -- no Python runs per map or per threshold, no memory is allocated
per map beyond a few 256-entry arrays. ``level_records`` is the same computation for one 8-bit map, returning the
boxes themselves (``wsol.metrics.boxacc.level_boxes``: inspection, tests); ``level_structure`` returns the
hole filling and the contour counts of every level (tests).

Conventions, stated once here:
    * Level ``L`` (0..255) is the binary mask ``{u8 > L}`` (``cv2.threshold(u8, L, 255, THRESH_BINARY)``).
    * Pixels are addressed in a PADDED index space ``P = (y + 1) * (W + 2) + (x + 1)``: the one-pixel frame
      around the map never becomes active, so the 8 (or 4) neighbours of any pixel sit at fixed offsets and
      no bounds test is needed. Padded indices keep raster order. In the per-pixel loops indices are unsigned
      (``_u``): numba adds a negative-index test to every signed index.
    * Components: ``lab[P]`` is -1 for a pixel not yet active, else the id of the component it joined (ids
      number components in order of creation); components merge by union-find over ids (``cpar``, union by
      size, path halving), so a merge touches no pixel. The state of component ``id`` is the row
      ``comp[id, :]`` (columns ``_X0`` ... ``_DIRTY`` below). The outer sweep keeps the row of the component
      the last pixel joined in local variables (consecutive pixels of a level mostly join the same one).
    * A joining pixel looks up one root, not eight: active 8-neighbours that are 8-adjacent to each other are
      already one component, so the pixel needs one root per group of mutually adjacent active neighbours
      (``_neighbour_groups``: one group in the common case, at most four). When the pixel before it in the
      sweep was its left neighbour, its component and five of its eight neighbour bits are already known.
    * A record is a contour box in wsolevaluation's convention plus ``[lo, hi]``, the levels over which it
      holds. A component with inclusive pixel box ``(x0, y0, x1, y1)`` has the outer contour box
      ``[x0, y0, min(x1 + 1, W - 1), min(y1 + 1, H - 1)]`` (``boundingRect`` is the pixel box, then ``x + w``);
      a hole's contour runs through the foreground pixels around it, so its box is the hole's pixel box grown
      by one pixel on each side, then ``x + w``: ``[x0 - 1, y0 - 1, min(x1 + 2, W - 1), min(y1 + 2, H - 1)]``
      (a hole never touches the edge). A component gets a new record at a needed level only when its box is
      not that of its open record: at most as many records as pixels, and on smooth maps a few per level.
    * IoU is ``wsol.boxes.box_iou``'s, computed in float64 from the same integers (so bit for bit the same),
      and a box is correct at IoU threshold ``t`` iff ``iou >= t / 100``.

Per map (``_load_float`` then ``_map_levels``): ``psi``, the grayscale hole filling, by Vincent's hybrid
reconstruction (its raster scan fused with loading the map, its histogram kept up to date as values change);
one counting sort gives the pixels by ``psi`` and the hole pixels (``psi > u8``) by ``u8``; a 4-connected sweep
of the hole pixels gives the hole contours; the Euler numbers of ``{u8 > L}`` minus those of ``{psi > L}``,
summed over the 2x2 windows that touch a hole pixel only (all others cancel), count the outer contours nested
inside holes; an 8-connected sweep of ``{psi > L}`` gives V1 (the largest filled contour) and, unless some needed
level has a nested contour, every outer contour; otherwise a second sweep of ``{u8 > L}`` gives them.

All scratch memory for maps of a given shape lives in one byte buffer (``workspace_size``, about 80 bytes per
pixel), allocated once by the caller and reused for every map and every call.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["boxacc_counts", "level_records", "level_structure", "workspace_size"]

# Columns of the per-component state array: the pixel box, the contour area (half pixels), the size (union by
# size), and (hole sweep) whether it changed since the last reported level. A row is 32 bytes (one column
# spare). A component has been absorbed iff ``cpar[id] != id``.
_X0, _Y0, _X1, _Y1, _AREA, _SIZE, _DIRTY = 0, 1, 2, 3, 4, 5, 6
_N_STATE = 8
#: Levels 0..255 (255 is always empty: u8 > 255 never holds).
_N_LEVELS = 256

_jit = njit(cache=True, nogil=True)


def _area_credit_table() -> np.ndarray:
    """Half pixels of contour area a pixel brings, by the mask of its already-active 8 neighbours.

    ``cv2.contourArea`` of the outer contour of a hole-free 8-connected set F equals
    ``#(2x2 windows with 4 pixels in F) + #(windows with 3 in F) / 2``. As pixels arrive, a window gains one
    half pixel when its third pixel arrives and one more with its fourth, i.e. a pixel earns one half pixel
    for each of its four windows in which at least two of the other three pixels are already active. (Those
    pixels are 8-adjacent to it, so the credit goes to the right component; pixels of the frame are never
    active, so only windows inside the map count.) Mask bits, in raster order: up-left, up, up-right, left,
    right, down-left, down, down-right.
    """
    # the other three pixels of the windows up-left, up-right, down-left and down-right of the pixel
    windows = ((0, 1, 3), (1, 2, 4), (3, 5, 6), (4, 6, 7))
    table = np.zeros(256, np.int32)
    for mask in range(256):
        for a, b, c in windows:
            if ((mask >> a) & 1) + ((mask >> b) & 1) + ((mask >> c) & 1) >= 2:
                table[mask] += 1
    return table


def _neighbour_groups() -> tuple[np.ndarray, np.ndarray]:
    """By the mask of active 8-neighbours (bits as in ``_area_credit_table``): how many groups of mutually
    8-adjacent active neighbours there are (0..4), and one neighbour of each (its bit index). Neighbours of
    one group are one component already, so a joining pixel needs one root per group."""
    where = [(-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)]
    count = np.zeros(256, np.int64)
    reps = np.zeros((256, 4), np.int64)
    for mask in range(256):
        todo = [k for k in range(8) if (mask >> k) & 1]
        while todo:
            group = [todo.pop(0)]
            reps[mask, count[mask]] = group[0]
            count[mask] += 1
            while group:
                k = group.pop()
                near = [j for j in todo if max(abs(where[j][0] - where[k][0]), abs(where[j][1] - where[k][1])) == 1]
                todo = [j for j in todo if j not in near]
                group.extend(near)
    return count, reps


#: compile-time constants of the kernels
_AREA_CREDIT = _area_credit_table()
_GROUPS, _GROUP_REPS = _neighbour_groups()


# ------------------------------------------------------------------------------------------- workspace
@_jit
def _region(off: int, nbytes: int) -> int:
    """End of a region of ``nbytes`` starting at ``off``, rounded up to a cache line."""
    return off + (nbytes + 63) // 64 * 64


@_jit
def workspace_size(height: int, width: int) -> int:
    """Bytes of scratch memory the kernels need for maps of ``height x width`` (about 80 per pixel)."""
    n = height * width
    n2 = (height + 2) * (width + 2)
    off = 0
    for nbytes in (n2, n2, n2, 4 * n2, 4 * n2, 4 * n, 4 * n, 4 * _N_STATE * n, 4 * n, 4 * n, 4 * n, 4 * n,
                   n, 4 * n, 16 * 2 * n, 4 * 2 * n, 4 * 2 * n, 4 * n):
        off = _region(off, nbytes)
    return off


@_jit
def _carve(ws, height, width):  # noqa: ANN001, ANN202  (a tuple of 18 typed views, listed below)
    """The scratch arrays, as views of the byte buffer ``ws`` (``workspace_size(height, width)`` bytes).

    ``val``/``rec`` (uint8, padded: the map and its reconstruction ``psi``; the frame is 255), ``queued``
    (bool, padded) and ``queue`` (int32, padded) of the reconstruction; ``lab`` (int32, padded) the component
    of each pixel; ``order``/``hole_order`` (int32 ``[n]``) pixel orders; ``comp`` (int32 ``[n, 8]``), ``crec``
    (open record), ``dirty``, ``active``, ``slot`` (int32 ``[n]``), ``alive`` (bool ``[n]``), ``end_next``
    (int32 ``[n]``) of the sweeps; ``rbox`` (int32 ``[2n, 4]``), ``rlo``, ``rhi`` (int32 ``[2n]``) the records:
    outer contours from row 0, hole contours from row ``n``; ``cpar`` (int32 ``[n]``) the component union-find.
    """
    n = height * width
    n2 = (height + 2) * (width + 2)
    o0 = 0
    o1 = _region(o0, n2)
    o2 = _region(o1, n2)
    o3 = _region(o2, n2)
    o4 = _region(o3, 4 * n2)
    o5 = _region(o4, 4 * n2)
    o6 = _region(o5, 4 * n)
    o7 = _region(o6, 4 * n)
    o8 = _region(o7, 4 * _N_STATE * n)
    o9 = _region(o8, 4 * n)
    o10 = _region(o9, 4 * n)
    o11 = _region(o10, 4 * n)
    o12 = _region(o11, 4 * n)
    o13 = _region(o12, n)
    o14 = _region(o13, 4 * n)
    o15 = _region(o14, 16 * 2 * n)
    o16 = _region(o15, 4 * 2 * n)
    o17 = _region(o16, 4 * 2 * n)
    val = ws[o0 : o0 + n2]
    rec = ws[o1 : o1 + n2]
    queued = ws[o2 : o2 + n2].view(np.bool_)
    queue = ws[o3 : o3 + 4 * n2].view(np.int32)
    lab = ws[o4 : o4 + 4 * n2].view(np.int32)
    order = ws[o5 : o5 + 4 * n].view(np.int32)
    hole_order = ws[o6 : o6 + 4 * n].view(np.int32)
    comp = ws[o7 : o7 + 4 * _N_STATE * n].view(np.int32).reshape((n, _N_STATE))
    crec = ws[o8 : o8 + 4 * n].view(np.int32)
    dirty = ws[o9 : o9 + 4 * n].view(np.int32)
    active = ws[o10 : o10 + 4 * n].view(np.int32)
    slot = ws[o11 : o11 + 4 * n].view(np.int32)
    alive = ws[o12 : o12 + n].view(np.bool_)
    end_next = ws[o13 : o13 + 4 * n].view(np.int32)
    rbox = ws[o14 : o14 + 16 * 2 * n].view(np.int32).reshape((2 * n, 4))
    rlo = ws[o15 : o15 + 4 * 2 * n].view(np.int32)
    rhi = ws[o16 : o16 + 4 * 2 * n].view(np.int32)
    cpar = ws[o17 : o17 + 4 * n].view(np.int32)
    return (val, rec, queued, queue, lab, order, hole_order, comp, crec, dirty, active, slot, alive, end_next,
            rbox, rlo, rhi, cpar)


# --------------------------------------------------------------------------------------- shared helpers
@_jit
def _u(i: int) -> np.uint64:
    """``i`` (never negative) as an unsigned index: numba checks signed indices for negative values (to wrap
    them around, as Python does), which in the per-pixel loops costs as much as the work itself. Only ever
    combined with other unsigned values (numba turns ``uint64 op int64`` into float64)."""
    return np.uint64(i)


@_jit
def _coords(p: int, w2: int, inv_w2: float) -> tuple[int, int]:
    """``(x, y)`` of padded index ``p`` in a map ``w2 - 2`` wide, without an integer division: the quotient
    ``(p + 0.5) / w2`` is at least ``1 / (2 w2)`` away from an integer, far more than float64 rounding."""
    row = int((p + 0.5) * inv_w2)
    return p - row * w2 - 1, row - 1


@_jit
def _root(cpar: np.ndarray, c: int) -> int:
    """Root id of component ``c`` (path halving)."""
    while True:
        d = cpar[_u(c)]
        if d == c:
            return c
        e = cpar[_u(d)]
        cpar[_u(c)] = e
        c = e


@_jit
def _union(cpar, comp, a: int, b: int, gone, n_gone: int):  # noqa: ANN001, ANN202
    """Union of root ids ``a`` (-1: none yet) and ``b``: the smaller one is absorbed (boxes by min/max, areas
    and sizes summed) and its id appended to ``gone`` (it ends here).

    Returns:
        ``(root, n_gone)``.
    """
    if a < 0:
        return b, n_gone
    if a == b:
        return a, n_gone
    if comp[a, _SIZE] < comp[b, _SIZE]:
        a, b = b, a
    cpar[b] = a
    comp[a, _X0] = min(comp[a, _X0], comp[b, _X0])
    comp[a, _Y0] = min(comp[a, _Y0], comp[b, _Y0])
    comp[a, _X1] = max(comp[a, _X1], comp[b, _X1])
    comp[a, _Y1] = max(comp[a, _Y1], comp[b, _Y1])
    comp[a, _AREA] += comp[b, _AREA]
    comp[a, _SIZE] += comp[b, _SIZE]
    gone[n_gone] = b
    return a, n_gone + 1


@_jit
def _start(cpar, comp, c: int, x: int, y: int) -> None:  # noqa: ANN001
    """The pixel at ``(x, y)`` starts component ``c`` (hole sweep: no area)."""
    cpar[c] = c
    comp[c, _X0] = x
    comp[c, _Y0] = y
    comp[c, _X1] = x
    comp[c, _Y1] = y
    comp[c, _AREA] = 0
    comp[c, _SIZE] = 1
    comp[c, _DIRTY] = 0


@_jit
def _grow(comp, c: int, x: int, y: int) -> bool:  # noqa: ANN001
    """The pixel at ``(x, y)`` joins component ``c`` (hole sweep); returns whether its box grew."""
    comp[c, _SIZE] += 1
    grew = False
    if x < comp[c, _X0]:
        comp[c, _X0] = x
        grew = True
    elif x > comp[c, _X1]:
        comp[c, _X1] = x
        grew = True
    if y < comp[c, _Y0]:
        comp[c, _Y0] = y
        grew = True
    elif y > comp[c, _Y1]:
        comp[c, _Y1] = y
        grew = True
    return grew


@_jit
def _store(comp, c, x0, y0, x1, y1, area, size) -> None:  # noqa: ANN001
    """Write the cached state of component ``c`` back to its row."""
    comp[c, _X0] = x0
    comp[c, _Y0] = y0
    comp[c, _X1] = x1
    comp[c, _Y1] = y1
    comp[c, _AREA] = area
    comp[c, _SIZE] = size


@_jit
def _mark_dirty(comp, dirty_list, n_dirty: int, c: int) -> int:  # noqa: ANN001
    """Remember that component ``c`` changed since the last reported level; returns the new list length."""
    if comp[c, _DIRTY] == 0:
        comp[c, _DIRTY] = 1
        dirty_list[n_dirty] = c
        n_dirty += 1
    return n_dirty


@_jit
def _write_box(out, row: int, comp, c: int, grow: int, width: int, height: int) -> None:  # noqa: ANN001
    """Component ``c``'s contour box into ``out[row]``: its pixel box grown by ``grow`` on the top and left and
    by ``grow + 1`` on the bottom and right (the ``x + w`` of ``scoremap2bbox``), clipped to the map."""
    out[row, 0] = comp[c, _X0] - grow
    out[row, 1] = comp[c, _Y0] - grow
    out[row, 2] = min(comp[c, _X1] + grow + 1, width - 1)
    out[row, 3] = min(comp[c, _Y1] + grow + 1, height - 1)


# ----------------------------------------------------------------------------- loading and hole filling
@_jit
def _raster_row(val, rec, y: int, height: int, width: int) -> None:  # noqa: ANN001
    """The raster scan of the reconstruction on row ``y`` (rows above done): edge pixels keep their value,
    inner ones get ``max(u8, min(left, up))`` (the marker is 255 inside)."""
    w2 = _u(width + 2)
    one = _u(1)
    first = _u(y + 1) * w2 + one
    last = first + _u(width) - one
    if y == 0 or y == height - 1:
        for p in range(first, last + one):
            rec[p] = val[p]
        return
    r = val[first]
    rec[first] = r
    for p in range(first + one, last):
        r = max(val[p], min(r, rec[p - w2]))
        rec[p] = r
    rec[last] = val[last]


@_jit
def _load_float(scoremap, val, rec, hist) -> tuple[bool, int]:  # noqa: ANN001
    """wsolevaluation's 8-bit map ``(map * 255).astype(uint8)`` (the product in float64) into ``val``, its
    histogram into ``hist[1:]``, and the raster scan of the reconstruction into ``rec``.

    Returns:
        ``(ok, u8_max)``; ``ok`` is False (and the rest undefined) if a value is NaN or outside ``[0, 1]``.
    """
    height, width = scoremap.shape
    flat = scoremap.reshape(height * width)
    w2 = _u(width + 2)
    one = _u(1)
    u8_max = np.uint8(0)
    i = _u(0)
    for y in range(height):
        base = _u(y + 1) * w2 + one
        bad = False
        for x in range(_u(width)):  # no branch in this loop: it vectorises
            f = np.float64(flat[i + x])
            bad |= not (f >= 0.0 and f <= 1.0)  # a NaN fails both
            val[base + x] = np.uint8(min(max(f, 0.0), 1.0) * 255.0)
        if bad:
            return False, 0
        i += _u(width)
        for x in range(_u(width)):
            u = val[base + x]
            hist[_u(u) + one] += 1
            u8_max = max(u8_max, u)
        _raster_row(val, rec, y, height, width)
    return True, np.int64(u8_max)


@_jit
def _load_u8(u8, val, rec, hist) -> int:  # noqa: ANN001
    """``_load_float`` for a map that is already 8-bit; returns its max."""
    height, width = u8.shape
    flat = u8.reshape(height * width)
    w2 = _u(width + 2)
    one = _u(1)
    u8_max = np.uint8(0)
    i = _u(0)
    for y in range(height):
        base = _u(y + 1) * w2 + one
        for x in range(_u(width)):
            u = flat[i]
            i += one
            val[base + x] = u
            hist[_u(u) + one] += 1
            u8_max = max(u8_max, u)
        _raster_row(val, rec, y, height, width)
    return np.int64(u8_max)


@_jit
def _fill_holes(val, rec, queue, queued, height, width, psi_hist, hole_hist) -> None:  # noqa: ANN001
    """Finish ``psi(p)`` = min over 4-connected paths from ``p`` to the map's edge of the max of ``u8`` along
    the path, after the raster scan of the loading pass.

    ``{psi > L}`` is ``{u8 > L}`` with every hole (a 4-connected component of ``{u8 <= L}`` not touching the
    edge) filled, and the hole pixels of level ``L`` are exactly ``{u8 <= L < psi}``. ``psi`` is the grayscale
    reconstruction by erosion of ``u8`` from its edge, by Vincent's hybrid algorithm (IEEE TIP 1993): a raster
    and an anti-raster scan, then a FIFO for what the scans leave; O(pixels).

    ``psi_hist`` (int64 ``[257]``) holds the histogram of ``u8`` at ``[1:]`` on entry and that of ``psi`` on exit;
    ``hole_hist`` (zeros on entry) gets the histogram of ``u8`` over the pixels with ``psi > u8``, both kept
    up to date as values change, so that no pass is needed to count them.
    """
    w2 = _u(width + 2)
    one = _u(1)
    n2 = (height + 2) * (width + 2)
    # anti-raster scan, queueing the pixels that may still lower a down / right neighbour
    head = 0
    tail = 0
    for y in range(height - 1, -1, -1):
        base = _u(y + 1) * w2
        right = np.uint8(255)  # the right neighbour's value (the frame is 255)
        for x in range(width, 0, -1):
            p = base + _u(x)
            v = val[p]
            below = rec[p + w2]
            r = max(v, min(rec[p], right, below))
            rec[p] = r
            if r > v:
                psi_hist[_u(v) + one] -= 1
                psi_hist[_u(r) + one] += 1
                hole_hist[_u(v) + one] += 1
            if (right > r and right > val[p + one]) or (below > r and below > val[p + w2]):
                queue[tail] = p
                queued[p] = True
                tail += 1
            right = r
    while head != tail:  # FIFO propagation: a lowered pixel may lower its neighbours in turn
        p = _u(queue[head])
        head = head + 1 if head + 1 < n2 else 0
        queued[p] = False
        for q in (p - w2, p - one, p + one, p + w2):
            if rec[q] > rec[p] and rec[q] > val[q]:
                old = rec[q]
                new = max(rec[p], val[q])
                rec[q] = new
                psi_hist[_u(old) + one] -= 1
                psi_hist[_u(new) + one] += 1
                if new == val[q]:
                    hole_hist[_u(new) + one] -= 1
                if not queued[q]:
                    queued[q] = True
                    queue[tail] = q
                    tail = tail + 1 if tail + 1 < n2 else 0
    # the frame is 255 in both: it never lowered anything, and it is never a neighbour in the sweeps


@_jit
def _cumulate(hist) -> None:  # noqa: ANN001
    """``hist[1:]`` counts per value -> ``hist`` start offsets (``hist[v]:hist[v + 1]`` holds value ``v``)."""
    for v in range(_N_LEVELS):
        hist[v + 1] += hist[v]


@_jit
def _orders(val, rec, height, width, psi_start, hole_start, order, hole_order) -> None:  # noqa: ANN001
    """Counting sort: the pixels by ``psi`` into ``order``, the pixels with ``psi > u8`` by ``u8`` into
    ``hole_order``; raster order within a value (the sweeps' memory accesses then stay local). The start
    arrays are consumed (``start[v]`` ends at ``start[v + 1]``'s old value); ``_shift`` restores them."""
    w2 = _u(width + 2)
    one = _u(1)
    for y in range(height):
        base = _u(y + 1) * w2 + one
        for p in range(base, base + _u(width)):
            r = _u(rec[p])
            j = psi_start[r]
            order[_u(j)] = p
            psi_start[r] = j + 1
            v = _u(val[p])
            if r > v:
                j = hole_start[v]
                hole_order[_u(j)] = p
                hole_start[v] = j + 1


@_jit
def _u8_order(val, height, width, start, order) -> None:  # noqa: ANN001
    """Counting sort of the pixels by ``u8`` (for the second sweep), ``start`` consumed as in ``_orders``."""
    w2 = _u(width + 2)
    one = _u(1)
    for y in range(height):
        base = _u(y + 1) * w2 + one
        for p in range(base, base + _u(width)):
            v = _u(val[p])
            j = start[v]
            order[_u(j)] = p
            start[v] = j + 1


@_jit
def _shift(start) -> None:  # noqa: ANN001
    """Undo the consumption of a start array by ``_orders``: ``start[v]`` back to where value ``v`` begins."""
    for v in range(_N_LEVELS, 0, -1):
        start[v] = start[v - 1]
    start[0] = 0


# ---------------------------------------------------------------------------------------------- counts
@_jit
def _quad(diff, a: int, b: int, c: int, d: int, sign: int) -> None:  # noqa: ANN001
    """Add ``sign`` x the bit-quad contribution of the 2x2 window ``(a b / c d)`` to the Euler number of every
    level, as a difference array (index level + 1): ``4 E = n(Q1) - n(Q3) - 2 n(QD)`` (Gray), with ``Q1``/``Q3``
    the windows holding exactly one / three pixels above the level and ``QD`` the diagonal pairs. Values are
    -1 outside the map (never above a level)."""
    lo1, hi1 = min(a, b), max(a, b)
    lo2, hi2 = min(c, d), max(c, d)
    s0, s3 = min(lo1, lo2), max(hi1, hi2)
    s1 = min(max(lo1, lo2), min(hi1, hi2))
    s2 = max(max(lo1, lo2), min(hi1, hi2))
    # exactly one pixel above L: s2 <= L < s3; exactly three: s0 <= L < s1
    diff[s2 + 1] += sign
    diff[s3 + 1] -= sign
    diff[s0 + 1] -= sign
    diff[s1 + 1] += sign
    # exactly the diagonal pair (a, d), or (b, c), above L
    top, bottom = min(a, d), max(b, c)
    if top > bottom:
        diff[bottom + 1] -= 2 * sign
        diff[top + 1] += 2 * sign
    top, bottom = min(b, c), max(a, d)
    if top > bottom:
        diff[bottom + 1] -= 2 * sign
        diff[top + 1] += 2 * sign


@_jit
def _window(val, rec, t, w2, diff) -> None:  # noqa: ANN001
    """Euler contribution of the window with top-left padded index ``t`` (unsigned) to ``E(u8) - E(psi)``."""
    one = _u(1)
    a, b, c, d = np.int64(val[t]), np.int64(val[t + one]), np.int64(val[t + w2]), np.int64(val[t + w2 + one])
    _quad(diff, a, b, c, d, 1)
    a, b, c, d = np.int64(rec[t]), np.int64(rec[t + one]), np.int64(rec[t + w2]), np.int64(rec[t + w2 + one])
    if a != b or b != c or c != d:  # a flat window adds nothing (psi is flat over most of a filled hole)
        _quad(diff, a, b, c, d, -1)


@_jit
def _euler_excess(val, rec, hole_order, n_hole_px, width, diff) -> None:  # noqa: ANN001
    """``E({u8 > L}) - E({psi > L})`` for every level, into the difference array ``diff`` (int64 ``[258]``,
    zeros on entry; ``cumsum(diff)[L + 1] // 4`` is the excess at ``L``).

    A window whose four pixels have ``psi == u8`` adds the same to both Euler numbers, so only the windows
    touching a hole pixel are visited, each once: from its first hole pixel in raster order (hole pixels are
    never on the edge, so their windows lie inside the map).
    """
    w2 = _u(width + 2)
    one = _u(1)
    for i in range(n_hole_px):
        q = _u(hole_order[i])
        # q as the bottom-right, bottom-left, top-right, top-left pixel of a window
        t = q - w2 - one
        if rec[t] == val[t] and rec[t + one] == val[t + one] and rec[t + w2] == val[t + w2]:
            _window(val, rec, t, w2, diff)
        t = q - w2
        if rec[t] == val[t] and rec[t + one] == val[t + one]:
            _window(val, rec, t, w2, diff)
        t = q - one
        if rec[t] == val[t]:
            _window(val, rec, t, w2, diff)
        _window(val, rec, q, w2, diff)


# ---------------------------------------------------------------------------------------------- sweeps
@_jit
def _first_pixel(lab, cpar, comp, c: int, w2: int) -> int:
    """The first pixel in raster order (padded index) of live component ``c``: the first of its pixels in the
    top row of its box. Only V1's ties need it, so it is looked up then instead of kept per pixel."""
    row = (comp[c, _Y0] + 1) * w2 + 1
    for q in range(row + comp[c, _X0], row + comp[c, _X1] + 1):
        if lab[q] >= 0 and _root(cpar, lab[q]) == c:
            return q
    return -1  # not reached: the box's top row holds a pixel of the component


@_jit
def _sweep_outer(order, start, lab, cpar, comp, crec, active, slot, rbox, rlo, rhi,  # noqa: ANN001, ANN201
                 height, width, need, with_largest, with_records, largest, count):
    """8-connected components of ``{vals > L}`` for L = 254 down to 0, by union-find over pixels by value.

    Args:
        order, start: the pixels by value (``start[v]:start[v + 1]`` of ``order`` hold value ``v``) of an
            ``[height, width]`` uint8 map ``vals``; the results do not depend on the order within a value.
        lab, cpar, comp, crec, active, slot: scratch (see ``_carve``).
        rbox, rlo, rhi: where the records go, from row 0.
        need: bool ``[256]``, the levels to report.
        with_largest: also find, per needed level, the component of largest contour area (ties to the one
            whose first raster pixel comes last: OpenCV lists top-level contours in descending raster order
            of their first pixel and ``max`` keeps the first maximum). Areas are those of the components
            themselves, i.e. of the filled contours only when ``vals`` has no hole (``psi``).
        with_records: write the records (outer contour boxes).
        largest: int32 ``[256, 4]``, out: the contour box of the largest component per needed level (left
            alone at empty or unneeded levels).
        count: int64 ``[256]``, out: number of components per needed level.

    Returns:
        The number of records written.
    """
    w2 = width + 2
    inv_w2 = 1.0 / w2
    lab[:] = -1
    credit = _AREA_CREDIT
    n_groups = _GROUPS
    group_rep = _GROUP_REPS
    offsets = np.array([-w2 - 1, -w2, -w2 + 1, -1, 1, w2 - 1, w2, w2 + 1], np.int64)
    gone = np.empty(8, np.int32)
    n_comp = 0
    n_rec = 0
    n_active = 0
    # The state of the component the last pixel joined lives in these locals (consecutive pixels mostly join
    # the same one): no memory round trip per pixel. It goes back to its row before any other row is used.
    cur = -1
    x0 = y0 = x1 = y1 = area = size = 0
    one = _u(1)
    zero = _u(0)
    uw2 = _u(w2)
    prev = -2  # the last pixel placed, and the mask of its neighbours then
    prev_mask = 0
    x = y = 0
    for v in range(_N_LEVELS - 1, 0, -1):
        for i in range(start[v], start[v + 1]):
            p = order[_u(i)]
            # unsigned indices: numba adds no negative-index wraparound to them (a third of the loop's time)
            up, left, right, down = _u(p) - uw2, _u(p) - one, _u(p) + one, _u(p) + uw2
            if p == prev + 1:
                # The left neighbour was the last pixel placed: it joined component ``cur``, and so did every
                # active neighbour of it -- up-left, up, down-left, down -- whose bits move over from its mask.
                # Only up-right, right and down-right are new.
                mask = (((prev_mask >> 1) & 0b01100011) | 0b1000 | (np.int64(lab[up + one] >= 0) << 2)
                        | (np.int64(lab[right] >= 0) << 4) | (np.int64(lab[down + one] >= 0) << 7))
                x += 1
                k = n_groups[_u(mask)]
                simple = k == 1
            else:
                mask = (np.int64(lab[up - one] >= 0) | (np.int64(lab[up] >= 0) << 1)
                        | (np.int64(lab[up + one] >= 0) << 2) | (np.int64(lab[left] >= 0) << 3)
                        | (np.int64(lab[right] >= 0) << 4) | (np.int64(lab[down - one] >= 0) << 5)
                        | (np.int64(lab[down] >= 0) << 6) | (np.int64(lab[down + one] >= 0) << 7))
                x, y = _coords(p, w2, inv_w2)
                k = n_groups[_u(mask)]
                simple = k == 1
                if simple:  # the common case: the active neighbours are one component already
                    c = _root(cpar, lab[_u(p + offsets[group_rep[_u(mask), zero]])])
                    if c != cur:
                        if cur >= 0:
                            _store(comp, cur, x0, y0, x1, y1, area, size)
                        cur = c
                        x0, y0, x1, y1, area = comp[c, _X0], comp[c, _Y0], comp[c, _X1], comp[c, _Y1], comp[c, _AREA]
                        size = comp[c, _SIZE]
            prev = p
            prev_mask = mask
            if not simple:
                if cur >= 0:
                    _store(comp, cur, x0, y0, x1, y1, area, size)
                if k == 0:  # a new component
                    cur = n_comp
                    n_comp += 1
                    cpar[cur] = cur
                    crec[cur] = -1
                    slot[cur] = n_active
                    active[n_active] = cur
                    n_active += 1
                    x0 = x1 = x
                    y0 = y1 = y
                    area = 0
                    size = 0
                else:  # the pixel joins several components
                    c = -1
                    n_gone = 0
                    for g in range(k):
                        c, n_gone = _union(cpar, comp, c, _root(cpar, lab[p + offsets[group_rep[mask, g]]]), gone, n_gone)
                    for j in range(n_gone):
                        d = gone[j]
                        # the absorbed component last existed at level v (it is gone from level v - 1 on)
                        if with_records and crec[d] >= 0:
                            rlo[crec[d]] = v
                        n_active -= 1
                        moved = active[n_active]
                        active[slot[d]] = moved
                        slot[moved] = slot[d]
                    cur = c
                    x0, y0, x1, y1, area = comp[c, _X0], comp[c, _Y0], comp[c, _X1], comp[c, _Y1], comp[c, _AREA]
                    size = comp[c, _SIZE]
            area += credit[_u(mask)]
            size += 1
            x0 = min(x0, x)  # branch-free: branches here would often mispredict
            x1 = max(x1, x)
            y0 = min(y0, y)
            y1 = max(y1, y)
            lab[_u(p)] = cur
        level = v - 1
        if not need[level]:
            continue
        if cur >= 0:
            _store(comp, cur, x0, y0, x1, y1, area, size)
        count[level] = n_active
        if with_records:  # a new record for each live component whose box is not that of its open record
            for j in range(n_active):
                c = active[j]
                bx0, by0 = comp[c, _X0], comp[c, _Y0]
                bx1, by1 = min(comp[c, _X1] + 1, width - 1), min(comp[c, _Y1] + 1, height - 1)
                r = crec[c]
                if r >= 0 and rbox[r, 0] == bx0 and rbox[r, 1] == by0 and rbox[r, 2] == bx1 and rbox[r, 3] == by1:
                    continue
                if r >= 0:
                    rlo[r] = v
                crec[c] = n_rec
                rbox[n_rec, 0] = bx0
                rbox[n_rec, 1] = by0
                rbox[n_rec, 2] = bx1
                rbox[n_rec, 3] = by1
                rlo[n_rec] = 0
                rhi[n_rec] = level
                n_rec += 1
        if with_largest and n_active > 0:
            best = active[0]
            best_first = -1  # looked up on a tie only
            for j in range(1, n_active):
                c = active[j]
                if comp[c, _AREA] > comp[best, _AREA]:
                    best = c
                    best_first = -1
                elif comp[c, _AREA] == comp[best, _AREA]:
                    if best_first < 0:
                        best_first = _first_pixel(lab, cpar, comp, best, w2)
                    first = _first_pixel(lab, cpar, comp, c, w2)
                    if first > best_first:
                        best = c
                        best_first = first
            _write_box(largest, level, comp, best, 0, width, height)
    return n_rec


@_jit
def _sweep_holes(rec, hole_order, hole_start, lab, cpar, comp, crec, dirty_list, alive, end_next,  # noqa: ANN001, ANN201
                 rbox, rlo, rhi, r0, height, width, need, count):
    """4-connected components of ``{u8 <= L < psi}`` (the holes of ``{u8 > L}``) for L = 0 up to 254.

    Only pixels with ``psi > u8`` ever belong to a hole, so only they are visited (``hole_order``, by ``u8``).
    A hole's pixels share one ``psi`` (the level at which it opens to the edge and stops being a hole), so a
    hole ends as a whole.

    Args:
        rec: ``psi`` (padded); the other arrays as in ``_sweep_outer``; records go from row ``r0``.
        count: int64 ``[256]``, out: the number of holes per needed level.

    Returns:
        The number of records written.
    """
    w2 = width + 2
    inv_w2 = 1.0 / w2
    lab[:] = -1
    gone = np.empty(4, np.int32)
    ends = np.full(_N_LEVELS, -1, np.int32)  # per level, a list (through end_next) of holes that end there
    n_comp = 0
    n_rec = r0
    n_dirty = 0
    n_holes = 0
    for level in range(_N_LEVELS - 1):
        for i in range(hole_start[level], hole_start[level + 1]):
            p = hole_order[i]
            c = -1
            n_gone = 0
            for q in (p - w2, p - 1, p + 1, p + w2):  # 4-adjacent sides are not adjacent to each other
                if lab[q] >= 0:
                    c, n_gone = _union(cpar, comp, c, _root(cpar, lab[q]), gone, n_gone)
            for j in range(n_gone):
                d = gone[j]
                alive[d] = False
                if crec[d] >= 0:
                    rhi[crec[d]] = level - 1
                n_holes -= 1
            x, y = _coords(p, w2, inv_w2)
            if c < 0:  # a new hole; it ends when the level reaches its psi
                c = n_comp
                n_comp += 1
                _start(cpar, comp, c, x, y)
                grew = True
                crec[c] = -1
                alive[c] = True
                top = rec[p]
                end_next[c] = ends[top]
                ends[top] = c
                n_holes += 1
            else:
                grew = _grow(comp, c, x, y)
            lab[p] = c
            if grew or n_gone > 0:
                n_dirty = _mark_dirty(comp, dirty_list, n_dirty, c)
        # holes whose psi is this level reach the edge now: they stop being holes (a hole that merged into
        # another shares its psi, and its id stands for the merged one through the root)
        e = ends[level]
        while e >= 0:
            c = _root(cpar, e)
            if alive[c]:
                alive[c] = False
                n_holes -= 1
                if crec[c] >= 0:
                    rhi[crec[c]] = level - 1
            e = end_next[e]
        if not need[level]:
            continue
        for j in range(n_dirty):
            c = dirty_list[j]
            comp[c, _DIRTY] = 0
            if cpar[c] != c or not alive[c]:
                continue
            if crec[c] >= 0:
                rhi[crec[c]] = level - 1
            crec[c] = n_rec
            _write_box(rbox, n_rec, comp, c, 1, width, height)
            rlo[n_rec] = level
            rhi[n_rec] = _N_LEVELS - 1
            n_rec += 1
        n_dirty = 0
        count[level] = n_holes
    return n_rec - r0


# ------------------------------------------------------------------------------------------------ a map
@_jit
def _map_levels(views, hist, height, width, need, largest, n_outer, n_holes, nested):  # noqa: ANN001, ANN201
    """Everything but the loading for one map whose ``val``/``rec`` hold the 8-bit map and the raster scan and
    ``hist[1:]`` its histogram (see the module docstring for the steps).

    Writes ``largest`` (V1 box per needed non-empty level), ``n_outer`` (components of ``{psi > L}``),
    ``n_holes`` and ``nested`` (outer contours inside a hole) per needed level.

    Returns:
        ``(n_out, n_hole)``: the outer contour records are rows ``0:n_out`` of the record arrays, the hole
        contour records rows ``n:n + n_hole`` (``n`` pixels).
    """
    (val, rec, queued, queue, lab, order, hole_order, comp, crec, dirty, active, slot, alive, end_next,
     rbox, rlo, rhi, cpar) = views
    n = height * width
    psi_start = hist.copy()
    hole_start = np.zeros(_N_LEVELS + 1, np.int64)
    _fill_holes(val, rec, queue, queued, height, width, psi_start, hole_start)
    _cumulate(psi_start)
    _cumulate(hole_start)
    n_hole_px = hole_start[_N_LEVELS]
    _orders(val, rec, height, width, psi_start, hole_start, order, hole_order)
    _shift(psi_start)
    _shift(hole_start)
    n_holes[:] = 0
    nested[:] = 0
    n_hole = 0
    any_nested = False
    if n_hole_px > 0:
        n_hole = _sweep_holes(rec, hole_order, hole_start, lab, cpar, comp, crec, dirty, alive, end_next,
                              rbox, rlo, rhi, n, height, width, need, n_holes)
        # components of {u8 > L} = Euler number + holes; any beyond those of {psi > L} (whose Euler number is
        # its component count: it has no hole) lie inside a hole
        diff = np.zeros(_N_LEVELS + 2, np.int64)
        _euler_excess(val, rec, hole_order, n_hole_px, width, diff)
        excess = 0
        for level in range(_N_LEVELS):
            excess += diff[level + 1]
            if need[level]:
                nested[level] = excess // 4 + n_holes[level]
                any_nested |= nested[level] > 0
    # Without holes psi == u8 and {psi > L} == {u8 > L}: this sweep gives every contour and the largest.
    # Otherwise it gives V1 and the top-level outer contours: components of the filled level sets {psi > L}.
    n_out = _sweep_outer(order, psi_start, lab, cpar, comp, crec, active, slot, rbox, rlo, rhi,
                         height, width, need, True, not any_nested, largest, n_outer)
    if any_nested:  # the outer contours come from the level sets themselves
        start = hist.copy()
        _cumulate(start)
        _u8_order(val, height, width, start, order)
        _shift(start)
        scratch = np.zeros(_N_LEVELS, np.int64)
        n_out = _sweep_outer(order, start, lab, cpar, comp, crec, active, slot, rbox, rlo, rhi,
                             height, width, need, False, True, largest, scratch)
    return n_out, n_hole


# ---------------------------------------------------------------------------------------------- scoring
@_jit
def _best_iou(x0: int, y0: int, x1: int, y1: int, gt, g0: int, g1: int) -> float:  # noqa: ANN001
    """Max over the GT boxes ``gt[g0:g1]`` of ``wsol.boxes.box_iou`` with ``(x0, y0, x1, y1)``, the same
    float64 operations on the same integers."""
    best = 0.0
    area_a = (x1 - x0 + 1.0) * (y1 - y0 + 1.0)
    for g in range(g0, g1):
        iw = min(x1, gt[g, 2]) - max(x0, gt[g, 0]) + 1.0
        ih = min(y1, gt[g, 3]) - max(y0, gt[g, 1]) + 1.0
        inter = max(0.0, iw) * max(0.0, ih)
        area_b = (gt[g, 2] - gt[g, 0] + 1.0) * (gt[g, 3] - gt[g, 1] + 1.0)
        union = area_a + area_b - inter
        iou = inter / union if union > 0 else 0.0
        best = max(best, iou)
    return best


@_jit
def _cover(rbox, rlo, rhi, r0, r1, gt, g0, g1, iou_thresholds, cover) -> None:  # noqa: ANN001
    """Records ``r0:r1`` into the difference arrays ``cover[j]`` (index = level) of the levels at which some box
    reaches ``iou_thresholds[j]``."""
    for r in range(r0, r1):
        iou = _best_iou(rbox[r, 0], rbox[r, 1], rbox[r, 2], rbox[r, 3], gt, g0, g1)
        for j in range(len(iou_thresholds)):
            if iou >= iou_thresholds[j]:
                cover[j, rlo[r]] += 1
                cover[j, rhi[r] + 1] -= 1


@_jit
def boxacc_counts(maps, gt, gt_start, thresholds, iou_thresholds, ws, counts) -> int:  # noqa: ANN001
    """Add the correct-image counts of a batch of score maps at every threshold (V1 and V2), in one call.

    Args:
        maps: float32/float64 ``[B, H, W]`` score maps (C-contiguous), meant to lie in ``[0, 1]``.
        gt: int64 ``[G, 4]`` the GT boxes of all maps (``xyxy`` inclusive on the maps' grid) ...
        gt_start: int64 ``[B + 1]`` ... those of map ``b`` are ``gt[gt_start[b]:gt_start[b + 1]]`` (at least one).
        thresholds: float64 ``[T]`` the taus (``np.arange(0, 1, step)``).
        iou_thresholds: float64 ``[J]`` the V2 IoU thresholds as fractions (``t / 100``).
        ws: uint8 ``[workspace_size(H, W)]`` scratch.
        counts: int64 ``[1 + J, T]``, in/out: row 0 the V1 counts (IoU 0.5), row ``1 + j`` the V2 counts at
            ``iou_thresholds[j]``; one is added per correct map and threshold.

    Returns:
        -1, or the index of the first map with a NaN or a value outside ``[0, 1]`` (then ``counts`` holds the
        maps before it).
    """
    n_maps, height, width = maps.shape
    views = _carve(ws, height, width)
    val, rec, rbox, rlo, rhi = views[0], views[1], views[14], views[15], views[16]
    n = height * width
    val[:] = 255  # the frame (interior values are overwritten per map)
    rec[:] = 255
    views[2][:] = False
    n_taus = len(thresholds)
    n_j = len(iou_thresholds)
    hist = np.zeros(_N_LEVELS + 1, np.int64)
    level_of = np.empty(n_taus, np.int64)
    need = np.zeros(_N_LEVELS, np.bool_)
    largest = np.zeros((_N_LEVELS, 4), np.int32)
    n_outer = np.zeros(_N_LEVELS, np.int64)
    n_holes = np.zeros(_N_LEVELS, np.int64)
    nested = np.zeros(_N_LEVELS, np.int64)
    ok_v1 = np.zeros(_N_LEVELS, np.bool_)
    cover = np.zeros((n_j, _N_LEVELS + 1), np.int64)
    for b in range(n_maps):
        hist[:] = 0
        ok, u8_max = _load_float(maps[b], val, rec, hist)
        if not ok:
            return b
        need[:] = False
        for t in range(n_taus):
            level = np.int64(thresholds[t] * np.float64(u8_max))  # int(tau * u8.max()), truncated
            level_of[t] = level
            need[level] = True
        n_out, n_hole = _map_levels(views, hist, height, width, need, largest, n_outer, n_holes, nested)
        g0, g1 = gt_start[b], gt_start[b + 1]
        # V2: for each IoU threshold, the levels covered by a record whose box reaches it (difference array)
        cover[:] = 0
        _cover(rbox, rlo, rhi, 0, n_out, gt, g0, g1, iou_thresholds, cover)
        _cover(rbox, rlo, rhi, n, n + n_hole, gt, g0, g1, iou_thresholds, cover)
        empty_iou = _best_iou(0, 0, 0, 0, gt, g0, g1)  # an empty mask's single box [0, 0, 0, 0]
        for j in range(n_j):
            running = 0
            for level in range(_N_LEVELS):
                running += cover[j, level]
                cover[j, level] = running > 0 or (n_outer[level] == 0 and empty_iou >= iou_thresholds[j])
        # V1: the largest contour's box per needed level (boxes repeat over levels: score each run once)
        last = np.full(4, -1, np.int32)
        last_ok = False
        for level in range(_N_LEVELS):
            if not need[level]:
                continue
            if n_outer[level] == 0:
                ok_v1[level] = empty_iou >= 0.5
                continue
            box = largest[level]
            if box[0] != last[0] or box[1] != last[1] or box[2] != last[2] or box[3] != last[3]:
                last[:] = box
                last_ok = _best_iou(box[0], box[1], box[2], box[3], gt, g0, g1) >= 0.5
            ok_v1[level] = last_ok
        for t in range(n_taus):
            level = level_of[t]
            counts[0, t] += ok_v1[level]
            for j in range(n_j):
                counts[1 + j, t] += cover[j, level]
    return -1


@_jit
def level_records(u8, need, ws):  # noqa: ANN001, ANN201
    """The boxes of one 8-bit map at the needed levels, as records (``wsol.metrics.boxacc.level_boxes``).

    Args:
        u8: uint8 ``[H, W]`` (C-contiguous).
        need: bool ``[256]``.
        ws: uint8 ``[workspace_size(H, W)]`` scratch.

    Returns:
        ``(rbox, rlo, rhi, largest, n_outer)``: int32 ``[R, 4]`` every contour box (outer, then hole), valid
        over the levels ``rlo[r]..rhi[r]``; int32 ``[256, 4]`` the V1 box per needed level (zeros where empty);
        int64 ``[256]`` the number of components of ``{psi > L}`` (0: the level is empty).
    """
    height, width = u8.shape
    views = _carve(ws, height, width)
    n = height * width
    views[0][:] = 255
    views[1][:] = 255
    views[2][:] = False
    hist = np.zeros(_N_LEVELS + 1, np.int64)
    _load_u8(u8, views[0], views[1], hist)
    largest = np.zeros((_N_LEVELS, 4), np.int32)
    n_outer = np.zeros(_N_LEVELS, np.int64)
    n_holes = np.zeros(_N_LEVELS, np.int64)
    nested = np.zeros(_N_LEVELS, np.int64)
    n_out, n_hole = _map_levels(views, hist, height, width, need, largest, n_outer, n_holes, nested)
    rbox, rlo, rhi = views[14], views[15], views[16]
    keep = np.concatenate((np.arange(n_out), np.arange(n, n + n_hole)))
    for level in range(_N_LEVELS):
        if not need[level] or n_outer[level] == 0:
            largest[level, :] = 0
    return rbox[keep].copy(), rlo[keep].copy(), rhi[keep].copy(), largest, n_outer


@_jit
def level_structure(u8, ws):  # noqa: ANN001, ANN201
    """For tests: ``psi`` (uint8 ``[H, W]``) and, at every level, the components of ``{psi > L}`` (the
    top-level outer contours), the holes of ``{u8 > L}`` and the outer contours nested in a hole (int64
    ``[256]`` each)."""
    height, width = u8.shape
    views = _carve(ws, height, width)
    views[0][:] = 255
    views[1][:] = 255
    views[2][:] = False
    hist = np.zeros(_N_LEVELS + 1, np.int64)
    _load_u8(u8, views[0], views[1], hist)
    need = np.ones(_N_LEVELS, np.bool_)
    largest = np.zeros((_N_LEVELS, 4), np.int32)
    n_outer = np.zeros(_N_LEVELS, np.int64)
    n_holes = np.zeros(_N_LEVELS, np.int64)
    nested = np.zeros(_N_LEVELS, np.int64)
    _map_levels(views, hist, height, width, need, largest, n_outer, n_holes, nested)
    w2 = width + 2
    psi = np.empty((height, width), np.uint8)
    for y in range(height):
        for x in range(width):
            psi[y, x] = views[1][(y + 1) * w2 + x + 1]
    return psi, n_outer, n_holes, nested
