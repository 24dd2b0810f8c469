//! Device tensors and tokenized grids.

use super::*;

/// A rows x cols float32 matrix in the context's device memory.
pub struct Tensor<'c> {
    raw: NonNull<sys::vqj_tensor>,
    _ctx: PhantomData<&'c Context>,
    _not_sync: NotSync,
}
handle_drop!(Tensor, vqj_tensor_destroy);

impl<'c> Tensor<'c> {
    /// A zero-filled rows x cols tensor.
    pub fn new(ctx: &'c Context, rows: i32, cols: i32) -> Result<Tensor<'c>> {
        // SAFETY: a live context, a valid out pointer.
        let raw =
            new_handle("vqj_tensor_create", |out| unsafe { sys::vqj_tensor_create(ctx.as_ptr(), rows, cols, out) })?;
        Ok(Tensor { raw, _ctx: PhantomData, _not_sync: PhantomData })
    }

    pub fn as_ptr(&self) -> *mut sys::vqj_tensor {
        self.raw.as_ptr()
    }

    pub fn rows(&self) -> usize {
        // SAFETY: a live tensor.
        unsafe { sys::vqj_tensor_rows(self.as_ptr()) as usize }
    }

    pub fn cols(&self) -> usize {
        // SAFETY: a live tensor.
        unsafe { sys::vqj_tensor_cols(self.as_ptr()) as usize }
    }

    pub fn reshape(&self, rows: i32, cols: i32) -> Result<()> {
        // SAFETY: a live tensor.
        check(unsafe { sys::vqj_tensor_reshape(self.as_ptr(), rows, cols) })
    }

    /// A host copy, row-major.
    pub fn read(&self) -> Result<Vec<f32>> {
        read_tensor(self.as_ptr())
    }

    /// Overwrite every value (`values.len()` must be rows * cols).
    pub fn write(&self, values: &[f32]) -> Result<()> {
        // SAFETY: values is only read during the call.
        check(unsafe { sys::vqj_tensor_write(self.as_ptr(), values.as_ptr(), values.len()) })
    }
}

pub(crate) fn read_tensor(t: *const sys::vqj_tensor) -> Result<Vec<f32>> {
    if t.is_null() {
        return Ok(Vec::new());
    }
    // SAFETY: a live tensor; v holds rows * cols floats.
    unsafe {
        let n = sys::vqj_tensor_rows(t) as usize * sys::vqj_tensor_cols(t) as usize;
        let mut v = vec![0.0f32; n];
        check(sys::vqj_tensor_read(t, v.as_mut_ptr(), n))?;
        Ok(v)
    }
}

/// A batch of tokenized grids: the objects of grid g are rows
/// `offsets()[g] .. offsets()[g + 1]` of `features()` (packed, no padding).
/// The accessors borrow the batch's own buffers; `tokenize` needs `&mut`.
pub struct Tokens<'c> {
    raw: NonNull<sys::vqj_tokens>,
    ctx: &'c Context,
    _not_sync: NotSync,
}
handle_drop!(Tokens, vqj_tokens_destroy);

impl<'c> Tokens<'c> {
    /// An empty batch for these tokenizer params.
    pub fn new(ctx: &'c Context, params: &TokenizerParams) -> Result<Tokens<'c>> {
        // SAFETY: valid pointers.
        let raw = new_handle("vqj_tokens_create", |out| unsafe { sys::vqj_tokens_create(ctx.as_ptr(), params, out) })?;
        Ok(Tokens { raw, ctx, _not_sync: PhantomData })
    }

    pub fn as_ptr(&self) -> *mut sys::vqj_tokens {
        self.raw.as_ptr()
    }

    /// Replace the contents with the tokens of `grids` (unchanged when a
    /// grid is refused).
    pub fn tokenize<G: AsGrid>(&mut self, grids: &[G]) -> Result<()> {
        let raw = raw_grids(grids);
        // SAFETY: raw grids borrow cells that live during the call.
        check(unsafe { sys::vqj_tokenize(self.ctx.as_ptr(), self.as_ptr(), raw.as_ptr(), raw.len()) })
    }

    pub fn num_grids(&self) -> usize {
        // SAFETY: a live batch.
        unsafe { sys::vqj_tokens_num_grids(self.as_ptr()) }
    }

    pub fn num_objects(&self) -> usize {
        // SAFETY: a live batch.
        unsafe { sys::vqj_tokens_num_objects(self.as_ptr()) }
    }

    pub fn feature_dim(&self) -> usize {
        // SAFETY: a live batch.
        unsafe { sys::vqj_tokens_feature_dim(self.as_ptr()) as usize }
    }

    /// num_grids + 1 offsets into the object rows.
    pub fn offsets(&self) -> &[i32] {
        // SAFETY: num_grids + 1 entries owned by the batch, valid while it
        // is borrowed (tokenize needs &mut).
        unsafe { std::slice::from_raw_parts(sys::vqj_tokens_offsets(self.as_ptr()), self.num_grids() + 1) }
    }

    /// The num_objects x feature_dim features, row-major.
    pub fn features(&self) -> &[f32] {
        let n = self.num_objects() * self.feature_dim();
        if n == 0 {
            return &[];
        }
        // SAFETY: n floats owned by the batch (as offsets()).
        unsafe { std::slice::from_raw_parts(sys::vqj_tokens_features(self.as_ptr()), n) }
    }

    /// Grid g's n x n adjacency bytes; None when g is out of range.
    pub fn adjacency(&self, g: usize) -> Option<&[u8]> {
        if g >= self.num_grids() {
            return None;
        }
        let off = self.offsets();
        let n = (off[g + 1] - off[g]) as usize;
        // SAFETY: n * n bytes owned by the batch (as offsets()).
        let p = unsafe { sys::vqj_tokens_adjacency(self.as_ptr(), g) };
        if p.is_null() || n == 0 {
            return Some(&[]);
        }
        Some(unsafe { std::slice::from_raw_parts(p, n * n) })
    }
}
