//! Safe Rust wrapper of libvqjepa, an object-centric, vector-quantized JEPA
//! for ARC grids (see the repository's README and docs/bindings.md).
//!
//! - Every C handle is an owned Rust value that destroys it on `Drop`.
//!   Handles borrow the [`Context`] they were made from (`Encoder<'c>`...),
//!   so the borrow checker keeps a context alive until its handles are gone.
//! - Every fallible call returns [`Result`]; an [`Error`] carries the status
//!   and the library's one-line message, read on the calling thread right
//!   after the call (the library keeps messages per thread).
//! - Params are the C structs (`EncoderParams` = `vqj_encoder_params`...),
//!   made with [`Params::defaults`], which calls the C default function.
//!
//! # Threads: `Send` and `Sync`
//!
//! The C rules (docs/api-conventions.md) are: different handles may be used
//! from different threads at the same time, including handles made from one
//! context; one handle is used by one thread at a time unless its
//! documentation says otherwise. Hence:
//!
//! | type | Send | Sync | why |
//! |---|---|---|---|
//! | [`Context`] | yes | yes | never changed after creation; handles made from one context may run on several threads at once; errors are per thread; the log callback must be `Send + Sync` |
//! | [`Model`] | yes | yes | every `vqj_model_*` call but create/destroy is documented thread-safe on one model; it holds `&mut` borrows of the parts it reads (or owns them), so nothing changes them meanwhile |
//! | [`Dataset`] | yes | yes | "read-only once built, so any number of threads may read one at the same time" |
//! | [`Config`] | yes | yes | "read-only once made: any number of threads may call the getters" |
//! | [`Tokens`], [`Tensor`], [`Encoder`], [`Codebook`], [`Predictor`], [`Loss`], [`Optimizer`], [`Trainer`], [`ArcTask`], [`MetricsWindow`] | yes | no | one thread at a time: they may move to another thread, not be shared |
//! | [`Weights`], [`GridRef`] | no | no | borrowed views of a handle that is not `Sync` |

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::os::raw::{c_char, c_int, c_void};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::{self, NonNull};

pub use vqjepa_sys as sys;

/// Marks a type as not `Sync` (one thread at a time), still `Send`.
type NotSync = PhantomData<Cell<()>>;

// ---------------------------------------------------------------------------
// Errors

/// A status code of the C API other than `VQJ_OK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    InvalidArgument,
    OutOfMemory,
    Unsupported,
    Io,
    Parse,
    Numeric,
    Device,
    State,
    Internal,
    /// A code this wrapper does not know (from a newer library).
    Unknown(i32),
}

impl Status {
    fn from_raw(code: sys::vqj_status) -> Status {
        match code {
            sys::VQJ_ERR_INVALID_ARGUMENT => Status::InvalidArgument,
            sys::VQJ_ERR_OUT_OF_MEMORY => Status::OutOfMemory,
            sys::VQJ_ERR_UNSUPPORTED => Status::Unsupported,
            sys::VQJ_ERR_IO => Status::Io,
            sys::VQJ_ERR_PARSE => Status::Parse,
            sys::VQJ_ERR_NUMERIC => Status::Numeric,
            sys::VQJ_ERR_DEVICE => Status::Device,
            sys::VQJ_ERR_STATE => Status::State,
            sys::VQJ_ERR_INTERNAL => Status::Internal,
            other => Status::Unknown(other),
        }
    }

    /// The C value (`vqj_status`).
    pub fn code(self) -> i32 {
        match self {
            Status::InvalidArgument => sys::VQJ_ERR_INVALID_ARGUMENT,
            Status::OutOfMemory => sys::VQJ_ERR_OUT_OF_MEMORY,
            Status::Unsupported => sys::VQJ_ERR_UNSUPPORTED,
            Status::Io => sys::VQJ_ERR_IO,
            Status::Parse => sys::VQJ_ERR_PARSE,
            Status::Numeric => sys::VQJ_ERR_NUMERIC,
            Status::Device => sys::VQJ_ERR_DEVICE,
            Status::State => sys::VQJ_ERR_STATE,
            Status::Internal => sys::VQJ_ERR_INTERNAL,
            Status::Unknown(c) => c,
        }
    }

    /// The library's name of the status ("invalid argument", ...).
    pub fn name(self) -> &'static str {
        // SAFETY: vqj_status_string returns a static string, never NULL.
        unsafe { CStr::from_ptr(sys::vqj_status_string(self.code())) }.to_str().unwrap_or("?")
    }
}

/// A failed library call: its status and the library's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: Status,
    message: String,
}

impl Error {
    /// An error of the wrapper itself (a check made before calling C).
    pub fn new(status: Status, message: impl Into<String>) -> Error {
        Error { status, message: message.into() }
    }

    /// The error of a failed call, with the message the library left for
    /// this thread.
    fn last(code: sys::vqj_status) -> Error {
        // SAFETY: vqj_last_error never returns NULL; the string is copied at once.
        let msg = unsafe { CStr::from_ptr(sys::vqj_last_error()) }.to_string_lossy().into_owned();
        let status = Status::from_raw(code);
        let message = if msg.is_empty() { status.name().to_string() } else { msg };
        Error { status, message }
    }

    pub fn status(&self) -> Status {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// `std::result::Result` with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

fn check(code: sys::vqj_status) -> Result<()> {
    if code == sys::VQJ_OK {
        Ok(())
    } else {
        Err(Error::last(code))
    }
}

fn cstring(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::new(Status::InvalidArgument, format!("{what}: contains a NUL byte")))
}

fn path_cstring(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::new(Status::InvalidArgument, format!("{}: contains a NUL byte", p.display())))
}

fn new_handle<T>(what: &str, f: impl FnOnce(*mut *mut T) -> sys::vqj_status) -> Result<NonNull<T>> {
    let mut raw: *mut T = ptr::null_mut();
    check(f(&mut raw))?;
    NonNull::new(raw).ok_or_else(|| Error::new(Status::Internal, format!("{what}: NULL handle")))
}

/// The version of the loaded library, "MAJOR.MINOR.PATCH".
pub fn version() -> &'static str {
    // SAFETY: a static string.
    unsafe { CStr::from_ptr(sys::vqj_version()) }.to_str().unwrap_or("?")
}

/// Where computation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda,
}

impl Device {
    fn raw(self) -> sys::vqj_device_kind {
        match self {
            Device::Cpu => sys::VQJ_DEVICE_CPU,
            Device::Cuda => sys::VQJ_DEVICE_CUDA,
        }
    }
}

/// Whether this build of the library can compute on `device`.
pub fn device_compiled(device: Device) -> bool {
    // SAFETY: takes a value only.
    unsafe { sys::vqj_device_compiled(device.raw()) != 0 }
}

// ---------------------------------------------------------------------------
// Params

/// A params struct filled with the library's defaults (its `*_default()`).
pub trait Params: Sized {
    fn defaults() -> Self;
}

