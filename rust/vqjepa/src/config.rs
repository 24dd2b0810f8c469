//! Configuration files and diagnostics.

use super::*;

/// A run configuration read from YAML (`vqj_config`). `Send + Sync`: the C
/// API documents it as read-only once made, its getters callable from any
/// number of threads at once.
pub struct Config<'c> {
    pub(crate) raw: NonNull<sys::vqj_config>,
    _ctx: PhantomData<&'c Context>,
}

impl Drop for Config<'_> {
    fn drop(&mut self) {
        // SAFETY: live, dropped once.
        unsafe { sys::vqj_config_destroy(self.raw.as_ptr()) }
    }
}
// SAFETY: see the type's documentation.
unsafe impl Send for Config<'_> {}
unsafe impl Sync for Config<'_> {}

impl<'c> Config<'c> {
    /// The built-in defaults.
    pub fn defaults(ctx: &'c Context) -> Result<Config<'c>> {
        // SAFETY: valid pointers.
        let raw = new_handle("vqj_config_default", |out| unsafe { sys::vqj_config_default(ctx.as_ptr(), out) })?;
        Ok(Config { raw, _ctx: PhantomData })
    }

    /// YAML text over the defaults; `name` stands for the path in messages.
    pub fn parse(ctx: &'c Context, yaml: &str, name: &str) -> Result<Config<'c>> {
        let n = cstring(name, "Config::parse")?;
        // SAFETY: yaml is read for its length during the call.
        let raw = new_handle("vqj_config_parse", |out| unsafe {
            sys::vqj_config_parse(ctx.as_ptr(), yaml.as_ptr() as *const c_char, yaml.len(), n.as_ptr(), out)
        })?;
        Ok(Config { raw, _ctx: PhantomData })
    }

    /// A YAML file over the defaults.
    pub fn load(ctx: &'c Context, path: impl AsRef<Path>) -> Result<Config<'c>> {
        let p = path_cstring(path.as_ref())?;
        // SAFETY: valid pointers.
        let raw = new_handle("vqj_config_load", |out| unsafe { sys::vqj_config_load(ctx.as_ptr(), p.as_ptr(), out) })?;
        Ok(Config { raw, _ctx: PhantomData })
    }

    /// Every module's params, as the configuration sets them.
    pub fn trainer_config(&self) -> Result<TrainerConfig> {
        let mut c = TrainerConfig::defaults();
        let r = self.raw.as_ptr();
        // SAFETY: each struct was filled by its default function (size set).
        unsafe {
            check(sys::vqj_config_tokenizer_params(r, &mut c.tokenizer))?;
            check(sys::vqj_config_encoder_params(r, &mut c.encoder))?;
            check(sys::vqj_config_codebook_params(r, &mut c.codebook))?;
            check(sys::vqj_config_predictor_params(r, &mut c.predictor))?;
            check(sys::vqj_config_loss_params(r, &mut c.loss))?;
            check(sys::vqj_config_optimizer_params(r, &mut c.optimizer))?;
            check(sys::vqj_config_trainer_params(r, &mut c.trainer))?;
        }
        Ok(c)
    }

    /// Set one key as a file would (`vqj_config_set`):
    /// `set("training.device", "cpu")`, `set("seed", "7")`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let k = cstring(key, "Config::set key")?;
        let v = cstring(value, "Config::set value")?;
        // SAFETY: NUL-terminated strings alive during the call; &mut self
        // keeps other users out.
        check(unsafe { sys::vqj_config_set(self.raw.as_ptr(), k.as_ptr(), v.as_ptr()) })
    }

    /// The resolved configuration as YAML.
    pub fn to_yaml(&self) -> Result<String> {
        extern "C" {
            fn free(p: *mut c_void);
        }
        let mut text: *mut c_char = ptr::null_mut();
        // SAFETY: on success text is a malloc()ed NUL-terminated string that
        // the caller frees with the C library's free().
        unsafe {
            check(sys::vqj_config_write_yaml(self.raw.as_ptr(), &mut text))?;
            let s = CStr::from_ptr(text).to_string_lossy().into_owned();
            free(text as *mut c_void);
            Ok(s)
        }
    }
}

/// The sample window of one diagnostics interval (`vqj_metrics_window`):
/// the last `max_samples` context and target projections, and the codes
/// used since the last reset.
pub struct MetricsWindow<'c> {
    raw: NonNull<sys::vqj_metrics_window>,
    dim: usize,
    _ctx: PhantomData<&'c Context>,
    _not_sync: NotSync,
}
handle_drop!(MetricsWindow, vqj_metrics_window_destroy);

impl<'c> MetricsWindow<'c> {
    pub fn new(ctx: &'c Context, dim: usize, max_samples: usize, num_codes: usize) -> Result<MetricsWindow<'c>> {
        let conv = |v: usize, what: &str| {
            c_int::try_from(v)
                .map_err(|_| Error::new(Status::InvalidArgument, format!("MetricsWindow: {what} too large")))
        };
        let (d, m, k) = (conv(dim, "dim")?, conv(max_samples, "max_samples")?, conv(num_codes, "num_codes")?);
        // SAFETY: valid pointers.
        let raw = new_handle("vqj_metrics_window_create", |out| unsafe {
            sys::vqj_metrics_window_create(ctx.as_ptr(), d, m, k, out)
        })?;
        Ok(MetricsWindow { raw, dim, _ctx: PhantomData, _not_sync: PhantomData })
    }

    /// Append rows of context and target projections (rows x dim each).
    pub fn add_projections(&self, context: &[f32], target: &[f32]) -> Result<()> {
        if context.len() != target.len() || self.dim == 0 || context.len() % self.dim != 0 {
            return Err(Error::new(
                Status::InvalidArgument,
                "MetricsWindow::add_projections: not two rows x dim matrices",
            ));
        }
        let rows = c_int::try_from(context.len() / self.dim)
            .map_err(|_| Error::new(Status::InvalidArgument, "MetricsWindow::add_projections: too many rows"))?;
        // SAFETY: both hold rows * dim floats.
        check(unsafe {
            sys::vqj_metrics_window_add_projections(self.raw.as_ptr(), context.as_ptr(), target.as_ptr(), rows)
        })
    }

    /// Mark codes as used (negative codes are skipped).
    pub fn add_codes(&self, codes: &[i32]) -> Result<()> {
        // SAFETY: codes holds codes.len() entries.
        check(unsafe { sys::vqj_metrics_window_add_codes(self.raw.as_ptr(), codes.as_ptr(), codes.len()) })
    }

    /// Measure the window (unchanged).
    pub fn compute(&self) -> Result<WindowMetrics> {
        let mut m = WindowMetrics { size: std::mem::size_of::<WindowMetrics>(), ..Default::default() };
        // SAFETY: a valid out pointer with its size set.
        check(unsafe { sys::vqj_metrics_window_compute(self.raw.as_ptr(), &mut m) })?;
        Ok(m)
    }

    /// Rows of projections held now.
    pub fn rows(&self) -> usize {
        // SAFETY: a live window.
        unsafe { sys::vqj_metrics_window_rows(self.raw.as_ptr()) as usize }
    }

    /// Empty the window.
    pub fn reset(&self) {
        // SAFETY: a live window.
        unsafe { sys::vqj_metrics_window_reset(self.raw.as_ptr()) }
    }
}

/// Variance, isotropy, effective rank and Gaussian score of the rows of
/// `x` (n x d, row-major).
pub fn embedding_metrics(ctx: &Context, x: &[f32], d: usize) -> Result<EmbeddingMetrics> {
    if d == 0 || x.len() % d != 0 {
        return Err(Error::new(Status::InvalidArgument, "embedding_metrics: x is not n x d"));
    }
    let n = c_int::try_from(x.len() / d)
        .map_err(|_| Error::new(Status::InvalidArgument, "embedding_metrics: n too large"))?;
    let d = c_int::try_from(d).map_err(|_| Error::new(Status::InvalidArgument, "embedding_metrics: d too large"))?;
    let mut out = EmbeddingMetrics { size: std::mem::size_of::<EmbeddingMetrics>(), ..Default::default() };
    // SAFETY: x holds n * d floats.
    check(unsafe { sys::vqj_embedding_metrics_compute(ctx.as_ptr(), x.as_ptr(), n, d, &mut out) })?;
    Ok(out)
}
