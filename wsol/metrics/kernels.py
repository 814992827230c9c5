"""Numba kernels of the one-pass MaxBoxAcc curve (``wsol.metrics.boxacc``, ``method="fast"``).

Every numba kernel of wsol lives here. They do integer bookkeeping over the pixels of ONE 8-bit map and
compute no IoU: the sweeps emit the bounding boxes of level-set components as *records*, each valid
over a range of levels, as wsolevaluation's contour boxes, and ``wsol.metrics.boxacc`` scores all of them at
once with ``wsol.boxes.box_iou``.

Conventions, stated once here:
    * Level ``L`` (0..255) is the binary mask ``{u8 > L}`` (``cv2.threshold(u8, L, 255, THRESH_BINARY)``).
    * Pixels are addressed in a PADDED index space ``P = (y + 1) * (W + 2) + (x + 1)``: the one-pixel frame
      around the map never becomes active, so the 8 (or 4) neighbours of any pixel sit at fixed offsets and
      no bounds test is needed. Padded indices keep raster order.
    * Components are tracked by union-find over pixels (union by size, path halving): ``parent[P]`` is -1
      for a pixel not yet active, the parent pixel for a non-root, and ``-2 - id`` for a root, where ``id``
      numbers components in order of creation. The state of component ``id`` is the row ``comp[id, :]``
      (columns ``_X0`` ... ``_DIRTY`` below), so the rows a sweep touches are few and contiguous (indexing
      them by pixel instead cost a page fault per component on fresh memory). Merging two components is
      column-wise min / max / sum (``_absorb``). Both sweeps share the helpers: ``_merge_neighbours`` (the
      union step over the active neighbours), ``_place`` (the new pixel joins, or starts, a component),
      ``_mark_dirty`` and ``_write_record``; what differs is only the direction, the connectivity and what
      ends a component.
    * A record is a contour box in wsolevaluation's convention plus ``[lo, hi]``, the levels over which it
      holds. A component with inclusive pixel box ``(x0, y0, x1, y1)`` has the outer contour box
      ``[x0, y0, min(x1 + 1, W - 1), min(y1 + 1, H - 1)]`` (``boundingRect`` is the pixel box, then ``x + w``);
      a hole's contour runs through the foreground pixels around it, so its box is the hole's pixel box grown
      by one pixel on each side, then ``x + w``: ``[x0 - 1, y0 - 1, min(x1 + 2, W - 1), min(y1 + 2, H - 1)]``
      (a hole never touches the edge). Records are written only at needed levels, for components whose box
      changed (or that merged) since the previous needed level: at most as many as pixels, and on smooth maps
      a few per level.

Kernels (``@njit(cache=True, nogil=True)``; the helpers are ``@njit`` functions compiled with their callers):
    * ``fill_holes(u8)``: ``psi``, the grayscale hole filling, its pixel order, and the pixels that are ever
      in a hole.
    * ``pixel_order(vals)``: counting sort of the pixels by value (raster order within a value: the sweep's
      memory accesses stay local, which makes it about 1.5x faster than in flood order).
    * ``euler_numbers(u8)``: Euler number of every level set (components minus holes), from 2x2 windows.
    * ``sweep_components(...)``: 8-connected components of ``{vals > L}``, L = 254..0: outer contours and,
      per level, the one of largest contour area.
    * ``sweep_holes(...)``: 4-connected components of ``{u8 <= L < psi}``, L = 0..254: hole contours.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["euler_numbers", "fill_holes", "pixel_order", "sweep_components", "sweep_holes"]

# Columns of the per-component state array: the box, the contour area (half pixels), the first pixel (padded
# index, i.e. raster order), the size (union by size; 0 once absorbed), and whether it changed since the last
# reported level. A row is 32 bytes: all a joining pixel updates sits in one cache line.
_X0, _Y0, _X1, _Y1, _AREA, _FIRST, _SIZE, _DIRTY = 0, 1, 2, 3, 4, 5, 6, 7
_N_STATE = 8
#: Levels 0..255 (255 is always empty: u8 > 255 never holds).
_N_LEVELS = 256

_jit = njit(cache=True, nogil=True)


# --------------------------------------------------------------------------------------- shared helpers
@_jit
def _neighbour_offsets(width: int, eight: bool) -> np.ndarray:
    """Offsets of the 8 (or 4) neighbours in the padded index space of a map ``width`` pixels wide.

    The 8 are in raster order -- up-left, up, up-right, left, right, down-left, down, down-right -- which
    fixes the bits of the neighbour masks of ``_merge_neighbours`` and ``_area_credit_table``.
    """
    w2 = width + 2
    if eight:
        return np.array([-w2 - 1, -w2, -w2 + 1, -1, 1, w2 - 1, w2, w2 + 1], np.int64)
    return np.array([-w2, -1, 1, w2], np.int64)


@_jit
def _area_credit_table() -> np.ndarray:
    """Half pixels of contour area a pixel brings, by the mask of its already-active 8 neighbours.

    ``cv2.contourArea`` of the outer contour of a hole-free 8-connected set F equals
    ``#(2x2 windows with 4 pixels in F) + #(windows with 3 in F) / 2``. As pixels arrive, a window gains one
    half pixel when its third pixel arrives and one more with its fourth, i.e. a pixel earns one half pixel
    for each of its four windows in which at least two of the other three pixels are already active. (Those
    pixels are 8-adjacent to it, so the credit goes to the right component; pixels of the frame are never
    active, so only windows inside the map count.)
    """
    # the other three pixels of the windows up-left, up-right, down-left and down-right of the pixel
    windows = ((0, 1, 3), (1, 2, 4), (3, 5, 6), (4, 6, 7))
    table = np.zeros(256, np.int32)
    for mask in range(256):
        for a, b, c in windows:
            if ((mask >> a) & 1) + ((mask >> b) & 1) + ((mask >> c) & 1) >= 2:
                table[mask] += 1
    return table


@_jit
def _coords(p: int, w2: int, inv_w2: float) -> tuple[int, int]:
    """``(x, y)`` of padded index ``p`` in a map ``w2 - 2`` wide, without an integer division: the quotient
    ``(p + 0.5) / w2`` is at least ``1 / (2 w2)`` away from an integer, far more than float64 rounding."""
    row = int((p + 0.5) * inv_w2)
    return p - row * w2 - 1, row - 1


@_jit
def _find(parent: np.ndarray, p: int) -> int:
    """Root pixel of active pixel ``p`` (path halving)."""
    while True:
        q = parent[p]
        if q < 0:
            return p
        r = parent[q]
        if r < 0:
            return q
        parent[p] = r
        p = r


@_jit
def _comp_id(parent: np.ndarray, root: int) -> int:
    """The component id stored at a root pixel."""
    return -2 - parent[root]


@_jit
def _absorb(parent: np.ndarray, comp: np.ndarray, keep: int, gone: int) -> None:
    """Merge root pixel ``gone`` into root pixel ``keep``: boxes by min/max, areas and sizes summed, first
    pixel by min; ``gone``'s component ends (size 0)."""
    a = _comp_id(parent, keep)
    b = _comp_id(parent, gone)
    parent[gone] = keep
    comp[a, _X0] = min(comp[a, _X0], comp[b, _X0])
    comp[a, _Y0] = min(comp[a, _Y0], comp[b, _Y0])
    comp[a, _X1] = max(comp[a, _X1], comp[b, _X1])
    comp[a, _Y1] = max(comp[a, _Y1], comp[b, _Y1])
    comp[a, _AREA] += comp[b, _AREA]
    comp[a, _FIRST] = min(comp[a, _FIRST], comp[b, _FIRST])
    comp[a, _SIZE] += comp[b, _SIZE]
    comp[b, _SIZE] = 0