macro_rules! params {
    ($($alias:ident = $ty:ident, $fn:ident;)*) => {$(
        #[doc = concat!("`", stringify!($ty), "`; see include/vqjepa.h for every field.")]
        pub type $alias = sys::$ty;
        impl Params for sys::$ty {
            fn defaults() -> Self {
                let mut p = std::mem::MaybeUninit::<sys::$ty>::zeroed();
                // SAFETY: the C function fills every field of the struct
                // (its size is checked against the header by vqjepa-sys's tests).
                unsafe {
                    sys::$fn(p.as_mut_ptr());
                    p.assume_init()
                }
            }
        }
    )*};
}
params! {
    ContextParams = vqj_context_params, vqj_context_params_default;
    TokenizerParams = vqj_tokenizer_params, vqj_tokenizer_params_default;
    CodebookParams = vqj_codebook_params, vqj_codebook_params_default;
    OptimizerParams = vqj_optimizer_params, vqj_optimizer_params_default;
    EncoderParams = vqj_encoder_params, vqj_encoder_params_default;
    PredictorParams = vqj_predictor_params, vqj_predictor_params_default;
    DatasetParams = vqj_dataset_params, vqj_dataset_params_default;
    SyntheticParams = vqj_synthetic_params, vqj_synthetic_params_default;
    AugmentParams = vqj_augment_params, vqj_augment_params_default;
    LossParams = vqj_loss_params, vqj_loss_params_default;
    TrainerParams = vqj_trainer_params, vqj_trainer_params_default;
}

/// What one trainer call did (`vqj_train_metrics`).
pub type Metrics = sys::vqj_train_metrics;
/// What one codebook forward saw (`vqj_codebook_stats`).
pub type CodebookStats = sys::vqj_codebook_stats;
/// What one optimizer step did (`vqj_step_info`).
pub type StepInfo = sys::vqj_step_info;
/// The loss report (`vqj_loss_values`).
pub type LossValues = sys::vqj_loss_values;
/// Embedding metrics (`vqj_embedding_metrics`).
pub type EmbeddingMetrics = sys::vqj_embedding_metrics;
/// What a diagnostics window measured (`vqj_window_metrics`).
pub type WindowMetrics = sys::vqj_window_metrics;

// ---------------------------------------------------------------------------
// Context

/// Severity of a log message.
pub type LogLevel = sys::vqj_log_level;

type LogFn = Box<dyn Fn(LogLevel, &str) + Send + Sync + 'static>;

unsafe extern "C" fn log_trampoline(user: *mut c_void, level: sys::vqj_log_level, msg: *const c_char) {
    if user.is_null() || msg.is_null() {
        return;
    }
    // SAFETY: user is the Box<LogFn> the context keeps alive; msg is valid
    // during the call.
    let f = &*(user as *const LogFn);
    let text = CStr::from_ptr(msg).to_string_lossy();
    // a panic must not unwind into C
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(level, &text)));
}

/// The device, thread count and seed; every other handle borrows one.
///
/// `Send + Sync`: the C API lets handles made from one context run on
/// different threads at the same time, and the context itself is never
/// changed after creation.
pub struct Context {
    raw: NonNull<sys::vqj_context>,
    _log: Option<Box<LogFn>>,
}

// SAFETY: see the type's documentation.
unsafe impl Send for Context {}
unsafe impl Sync for Context {}

impl Context {
    /// A context with these params (their `log_fn` is ignored: use
    /// [`Context::with_log`]).
    pub fn new(params: &ContextParams) -> Result<Context> {
        let mut p = *params;
        p.log_fn = None;
        p.log_user_data = ptr::null_mut();
        // SAFETY: p is a valid params struct; out is a valid pointer.
        let raw = new_handle("vqj_context_create", |out| unsafe { sys::vqj_context_create(&p, out) })?;
        Ok(Context { raw, _log: None })
    }

    /// A CPU context with this seed and thread count (0: all cores).
    pub fn cpu(seed: u64, num_threads: i32) -> Result<Context> {
        let mut p = ContextParams::defaults();
        p.seed = seed;
        p.num_threads = num_threads;
        Context::new(&p)
    }

    /// A context whose log messages (at or above `params.log_level`) go to
    /// `log`, which may be called from any thread that calls the library.
    pub fn with_log(params: &ContextParams, log: impl Fn(LogLevel, &str) + Send + Sync + 'static) -> Result<Context> {
        let boxed: Box<LogFn> = Box::new(Box::new(log));
        let mut p = *params;
        p.log_fn = Some(log_trampoline);
        p.log_user_data = &*boxed as *const LogFn as *mut c_void;
        // SAFETY: the box outlives the context (dropped after it).
        let raw = new_handle("vqj_context_create", |out| unsafe { sys::vqj_context_create(&p, out) })?;
        Ok(Context { raw, _log: Some(boxed) })
    }

    pub fn as_ptr(&self) -> *mut sys::vqj_context {
        self.raw.as_ptr()
    }

    pub fn seed(&self) -> u64 {
        // SAFETY: a live context.
        unsafe { sys::vqj_context_seed(self.as_ptr()) }
    }

    pub fn num_threads(&self) -> i32 {
        // SAFETY: a live context.
        unsafe { sys::vqj_context_num_threads(self.as_ptr()) }
    }

    pub fn device(&self) -> Device {
        // SAFETY: a live context.
        match unsafe { sys::vqj_context_device(self.as_ptr()) } {
            sys::VQJ_DEVICE_CUDA => Device::Cuda,
            _ => Device::Cpu,
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: every handle borrowing this context is gone (borrow checker).
        unsafe { sys::vqj_context_destroy(self.raw.as_ptr()) }
        // _log is dropped after this, once the context can no longer call it.
    }
}

// ---------------------------------------------------------------------------
// Grids

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
    unsafe fn new(raw: *const sys::vqj_grid) -> GridRef<'a> {
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

fn raw_grids<G: AsGrid>(grids: &[G]) -> Vec<sys::vqj_grid> {
    grids.iter().map(|g| g.as_raw()).collect()
}

// ---------------------------------------------------------------------------
// Weights

/// Description of one named tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub count: usize,
    pub trainable: bool,
}

/// A borrowed view of a handle's named tensors (`vqj_weights`): valid while
/// the handle is borrowed; not `Send` or `Sync` (its handle is not `Sync`).
#[derive(Clone, Copy)]
pub struct Weights<'a> {
    raw: NonNull<sys::vqj_weights>,
    _owner: PhantomData<&'a ()>,
}

