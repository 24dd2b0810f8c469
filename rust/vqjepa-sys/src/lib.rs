//! Raw declarations of libvqjepa's C API (`include/vqjepa.h` and the
//! experimental `include/vqjepa_stages.h`), written by
//! hand to mirror the header: opaque handles, params and report structs
//! (`#[repr(C)]`, field for field), enums as integer constants, and every
//! `VQJ_API` function. The tests check the struct layouts against the C
//! compiler and that no function of the header is missing.
//!
//! Everything here is `unsafe` to call and follows the C rules
//! (docs/api-conventions.md): statuses, ownership, threads. Use the
//! `vqjepa` crate for a safe interface.
#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

use std::marker::{PhantomData, PhantomPinned};
use std::os::raw::{c_char, c_int, c_uint, c_void};

/// `VQJ_VERSION_MAJOR` etc. of the header these declarations follow.
pub const VQJ_VERSION_MAJOR: c_int = 0;
pub const VQJ_VERSION_MINOR: c_int = 2;
pub const VQJ_VERSION_PATCH: c_int = 0;

pub const VQJ_MAX_GRID_SIDE: c_int = 256;
/// `VQJ_ARC_BUILTIN_TRAINING`, NUL-terminated: the built-in ARC-AGI-1 training tasks.
pub const VQJ_ARC_BUILTIN_TRAINING: &[u8] = b"builtin:arc-agi-1/training\0";
/// `VQJ_ARC_BUILTIN_EVALUATION`, NUL-terminated: the built-in ARC-AGI-1 evaluation tasks.
pub const VQJ_ARC_BUILTIN_EVALUATION: &[u8] = b"builtin:arc-agi-1/evaluation\0";
pub const VQJ_NUM_COLORS: c_int = 10;
pub const VQJ_BASE_FEATURES: c_int = 13;
pub const VQJ_DATASET_MAX_SKIPPED_MESSAGES: usize = 8;
pub const VQJ_METRICS_MAX_DIM: c_int = 8192;
pub const VQJ_HEALTH_MAX_CHECKS: usize = 8;
pub const VQJ_CHECKPOINT_ALLOW_EXTRA: c_uint = 1;

macro_rules! opaque {
    ($($name:ident),* $(,)?) => {$(
        /// An opaque handle of the C API.
        #[repr(C)]
        pub struct $name {
            _data: [u8; 0],
            _marker: PhantomData<(*mut u8, PhantomPinned)>,
        }
    )*};
}
opaque!(
    vqj_context,
    vqj_eval_set,
    vqj_tensor,
    vqj_weights,
    vqj_tokens,
    vqj_arc_task,
    vqj_codebook,
    vqj_optimizer,
    vqj_encoder,
    vqj_predictor,
    vqj_dataset,
    vqj_batch,
    vqj_loss,
    vqj_trainer,
    vqj_metrics_window,
    vqj_config,
    vqj_model,
    vqj_comm
);

macro_rules! c_enum {
    ($ty:ident { $($name:ident = $value:expr),* $(,)? }) => {
        /// A C enum, passed as its `int` value.
        pub type $ty = c_int;
        $(pub const $name: $ty = $value;)*
    };
}
c_enum!(vqj_status {
    VQJ_OK = 0, VQJ_ERR_INVALID_ARGUMENT = 1, VQJ_ERR_OUT_OF_MEMORY = 2, VQJ_ERR_UNSUPPORTED = 3,
    VQJ_ERR_IO = 4, VQJ_ERR_PARSE = 5, VQJ_ERR_NUMERIC = 6, VQJ_ERR_DEVICE = 7, VQJ_ERR_STATE = 8,
    VQJ_ERR_INTERNAL = 9,
});
c_enum!(vqj_device_kind { VQJ_DEVICE_CPU = 0, VQJ_DEVICE_CUDA = 1 });
c_enum!(vqj_log_level { VQJ_LOG_DEBUG = 0, VQJ_LOG_INFO = 1, VQJ_LOG_WARNING = 2, VQJ_LOG_ERROR = 3 });
c_enum!(vqj_arc_split { VQJ_ARC_TRAIN = 0, VQJ_ARC_TEST = 1 });
c_enum!(vqj_optimizer_kind { VQJ_OPT_ADAM = 0, VQJ_OPT_ADAMW = 1 });
c_enum!(vqj_lr_schedule { VQJ_LR_CONSTANT = 0, VQJ_LR_COSINE = 1, VQJ_LR_LINEAR = 2 });
c_enum!(vqj_activation { VQJ_ACT_NONE = 0, VQJ_ACT_RELU = 1, VQJ_ACT_GELU = 2, VQJ_ACT_TANH = 3 });
c_enum!(vqj_ema_passes { VQJ_EMA_PASSES_MAIN = 0, VQJ_EMA_PASSES_ALL_ONLINE = 1 });
c_enum!(vqj_aggregator { VQJ_AGG_MEAN = 0, VQJ_AGG_LAST = 1, VQJ_AGG_ATTENTION = 2, VQJ_AGG_GRU = 3 });
c_enum!(vqj_objective { VQJ_OBJECTIVE_INFONCE = 0, VQJ_OBJECTIVE_SIGREG = 1 });
c_enum!(vqj_vq_path { VQJ_VQ_STRAIGHT_THROUGH = 0, VQJ_VQ_BESIDE = 1 });
c_enum!(vqj_quantizer {
    VQJ_QUANTIZER_EUCLIDEAN = 0, VQJ_QUANTIZER_COSINE = 1, VQJ_QUANTIZER_FSQ = 2, VQJ_QUANTIZER_SIMVQ = 3,
    VQJ_QUANTIZER_RESIDUAL = 4,
});
c_enum!(vqj_gradient_estimator { VQJ_GRADIENT_STRAIGHT_THROUGH = 0, VQJ_GRADIENT_ROTATION = 1 });
c_enum!(vqj_invariance_kind {
    VQJ_INVARIANCE_COLOR = 0, VQJ_INVARIANCE_TRANSLATION = 1, VQJ_INVARIANCE_SYMMETRY = 2,
});
c_enum!(vqj_health_level { VQJ_HEALTH_OK = 0, VQJ_HEALTH_WARN = 1, VQJ_HEALTH_ALERT = 2 });
c_enum!(vqj_abort_criterion {
    VQJ_ABORT_NONE = 0, VQJ_ABORT_VQ_COLLAPSE = 1, VQJ_ABORT_EMBEDDING_COLLAPSE = 2,
    VQJ_ABORT_VAL_LOSS_JUMP = 3, VQJ_ABORT_VAL_LOSS_PLATEAU = 4,
});
c_enum!(vqj_early_stopping_mode { VQJ_EARLY_STOPPING_MIN = 0, VQJ_EARLY_STOPPING_MAX = 1 });
c_enum!(vqj_comm_type { VQJ_COMM_FLOAT32 = 0, VQJ_COMM_INT32 = 1, VQJ_COMM_INT64 = 2 });
c_enum!(vqj_comm_op { VQJ_COMM_SUM = 0, VQJ_COMM_AVG = 1, VQJ_COMM_MAX = 2 });
c_enum!(vqj_eval_method { VQJ_EVAL_MODEL = 0, VQJ_EVAL_FEATURES = 1, VQJ_EVAL_ANALOGY = 2 });

