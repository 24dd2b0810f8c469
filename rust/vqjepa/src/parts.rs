//! The model parts (encoder, codebook, predictor, loss) and the optimizer.

use super::*;

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
