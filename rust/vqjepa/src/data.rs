//! ARC tasks and datasets.

use super::*;

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