@_jit
def _merge_neighbours(parent, comp, p, offsets, gone):  # noqa: ANN001, ANN202
    """Union the components of the active neighbours of ``p`` (``p`` itself is not placed yet).

    Returns:
        ``(root, mask, n_gone)``: the root pixel of the merged component (-1 if no neighbour is active), the
        bit mask of active neighbours (bit k for ``offsets[k]``), and the number of components absorbed into
        it, whose ids are written to ``gone[:n_gone]`` (they end here).
    """
    root = -1
    mask = 0
    n_gone = 0
    for k in range(len(offsets)):
        q = p + offsets[k]
        up = parent[q]
        if up == -1:
            continue
        mask |= 1 << k
        if q == root or up == root:  # the root itself, or one of its direct children
            continue
        r = _find(parent, q)
        if root < 0:
            root = r
        elif r != root:
            if comp[_comp_id(parent, root), _SIZE] < comp[_comp_id(parent, r), _SIZE]:
                root, r = r, root
            gone[n_gone] = _comp_id(parent, r)
            n_gone += 1
            _absorb(parent, comp, root, r)
    return root, mask, n_gone


@_jit
def _place(parent, comp, p, root, area, n_comp, w2, inv_w2):  # noqa: ANN001, ANN202
    """Pixel ``p`` joins the component of root pixel ``root``, or starts component ``n_comp`` if ``root < 0``.

    Returns:
        ``(id, n_comp, grew)``: the id of ``p``'s component, the updated number of components ever created,
        and whether the component is new or its box grew.
    """
    x, y = _coords(p, w2, inv_w2)
    if root < 0:
        c = n_comp
        parent[p] = -2 - c
        comp[c, _X0] = x
        comp[c, _Y0] = y
        comp[c, _X1] = x
        comp[c, _Y1] = y
        comp[c, _AREA] = area
        comp[c, _FIRST] = p
        comp[c, _SIZE] = 1
        comp[c, _DIRTY] = 0
        return c, n_comp + 1, True
    c = _comp_id(parent, root)
    parent[p] = root
    comp[c, _AREA] += area
    comp[c, _SIZE] += 1
    if p < comp[c, _FIRST]:
        comp[c, _FIRST] = p
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
    return c, n_comp, grew


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


