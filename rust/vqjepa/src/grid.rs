//! Grids: owned, borrowed, and anything that can be passed as one.

use super::*;

/// Anything that can be passed as a grid: [`Grid`], [`GridRef`], or the C
/// struct itself (whose cells must stay valid during the call).
pub trait AsGrid {
    fn as_raw(&self) -> sys::vqj_grid;
}

/// A grid that owns its cells (row-major, colors 0..9).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Grid {
    height: usize,
    width: usize,
    cells: Vec<u8>,
}

impl Grid {
    /// A height x width grid of `fill`.
    pub fn new(height: usize, width: usize, fill: u8) -> Grid {
        Grid { height, width, cells: vec![fill; height * width] }
    }

    /// A grid from rows of equal length.
    pub fn from_rows<R: AsRef<[u8]>>(rows: &[R]) -> Result<Grid> {
        let width = rows.first().map(|r| r.as_ref().len()).unwrap_or(0);
        let mut cells = Vec::with_capacity(rows.len() * width);
        for (i, r) in rows.iter().enumerate() {
            let r = r.as_ref();
            if r.len() != width {
                return Err(Error::new(
                    Status::InvalidArgument,
                    format!("Grid::from_rows: row {i} has {} cells, expected {width}", r.len()),
                ));
            }
            cells.extend_from_slice(r);
        }
        Ok(Grid { height: rows.len(), width, cells })
    }

    pub fn height(&self) -> usize {
        self.height
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn cells(&self) -> &[u8] {
        &self.cells
    }

    pub fn cells_mut(&mut self) -> &mut [u8] {
        &mut self.cells
    }

    pub fn at(&self, row: usize, col: usize) -> u8 {
        self.cells[row * self.width + col]
    }

    pub fn set(&mut self, row: usize, col: usize, color: u8) {
        self.cells[row * self.width + col] = color;
    }
}

impl AsGrid for Grid {
    fn as_raw(&self) -> sys::vqj_grid {
        sys::vqj_grid {
            height: self.height.min(i32::MAX as usize) as c_int,
            width: self.width.min(i32::MAX as usize) as c_int,
            cells: self.cells.as_ptr(),
        }
    }
}

impl<G: AsGrid + ?Sized> AsGrid for &G {
    fn as_raw(&self) -> sys::vqj_grid {
        (**self).as_raw()
    }
}

/// A grid owned by a [`Dataset`] or an [`ArcTask`], borrowed from it.
#[derive(Clone, Copy)]
pub struct GridRef<'a> {
    raw: sys::vqj_grid,
    _owner: PhantomData<&'a ()>,
}

impl<'a> GridRef<'a> {
    /// # Safety
    /// `raw` must point to a grid valid for 'a.
    pub(crate) unsafe fn new(raw: *const sys::vqj_grid) -> GridRef<'a> {
        GridRef { raw: *raw, _owner: PhantomData }
    }

    pub fn height(&self) -> usize {
        self.raw.height as usize
    }

    pub fn width(&self) -> usize {
        self.raw.width as usize
    }

    pub fn cells(&self) -> &'a [u8] {
        let n = self.height() * self.width();
        if n == 0 {
            return &[];
        }
        // SAFETY: the owner keeps n cells alive for 'a.
        unsafe { std::slice::from_raw_parts(self.raw.cells, n) }
    }

    pub fn to_grid(&self) -> Grid {
        Grid { height: self.height(), width: self.width(), cells: self.cells().to_vec() }
    }
}

impl fmt::Debug for GridRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_grid().fmt(f)
    }
}

impl AsGrid for GridRef<'_> {
    fn as_raw(&self) -> sys::vqj_grid {
        self.raw
    }
}

impl AsGrid for sys::vqj_grid {
    fn as_raw(&self) -> sys::vqj_grid {
        *self
    }
}

pub(crate) fn raw_grids<G: AsGrid>(grids: &[G]) -> Vec<sys::vqj_grid> {
    grids.iter().map(|g| g.as_raw()).collect()
}