impl<'a> Weights<'a> {
    fn from_raw(raw: *mut sys::vqj_weights) -> Option<Weights<'a>> {
        NonNull::new(raw).map(|raw| Weights { raw, _owner: PhantomData })
    }

    pub fn as_ptr(&self) -> *mut sys::vqj_weights {
        self.raw.as_ptr()
    }

    /// The number of named tensors.
    pub fn len(&self) -> usize {
        // SAFETY: a live view.
        unsafe { sys::vqj_weights_num_tensors(self.as_ptr()) }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Trainable floats.
    pub fn num_params(&self) -> usize {
        // SAFETY: a live view.
        unsafe { sys::vqj_weights_num_params(self.as_ptr()) }
    }

    /// Tensor `index`.
    pub fn info(&self, index: usize) -> Result<WeightInfo> {
        let mut wi = std::mem::MaybeUninit::<sys::vqj_weight_info>::zeroed();
        // SAFETY: a live view and a valid out pointer.
        check(unsafe { sys::vqj_weights_info(self.as_ptr(), index, wi.as_mut_ptr()) })?;
        // SAFETY: filled on success.
        let wi = unsafe { wi.assume_init() };
        // SAFETY: name is owned by the view, valid now.
        let name = unsafe { CStr::from_ptr(wi.name) }.to_string_lossy().into_owned();
        let shape = wi.shape[..wi.ndim.clamp(0, 2) as usize].iter().map(|&s| s as usize).collect();
        Ok(WeightInfo { name, shape, count: wi.count, trainable: wi.trainable != 0 })
    }

    /// Every tensor, in order.
    pub fn infos(&self) -> Result<Vec<WeightInfo>> {
        (0..self.len()).map(|i| self.info(i)).collect()
    }

    pub fn names(&self) -> Result<Vec<String>> {
        Ok(self.infos()?.into_iter().map(|i| i.name).collect())
    }

    fn count(&self, name: &str) -> Result<usize> {
        for i in 0..self.len() {
            let wi = self.info(i)?;
            if wi.name == name {
                return Ok(wi.count);
            }
        }
        Err(Error::new(Status::InvalidArgument, format!("Weights: no tensor named '{name}'")))
    }

    /// A copy of tensor `name`.
    pub fn read(&self, name: &str) -> Result<Vec<f32>> {
        let mut v = vec![0.0f32; self.count(name)?];
        self.read_into(name, &mut v)?;
        Ok(v)
    }

    /// Copy tensor `name` into `dst` (its exact count).
    pub fn read_into(&self, name: &str, dst: &mut [f32]) -> Result<()> {
        let c = cstring(name, "Weights::read")?;
        // SAFETY: dst holds dst.len() floats.
        check(unsafe { sys::vqj_weights_read(self.as_ptr(), c.as_ptr(), dst.as_mut_ptr(), dst.len()) })
    }

    /// The gradient accumulated for trainable tensor `name`.
    pub fn read_grad(&self, name: &str) -> Result<Vec<f32>> {
        let mut v = vec![0.0f32; self.count(name)?];
        let c = cstring(name, "Weights::read_grad")?;
        // SAFETY: v holds v.len() floats.
        check(unsafe { sys::vqj_weights_read_grad(self.as_ptr(), c.as_ptr(), v.as_mut_ptr(), v.len()) })?;
        Ok(v)
    }

    /// Overwrite tensor `name` (non-finite values are refused).
    pub fn write(&self, name: &str, values: &[f32]) -> Result<()> {
        let c = cstring(name, "Weights::write")?;
        // SAFETY: values is only read during the call.
        check(unsafe { sys::vqj_weights_write(self.as_ptr(), c.as_ptr(), values.as_ptr(), values.len()) })
    }

    pub fn zero_grad(&self) {
        // SAFETY: a live view.
        unsafe { sys::vqj_weights_zero_grad(self.as_ptr()) }
    }

    /// self = decay * self + (1 - decay) * online, over trainable tensors.
    pub fn ema_from(&self, online: &Weights<'_>, decay: f32) -> Result<()> {
        // SAFETY: two live views.
        check(unsafe { sys::vqj_weights_ema(self.as_ptr(), online.as_ptr(), decay) })
    }
}

// ---------------------------------------------------------------------------
// Tensors and tokens

macro_rules! handle_drop {
    ($ty:ident, $destroy:ident) => {
        impl Drop for $ty<'_> {
            fn drop(&mut self) {
                // SAFETY: the handle is live and dropped once; what borrows it
                // is gone (borrow checker).
                unsafe { sys::$destroy(self.raw.as_ptr()) }
            }
        }
        // SAFETY: one thread at a time: the handle may move to another
        // thread (it holds no thread-local state; errors are read on the
        // calling thread) but is not Sync.
        unsafe impl Send for $ty<'_> {}
    };
}

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

fn read_tensor(t: *const sys::vqj_tensor) -> Result<Vec<f32>> {
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

// ---------------------------------------------------------------------------
// ARC tasks and datasets

/// A parsed ARC-AGI task.
pub struct ArcTask<'c> {
    raw: NonNull<sys::vqj_arc_task>,
    _ctx: PhantomData<&'c Context>,
    _not_sync: NotSync,
}
handle_drop!(ArcTask, vqj_arc_task_destroy);

/// Which list of pairs of an ARC task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl<'c> ArcTask<'c> {
    /// Load a task file.
    pub fn load(ctx: &'c Context, path: impl AsRef<Path>) -> Result<ArcTask<'c>> {
        let p = path_cstring(path.as_ref())?;
        // SAFETY: valid pointers.
        let raw =
            new_handle("vqj_arc_task_load", |out| unsafe { sys::vqj_arc_task_load(ctx.as_ptr(), p.as_ptr(), out) })?;
        Ok(ArcTask { raw, _ctx: PhantomData, _not_sync: PhantomData })
    }

    /// Parse a task from JSON text; `name` prefixes error messages.
    pub fn parse(ctx: &'c Context, json: &str, name: &str) -> Result<ArcTask<'c>> {
        let n = cstring(name, "ArcTask::parse")?;
        // SAFETY: json is read for json.len() bytes during the call.
        let raw = new_handle("vqj_arc_task_parse", |out| unsafe {
            sys::vqj_arc_task_parse(ctx.as_ptr(), json.as_ptr() as *const c_char, json.len(), n.as_ptr(), out)
        })?;
        Ok(ArcTask { raw, _ctx: PhantomData, _not_sync: PhantomData })
    }

    pub fn name(&self) -> String {
        // SAFETY: owned by the task.
        unsafe { CStr::from_ptr(sys::vqj_arc_task_name(self.raw.as_ptr())) }.to_string_lossy().into_owned()
    }

    fn split(s: Split) -> sys::vqj_arc_split {
        match s {
            Split::Train => sys::VQJ_ARC_TRAIN,
            Split::Test => sys::VQJ_ARC_TEST,
        }
    }

    pub fn num_pairs(&self, split: Split) -> usize {
        // SAFETY: a live task.
        unsafe { sys::vqj_arc_task_num_pairs(self.raw.as_ptr(), Self::split(split)) }
    }

    /// Pair i: (input, output if present).
    pub fn pair(&self, split: Split, i: usize) -> Option<(GridRef<'_>, Option<GridRef<'_>>)> {
        // SAFETY: grids owned by the task, valid while it is borrowed.
        unsafe {
            let input = sys::vqj_arc_task_input(self.raw.as_ptr(), Self::split(split), i);
            if input.is_null() {
                return None;
            }
            let output = sys::vqj_arc_task_output(self.raw.as_ptr(), Self::split(split), i);
            Some((GridRef::new(input), (!output.is_null()).then(|| GridRef::new(output))))
        }
    }
}

/// Examples of T context grids and a target grid. `Send + Sync`: the C API
/// documents a dataset as read-only once built, readable from any number
/// of threads at once.
pub struct Dataset<'c> {
    raw: NonNull<sys::vqj_dataset>,
    ctx: &'c Context,
}