@_jit
def _write_record(rbox, rlo, rhi, n_rec, comp, c, lo, hi, grow, width, height) -> int:  # noqa: ANN001
    """Component ``c``'s contour box as record ``n_rec``, valid on ``[lo, hi]``; returns ``n_rec + 1``."""
    _write_box(rbox, n_rec, comp, c, grow, width, height)
    rlo[n_rec] = lo
    rhi[n_rec] = hi
    return n_rec + 1


# ----------------------------------------------------------------------------------------- per-map passes
@_jit
def fill_holes(u8: np.ndarray):  # noqa: ANN201  (numba: nested tuples of arrays, described below)
    """``psi(p)`` = min over 4-connected paths from ``p`` to the map's edge of the max of ``u8`` along the path.

    ``{psi > L}`` is ``{u8 > L}`` with every hole (a 4-connected component of ``{u8 <= L}`` not touching the
    edge) filled, and the hole pixels of level ``L`` are exactly ``{u8 <= L < psi}``. ``psi`` is the
    grayscale reconstruction by erosion of ``u8`` from its edge, computed with Vincent's hybrid algorithm
    (IEEE TIP 1993): a raster and an anti-raster scan, then a FIFO for what the scans leave; O(pixels).
    The two pixel orders the sweeps need are counted out in the same final passes.

    Returns:
        ``(psi, psi_order, hole_order)``: uint8 ``[H, W]``; ``pixel_order(psi)``; and the pixels with
        ``psi > u8`` -- the only ones ever in a hole -- by increasing ``u8``, in the same layout.
        ``psi == u8`` (no level has a hole) iff the last is empty.
    """
    height, width = u8.shape
    w2 = width + 2
    n2 = (height + 2) * w2
    val = np.full(n2, 255, np.uint8)  # u8 in the padded layout (the frame is never read as a value)
    rec = np.full(n2, 255, np.uint8)  # the reconstruction: 255 inside, u8 on the edge, 255 on the frame
    for y in range(height):
        for x in range(width):
            p = (y + 1) * w2 + x + 1
            val[p] = u8[y, x]
            if y == 0 or y == height - 1 or x == 0 or x == width - 1:
                rec[p] = u8[y, x]
    # raster scan: rec = max(u8, min(rec, rec of the up and left neighbours))
    for y in range(height):
        r = 255  # the left neighbour's value, kept in a register (the frame is 255)
        for p in range((y + 1) * w2 + 1, (y + 1) * w2 + width + 1):
            r = max(val[p], min(rec[p], r, rec[p - w2]))
            rec[p] = r
    # anti-raster scan, queueing the pixels that may still lower a down / right neighbour
    queue = np.empty(n2, np.int32)  # circular; a pixel is in it at most once (queued), so n2 slots suffice
    queued = np.zeros(n2, np.bool_)
    head = 0
    tail = 0
    for y in range(height - 1, -1, -1):
        right = 255  # the right neighbour's value
        for p in range((y + 1) * w2 + width, (y + 1) * w2, -1):
            r = max(val[p], min(rec[p], right, rec[p + w2]))
            rec[p] = r
            if (right > r and right > val[p + 1]) or (rec[p + w2] > r and rec[p + w2] > val[p + w2]):
                queue[tail] = p
                queued[p] = True
                tail += 1
            right = r
    offsets = _neighbour_offsets(width, False)
    while head != tail:  # FIFO propagation: a lowered pixel may lower its neighbours in turn
        p = queue[head]
        head = head + 1 if head + 1 < n2 else 0
        queued[p] = False
        for k in range(4):
            q = p + offsets[k]
            if rec[q] > rec[p] and rec[q] > val[q]:
                rec[q] = max(rec[p], val[q])
                if not queued[q]:
                    queued[q] = True
                    queue[tail] = q
                    tail = tail + 1 if tail + 1 < n2 else 0
    # the frame was 255: it never lowered anything, and it is never a neighbour in the orders below
    psi = np.empty((height, width), np.uint8)
    start = np.zeros(257, np.int64)
    hole_start = np.zeros(257, np.int64)
    for y in range(height):
        for x in range(width):
            p = (y + 1) * w2 + x + 1
            psi[y, x] = rec[p]
            start[rec[p] + 1] += 1
            if rec[p] > val[p]:
                hole_start[val[p] + 1] += 1
    for v in range(256):
        start[v + 1] += start[v]
        hole_start[v + 1] += hole_start[v]
    n = height * width
    n_holes = hole_start[256]
    order = np.empty(n, np.int32)
    hole_order = np.empty(n_holes, np.int32)
    fill = start[:256].copy()
    hole_fill = hole_start[:256].copy()
    for y in range(height):
        for x in range(width):
            p = (y + 1) * w2 + x + 1
            i = fill[rec[p]]
            fill[rec[p]] = i + 1
            order[i] = p
            if rec[p] > val[p]:
                i = hole_fill[val[p]]
                hole_fill[val[p]] = i + 1
                hole_order[i] = p
    return psi, (start, order), (hole_start, hole_order)


