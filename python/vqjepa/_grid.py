"""Grids: the Grid class and the batches of grids passed to the library."""

import ctypes
import itertools


from . import _lib
from ._errors import InvalidArgumentError, UnsupportedError
from ._core import np


class Grid:
    """A grid owned by the library (an example of a Dataset, a pair of an
    ArcTask). It keeps its owner alive. ``cells`` is a bytes copy;
    ``to_list()`` gives rows of ints, ``to_numpy()`` a (H, W) uint8 array.
    Anywhere a grid is expected, a Grid, a list of rows of ints or a 2-D
    numpy array may be passed."""

    __slots__ = ("_grid", "_owner")

    def __init__(self, c_grid, owner):
        self._grid = c_grid
        self._owner = owner

    @property
    def height(self):
        return self._grid.height

    @property
    def width(self):
        return self._grid.width

    @property
    def shape(self):
        return (self._grid.height, self._grid.width)

    @property
    def cells(self):
        n = self._grid.height * self._grid.width
        return ctypes.string_at(self._grid.cells, n) if n else b""

    def to_list(self):
        c, w = self.cells, self._grid.width
        return [list(c[r * w:(r + 1) * w]) for r in range(self._grid.height)]

    def to_numpy(self):
        if np is None:
            raise UnsupportedError(3, "Grid.to_numpy: numpy is not available")
        return np.frombuffer(self.cells, dtype=np.uint8).reshape(self.shape).copy()

    def __array__(self, dtype=None, copy=None):
        arr = np.frombuffer(self.cells, dtype=np.uint8).reshape(self.shape)
        return arr.astype(dtype) if dtype is not None else arr.copy()

    def __eq__(self, other):
        if isinstance(other, Grid):
            return self.shape == other.shape and self.cells == other.cells
        return NotImplemented

    def __hash__(self):
        return hash((self.shape, self.cells))

    def __repr__(self):
        return "Grid(%r)" % (self.to_list(),)


def _is_grid(x):
    if isinstance(x, Grid):
        return True
    if np is not None and isinstance(x, np.ndarray):
        return x.ndim == 2
    if isinstance(x, (list, tuple)):
        return len(x) == 0 or (isinstance(x[0], (list, tuple, bytes, bytearray))
                               and (len(x[0]) == 0 or not isinstance(x[0][0], (list, tuple))))
    return False


class _GridBatch:
    """A vqj_grid array built from Python grids; keeps their cells alive."""

    __slots__ = ("array", "keep", "count")

    def __init__(self, grids, what="grids"):
        items = self._flatten(grids, what)
        self.count = len(items)
        self.array = (_lib.vqj_grid * max(self.count, 1))()
        self.keep = []
        for i, g in enumerate(items):
            self._convert(i, g, what)

    @staticmethod
    def _flatten(grids, what):
        if np is not None and isinstance(grids, np.ndarray):
            if grids.ndim == 2:
                return [grids]
            if grids.ndim < 2:
                raise InvalidArgumentError(1, "%s: expected arrays of 2 or more dimensions" % what)
            return list(grids.reshape((-1,) + grids.shape[-2:]))
        if _is_grid(grids) and not isinstance(grids, Grid) and len(grids) and \
                not isinstance(grids[0], Grid) and not _is_grid(grids[0]):
            return [grids]
        out = []
        for g in grids:
            if _is_grid(g):
                out.append(g)
            elif (np is not None and isinstance(g, np.ndarray)) or isinstance(g, (list, tuple)):
                out.extend(_GridBatch._flatten(g, what))  # an example: a list of grids
            else:
                raise InvalidArgumentError(
                    1, "%s: expected grids (lists of rows of ints, 2-D arrays or Grid), got %s"
                    % (what, type(g).__name__))
        return out

    def _convert(self, i, g, what):
        slot = self.array[i]
        if isinstance(g, Grid):
            slot.height, slot.width, slot.cells = g._grid.height, g._grid.width, g._grid.cells
            self.keep.append(g)
            return
        if np is not None and isinstance(g, np.ndarray):
            if g.dtype != np.uint8:
                if g.dtype.kind not in "iub":
                    raise InvalidArgumentError(1, "%s: grid %d: cells must be integers, not %s"
                                               % (what, i, g.dtype))
                if g.size and (g.min() < 0 or g.max() > 255):
                    raise InvalidArgumentError(1, "%s: grid %d: a cell holds %d; colors are 0..9"
                                               % (what, i, g.min() if g.min() < 0 else g.max()))
            arr = g if g.dtype == np.uint8 and g.flags.c_contiguous \
                else np.ascontiguousarray(g, dtype=np.uint8)
            slot.height, slot.width = arr.shape
            slot.cells = arr.ctypes.data_as(_lib.c_uint8_p) if arr.size else None
            self.keep.append(arr)
            return
        rows = list(g)
        h = len(rows)
        w = len(rows[0]) if h else 0
        for r, row in enumerate(rows):
            if len(row) != w:
                raise InvalidArgumentError(1, "%s: grid %d: row %d has %d cells, expected %d"
                                           % (what, i, r, len(row), w))
        try:
            data = bytes(itertools.chain.from_iterable(rows))
        except (TypeError, ValueError):
            for r, row in enumerate(rows):
                for c, v in enumerate(row):
                    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 255:
                        raise InvalidArgumentError(
                            1, "%s: grid %d: cell (%d, %d) is %r; colors are ints 0..9"
                            % (what, i, r, c, v)) from None
            raise
        buf = ctypes.create_string_buffer(data, max(len(data), 1))
        slot.height, slot.width = h, w
        slot.cells = ctypes.cast(buf, _lib.c_uint8_p)
        self.keep.append(buf)

    def ptr(self):
        return self.array


# ---------------------------------------------------------------------------
# Context