impl Drop for Dataset<'_> {
    fn drop(&mut self) {
        // SAFETY: live, dropped once.
        unsafe { sys::vqj_dataset_destroy(self.raw.as_ptr()) }
    }
}
// SAFETY: see the type's documentation.
unsafe impl Send for Dataset<'_> {}
unsafe impl Sync for Dataset<'_> {}

impl<'c> Dataset<'c> {
    fn wrap(ctx: &'c Context, raw: NonNull<sys::vqj_dataset>) -> Dataset<'c> {
        Dataset { raw, ctx }
    }

    /// The built-in seeded synthetic generator.
    pub fn synthetic(ctx: &'c Context, synthetic: &SyntheticParams, params: &DatasetParams) -> Result<Dataset<'c>> {
        // SAFETY: valid pointers.
        let raw = new_handle("vqj_dataset_synthetic", |out| unsafe {
            sys::vqj_dataset_synthetic(ctx.as_ptr(), params, synthetic, out)
        })?;
        Ok(Dataset::wrap(ctx, raw))
    }

    /// ARC task files (a file or a folder of `*.json`).
    pub fn from_arc(ctx: &'c Context, path: impl AsRef<Path>, params: &DatasetParams) -> Result<Dataset<'c>> {
        let p = path_cstring(path.as_ref())?;
        // SAFETY: valid pointers.
        let raw = new_handle("vqj_dataset_from_arc", |out| unsafe {
            sys::vqj_dataset_from_arc(ctx.as_ptr(), params, p.as_ptr(), out)
        })?;
        Ok(Dataset::wrap(ctx, raw))
    }

    /// A JSONL manifest.
    pub fn from_jsonl(ctx: &'c Context, path: impl AsRef<Path>, params: &DatasetParams) -> Result<Dataset<'c>> {
        let p = path_cstring(path.as_ref())?;
        // SAFETY: valid pointers.
        let raw = new_handle("vqj_dataset_from_jsonl", |out| unsafe {
            sys::vqj_dataset_from_jsonl(ctx.as_ptr(), params, p.as_ptr(), out)
        })?;
        Ok(Dataset::wrap(ctx, raw))
    }

    pub fn len(&self) -> usize {
        // SAFETY: a live dataset.
        unsafe { sys::vqj_dataset_num_examples(self.raw.as_ptr()) }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn context_window(&self) -> usize {
        // SAFETY: a live dataset.
        unsafe { sys::vqj_dataset_context_window(self.raw.as_ptr()) as usize }
    }

    pub fn num_skipped(&self) -> usize {
        // SAFETY: a live dataset.
        unsafe { sys::vqj_dataset_num_skipped(self.raw.as_ptr()) }
    }

    /// Example i: its T context grids (oldest first) and its target.
    pub fn example(&self, i: usize) -> Result<(Vec<GridRef<'_>>, GridRef<'_>)> {
        let mut c: *const sys::vqj_grid = ptr::null();
        let mut t: *const sys::vqj_grid = ptr::null();
        // SAFETY: valid out pointers; the grids live as long as the dataset.
        check(unsafe { sys::vqj_dataset_example(self.raw.as_ptr(), i, &mut c, &mut t) })?;
        let context = (0..self.context_window()).map(|k| unsafe { GridRef::new(c.add(k)) }).collect();
        Ok((context, unsafe { GridRef::new(t) }))
    }

    /// (train, validation): whole groups to validation.
    pub fn split(&self, validation_split: f32, seed: u64) -> Result<(Dataset<'c>, Dataset<'c>)> {
        let mut tr = ptr::null_mut();
        let mut va = ptr::null_mut();
        // SAFETY: valid pointers.
        check(unsafe { sys::vqj_dataset_split(self.raw.as_ptr(), validation_split, seed, &mut tr, &mut va) })?;
        let tr = NonNull::new(tr).ok_or_else(|| Error::new(Status::Internal, "vqj_dataset_split: NULL"))?;
        let tr = Dataset::wrap(self.ctx, tr);
        let va = NonNull::new(va).ok_or_else(|| Error::new(Status::Internal, "vqj_dataset_split: NULL"))?;
        Ok((tr, Dataset::wrap(self.ctx, va)))
    }

    /// The visiting order of an epoch.
    pub fn shuffle(&self, seed: u64, epoch: i64) -> Result<Vec<usize>> {
        let mut order = vec![0usize; self.len()];
        // SAFETY: order holds len entries.
        check(unsafe { sys::vqj_dataset_shuffle(self.raw.as_ptr(), seed, epoch, order.as_mut_ptr()) })?;
        Ok(order)
    }
}

// ---------------------------------------------------------------------------
// Model parts

macro_rules! part {
    ($(#[$doc:meta])* $ty:ident, $raw:ident, $params:ident, $create:ident, $destroy:ident, $weights:ident) => {
        $(#[$doc])*
        pub struct $ty<'c> {
            raw: NonNull<sys::$raw>,
            ctx: &'c Context,
            params: $params,
            _not_sync: NotSync,
        }
        handle_drop!($ty, $destroy);

        impl<'c> $ty<'c> {
            /// Create one with these params.
            pub fn new(ctx: &'c Context, params: &$params) -> Result<$ty<'c>> {
                // SAFETY: valid pointers.
                let raw = new_handle(stringify!($create), |out| unsafe { sys::$create(ctx.as_ptr(), params, out) })?;
                Ok($ty { raw, ctx, params: *params, _not_sync: PhantomData })
            }

            pub fn as_ptr(&self) -> *mut sys::$raw {
                self.raw.as_ptr()
            }

            /// The params it was made with.
            pub fn params(&self) -> &$params {
                &self.params
            }

            /// The named tensors (a view borrowed from this handle).
            pub fn weights(&self) -> Weights<'_> {
                // SAFETY: a live handle always has a view.
                Weights::from_raw(unsafe { sys::$weights(self.as_ptr()) }).expect("a weights view")
            }

            #[allow(dead_code)]
            fn context(&self) -> &'c Context {
                self.ctx
            }
        }
    };
}

part!(
    /// Feature MLP + relational layers.
    Encoder, vqj_encoder, EncoderParams, vqj_encoder_create, vqj_encoder_destroy, vqj_encoder_weights
);
part!(
    /// The VQ codebook.
    Codebook, vqj_codebook, CodebookParams, vqj_codebook_create, vqj_codebook_destroy, vqj_codebook_weights
);
part!(
    /// Grid pooling, context aggregation and the projection head.
    Predictor, vqj_predictor, PredictorParams, vqj_predictor_create, vqj_predictor_destroy, vqj_predictor_weights
);
part!(
    /// Every loss term but the commitment (InfoNCE + queue, relational, SIGReg, invariance).
    Loss, vqj_loss, LossParams, vqj_loss_create, vqj_loss_destroy, vqj_loss_weights
);

impl Encoder<'_> {
    /// z [N x D] for every token into `out`.
    pub fn forward(&self, tokens: &Tokens<'_>, training: bool, out: &Tensor<'_>) -> Result<()> {
        // SAFETY: live handles.
        check(unsafe { sys::vqj_encoder_forward(self.as_ptr(), tokens.as_ptr(), training as c_int, out.as_ptr()) })
    }

    /// Accumulate the gradients of the last forward.
    pub fn backward(&self, dout: &Tensor<'_>, dfeatures: Option<&Tensor<'_>>) -> Result<()> {
        let df = dfeatures.map_or(ptr::null_mut(), |t| t.as_ptr());
        // SAFETY: live handles.
        check(unsafe { sys::vqj_encoder_backward(self.as_ptr(), dout.as_ptr(), df) })
    }
}

impl Codebook<'_> {
    /// Quantize z into q; returns the code of each row and the stats.
    pub fn forward(&self, z: &Tensor<'_>, training: bool, q: &Tensor<'_>) -> Result<(Vec<i32>, CodebookStats)> {
        let mut codes = vec![0i32; z.rows()];
        let mut stats = CodebookStats { size: std::mem::size_of::<CodebookStats>(), ..Default::default() };
        // SAFETY: codes holds N entries.
        check(unsafe {
            sys::vqj_codebook_forward(
                self.as_ptr(),
                z.as_ptr(),
                training as c_int,
                q.as_ptr(),
                codes.as_mut_ptr(),
                &mut stats,
            )
        })?;
        Ok((codes, stats))
    }

    pub fn backward(&self, dq: &Tensor<'_>, dz: &Tensor<'_>) -> Result<()> {
        // SAFETY: live handles.
        check(unsafe { sys::vqj_codebook_backward(self.as_ptr(), dq.as_ptr(), dz.as_ptr()) })
    }

    /// Per-code EMA usage (K values).
    pub fn ema_usage(&self) -> Result<Vec<f32>> {
        let mut u = vec![0.0f32; self.params.num_embeddings.max(0) as usize];
        // SAFETY: u holds K floats.
        check(unsafe { sys::vqj_codebook_ema_usage(self.as_ptr(), u.as_mut_ptr(), u.len()) })?;
        Ok(u)
    }
}

impl Predictor<'_> {
    pub fn forward_context(&self, tokens: &Tokens<'_>, token_vectors: &Tensor<'_>, out: &Tensor<'_>) -> Result<()> {
        // SAFETY: live handles.
        check(unsafe {
            sys::vqj_predictor_forward_context(self.as_ptr(), tokens.as_ptr(), token_vectors.as_ptr(), out.as_ptr())
        })
    }

    pub fn forward_grids(&self, tokens: &Tokens<'_>, token_vectors: &Tensor<'_>, out: &Tensor<'_>) -> Result<()> {
        // SAFETY: live handles.
        check(unsafe {
            sys::vqj_predictor_forward_grids(self.as_ptr(), tokens.as_ptr(), token_vectors.as_ptr(), out.as_ptr())
        })
    }

    pub fn backward_context(&self, d_out: &Tensor<'_>, d_token_vectors: &Tensor<'_>) -> Result<()> {
        // SAFETY: live handles.
        check(unsafe { sys::vqj_predictor_backward_context(self.as_ptr(), d_out.as_ptr(), d_token_vectors.as_ptr()) })
    }
}

impl Loss<'_> {
    pub fn temperature(&self) -> Result<f32> {
        let mut tau = 0.0f32;
        // SAFETY: a valid out pointer.
        check(unsafe { sys::vqj_loss_temperature(self.as_ptr(), &mut tau) })?;
        Ok(tau)
    }

    pub fn queue_fill(&self) -> Result<usize> {
        let mut fill: c_int = 0;
        // SAFETY: a valid out pointer.
        check(unsafe { sys::vqj_loss_queue_fill(self.as_ptr(), &mut fill) })?;
        Ok(fill as usize)
    }

    pub fn values(&self) -> Result<LossValues> {
        let mut v = LossValues { size: std::mem::size_of::<LossValues>(), ..Default::default() };
        // SAFETY: a valid out pointer with its size set.
        check(unsafe { sys::vqj_loss_get_values(self.as_ptr(), &mut v) })?;
        Ok(v)
    }

    pub fn reset(&self) {
        // SAFETY: a live handle.
        unsafe { sys::vqj_loss_reset(self.as_ptr()) }
    }
}

/// Adam/AdamW over the trainable tensors of several weights views, which it
/// borrows for its whole life.
pub struct Optimizer<'a> {
    raw: NonNull<sys::vqj_optimizer>,
    _groups: PhantomData<&'a ()>,
    _not_sync: NotSync,
}
handle_drop!(Optimizer, vqj_optimizer_destroy);

