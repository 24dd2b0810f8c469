//! Inference: the model object, encodings and latent distances.

use super::*;

/// Inference for agents (`vqj_model`): a grid becomes one code per object
/// and an embedding; T context grids a predicted target embedding.
///
/// `Send + Sync`: every `vqj_model_*` call but create and destroy may run
/// from any number of threads at once on one model. The model borrows its
/// parts exclusively (`&mut`) or owns them, so nothing can change them
/// while it lives, as the C API requires.
pub struct Model<'a> {
    raw: NonNull<sys::vqj_model>,
    _targets: Option<(Encoder<'a>, Predictor<'a>)>,
    _parts: PhantomData<&'a mut ()>,
    embedding_dim: usize,
    max_objects: usize,
    context_window: usize,
    num_codes: usize,
}

impl Drop for Model<'_> {
    fn drop(&mut self) {
        // SAFETY: no call can be in flight (drop needs ownership); the
        // target copies are dropped after this, as fields.
        unsafe { sys::vqj_model_destroy(self.raw.as_ptr()) }
    }
}
// SAFETY: see the type's documentation. The owned target copies are only
// read by the C model calls, which the C API makes thread-safe.
unsafe impl Send for Model<'_> {}
unsafe impl Sync for Model<'_> {}

/// The codes and embedding of one grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// One code per object, largest object first.
    pub codes: Vec<i32>,
    /// The grid's unit-length embedding (P floats).
    pub embedding: Vec<f32>,
}

