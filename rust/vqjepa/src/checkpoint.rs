//! Checkpoints of weights views: save, load, verify, metadata.

use super::*;

/// A NULL-terminated key/value list for "__metadata__".
pub(crate) struct Metadata {
    _strings: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

impl Metadata {
    pub(crate) fn new(pairs: &[(&str, &str)]) -> Result<Metadata> {
        let mut strings = Vec::new();
        for (k, v) in pairs {
            strings.push(cstring(k, "metadata key")?);
            strings.push(cstring(v, "metadata value")?);
        }
        let mut ptrs: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(ptr::null());
        Ok(Metadata { _strings: strings, ptrs })
    }

    pub(crate) fn as_ptr(&self) -> *const *const c_char {
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