impl<'a> Optimizer<'a> {
    pub fn new(ctx: &'a Context, params: &OptimizerParams, groups: &[Weights<'a>]) -> Result<Optimizer<'a>> {
        let raw_groups: Vec<*mut sys::vqj_weights> = groups.iter().map(|w| w.as_ptr()).collect();
        // SAFETY: valid pointers; the views outlive the optimizer ('a).
        let raw = new_handle("vqj_optimizer_create", |out| unsafe {
            sys::vqj_optimizer_create(ctx.as_ptr(), params, raw_groups.as_ptr(), raw_groups.len(), out)
        })?;
        Ok(Optimizer { raw, _groups: PhantomData, _not_sync: PhantomData })
    }

    pub fn step(&self, grad_scale: f32) -> Result<StepInfo> {
        let mut info = StepInfo { size: std::mem::size_of::<StepInfo>(), ..Default::default() };
        // SAFETY: a valid out pointer with its size set.
        check(unsafe { sys::vqj_optimizer_step(self.raw.as_ptr(), grad_scale, &mut info) })?;
        Ok(info)
    }

    pub fn zero_grad(&self) -> Result<()> {
        // SAFETY: a live handle.
        check(unsafe { sys::vqj_optimizer_zero_grad(self.raw.as_ptr()) })
    }

    pub fn lr(&self) -> f32 {
        // SAFETY: a live handle.
        unsafe { sys::vqj_optimizer_lr(self.raw.as_ptr()) }
    }

    pub fn steps(&self) -> i64 {
        // SAFETY: a live handle.
        unsafe { sys::vqj_optimizer_steps(self.raw.as_ptr()) }
    }

    pub fn set_steps(&self, steps: i64) -> Result<()> {
        // SAFETY: a live handle.
        check(unsafe { sys::vqj_optimizer_set_steps(self.raw.as_ptr(), steps) })
    }

    /// The Adam moments (`adam.m.<g>`, `adam.v.<g>`).
    pub fn state(&self) -> Weights<'_> {
        // SAFETY: a live optimizer has a state view.
        Weights::from_raw(unsafe { sys::vqj_optimizer_state(self.raw.as_ptr()) }).expect("a state view")
    }
}