@_jit
def pixel_order(vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counting sort of the pixels of a uint8 ``[H, W]`` map by value.

    Returns:
        ``(start, order)``: int64 ``[257]`` and int32 ``[H * W]``; the pixels of value ``v`` are
        ``order[start[v]:start[v + 1]]`` as padded indices, in raster order within a value (the sweeps' memory
        accesses then stay local: about 1.5x faster than in flood order).
    """
    height, width = vals.shape
    w2 = width + 2
    start = np.zeros(257, np.int64)
    for y in range(height):
        for x in range(width):
            start[vals[y, x] + 1] += 1
    for v in range(256):
        start[v + 1] += start[v]
    order = np.empty(height * width, np.int32)
    fill = start[:256].copy()
    for y in range(height):
        for x in range(width):
            v = vals[y, x]
            order[fill[v]] = (y + 1) * w2 + x + 1
            fill[v] += 1
    return start, order


@_jit
def euler_numbers(u8: np.ndarray) -> np.ndarray:
    """Euler number of ``{u8 > L}`` for every level: 8-connected components minus (4-connected) holes.

    Gray's bit-quad formula on the map framed by background: ``E = (n(Q1) - n(Q3) - 2 n(QD)) / 4`` with
    ``Q1``/``Q3`` the 2x2 windows holding exactly one / three foreground pixels and ``QD`` those holding
    exactly two, diagonal. Each window contributes over a range of levels (from its sorted values), so all
    levels come from one pass and a difference array.

    Returns:
        int64 ``[256]``: the Euler number of level ``L`` at index ``L``.
    """
    height, width = u8.shape
    diff = np.zeros(_N_LEVELS + 2, np.int64)  # index level + 1, levels -1 .. 256
    for y in range(-1, height):
        for x in range(-1, width):
            # -1 outside the map: never foreground
            a = np.int64(u8[y, x]) if y >= 0 and x >= 0 else -1
            b = np.int64(u8[y, x + 1]) if y >= 0 and x + 1 < width else -1
            c = np.int64(u8[y + 1, x]) if y + 1 < height and x >= 0 else -1
            d = np.int64(u8[y + 1, x + 1]) if y + 1 < height and x + 1 < width else -1
            lo1, hi1 = min(a, b), max(a, b)
            lo2, hi2 = min(c, d), max(c, d)
            s0, s3 = min(lo1, lo2), max(hi1, hi2)
            s1 = min(max(lo1, lo2), min(hi1, hi2))
            s2 = max(max(lo1, lo2), min(hi1, hi2))
            # exactly one pixel above L: s2 <= L < s3; exactly three: s0 <= L < s1
            diff[s2 + 1] += 1
            diff[s3 + 1] -= 1
            diff[s0 + 1] -= 1
            diff[s1 + 1] += 1
            # exactly the diagonal pair (a, d), or (b, c), above L
            top, bottom = min(a, d), max(b, c)
            if top > bottom:
                diff[bottom + 1] -= 2
                diff[top + 1] += 2
            top, bottom = min(b, c), max(a, d)
            if top > bottom:
                diff[bottom + 1] -= 2
                diff[top + 1] += 2
    quad = np.cumsum(diff)
    return quad[1 : _N_LEVELS + 1] // 4


# ---------------------------------------------------------------------------------------------- sweeps
@_jit
def sweep_components(start, order, height, width, with_largest, need):  # noqa: ANN001, ANN201
    """8-connected components of ``{vals > L}`` for L = 254 down to 0, by union-find over pixels by value.

    Args:
        start, order: ``pixel_order(vals)`` of an ``[height, width]`` uint8 map ``vals`` (the results do not
            depend on the order within a value; the speed does).
        height, width: the map's shape.
        with_largest: also find, per needed level, the component of largest contour area (ties to the one
            whose first raster pixel comes last: OpenCV lists top-level contours in descending raster order
            of their first pixel and ``max`` keeps the first maximum). Areas are those of the components
            themselves, i.e. of the filled contours only when ``vals`` has no hole (``psi``).
        need: bool ``[256]``, the levels to report.

    Returns:
        ``(rbox, rlo, rhi, largest, count)``: the records (int32 ``[R, 4]`` outer contour boxes, int32 ``[R]``
        level ranges); int32 ``[256, 4]`` contour box of the largest component per needed level (zeros where
        the level is empty); int64 ``[256]`` number of components per needed level (0 elsewhere).
    """
    n = height * width
    parent = np.full((height + 2) * (width + 2), -1, np.int32)
    comp = np.empty((n, _N_STATE), np.int32)
    rec = np.empty(n, np.int32)  # the open record of each component
    dirty_list = np.empty(n, np.int32)
    active = np.empty(n, np.int32)  # the live components, for the largest-component search
    slot = np.empty(n, np.int32)
    gone = np.empty(8, np.int64)
    rbox = np.empty((n, 4), np.int32)
    rlo = np.zeros(n, np.int32)
    rhi = np.empty(n, np.int32)
    largest = np.zeros((_N_LEVELS, 4), np.int32)
    count = np.zeros(_N_LEVELS, np.int64)
    offsets = _neighbour_offsets(width, True)
    credit = _area_credit_table()
    w2 = width + 2
    inv_w2 = 1.0 / w2
    n_comp = 0
    n_rec = 0
    n_dirty = 0
    n_active = 0
    for v in range(255, 0, -1):
        for i in range(start[v], start[v + 1]):
            p = order[i]
            root, mask, n_gone = _merge_neighbours(parent, comp, p, offsets, gone)
            for j in range(n_gone):
                c = gone[j]
                # the absorbed component last existed at level v (it is gone from level v - 1 on)
                if rec[c] >= 0:
                    rlo[rec[c]] = v
                n_active -= 1
                moved = active[n_active]
                active[slot[c]] = moved
                slot[moved] = slot[c]
            c, n_comp, grew = _place(parent, comp, p, root, credit[mask], n_comp, w2, inv_w2)
            if root < 0:
                rec[c] = -1
                slot[c] = n_active
                active[n_active] = c
                n_active += 1
            if grew or n_gone > 0:  # a record is due only when the box changed
                n_dirty = _mark_dirty(comp, dirty_list, n_dirty, c)
        level = v - 1
        if not need[level]:
            continue
        for j in range(n_dirty):
            c = dirty_list[j]
            comp[c, _DIRTY] = 0
            if comp[c, _SIZE] == 0:
                continue
            if rec[c] >= 0:
                rlo[rec[c]] = v
            rec[c] = n_rec
            n_rec = _write_record(rbox, rlo, rhi, n_rec, comp, c, 0, level, 0, width, height)
        n_dirty = 0
        count[level] = n_active
        if with_largest and n_active > 0:
            best = active[0]
            for j in range(1, n_active):
                c = active[j]
                if comp[c, _AREA] > comp[best, _AREA] or (
                    comp[c, _AREA] == comp[best, _AREA] and comp[c, _FIRST] > comp[best, _FIRST]
                ):
                    best = c
            _write_box(largest, level, comp, best, 0, width, height)
    return rbox[:n_rec], rlo[:n_rec], rhi[:n_rec], largest, count


@_jit
def sweep_holes(psi, start, order, need):  # noqa: ANN001, ANN201
    """4-connected components of ``{u8 <= L < psi}`` (the holes of ``{u8 > L}``) for L = 0 up to 254.

    Only pixels with ``psi > u8`` ever belong to a hole, so only they are visited. A hole's pixels share one
    ``psi`` (the level at which it opens to the edge and stops being a hole), so a hole ends as a whole.

    Args:
        psi: ``fill_holes(u8)[0]``; start/order: ``fill_holes(u8)[2]``, the pixels with
            ``psi > u8`` by increasing ``u8``.
        need: bool ``[256]``, the levels to report.

    Returns:
        ``(rbox, rlo, rhi, count)``: records of hole contour boxes and level ranges, and the number of holes
        per needed level.
    """
    height, width = psi.shape
    n = max(1, len(order))
    parent = np.full((height + 2) * (width + 2), -1, np.int32)
    comp = np.empty((n, _N_STATE), np.int32)
    rec = np.empty(n, np.int32)
    alive = np.empty(n, np.bool_)
    dirty_list = np.empty(n, np.int32)
    gone = np.empty(4, np.int64)
    ends = np.full(_N_LEVELS, -1, np.int64)  # per level, a list (through end_next) of holes that end there
    end_next = np.empty(n, np.int64)
    rbox = np.empty((n, 4), np.int32)
    rlo = np.empty(n, np.int32)
    rhi = np.full(n, _N_LEVELS - 1, np.int32)
    count = np.zeros(_N_LEVELS, np.int64)
    offsets = _neighbour_offsets(width, False)
    w2 = width + 2
    inv_w2 = 1.0 / w2
    n_comp = 0
    n_rec = 0
    n_dirty = 0
    n_holes = 0
    for level in range(_N_LEVELS - 1):
        for i in range(start[level], start[level + 1]):
            p = order[i]
            root, _, n_gone = _merge_neighbours(parent, comp, p, offsets, gone)
            for j in range(n_gone):
                c = gone[j]
                alive[c] = False
                if rec[c] >= 0:
                    rhi[rec[c]] = level - 1
                n_holes -= 1
            c, n_comp, grew = _place(parent, comp, p, root, 0, n_comp, w2, inv_w2)
            if root < 0:  # a new hole; it ends when the level reaches its psi
                rec[c] = -1
                alive[c] = True
                x, y = _coords(p, w2, inv_w2)
                top = psi[y, x]
                end_next[c] = ends[top]
                ends[top] = c
                n_holes += 1
            if grew or n_gone > 0:
                n_dirty = _mark_dirty(comp, dirty_list, n_dirty, c)
        # holes whose psi is this level reach the edge now: they stop being holes (a hole that merged into
        # another shares its psi, and its id stands for the merged one through its first pixel's root)
        e = ends[level]
        while e >= 0:
            c = _comp_id(parent, _find(parent, comp[e, _FIRST]))
            if alive[c]:
                alive[c] = False
                n_holes -= 1
                if rec[c] >= 0:
                    rhi[rec[c]] = level - 1
            e = end_next[e]
        if not need[level]:
            continue
        for j in range(n_dirty):
            c = dirty_list[j]
            comp[c, _DIRTY] = 0
            if comp[c, _SIZE] == 0 or not alive[c]:
                continue
            if rec[c] >= 0:
                rhi[rec[c]] = level - 1
            rec[c] = n_rec
            n_rec = _write_record(rbox, rlo, rhi, n_rec, comp, c, level, _N_LEVELS - 1, 1, width, height)
        n_dirty = 0
        count[level] = n_holes
    return rbox[:n_rec], rlo[:n_rec], rhi[:n_rec], count
