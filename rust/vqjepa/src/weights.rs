//! Named tensors of a handle: info, read, write, gradients.

use super::*;

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
    pub(crate) fn from_raw(raw: *mut sys::vqj_weights) -> Option<Weights<'a>> {
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