// ---------------------------------------------------------------------------
// Trainer

/// Every params struct a [`Trainer`] needs.
#[derive(Debug, Clone, Copy)]
pub struct TrainerConfig {
    pub tokenizer: TokenizerParams,
    pub encoder: EncoderParams,
    pub codebook: CodebookParams,
    pub predictor: PredictorParams,
    pub loss: LossParams,
    pub optimizer: OptimizerParams,
    pub trainer: TrainerParams,
}

impl TrainerConfig {
    /// The library's defaults (the seed's "gentle" configuration).
    pub fn defaults() -> TrainerConfig {
        TrainerConfig {
            tokenizer: TokenizerParams::defaults(),
            encoder: EncoderParams::defaults(),
            codebook: CodebookParams::defaults(),
            predictor: PredictorParams::defaults(),
            loss: LossParams::defaults(),
            optimizer: OptimizerParams::defaults(),
            trainer: TrainerParams::defaults(),
        }
    }

    /// The defaults with these sizes, set everywhere they must agree:
    /// hidden (encoder, codebook dim, predictor), codes (K), projection
    /// (predictor, loss).
    pub fn with_sizes(hidden_dim: i32, num_codes: i32, projection_dim: i32) -> TrainerConfig {
        let mut c = TrainerConfig::defaults();
        c.encoder.hidden_dim = hidden_dim;
        c.codebook.dim = hidden_dim;
        c.codebook.num_embeddings = num_codes;
        c.predictor.hidden_dim = hidden_dim;
        c.predictor.projection_dim = projection_dim;
        c.loss.projection_dim = projection_dim;
        c
    }
}

/// One call runs a whole training step. The trainer owns its encoder,
/// codebook, predictor and loss (read them with the accessors) and the
/// optimizer it makes over them.
pub struct Trainer<'c> {
    raw: NonNull<sys::vqj_trainer>,
    optimizer: NonNull<sys::vqj_optimizer>,
    ctx: &'c Context,
    config: TrainerConfig,
    /// The parts: owned by this wrapper (`new`) or by the C trainer
    /// (`from_config`, which destroys them with itself).
    encoder: ManuallyDrop<Encoder<'c>>,
    codebook: ManuallyDrop<Codebook<'c>>,
    predictor: ManuallyDrop<Predictor<'c>>,
    loss: ManuallyDrop<Loss<'c>>,
    c_owns_parts: bool,
    _not_sync: NotSync,
}

impl Drop for Trainer<'_> {
    fn drop(&mut self) {
        // SAFETY: the trainer, then (when this wrapper made them) the
        // optimizer over the parts and the parts, each once.
        unsafe {
            sys::vqj_trainer_destroy(self.raw.as_ptr());
            if !self.c_owns_parts {
                sys::vqj_optimizer_destroy(self.optimizer.as_ptr());
                ManuallyDrop::drop(&mut self.loss);
                ManuallyDrop::drop(&mut self.predictor);
                ManuallyDrop::drop(&mut self.codebook);
                ManuallyDrop::drop(&mut self.encoder);
            }
        }
    }
}
// SAFETY: one thread at a time (see the crate documentation).
unsafe impl Send for Trainer<'_> {}

impl<'c> Trainer<'c> {
    /// Build every part from `config` and a trainer over them.
    pub fn new(ctx: &'c Context, config: &TrainerConfig) -> Result<Trainer<'c>> {
        let encoder = Encoder::new(ctx, &config.encoder)?;
        let codebook = Codebook::new(ctx, &config.codebook)?;
        let predictor = Predictor::new(ctx, &config.predictor)?;
        let loss = Loss::new(ctx, &config.loss)?;
        let groups = [
            encoder.weights().as_ptr(),
            codebook.weights().as_ptr(),
            predictor.weights().as_ptr(),
            loss.weights().as_ptr(),
        ];
        // SAFETY: valid pointers; the views live as long as the trainer.
        let optimizer = new_handle("vqj_optimizer_create", |out| unsafe {
            sys::vqj_optimizer_create(ctx.as_ptr(), &config.optimizer, groups.as_ptr(), groups.len(), out)
        })?;
        // SAFETY: valid pointers.
        let raw = new_handle("vqj_trainer_create", |out| unsafe {
            sys::vqj_trainer_create(
                ctx.as_ptr(),
                &config.trainer,
                &config.tokenizer,
                encoder.as_ptr(),
                codebook.as_ptr(),
                predictor.as_ptr(),
                loss.as_ptr(),
                optimizer.as_ptr(),
                out,
            )
        });
        let raw = match raw {
            Ok(r) => r,
            Err(e) => {
                // SAFETY: the optimizer was made above and nothing holds it.
                unsafe { sys::vqj_optimizer_destroy(optimizer.as_ptr()) };
                return Err(e);
            }
        };
        Ok(Trainer {
            raw,
            optimizer,
            ctx,
            config: *config,
            encoder: ManuallyDrop::new(encoder),
            codebook: ManuallyDrop::new(codebook),
            predictor: ManuallyDrop::new(predictor),
            loss: ManuallyDrop::new(loss),
            c_owns_parts: false,
            _not_sync: PhantomData,
        })
    }

    /// Every part from a configuration in one call
    /// (`vqj_trainer_create_from_config`): the sizes come from `config`,
    /// the initial weights, dropout masks and views from its seed. The C
    /// trainer owns the parts; the accessors lend them.
    pub fn from_config(ctx: &'c Context, config: &Config<'_>) -> Result<Trainer<'c>> {
        let tc = config.trainer_config()?;
        // SAFETY: valid pointers.
        let raw = new_handle("vqj_trainer_create_from_config", |out| unsafe {
            sys::vqj_trainer_create_from_config(ctx.as_ptr(), config.raw.as_ptr(), out)
        })?;
        let t = raw.as_ptr();
        let lent = |p: *mut c_void| {
            NonNull::new(p).ok_or_else(|| Error::new(Status::Internal, "vqj_trainer_create_from_config: no part"))
        };
        // SAFETY: a live trainer lends its parts for its whole life.
        let (e, c, p, l, o) = unsafe {
            (
                lent(sys::vqj_trainer_encoder(t) as *mut c_void),
                lent(sys::vqj_trainer_codebook(t) as *mut c_void),
                lent(sys::vqj_trainer_predictor(t) as *mut c_void),
                lent(sys::vqj_trainer_loss(t) as *mut c_void),
                lent(sys::vqj_trainer_optimizer(t) as *mut c_void),
            )
        };
        let (e, c, p, l, o) = match (e, c, p, l, o) {
            (Ok(e), Ok(c), Ok(p), Ok(l), Ok(o)) => (e, c, p, l, o),
            _ => {
                // SAFETY: made above, nothing holds it.
                unsafe { sys::vqj_trainer_destroy(t) };
                return Err(Error::new(Status::Internal, "vqj_trainer_create_from_config: no part"));
            }
        };
        Ok(Trainer {
            raw,
            optimizer: o.cast(),
            ctx,
            config: tc,
            encoder: ManuallyDrop::new(Encoder { raw: e.cast(), ctx, params: tc.encoder, _not_sync: PhantomData }),
            codebook: ManuallyDrop::new(Codebook { raw: c.cast(), ctx, params: tc.codebook, _not_sync: PhantomData }),
            predictor: ManuallyDrop::new(Predictor { raw: p.cast(), ctx, params: tc.predictor, _not_sync: PhantomData }),
            loss: ManuallyDrop::new(Loss { raw: l.cast(), ctx, params: tc.loss, _not_sync: PhantomData }),
            c_owns_parts: true,
            _not_sync: PhantomData,
        })
    }