impl<'a> Model<'a> {
    pub(crate) fn wrap(raw: NonNull<sys::vqj_model>, targets: Option<(Encoder<'a>, Predictor<'a>)>) -> Model<'a> {
        // SAFETY: a live model.
        let (e, m, t, k) = unsafe {
            let p = raw.as_ptr();
            (
                sys::vqj_model_embedding_dim(p),
                sys::vqj_model_max_objects(p),
                sys::vqj_model_context_window(p),
                sys::vqj_model_num_codes(p),
            )
        };
        Model {
            raw,
            _targets: targets,
            _parts: PhantomData,
            embedding_dim: e as usize,
            max_objects: m as usize,
            context_window: t as usize,
            num_codes: k as usize,
        }
    }

    /// A model read whole from a trainer checkpoint (`vqj_model_load`):
    /// the configuration stored in the file gives the sizes, the file the
    /// weights. The model owns its parts.
    pub fn load(ctx: &'a Context, path: impl AsRef<Path>) -> Result<Model<'a>> {
        let p = path_cstring(path.as_ref())?;
        // SAFETY: valid pointers.
        let raw = new_handle("vqj_model_load", |out| unsafe { sys::vqj_model_load(ctx.as_ptr(), p.as_ptr(), out) })?;
        Ok(Model::wrap(raw, None))
    }

    /// A model over parts it borrows exclusively for its life. Grid
    /// embeddings use `target_encoder` / `target_predictor` when given.
    pub fn new(
        ctx: &'a Context,
        tokenizer: &TokenizerParams,
        encoder: &'a mut Encoder<'_>,
        codebook: &'a mut Codebook<'_>,
        predictor: &'a mut Predictor<'_>,
        target_encoder: Option<&'a mut Encoder<'_>>,
        target_predictor: Option<&'a mut Predictor<'_>>,
    ) -> Result<Model<'a>> {
        let te = target_encoder.map_or(ptr::null_mut(), |e| e.as_ptr());
        let tp = target_predictor.map_or(ptr::null_mut(), |p| p.as_ptr());
        // SAFETY: live handles borrowed for 'a.
        let raw = new_handle("vqj_model_create", |out| unsafe {
            sys::vqj_model_create(
                ctx.as_ptr(),
                tokenizer,
                encoder.as_ptr(),
                codebook.as_ptr(),
                predictor.as_ptr(),
                te,
                tp,
                out,
            )
        })?;
        Ok(Model::wrap(raw, None))
    }

    /// P, the floats of an embedding.
    pub fn embedding_dim(&self) -> usize {
        self.embedding_dim
    }

    /// The most codes a grid gives.
    pub fn max_objects(&self) -> usize {
        self.max_objects
    }

    /// T, the context grids predict() takes.
    pub fn context_window(&self) -> usize {
        self.context_window
    }

    /// K: codes are 0..K-1.
    pub fn num_codes(&self) -> usize {
        self.num_codes
    }

    /// The codes and embedding of one grid.
    pub fn encode<G: AsGrid>(&self, grid: &G) -> Result<Encoded> {
        let g = grid.as_raw();
        let mut codes = vec![-1i32; self.max_objects];
        let mut embedding = vec![0.0f32; self.embedding_dim];
        let mut n = 0usize;
        // SAFETY: buffers of the documented capacities.
        check(unsafe {
            sys::vqj_model_encode_grid(self.raw.as_ptr(), &g, codes.as_mut_ptr(), &mut n, embedding.as_mut_ptr())
        })?;
        codes.truncate(n);
        Ok(Encoded { codes, embedding })
    }

    /// Several grids in one pass.
    pub fn encode_batch<G: AsGrid>(&self, grids: &[G]) -> Result<Vec<Encoded>> {
        let raw = raw_grids(grids);
        let (m, d) = (self.max_objects, self.embedding_dim);
        let mut codes = vec![-1i32; raw.len() * m];
        let mut counts = vec![0usize; raw.len()];
        let mut emb = vec![0.0f32; raw.len() * d];
        // SAFETY: buffers of the documented capacities.
        check(unsafe {
            sys::vqj_model_encode_grids(
                self.raw.as_ptr(),
                raw.as_ptr(),
                raw.len(),
                codes.as_mut_ptr(),
                counts.as_mut_ptr(),
                emb.as_mut_ptr(),
            )
        })?;
        Ok((0..raw.len())
            .map(|g| Encoded {
                codes: codes[g * m..g * m + counts[g]].to_vec(),
                embedding: emb[g * d..(g + 1) * d].to_vec(),
            })
            .collect())
    }

    /// The predicted target embedding of T context grids, oldest first.
    pub fn predict<G: AsGrid>(&self, context: &[G]) -> Result<Vec<f32>> {
        let raw = raw_grids(context);
        let mut e = vec![0.0f32; self.embedding_dim];
        // SAFETY: e holds P floats.
        check(unsafe { sys::vqj_model_predict(self.raw.as_ptr(), raw.as_ptr(), raw.len(), e.as_mut_ptr()) })?;
        Ok(e)
    }

    /// Predictions of `context.len() / T` examples, one Vec each.
    pub fn predict_batch<G: AsGrid>(&self, context: &[G]) -> Result<Vec<Vec<f32>>> {
        let t = self.context_window.max(1);
        if context.len() % t != 0 {
            return Err(Error::new(
                Status::InvalidArgument,
                format!("Model::predict_batch: {} grids is not a multiple of T = {t}", context.len()),
            ));
        }
        let raw = raw_grids(context);
        let b = raw.len() / t;
        let d = self.embedding_dim;
        let mut e = vec![0.0f32; b * d];
        // SAFETY: e holds b * P floats.
        check(unsafe { sys::vqj_model_predict_batch(self.raw.as_ptr(), raw.as_ptr(), b, e.as_mut_ptr()) })?;
        Ok(e.chunks(d.max(1)).map(|c| c.to_vec()).collect())
    }
}

/// || a/|a| - b/|b| ||^2 = 2 - 2 cos(a, b), in [0, 4].
pub fn latent_distance(a: &[f32], b: &[f32]) -> Result<f32> {
    if a.len() != b.len() {
        return Err(Error::new(
            Status::InvalidArgument,
            format!("latent_distance: the vectors have {} and {} floats", a.len(), b.len()),
        ));
    }
    let dim = c_int::try_from(a.len()).map_err(|_| Error::new(Status::InvalidArgument, "latent_distance: too long"))?;
    let mut out = 0.0f32;
    // SAFETY: both hold dim floats.
    check(unsafe { sys::vqj_latent_distance(a.as_ptr(), b.as_ptr(), dim, &mut out) })?;
    Ok(out)
}
