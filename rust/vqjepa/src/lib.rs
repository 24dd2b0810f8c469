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

macro_rules! part {
    ($(#[$doc:meta])* $ty:ident, $raw:ident, $params:ident, $create:ident, $destroy:ident, $weights:ident) => {
        $(#[$doc])*
        pub struct $ty<'c> {
            pub(crate) raw: NonNull<sys::$raw>,
            pub(crate) ctx: &'c Context,
            pub(crate) params: $params,
            pub(crate) _not_sync: NotSync,
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

// ---------------------------------------------------------------------------
// Modules

mod checkpoint;
mod config;
mod context;
mod data;
mod grid;
mod model;
mod parts;
mod tokens;
mod trainer;
mod weights;

pub use checkpoint::*;
pub use config::*;
pub use context::*;
pub use data::*;
pub use grid::*;
pub use model::*;
pub use parts::*;
pub use tokens::*;
pub use trainer::*;
pub use weights::*;