    pub fn as_ptr(&self) -> *mut sys::vqj_trainer {
        self.raw.as_ptr()
    }

    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }

    pub fn encoder(&self) -> &Encoder<'c> {
        &self.encoder
    }

    pub fn codebook(&self) -> &Codebook<'c> {
        &self.codebook
    }

    pub fn predictor(&self) -> &Predictor<'c> {
        &self.predictor
    }

    pub fn loss(&self) -> &Loss<'c> {
        &self.loss
    }

    /// The optimizer's moments (a view).
    pub fn optimizer_state(&self) -> Weights<'_> {
        // SAFETY: a live optimizer.
        Weights::from_raw(unsafe { sys::vqj_optimizer_state(self.optimizer.as_ptr()) }).expect("a state view")
    }

    pub fn optimizer_steps(&self) -> i64 {
        // SAFETY: a live optimizer.
        unsafe { sys::vqj_optimizer_steps(self.optimizer.as_ptr()) }
    }

    pub fn lr(&self) -> f32 {
        // SAFETY: a live optimizer.
        unsafe { sys::vqj_optimizer_lr(self.optimizer.as_ptr()) }
    }

    fn metrics() -> Metrics {
        Metrics { size: std::mem::size_of::<Metrics>(), ..Default::default() }
    }

    fn batch_of<G: AsGrid>(&self, context: &[G], targets: &[G]) -> Result<(Vec<sys::vqj_grid>, Vec<sys::vqj_grid>, c_int)> {
        let batch = c_int::try_from(targets.len())
            .map_err(|_| Error::new(Status::InvalidArgument, "Trainer: too many targets"))?;
        // The library reads batch * T context grids: a shorter slice would
        // be read past its end.
        let t = self.config.predictor.context_window.max(1) as usize;
        if targets.is_empty() || context.len() != targets.len() * t {
            return Err(Error::new(
                Status::InvalidArgument,
                format!(
                    "Trainer: {} context grids for {} targets; expected {} (context_window {} per target)",
                    context.len(),
                    targets.len(),
                    targets.len() * t,
                    t
                ),
            ));
        }
        Ok((raw_grids(context), raw_grids(targets), batch))
    }

    /// One micro-batch: `context` holds batch * T grids (example b's are
    /// b*T .. b*T+T-1), `targets` batch grids. A non-finite step is not an
    /// error: `skipped` is 1 in the metrics.
    pub fn step<G: AsGrid>(&mut self, context: &[G], targets: &[G]) -> Result<Metrics> {
        let (c, t, batch) = self.batch_of(context, targets)?;
        let mut m = Self::metrics();
        // SAFETY: the grids borrow cells alive during the call.
        check(unsafe { sys::vqj_trainer_step(self.as_ptr(), c.as_ptr(), t.as_ptr(), batch, &mut m) })?;
        Ok(m)
    }

    /// One micro-batch from ready tokens.
    pub fn step_tokens(&mut self, context: &Tokens<'_>, targets: &Tokens<'_>) -> Result<Metrics> {
        let mut m = Self::metrics();
        // SAFETY: live handles.
        check(unsafe { sys::vqj_trainer_step_tokens(self.as_ptr(), context.as_ptr(), targets.as_ptr(), &mut m) })?;
        Ok(m)
    }

    /// The losses of a batch without training.
    pub fn evaluate<G: AsGrid>(&mut self, context: &[G], targets: &[G]) -> Result<Metrics> {
        let (c, t, batch) = self.batch_of(context, targets)?;
        let mut m = Self::metrics();
        // SAFETY: as step().
        check(unsafe { sys::vqj_trainer_evaluate(self.as_ptr(), c.as_ptr(), t.as_ptr(), batch, &mut m) })?;
        Ok(m)
    }

    /// c [B x P] of the last step or evaluation (row-major copy).
    pub fn context_projections(&self) -> Result<Vec<f32>> {
        // SAFETY: a tensor owned by the trainer (or NULL).
        read_tensor(unsafe { sys::vqj_trainer_context_projections(self.as_ptr()) })
    }

    /// t [B x P] of the last step or evaluation (row-major copy).
    pub fn target_projections(&self) -> Result<Vec<f32>> {
        // SAFETY: as context_projections().
        read_tensor(unsafe { sys::vqj_trainer_target_projections(self.as_ptr()) })
    }

    /// The codes of the context tokens of the last training step.
    pub fn codes(&self) -> Vec<i32> {
        let mut n = 0usize;
        // SAFETY: n entries owned by the trainer, copied at once.
        unsafe {
            let p = sys::vqj_trainer_codes(self.as_ptr(), &mut n);
            if p.is_null() || n == 0 {
                Vec::new()
            } else {
                std::slice::from_raw_parts(p, n).to_vec()
            }
        }
    }

    /// The target encoder's weights (None without a target network).
    pub fn target_encoder_weights(&self) -> Option<Weights<'_>> {
        // SAFETY: a live trainer.
        Weights::from_raw(unsafe { sys::vqj_trainer_target_encoder_weights(self.as_ptr()) })
    }

    /// The target predictor's weights (None without a target network).
    pub fn target_predictor_weights(&self) -> Option<Weights<'_>> {
        // SAFETY: a live trainer.
        Weights::from_raw(unsafe { sys::vqj_trainer_target_predictor_weights(self.as_ptr()) })
    }

    /// (micro_step, dropout_step).
    pub fn counters(&self) -> Result<(i64, u64)> {
        let (mut a, mut b) = (0i64, 0u64);
        // SAFETY: valid out pointers.
        check(unsafe { sys::vqj_trainer_get_counters(self.as_ptr(), &mut a, &mut b) })?;
        Ok((a, b))
    }

    /// Save everything a resumed run needs; `config_yaml` and `metadata`
    /// go to "__metadata__". Save right after an optimizer step.
    pub fn save(&self, path: impl AsRef<Path>, config_yaml: Option<&str>, metadata: &[(&str, &str)]) -> Result<()> {
        let p = path_cstring(path.as_ref())?;
        let cfg = config_yaml.map(|s| cstring(s, "Trainer::save config")).transpose()?;
        let cfg_ptr = cfg.as_ref().map_or(ptr::null(), |c| c.as_ptr());
        let meta = Metadata::new(metadata)?;
        // SAFETY: NUL-terminated strings alive during the call.
        check(unsafe { sys::vqj_trainer_save_with_metadata(self.as_ptr(), p.as_ptr(), cfg_ptr, meta.as_ptr()) })
    }

    /// Restore this trainer and its parts from a save() file.
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let p = path_cstring(path.as_ref())?;
        // SAFETY: a valid path string.
        check(unsafe { sys::vqj_trainer_load(self.as_ptr(), p.as_ptr()) })
    }

    /// A thread-safe inference model over this trainer's parts
    /// (`vqj_model_from_trainer`): its tokenizer, online encoder, codebook
    /// and predictor, and its target network for grid embeddings. It
    /// borrows the trainer exclusively: no training while it lives.
    pub fn model(&mut self) -> Result<Model<'_>> {
        // SAFETY: a live trainer, borrowed by the model for its life.
        let raw = new_handle("vqj_model_from_trainer", |out| unsafe {
            sys::vqj_model_from_trainer(self.raw.as_ptr(), out)
        })?;
        Ok(Model::wrap(raw, None))
    }
}

