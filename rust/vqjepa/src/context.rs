//! The library context: device, threads, seed, logging.

use super::*;

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
