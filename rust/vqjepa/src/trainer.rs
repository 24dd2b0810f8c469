//! The trainer: a whole training step over the parts.

use super::*;

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
    _ctx: &'c Context, // ties the trainer to its context's lifetime
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
            _ctx: ctx,
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
            _ctx: ctx,
            config: tc,
            encoder: ManuallyDrop::new(Encoder { raw: e.cast(), ctx, params: tc.encoder, _not_sync: PhantomData }),
            codebook: ManuallyDrop::new(Codebook { raw: c.cast(), ctx, params: tc.codebook, _not_sync: PhantomData }),
            predictor: ManuallyDrop::new(Predictor {
                raw: p.cast(),
                ctx,
                params: tc.predictor,
                _not_sync: PhantomData,
            }),
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

    fn batch_of<G: AsGrid>(
        &self,
        context: &[G],
        targets: &[G],
    ) -> Result<(Vec<sys::vqj_grid>, Vec<sys::vqj_grid>, c_int)> {
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
        let raw =
            new_handle("vqj_model_from_trainer", |out| unsafe { sys::vqj_model_from_trainer(self.raw.as_ptr(), out) })?;
        Ok(Model::wrap(raw, None))
    }
}