// ---------------------------------------------------------------------------
// Inference

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
    fn wrap(raw: NonNull<sys::vqj_model>, targets: Option<(Encoder<'a>, Predictor<'a>)>) -> Model<'a> {
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

// ---------------------------------------------------------------------------
// Checkpoints

/// A NULL-terminated key/value list for "__metadata__".
struct Metadata {
    _strings: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

impl Metadata {
    fn new(pairs: &[(&str, &str)]) -> Result<Metadata> {
        let mut strings = Vec::new();
        for (k, v) in pairs {
            strings.push(cstring(k, "metadata key")?);
            strings.push(cstring(v, "metadata value")?);
        }
        let mut ptrs: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(ptr::null());
        Ok(Metadata { _strings: strings, ptrs })
    }

    fn as_ptr(&self) -> *const *const c_char {
        if self.ptrs.len() == 1 {
            ptr::null()
        } else {
            self.ptrs.as_ptr()
        }
    }
}

fn entries(views: &[(&str, Weights<'_>)]) -> Result<(Vec<CString>, Vec<sys::vqj_checkpoint_entry>)> {
    let prefixes = views.iter().map(|(p, _)| cstring(p, "checkpoint prefix")).collect::<Result<Vec<_>>>()?;
    let e = views
        .iter()
        .zip(&prefixes)
        .map(|((_, w), p)| sys::vqj_checkpoint_entry { prefix: p.as_ptr(), weights: w.as_ptr() })
        .collect();
    Ok((prefixes, e))
}

/// Write the tensors of weights views to a safetensors file (atomically),
/// each stored as prefix + name, with `metadata` in "__metadata__".
pub fn save_checkpoint(
    ctx: &Context,
    path: impl AsRef<Path>,
    views: &[(&str, Weights<'_>)],
    metadata: &[(&str, &str)],
) -> Result<()> {
    let p = path_cstring(path.as_ref())?;
    let (_keep, e) = entries(views)?;
    let meta = Metadata::new(metadata)?;
    // SAFETY: pointers alive during the call.
    check(unsafe { sys::vqj_checkpoint_save(ctx.as_ptr(), p.as_ptr(), e.as_ptr(), e.len(), meta.as_ptr()) })
}

/// Read a safetensors file into weights views; everything is checked
/// before anything is written.
pub fn load_checkpoint(
    ctx: &Context,
    path: impl AsRef<Path>,
    views: &[(&str, Weights<'_>)],
    allow_extra: bool,
) -> Result<()> {
    let p = path_cstring(path.as_ref())?;
    let (_keep, e) = entries(views)?;
    let flags = if allow_extra { sys::VQJ_CHECKPOINT_ALLOW_EXTRA } else { 0 };
    // SAFETY: pointers alive during the call.
    check(unsafe { sys::vqj_checkpoint_load(ctx.as_ptr(), p.as_ptr(), e.as_ptr(), e.len(), flags) })
}

/// Check a checkpoint's header, layout, checksum and values.
pub fn verify_checkpoint(ctx: &Context, path: impl AsRef<Path>) -> Result<()> {
    let p = path_cstring(path.as_ref())?;
    // SAFETY: a valid path string.
    check(unsafe { sys::vqj_checkpoint_verify(ctx.as_ptr(), p.as_ptr()) })
}

/// The "__metadata__" value of `key`.
pub fn checkpoint_metadata(ctx: &Context, path: impl AsRef<Path>, key: &str) -> Result<String> {
    let p = path_cstring(path.as_ref())?;
    let k = cstring(key, "checkpoint_metadata key")?;
    let mut len = 0usize;
    // SAFETY: a length query (NULL buffer, capacity 0).
    check(unsafe {
        sys::vqj_checkpoint_read_metadata(ctx.as_ptr(), p.as_ptr(), k.as_ptr(), ptr::null_mut(), 0, &mut len)
    })?;
    let mut buf = vec![0u8; len + 1];
    // SAFETY: buf holds len + 1 bytes.
    check(unsafe {
        sys::vqj_checkpoint_read_metadata(
            ctx.as_ptr(),
            p.as_ptr(),
            k.as_ptr(),
            buf.as_mut_ptr() as *mut c_char,
            buf.len(),
            &mut len,
        )
    })?;
    buf.truncate(len);
    String::from_utf8(buf).map_err(|_| Error::new(Status::Parse, format!("metadata '{key}' is not UTF-8")))
}

// ---------------------------------------------------------------------------
// Configuration files and diagnostics

/// A run configuration read from YAML (`vqj_config`). `Send + Sync`: the C
/// API documents it as read-only once made, its getters callable from any
/// number of threads at once.
pub struct Config<'c> {
    raw: NonNull<sys::vqj_config>,
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