/// `vqj_log_fn`: may be called from any thread calling the library.
pub type vqj_log_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, level: vqj_log_level, message: *const c_char)>;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vqj_context_params {
    pub size: usize,
    pub device: vqj_device_kind,
    pub device_index: c_int,
    pub num_threads: c_int,
    pub seed: u64,
    pub log_fn: vqj_log_fn,
    pub log_user_data: *mut c_void,
    pub log_level: vqj_log_level,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vqj_weight_info {
    pub name: *const c_char,
    pub ndim: c_int,
    pub shape: [i64; 2],
    pub count: usize,
    pub trainable: c_int,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vqj_grid {
    pub height: c_int,
    pub width: c_int,
    pub cells: *const u8,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vqj_tokenizer_params {
    pub size: usize,
    pub max_objects: c_int,
    pub max_color_features: c_int,
    pub background: u16,
    pub connectivity: c_int,
    pub normalize: c_int,
    pub respect_colors: c_int,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vqj_codebook_params {
    pub size: usize,
    pub num_embeddings: c_int,
    pub dim: c_int,
    pub enabled: c_int,
    pub commitment_cost: f32,
    pub ema_decay: f32,
    pub refresh_enabled: c_int,
    pub refresh_interval: c_int,
    pub refresh_usage_threshold: f32,
    pub kmeans_init: c_int,
    pub dead_code_threshold: f32,
    pub quantizer: vqj_quantizer,
    pub code_dim: c_int,
    pub fsq_levels: [c_int; 8],
    pub gradient_estimator: vqj_gradient_estimator,
    pub dead_code_max_per_step: c_int,
    pub num_quantizers: c_int,
    pub num_groups: c_int,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct vqj_codebook_stats {
    pub size: usize,
    pub commitment_loss: f32,
    pub codebook_loss: f32,
    pub perplexity: f32,
    pub active_codes: c_int,
    pub refreshed: c_int,
    pub usage_ratio: f32,
    pub updates: i64,
    pub dead_replaced: c_int,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vqj_optimizer_params {
    pub size: usize,
    pub kind: vqj_optimizer_kind,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub max_grad_norm: f32,
    pub schedule: vqj_lr_schedule,
    pub warmup_steps: i64,
    pub total_steps: i64,
    pub min_lr_scale: f32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct vqj_step_info {
    pub size: usize,
    pub applied: c_int,
    pub grad_norm: f32,
    pub lr: f32,
    pub step: i64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vqj_encoder_params {
    pub size: usize,
    pub feature_dim: c_int,
    pub hidden_dim: c_int,
    pub relational_layers: c_int,
    pub relational_heads: c_int,
    pub relational_dropout: f32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vqj_predictor_params {
    pub size: usize,
    pub hidden_dim: c_int,
    pub projection_dim: c_int,
    pub projection_layers: c_int,
    pub projection_activation: vqj_activation,
    pub aggregator: vqj_aggregator,
    pub context_window: c_int,
    pub final_activation: c_int,
    pub slot_embedding: c_int,
    pub grid_features: c_int,
    pub vq_path: vqj_vq_path,
    pub analogy_residual: c_int,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vqj_dataset_params {
    pub size: usize,
    pub context_window: c_int,
    pub target_offset: c_int,
    pub validation_split: f32,
    pub validation_seed: u64,
    pub skip_bad: c_int,
    pub max_examples_per_task: c_int,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vqj_synthetic_params {
    pub size: usize,
    pub num_examples: c_int,
    pub seed: u64,
    pub min_side: c_int,
    pub max_side: c_int,
    pub min_colors: c_int,
    pub max_colors: c_int,
    pub max_primitives: c_int,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vqj_augment_params {
    pub size: usize,
    pub mask_ratio: f32,
    pub random_crop_radius: c_int,
    pub min_grid_size_for_crop: c_int,
    pub palette_permutation: c_int,
    pub gaussian_noise_std: f32,
    pub background: c_int,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vqj_loss_params {
    pub size: usize,
    pub projection_dim: c_int,
    pub queue_size: c_int,
    pub temperature: f32,
    pub temperature_min: f32,
    pub temperature_max: f32,
    pub learnable_temperature: c_int,
    pub relational_weight: f32,
    pub context_self_weight: f32,
    pub max_objects: c_int,
    pub sigreg_weight: f32,
    pub sigreg_num_slices: c_int,
    pub sigreg_num_points: c_int,
    pub color_weight: f32,
    pub translation_weight: f32,
    pub symmetry_weight: f32,
    pub infonce_weight: f32,
    pub mask_duplicate_negatives: c_int,
    pub objective: vqj_objective,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct vqj_loss_values {
    pub size: usize,
    pub total: f32,
    pub infonce: f32,
    pub relational: f32,
    pub commitment: f32,
    pub sigreg: f32,
    pub invariance_color: f32,
    pub invariance_translation: f32,
    pub invariance_symmetry: f32,
    pub temperature: f32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vqj_trainer_params {
    pub size: usize,
    pub grad_accum_steps: c_int,
    pub target_ema_decay: f32,
    pub use_target_encoder: c_int,
    pub translation_max_delta: f32,
    pub symmetry_modes: c_int,
    pub background: u16,
    pub ema_update_passes: vqj_ema_passes,
    pub object_dropout: f32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct vqj_train_metrics {
    pub size: usize,
    pub skipped: c_int,
    pub optimizer_step: c_int,
    pub applied: c_int,
    pub step: i64,
    pub micro_step: i64,
    pub batch: c_int,
    pub context_tokens: c_int,
    pub loss: f32,
    pub infonce: f32,
    pub relational: f32,
    pub commitment: f32,
    pub sigreg: f32,
    pub invariance_color: f32,
    pub invariance_translation: f32,
    pub invariance_symmetry: f32,
    pub temperature: f32,
    pub grad_norm: f32,
    pub lr: f32,
    pub perplexity: f32,
    pub active_codes: c_int,
    pub refreshed: c_int,
    pub usage_ratio: f32,
    pub dead_replaced: c_int,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct vqj_eval_result {
    pub size: usize,
    pub queries: usize,
    pub candidates: usize,
    pub chance: f64,
    pub top1: f64,
    pub top5: f64,
    pub mean_rank: f64,
    pub hard_top1: f64,
    pub hard_top5: f64,
    pub grids: usize,
    pub objects: usize,
    pub num_codes: c_int,
    pub distinct_codes: c_int,
    pub code_usage: f64,
    pub code_perplexity: f64,
    pub identical_pairs: f64,
    pub code_same_identical: f64,
    pub code_shared_different: f64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct vqj_embedding_metrics {
    pub size: usize,
    pub samples: c_int,
    pub variance: f32,
    pub isotropy: f32,
    pub effective_rank: f32,
    pub gaussian_score: f32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct vqj_window_metrics {
    pub size: usize,
    pub context: vqj_embedding_metrics,
    pub target: vqj_embedding_metrics,
    pub active_codes: c_int,
    pub num_codes: c_int,
    pub usage_ratio: f32,
    pub active_context: c_int,
    pub active_target: c_int,
    pub usage_context: f32,
    pub usage_target: f32,
    pub perplexity: f32,
    pub dead_codes: c_int,
    pub assignments: i64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vqj_health_input {
    pub size: usize,
    pub val_loss: *const f32,
    pub epochs: c_int,
    pub epoch: c_int,
    pub have_vq: c_int,
    pub vq_usage: f32,
    pub have_embedding: c_int,
    pub context_rank: f32,
    pub target_rank: f32,
    pub min_delta: f32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vqj_health_check {
    pub name: *const c_char,
    pub level: vqj_health_level,
    pub message: [c_char; 160],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct vqj_early_stopping {
    pub size: usize,
    pub patience: c_int,
    pub min_delta: f32,
    pub mode: vqj_early_stopping_mode,
    pub has_best: c_int,
    pub best: f32,
    pub best_epoch: c_int,
    pub bad_epochs: c_int,
    pub updates: c_int,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vqj_checkpoint_entry {
    pub prefix: *const c_char,
    pub weights: *mut vqj_weights,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vqj_run_params {
    pub size: usize,
    pub seed: u64,
    pub epochs: c_int,
    pub batch_size: c_int,
    pub grad_accum_steps: c_int,
    pub shuffle: c_int,
    pub dataset_manifest: *const c_char,
    pub arc_path: *const c_char,
    pub validation_split: f32,
    pub validation_seed: u64,
    pub checkpoint_dir: *const c_char,
    pub checkpoint_interval: c_int,
    pub early_stopping_enabled: c_int,
    pub early_stopping_patience: c_int,
    pub early_stopping_min_delta: f32,
    pub early_stopping_mode: vqj_early_stopping_mode,
    pub diagnostics_enabled: c_int,
    pub diagnostics_interval: c_int,
    pub diagnostics_max_samples: c_int,
    pub device: vqj_device_kind,
    pub vq_enabled: c_int,
    pub use_target_encoder: c_int,
    pub logging_enabled: c_int,
    pub log_dir: *const c_char,
    pub run_name: *const c_char,
    pub checkpoint_steps: c_int,
}

extern "C" {
    pub fn vqj_version() -> *const c_char;
    pub fn vqj_free(ptr: *mut c_void);
    pub fn vqj_status_string(status: vqj_status) -> *const c_char;
    pub fn vqj_context_params_default(params: *mut vqj_context_params);
    pub fn vqj_context_create(params: *const vqj_context_params, out: *mut *mut vqj_context) -> vqj_status;
    pub fn vqj_context_destroy(ctx: *mut vqj_context);
    pub fn vqj_last_error() -> *const c_char;
    pub fn vqj_context_device(ctx: *const vqj_context) -> vqj_device_kind;
    pub fn vqj_context_num_threads(ctx: *const vqj_context) -> c_int;
    pub fn vqj_context_seed(ctx: *const vqj_context) -> u64;
    pub fn vqj_comm_mpi_available() -> c_int;
    pub fn vqj_comm_create_single(ctx: *mut vqj_context, out: *mut *mut vqj_comm) -> vqj_status;
    pub fn vqj_comm_create_mpi(ctx: *mut vqj_context, mpi_comm: *mut c_void, out: *mut *mut vqj_comm) -> vqj_status;
    pub fn vqj_comm_init_mpi(
        ctx: *mut vqj_context,
        argc: *mut c_int,
        argv: *mut *mut *mut c_char,
        out: *mut *mut vqj_comm,
    ) -> vqj_status;
    pub fn vqj_comm_destroy(comm: *mut vqj_comm);
    pub fn vqj_comm_rank(comm: *const vqj_comm) -> c_int;
    pub fn vqj_comm_size(comm: *const vqj_comm) -> c_int;
    pub fn vqj_comm_backend(comm: *const vqj_comm) -> *const c_char;
    pub fn vqj_comm_allreduce(
        comm: *mut vqj_comm,
        buf: *mut c_void,
        count: usize,
        ty: vqj_comm_type,
        op: vqj_comm_op,
    ) -> vqj_status;
    pub fn vqj_comm_allgather(
        comm: *mut vqj_comm,
        send: *const c_void,
        count: usize,
        recv: *mut c_void,
        ty: vqj_comm_type,
    ) -> vqj_status;
    pub fn vqj_comm_broadcast(
        comm: *mut vqj_comm,
        buf: *mut c_void,
        count: usize,
        ty: vqj_comm_type,
        root: c_int,
    ) -> vqj_status;
    pub fn vqj_comm_check_same(comm: *mut vqj_comm, bytes: *const c_void, n: usize, what: *const c_char) -> vqj_status;
    pub fn vqj_context_set_comm(ctx: *mut vqj_context, comm: *mut vqj_comm) -> vqj_status;
    pub fn vqj_context_comm(ctx: *const vqj_context) -> *mut vqj_comm;
    pub fn vqj_device_compiled(device: vqj_device_kind) -> c_int;
    pub fn vqj_tensor_create(ctx: *mut vqj_context, rows: c_int, cols: c_int, out: *mut *mut vqj_tensor) -> vqj_status;
    pub fn vqj_tensor_destroy(tensor: *mut vqj_tensor);
    pub fn vqj_tensor_reshape(tensor: *mut vqj_tensor, rows: c_int, cols: c_int) -> vqj_status;
    pub fn vqj_tensor_rows(tensor: *const vqj_tensor) -> c_int;
    pub fn vqj_tensor_cols(tensor: *const vqj_tensor) -> c_int;
    pub fn vqj_tensor_read(tensor: *const vqj_tensor, dst: *mut f32, count: usize) -> vqj_status;
    pub fn vqj_tensor_write(tensor: *mut vqj_tensor, src: *const f32, count: usize) -> vqj_status;
    pub fn vqj_weights_num_tensors(weights: *const vqj_weights) -> usize;
    pub fn vqj_weights_num_params(weights: *const vqj_weights) -> usize;
    pub fn vqj_weights_info(weights: *const vqj_weights, index: usize, out: *mut vqj_weight_info) -> vqj_status;
    pub fn vqj_weights_read(
        weights: *const vqj_weights,
        name: *const c_char,
        dst: *mut f32,
        count: usize,
    ) -> vqj_status;
    pub fn vqj_weights_write(
        weights: *mut vqj_weights,
        name: *const c_char,
        src: *const f32,
        count: usize,
    ) -> vqj_status;
    pub fn vqj_weights_read_grad(
        weights: *const vqj_weights,
        name: *const c_char,
        dst: *mut f32,
        count: usize,
    ) -> vqj_status;
    pub fn vqj_weights_zero_grad(weights: *mut vqj_weights);
    pub fn vqj_tokenizer_params_default(params: *mut vqj_tokenizer_params);
    pub fn vqj_tokenizer_feature_dim(params: *const vqj_tokenizer_params) -> c_int;
    pub fn vqj_tokens_create(
        ctx: *mut vqj_context,
        params: *const vqj_tokenizer_params,
        out: *mut *mut vqj_tokens,
    ) -> vqj_status;
    pub fn vqj_tokens_destroy(tokens: *mut vqj_tokens);
    pub fn vqj_tokenize(
        ctx: *mut vqj_context,
        tokens: *mut vqj_tokens,
        grids: *const vqj_grid,
        num_grids: usize,
    ) -> vqj_status;
    pub fn vqj_tokens_num_grids(tokens: *const vqj_tokens) -> usize;
    pub fn vqj_tokens_num_objects(tokens: *const vqj_tokens) -> usize;
    pub fn vqj_tokens_feature_dim(tokens: *const vqj_tokens) -> c_int;
    pub fn vqj_tokens_offsets(tokens: *const vqj_tokens) -> *const i32;
    pub fn vqj_tokens_grid_ids(tokens: *const vqj_tokens) -> *const u64;
    pub fn vqj_tokens_features(tokens: *const vqj_tokens) -> *const f32;
    pub fn vqj_tokens_adjacency(tokens: *const vqj_tokens, grid: usize) -> *const u8;
    pub fn vqj_tokens_padded(
        ctx: *mut vqj_context,
        tokens: *const vqj_tokens,
        grid: usize,
        features: *mut f32,
        mask: *mut f32,
        adjacency: *mut f32,
    ) -> vqj_status;
    pub fn vqj_arc_task_load(ctx: *mut vqj_context, path: *const c_char, out: *mut *mut vqj_arc_task) -> vqj_status;
    pub fn vqj_arc_task_parse(
        ctx: *mut vqj_context,
        json_text: *const c_char,
        length: usize,
        name: *const c_char,
        out: *mut *mut vqj_arc_task,
    ) -> vqj_status;
    pub fn vqj_arc_task_destroy(task: *mut vqj_arc_task);
    pub fn vqj_arc_task_name(task: *const vqj_arc_task) -> *const c_char;
    pub fn vqj_arc_task_num_pairs(task: *const vqj_arc_task, split: vqj_arc_split) -> usize;
    pub fn vqj_arc_task_input(task: *const vqj_arc_task, split: vqj_arc_split, i: usize) -> *const vqj_grid;
    pub fn vqj_arc_task_output(task: *const vqj_arc_task, split: vqj_arc_split, i: usize) -> *const vqj_grid;
    pub fn vqj_codebook_params_default(params: *mut vqj_codebook_params);
    pub fn vqj_codebook_create(
        ctx: *mut vqj_context,
        params: *const vqj_codebook_params,
        out: *mut *mut vqj_codebook,
    ) -> vqj_status;
    pub fn vqj_codebook_destroy(cb: *mut vqj_codebook);
    pub fn vqj_codebook_weights(cb: *mut vqj_codebook) -> *mut vqj_weights;
    pub fn vqj_codebook_forward(
        cb: *mut vqj_codebook,
        z: *const vqj_tensor,
        training: c_int,
        q: *mut vqj_tensor,
        codes: *mut i32,
        stats: *mut vqj_codebook_stats,
    ) -> vqj_status;
    pub fn vqj_codebook_backward(cb: *mut vqj_codebook, dq: *const vqj_tensor, dz: *mut vqj_tensor) -> vqj_status;
    pub fn vqj_codebook_ema_usage(cb: *const vqj_codebook, dst: *mut f32, count: usize) -> vqj_status;
    pub fn vqj_codebook_get_progress(cb: *const vqj_codebook, updates: *mut i64, initialized: *mut c_int)
        -> vqj_status;
    pub fn vqj_codebook_set_progress(cb: *mut vqj_codebook, updates: i64, initialized: c_int) -> vqj_status;
    pub fn vqj_optimizer_params_default(params: *mut vqj_optimizer_params);
    pub fn vqj_optimizer_create(
        ctx: *mut vqj_context,
        params: *const vqj_optimizer_params,
        groups: *const *mut vqj_weights,
        num_groups: usize,
        out: *mut *mut vqj_optimizer,
    ) -> vqj_status;
    pub fn vqj_optimizer_destroy(opt: *mut vqj_optimizer);
    pub fn vqj_optimizer_step(opt: *mut vqj_optimizer, grad_scale: f32, info: *mut vqj_step_info) -> vqj_status;
    pub fn vqj_optimizer_zero_grad(opt: *mut vqj_optimizer) -> vqj_status;
    pub fn vqj_optimizer_lr(opt: *const vqj_optimizer) -> f32;
    pub fn vqj_optimizer_steps(opt: *const vqj_optimizer) -> i64;
    pub fn vqj_optimizer_set_steps(opt: *mut vqj_optimizer, steps: i64) -> vqj_status;
    pub fn vqj_optimizer_state(opt: *mut vqj_optimizer) -> *mut vqj_weights;
    pub fn vqj_weights_ema(target: *mut vqj_weights, online: *const vqj_weights, decay: f32) -> vqj_status;
    pub fn vqj_encoder_params_default(params: *mut vqj_encoder_params);
    pub fn vqj_encoder_create(
        ctx: *mut vqj_context,
        params: *const vqj_encoder_params,
        out: *mut *mut vqj_encoder,
    ) -> vqj_status;
    pub fn vqj_encoder_destroy(encoder: *mut vqj_encoder);
    pub fn vqj_encoder_weights(encoder: *mut vqj_encoder) -> *mut vqj_weights;
    pub fn vqj_encoder_forward(
        encoder: *mut vqj_encoder,
        tokens: *const vqj_tokens,
        training: c_int,
        out: *mut vqj_tensor,
    ) -> vqj_status;
    pub fn vqj_encoder_backward(
        encoder: *mut vqj_encoder,
        dout: *const vqj_tensor,
        dfeatures: *mut vqj_tensor,
    ) -> vqj_status;
    pub fn vqj_predictor_params_default(params: *mut vqj_predictor_params);
    pub fn vqj_predictor_create(
        ctx: *mut vqj_context,
        params: *const vqj_predictor_params,
        out: *mut *mut vqj_predictor,
    ) -> vqj_status;
    pub fn vqj_predictor_destroy(predictor: *mut vqj_predictor);
    pub fn vqj_predictor_weights(predictor: *mut vqj_predictor) -> *mut vqj_weights;
    pub fn vqj_predictor_forward_context(
        predictor: *mut vqj_predictor,
        tokens: *const vqj_tokens,
        token_vectors: *const vqj_tensor,
        out: *mut vqj_tensor,
    ) -> vqj_status;
    pub fn vqj_predictor_forward_grids(
        predictor: *mut vqj_predictor,
        tokens: *const vqj_tokens,
        token_vectors: *const vqj_tensor,
        out: *mut vqj_tensor,
    ) -> vqj_status;
    pub fn vqj_predictor_backward_context(
        predictor: *mut vqj_predictor,
        d_out: *const vqj_tensor,
        d_token_vectors: *mut vqj_tensor,
    ) -> vqj_status;
    pub fn vqj_predictor_backward_grids(
        predictor: *mut vqj_predictor,
        d_out: *const vqj_tensor,
        d_token_vectors: *mut vqj_tensor,
    ) -> vqj_status;
    pub fn vqj_dataset_params_default(params: *mut vqj_dataset_params);
    pub fn vqj_dataset_from_arc(
        ctx: *mut vqj_context,
        params: *const vqj_dataset_params,
        path: *const c_char,
        out: *mut *mut vqj_dataset,
    ) -> vqj_status;
    pub fn vqj_dataset_from_jsonl(
        ctx: *mut vqj_context,
        params: *const vqj_dataset_params,
        path: *const c_char,
        out: *mut *mut vqj_dataset,
    ) -> vqj_status;
    pub fn vqj_synthetic_params_default(params: *mut vqj_synthetic_params);
    pub fn vqj_dataset_synthetic(
        ctx: *mut vqj_context,
        params: *const vqj_dataset_params,
        synthetic: *const vqj_synthetic_params,
        out: *mut *mut vqj_dataset,
    ) -> vqj_status;
    pub fn vqj_dataset_destroy(dataset: *mut vqj_dataset);
    pub fn vqj_dataset_num_examples(dataset: *const vqj_dataset) -> usize;
    pub fn vqj_dataset_context_window(dataset: *const vqj_dataset) -> c_int;
    pub fn vqj_dataset_get_params(dataset: *const vqj_dataset, out: *mut vqj_dataset_params) -> vqj_status;
    pub fn vqj_dataset_example(
        dataset: *const vqj_dataset,
        i: usize,
        context: *mut *const vqj_grid,
        target: *mut *const vqj_grid,
    ) -> vqj_status;
    pub fn vqj_dataset_num_skipped(dataset: *const vqj_dataset) -> usize;
    pub fn vqj_dataset_skipped_message(dataset: *const vqj_dataset, k: usize) -> *const c_char;
    pub fn vqj_dataset_split(
        all: *const vqj_dataset,
        validation_split: f32,
        seed: u64,
        train: *mut *mut vqj_dataset,
        validation: *mut *mut vqj_dataset,
    ) -> vqj_status;
    pub fn vqj_dataset_shuffle(dataset: *const vqj_dataset, seed: u64, epoch: i64, order: *mut usize) -> vqj_status;
    pub fn vqj_augment_seed(seed: u64, epoch: i64, index: usize) -> u64;
    pub fn vqj_batch_create(ctx: *mut vqj_context, out: *mut *mut vqj_batch) -> vqj_status;
    pub fn vqj_batch_destroy(batch: *mut vqj_batch);
    pub fn vqj_batch_fill(
        batch: *mut vqj_batch,
        dataset: *const vqj_dataset,
        augment: *const vqj_augment_params,
        seed: u64,
        epoch: i64,
        indices: *const usize,
        n: usize,
    ) -> vqj_status;
    pub fn vqj_batch_num_examples(batch: *const vqj_batch) -> usize;
    pub fn vqj_batch_context_window(batch: *const vqj_batch) -> c_int;
    pub fn vqj_batch_context(batch: *const vqj_batch) -> *const vqj_grid;
    pub fn vqj_batch_targets(batch: *const vqj_batch) -> *const vqj_grid;
    pub fn vqj_augment_params_default(params: *mut vqj_augment_params);
    pub fn vqj_augment_grid(
        ctx: *mut vqj_context,
        params: *const vqj_augment_params,
        seed: u64,
        in_: *const vqj_grid,
        out_cells: *mut u8,
    ) -> vqj_status;
    pub fn vqj_augment_example(
        ctx: *mut vqj_context,
        params: *const vqj_augment_params,
        seed: u64,
        context: *const vqj_grid,
        context_window: c_int,
        target: *const vqj_grid,
        out_cells: *const *mut u8,
    ) -> vqj_status;
    pub fn vqj_view_palette(
        ctx: *mut vqj_context,
        seed: u64,
        background: u16,
        in_: *const vqj_grid,
        out_cells: *mut u8,
    ) -> vqj_status;
    pub fn vqj_view_flip(
        ctx: *mut vqj_context,
        in_: *const vqj_grid,
        horizontal: c_int,
        out_cells: *mut u8,
    ) -> vqj_status;
    pub fn vqj_view_translate_features(
        ctx: *mut vqj_context,
        features: *mut f32,
        n: usize,
        feature_dim: c_int,
        dy: f32,
        dx: f32,
    ) -> vqj_status;
    pub fn vqj_loss_params_default(params: *mut vqj_loss_params);
    pub fn vqj_loss_create(
        ctx: *mut vqj_context,
        params: *const vqj_loss_params,
        out: *mut *mut vqj_loss,
    ) -> vqj_status;
    pub fn vqj_loss_destroy(loss: *mut vqj_loss);
    pub fn vqj_loss_weights(loss: *mut vqj_loss) -> *mut vqj_weights;
    pub fn vqj_loss_reset(loss: *mut vqj_loss);
    pub fn vqj_loss_get_values(loss: *const vqj_loss, out: *mut vqj_loss_values) -> vqj_status;
    pub fn vqj_loss_temperature(loss: *const vqj_loss, tau: *mut f32) -> vqj_status;
    pub fn vqj_loss_queue_fill(loss: *const vqj_loss, fill: *mut c_int) -> vqj_status;
    pub fn vqj_loss_infonce(
        loss: *mut vqj_loss,
        c: *const vqj_tensor,
        t: *const vqj_tensor,
        dc: *mut vqj_tensor,
        value: *mut f32,
    ) -> vqj_status;
    pub fn vqj_loss_queue_push(loss: *mut vqj_loss, t: *const vqj_tensor) -> vqj_status;
    pub fn vqj_loss_infonce_ids(
        loss: *mut vqj_loss,
        c: *const vqj_tensor,
        t: *const vqj_tensor,
        target_ids: *const u64,
        dc: *mut vqj_tensor,
        value: *mut f32,
    ) -> vqj_status;
    pub fn vqj_loss_queue_push_ids(loss: *mut vqj_loss, t: *const vqj_tensor, ids: *const u64) -> vqj_status;
    pub fn vqj_loss_sigreg(
        loss: *mut vqj_loss,
        c: *const vqj_tensor,
        step: u64,
        dc: *mut vqj_tensor,
        value: *mut f32,
    ) -> vqj_status;
    pub fn vqj_loss_relational(
        loss: *mut vqj_loss,
        context: *const vqj_tokens,
        h_context: *const vqj_tensor,
        dh_context: *mut vqj_tensor,
        target: *const vqj_tokens,
        h_target: *const vqj_tensor,
        dh_target: *mut vqj_tensor,
        value: *mut f32,
    ) -> vqj_status;
    pub fn vqj_loss_invariance(
        loss: *mut vqj_loss,
        kind: vqj_invariance_kind,
        view: *const vqj_tensor,
        original: *const vqj_tensor,
        d_view: *mut vqj_tensor,
        value: *mut f32,
    ) -> vqj_status;
    pub fn vqj_loss_invariance_tokens(
        loss: *mut vqj_loss,
        kind: vqj_invariance_kind,
        view: *const vqj_tokens,
        h_view: *const vqj_tensor,
        dh_view: *mut vqj_tensor,
        original: *const vqj_tokens,
        h_original: *const vqj_tensor,
        dh_original: *mut vqj_tensor,
        value: *mut f32,
    ) -> vqj_status;
    pub fn vqj_loss_add_commitment(loss: *mut vqj_loss, value: f32) -> vqj_status;
    pub fn vqj_trainer_params_default(params: *mut vqj_trainer_params);
    pub fn vqj_trainer_create(
        ctx: *mut vqj_context,
        params: *const vqj_trainer_params,
        tokenizer: *const vqj_tokenizer_params,
        encoder: *mut vqj_encoder,
        codebook: *mut vqj_codebook,
        predictor: *mut vqj_predictor,
        loss: *mut vqj_loss,
        optimizer: *mut vqj_optimizer,
        out: *mut *mut vqj_trainer,
    ) -> vqj_status;
    pub fn vqj_trainer_destroy(trainer: *mut vqj_trainer);
    pub fn vqj_trainer_step(
        trainer: *mut vqj_trainer,
        context: *const vqj_grid,
        targets: *const vqj_grid,
        batch: c_int,
        metrics: *mut vqj_train_metrics,
    ) -> vqj_status;
    pub fn vqj_trainer_step_tokens(
        trainer: *mut vqj_trainer,
        context: *const vqj_tokens,
        targets: *const vqj_tokens,
        metrics: *mut vqj_train_metrics,
    ) -> vqj_status;
    pub fn vqj_trainer_evaluate(
        trainer: *mut vqj_trainer,
        context: *const vqj_grid,
        targets: *const vqj_grid,
        batch: c_int,
        metrics: *mut vqj_train_metrics,
    ) -> vqj_status;
    pub fn vqj_trainer_target_encoder(trainer: *mut vqj_trainer) -> *mut vqj_encoder;
    pub fn vqj_trainer_target_predictor(trainer: *mut vqj_trainer) -> *mut vqj_predictor;
    pub fn vqj_trainer_target_encoder_weights(trainer: *mut vqj_trainer) -> *mut vqj_weights;
    pub fn vqj_trainer_target_predictor_weights(trainer: *mut vqj_trainer) -> *mut vqj_weights;
    pub fn vqj_trainer_context_projections(trainer: *const vqj_trainer) -> *const vqj_tensor;
    pub fn vqj_trainer_target_projections(trainer: *const vqj_trainer) -> *const vqj_tensor;
    pub fn vqj_trainer_codes(trainer: *const vqj_trainer, count: *mut usize) -> *const i32;
    pub fn vqj_trainer_target_codes(trainer: *const vqj_trainer, count: *mut usize) -> *const i32;
    pub fn vqj_trainer_get_counters(
        trainer: *const vqj_trainer,
        micro_step: *mut i64,
        dropout_step: *mut u64,
    ) -> vqj_status;
    pub fn vqj_trainer_set_counters(trainer: *mut vqj_trainer, micro_step: i64, dropout_step: u64) -> vqj_status;
    pub fn vqj_embedding_metrics_compute(
        ctx: *mut vqj_context,
        x: *const f32,
        n: c_int,
        d: c_int,
        out: *mut vqj_embedding_metrics,
    ) -> vqj_status;
    pub fn vqj_metrics_window_create(
        ctx: *mut vqj_context,
        dim: c_int,
        max_samples: c_int,
        num_codes: c_int,
        out: *mut *mut vqj_metrics_window,
    ) -> vqj_status;
    pub fn vqj_metrics_window_destroy(window: *mut vqj_metrics_window);
    pub fn vqj_metrics_window_add_projections(
        window: *mut vqj_metrics_window,
        context: *const f32,
        target: *const f32,
        rows: c_int,
    ) -> vqj_status;
    pub fn vqj_metrics_window_add_codes(window: *mut vqj_metrics_window, codes: *const i32, n: usize) -> vqj_status;
    pub fn vqj_metrics_window_add_target_codes(
        window: *mut vqj_metrics_window,
        codes: *const i32,
        n: usize,
    ) -> vqj_status;
    pub fn vqj_metrics_window_compute(window: *mut vqj_metrics_window, out: *mut vqj_window_metrics) -> vqj_status;
    pub fn vqj_metrics_window_rows(window: *const vqj_metrics_window) -> c_int;
    pub fn vqj_metrics_window_reset(window: *mut vqj_metrics_window);
    pub fn vqj_health_input_default(in_: *mut vqj_health_input);
    pub fn vqj_health_evaluate(
        in_: *const vqj_health_input,
        checks: *mut vqj_health_check,
        cap: usize,
        count: *mut usize,
    ) -> vqj_status;
    pub fn vqj_health_abort(in_: *const vqj_health_input, reason: *mut c_char, cap: usize) -> c_int;
    pub fn vqj_early_stopping_init(
        es: *mut vqj_early_stopping,
        patience: c_int,
        min_delta: f32,
        mode: vqj_early_stopping_mode,
    ) -> vqj_status;
    pub fn vqj_early_stopping_update(
        es: *mut vqj_early_stopping,
        epoch: c_int,
        value: f32,
        improved: *mut c_int,
        should_stop: *mut c_int,
    ) -> vqj_status;
    pub fn vqj_checkpoint_save(
        ctx: *mut vqj_context,
        path: *const c_char,
        entries: *const vqj_checkpoint_entry,
        num_entries: usize,
        metadata: *const *const c_char,
    ) -> vqj_status;
    pub fn vqj_checkpoint_load(
        ctx: *mut vqj_context,
        path: *const c_char,
        entries: *const vqj_checkpoint_entry,
        num_entries: usize,
        flags: c_uint,
    ) -> vqj_status;
    pub fn vqj_checkpoint_verify(ctx: *mut vqj_context, path: *const c_char) -> vqj_status;
    pub fn vqj_checkpoint_read_metadata(
        ctx: *mut vqj_context,
        path: *const c_char,
        key: *const c_char,
        buf: *mut c_char,
        capacity: usize,
        length: *mut usize,
    ) -> vqj_status;
    pub fn vqj_trainer_save(trainer: *mut vqj_trainer, path: *const c_char, config_yaml: *const c_char) -> vqj_status;
    pub fn vqj_trainer_save_with_metadata(
        trainer: *mut vqj_trainer,
        path: *const c_char,
        config_yaml: *const c_char,
        metadata: *const *const c_char,
    ) -> vqj_status;
    pub fn vqj_trainer_load(trainer: *mut vqj_trainer, path: *const c_char) -> vqj_status;
    pub fn vqj_config_default(ctx: *mut vqj_context, out: *mut *mut vqj_config) -> vqj_status;
    pub fn vqj_config_load(ctx: *mut vqj_context, path: *const c_char, out: *mut *mut vqj_config) -> vqj_status;
    pub fn vqj_config_parse(
        ctx: *mut vqj_context,
        text: *const c_char,
        length: usize,
        name: *const c_char,
        out: *mut *mut vqj_config,
    ) -> vqj_status;
    pub fn vqj_config_destroy(cfg: *mut vqj_config);
    pub fn vqj_config_tokenizer_params(cfg: *const vqj_config, out: *mut vqj_tokenizer_params) -> vqj_status;
    pub fn vqj_config_encoder_params(cfg: *const vqj_config, out: *mut vqj_encoder_params) -> vqj_status;
    pub fn vqj_config_codebook_params(cfg: *const vqj_config, out: *mut vqj_codebook_params) -> vqj_status;
    pub fn vqj_config_predictor_params(cfg: *const vqj_config, out: *mut vqj_predictor_params) -> vqj_status;
    pub fn vqj_config_loss_params(cfg: *const vqj_config, out: *mut vqj_loss_params) -> vqj_status;
    pub fn vqj_config_optimizer_params(cfg: *const vqj_config, out: *mut vqj_optimizer_params) -> vqj_status;
    pub fn vqj_config_trainer_params(cfg: *const vqj_config, out: *mut vqj_trainer_params) -> vqj_status;
    pub fn vqj_config_dataset_params(cfg: *const vqj_config, out: *mut vqj_dataset_params) -> vqj_status;
    pub fn vqj_config_augment_params(cfg: *const vqj_config, out: *mut vqj_augment_params) -> vqj_status;
    pub fn vqj_config_synthetic_params(cfg: *const vqj_config, out: *mut vqj_synthetic_params) -> vqj_status;
    pub fn vqj_config_run(cfg: *const vqj_config, out: *mut vqj_run_params) -> vqj_status;
    pub fn vqj_config_write_yaml(cfg: *const vqj_config, text_out: *mut *mut c_char) -> vqj_status;
    pub fn vqj_config_estimate_bytes(cfg: *const vqj_config, bytes: *mut u64) -> vqj_status;
    pub fn vqj_config_set(cfg: *mut vqj_config, key: *const c_char, value: *const c_char) -> vqj_status;
    pub fn vqj_trainer_create_from_config(
        ctx: *mut vqj_context,
        cfg: *const vqj_config,
        out: *mut *mut vqj_trainer,
    ) -> vqj_status;
    pub fn vqj_trainer_encoder(trainer: *mut vqj_trainer) -> *mut vqj_encoder;
    pub fn vqj_trainer_codebook(trainer: *mut vqj_trainer) -> *mut vqj_codebook;
    pub fn vqj_trainer_predictor(trainer: *mut vqj_trainer) -> *mut vqj_predictor;
    pub fn vqj_trainer_loss(trainer: *mut vqj_trainer) -> *mut vqj_loss;
    pub fn vqj_trainer_optimizer(trainer: *mut vqj_trainer) -> *mut vqj_optimizer;
    pub fn vqj_model_load(ctx: *mut vqj_context, path: *const c_char, out: *mut *mut vqj_model) -> vqj_status;
    pub fn vqj_model_from_trainer(trainer: *mut vqj_trainer, out: *mut *mut vqj_model) -> vqj_status;
    pub fn vqj_model_with_tokenizer(
        model: *const vqj_model,
        tokenizer: *const vqj_tokenizer_params,
        out: *mut *mut vqj_model,
    ) -> vqj_status;
    pub fn vqj_model_tokenizer_params(model: *const vqj_model, out: *mut vqj_tokenizer_params) -> vqj_status;
    pub fn vqj_model_create(
        ctx: *mut vqj_context,
        tokenizer: *const vqj_tokenizer_params,
        encoder: *mut vqj_encoder,
        codebook: *mut vqj_codebook,
        predictor: *mut vqj_predictor,
        target_encoder: *mut vqj_encoder,
        target_predictor: *mut vqj_predictor,
        out: *mut *mut vqj_model,
    ) -> vqj_status;
    pub fn vqj_model_destroy(model: *mut vqj_model);
    pub fn vqj_model_embedding_dim(model: *const vqj_model) -> c_int;
    pub fn vqj_model_max_objects(model: *const vqj_model) -> c_int;
    pub fn vqj_model_context_window(model: *const vqj_model) -> c_int;
    pub fn vqj_model_num_codes(model: *const vqj_model) -> c_int;
    pub fn vqj_model_num_quantizers(model: *const vqj_model) -> c_int;
    pub fn vqj_model_encode_grid_levels(
        model: *const vqj_model,
        grid: *const vqj_grid,
        codes: *mut i64,
        level_codes: *mut i32,
        num_objects: *mut usize,
    ) -> vqj_status;
    pub fn vqj_model_encode_grid(
        model: *const vqj_model,
        grid: *const vqj_grid,
        codes: *mut i32,
        num_objects: *mut usize,
        embedding: *mut f32,
    ) -> vqj_status;
    pub fn vqj_model_encode_grids(
        model: *const vqj_model,
        grids: *const vqj_grid,
        num_grids: usize,
        codes: *mut i32,
        num_objects: *mut usize,
        embeddings: *mut f32,
    ) -> vqj_status;
    pub fn vqj_model_predict(
        model: *const vqj_model,
        context: *const vqj_grid,
        num_grids: usize,
        embedding: *mut f32,
    ) -> vqj_status;
    pub fn vqj_model_predict_batch(
        model: *const vqj_model,
        context: *const vqj_grid,
        batch: usize,
        embeddings: *mut f32,
    ) -> vqj_status;
    pub fn vqj_latent_distance(a: *const f32, b: *const f32, dim: c_int, out: *mut f32) -> vqj_status;
    pub fn vqj_eval_set_from_tasks(
        ctx: *mut vqj_context,
        tasks: *const *const vqj_arc_task,
        num_tasks: usize,
        context_window: c_int,
        out: *mut *mut vqj_eval_set,
    ) -> vqj_status;
    pub fn vqj_eval_set_from_dataset(
        ctx: *mut vqj_context,
        dataset: *const vqj_dataset,
        out: *mut *mut vqj_eval_set,
    ) -> vqj_status;
    pub fn vqj_eval_set_load(
        ctx: *mut vqj_context,
        path: *const c_char,
        context_window: c_int,
        out: *mut *mut vqj_eval_set,
    ) -> vqj_status;
    pub fn vqj_eval_set_destroy(set: *mut vqj_eval_set);
    pub fn vqj_eval_set_num_queries(set: *const vqj_eval_set) -> usize;
    pub fn vqj_eval_set_num_candidates(set: *const vqj_eval_set) -> usize;
    pub fn vqj_eval_set_context_window(set: *const vqj_eval_set) -> c_int;
    pub fn vqj_eval_model(model: *const vqj_model, set: *const vqj_eval_set, out: *mut vqj_eval_result) -> vqj_status;
    pub fn vqj_eval_baseline(
        ctx: *mut vqj_context,
        set: *const vqj_eval_set,
        method: vqj_eval_method,
        out: *mut vqj_eval_result,
    ) -> vqj_status;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};
    use std::path::PathBuf;
    use std::process::Command;

    fn header() -> Option<PathBuf> {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../include/vqjepa.h");
        p.exists().then_some(p)
    }

    /// The declarations of both headers: the stable vqjepa.h and the
    /// experimental vqjepa_stages.h beside it.
    fn header_text(h: &std::path::Path) -> String {
        let stages = h.with_file_name("vqjepa_stages.h");
        std::fs::read_to_string(h).unwrap() + &std::fs::read_to_string(stages).unwrap()
    }

    /// (C expression, Rust value) pairs: the size and every field offset.
    macro_rules! layout {
        ($out:ident; $($ty:ident { $($f:ident),* $(,)? })*) => {$(
            $out.push((format!("sizeof({})", stringify!($ty)), size_of::<$ty>()));
            $($out.push((format!("offsetof({}, {})", stringify!($ty), stringify!($f)),
                         offset_of!($ty, $f)));)*
        )*};
    }

    #[test]
    fn struct_layouts_match_the_c_compiler() {
        let Some(h) = header() else {
            eprintln!("skipped: include/vqjepa.h not found");
            return;
        };
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let mut v: Vec<(String, usize)> = Vec::new();
        layout!(v;
            vqj_context_params { size, device, device_index, num_threads, seed, log_fn, log_user_data, log_level }
            vqj_weight_info { name, ndim, shape, count, trainable }
            vqj_grid { height, width, cells }
            vqj_tokenizer_params { size, max_objects, max_color_features, background, connectivity, normalize, respect_colors }
            vqj_codebook_params { size, num_embeddings, dim, enabled, commitment_cost, ema_decay, refresh_enabled, refresh_interval, refresh_usage_threshold, kmeans_init, dead_code_threshold, quantizer, code_dim, fsq_levels, gradient_estimator, dead_code_max_per_step, num_quantizers, num_groups }
            vqj_codebook_stats { size, commitment_loss, codebook_loss, perplexity, active_codes, refreshed, usage_ratio, updates, dead_replaced }
            vqj_optimizer_params { size, kind, lr, beta1, beta2, eps, weight_decay, max_grad_norm, schedule, warmup_steps, total_steps, min_lr_scale }
            vqj_step_info { size, applied, grad_norm, lr, step }
            vqj_encoder_params { size, feature_dim, hidden_dim, relational_layers, relational_heads, relational_dropout }
            vqj_predictor_params { size, hidden_dim, projection_dim, projection_layers, projection_activation, aggregator, context_window, final_activation, slot_embedding, grid_features, vq_path, analogy_residual }
            vqj_dataset_params { size, context_window, target_offset, validation_split, validation_seed, skip_bad, max_examples_per_task }
            vqj_synthetic_params { size, num_examples, seed, min_side, max_side, min_colors, max_colors, max_primitives }
            vqj_augment_params { size, mask_ratio, random_crop_radius, min_grid_size_for_crop, palette_permutation, gaussian_noise_std, background }
            vqj_loss_params { size, projection_dim, queue_size, temperature, temperature_min, temperature_max, learnable_temperature, relational_weight, context_self_weight, max_objects, sigreg_weight, sigreg_num_slices, sigreg_num_points, color_weight, translation_weight, symmetry_weight, infonce_weight, mask_duplicate_negatives, objective }
            vqj_loss_values { size, total, infonce, relational, commitment, sigreg, invariance_color, invariance_translation, invariance_symmetry, temperature }
            vqj_trainer_params { size, grad_accum_steps, target_ema_decay, use_target_encoder, translation_max_delta, symmetry_modes, background, ema_update_passes, object_dropout }
            vqj_train_metrics { size, skipped, optimizer_step, applied, step, micro_step, batch, context_tokens, loss, infonce, relational, commitment, sigreg, invariance_color, invariance_translation, invariance_symmetry, temperature, grad_norm, lr, perplexity, active_codes, refreshed, usage_ratio, dead_replaced }
            vqj_embedding_metrics { size, samples, variance, isotropy, effective_rank, gaussian_score }
            vqj_window_metrics { size, context, target, active_codes, num_codes, usage_ratio, active_context, active_target, usage_context, usage_target, perplexity, dead_codes, assignments }
            vqj_eval_result { size, queries, candidates, chance, top1, top5, mean_rank, hard_top1, hard_top5, grids, objects, num_codes, distinct_codes, code_usage, code_perplexity, identical_pairs, code_same_identical, code_shared_different }
            vqj_health_input { size, val_loss, epochs, epoch, have_vq, vq_usage, have_embedding, context_rank, target_rank, min_delta }
            vqj_health_check { name, level, message }
            vqj_early_stopping { size, patience, min_delta, mode, has_best, best, best_epoch, bad_epochs, updates }
            vqj_checkpoint_entry { prefix, weights }
            vqj_run_params { size, seed, epochs, batch_size, grad_accum_steps, shuffle, dataset_manifest, arc_path, validation_split, validation_seed, checkpoint_dir, checkpoint_interval, early_stopping_enabled, early_stopping_patience, early_stopping_min_delta, early_stopping_mode, diagnostics_enabled, diagnostics_interval, diagnostics_max_samples, device, vq_enabled, use_target_encoder, logging_enabled, log_dir, run_name, checkpoint_steps }
        );
        let dir = std::env::temp_dir().join(format!("vqjepa-sys-layout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut src =
            String::from("#include <stddef.h>\n#include <stdio.h>\n#include \"vqjepa_stages.h\"\nint main(void) {\n");
        for (expr, _) in &v {
            src += &format!("    printf(\"%zu\\n\", (size_t){expr});\n");
        }
        src += "    return 0;\n}\n";
        std::fs::write(dir.join("layout.c"), src).unwrap();
        let include = h.parent().unwrap();
        let status = Command::new(&cc)
            .args(["-std=c11", "-I"])
            .arg(include)
            .arg("-o")
            .arg(dir.join("layout"))
            .arg(dir.join("layout.c"))
            .status();
        match status {
            Ok(s) if s.success() => {}
            other => {
                eprintln!("skipped: cannot compile with {cc}: {other:?}");
                return;
            }
        }
        let out = Command::new(dir.join("layout")).output().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let c: Vec<usize> = String::from_utf8(out.stdout).unwrap().lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(c.len(), v.len());
        let bad: Vec<String> =
            v.iter().zip(&c).filter(|((_, r), c)| r != *c).map(|((e, r), c)| format!("{e}: Rust {r}, C {c}")).collect();
        assert!(bad.is_empty(), "layouts differ: {bad:#?}");
    }

    #[test]
    fn every_header_function_is_declared() {
        let Some(h) = header() else {
            eprintln!("skipped: include/vqjepa.h not found");
            return;
        };
        let text = header_text(&h);
        let ours = include_str!("lib.rs");
        let mut missing = Vec::new();
        for decl in text.split("VQJ_API").skip(1) {
            let decl = &decl[..decl.find(';').unwrap_or(decl.len())];
            let Some(paren) = decl.find('(') else {
                continue;
            };
            let name = decl[..paren].trim_end().rsplit(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap();
            if name.starts_with("vqj_") && !ours.contains(&format!("pub fn {name}(")) {
                missing.push(name.to_string());
            }
        }
        assert!(missing.is_empty(), "functions of the headers not declared here: {missing:?}");
        // and with the header's number of parameters
        let flat: String = ours.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut wrong = Vec::new();
        for decl in text.split("VQJ_API").skip(1) {
            let decl = &decl[..decl.find(';').unwrap_or(decl.len())];
            let (Some(open), Some(close)) = (decl.find('('), decl.rfind(')')) else { continue };
            let name = decl[..open].trim_end().rsplit(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap();
            let params = decl[open + 1..close].trim();
            let count = if params == "void" { 0 } else { params.matches(',').count() + 1 };
            let Some(at) = flat.find(&format!("pub fn {name}(")) else { continue };
            let rest = &flat[at..];
            let body = &rest[rest.find('(').unwrap() + 1..rest.find(')').unwrap()];
            let ours_count = body.split(',').filter(|p| !p.trim().is_empty()).count();
            if ours_count != count {
                wrong.push(format!("{name}: header {count}, Rust {ours_count}"));
            }
        }
        assert!(wrong.is_empty(), "parameter counts differ from the header: {wrong:?}");
    }

    #[test]
    fn defaults_fill_structs_of_our_size() {
        // The default functions set `size` to the library's sizeof().
        unsafe {
            let mut buf = [0u64; 64];
            vqj_encoder_params_default(buf.as_mut_ptr() as *mut vqj_encoder_params);
            assert_eq!(buf[0] as usize, size_of::<vqj_encoder_params>());
            let p = *(buf.as_ptr() as *const vqj_encoder_params);
            assert_eq!((p.feature_dim, p.hidden_dim, p.relational_heads), (23, 384, 8));
            vqj_trainer_params_default(buf.as_mut_ptr() as *mut vqj_trainer_params);
            assert_eq!(buf[0] as usize, size_of::<vqj_trainer_params>());
            let v = std::ffi::CStr::from_ptr(vqj_version()).to_str().unwrap();
            assert_eq!(v, format!("{VQJ_VERSION_MAJOR}.{VQJ_VERSION_MINOR}.{VQJ_VERSION_PATCH}"));
        }
    }
}
