"""Loading libvqjepa and declaring its C API for ctypes.

The library is looked for, in order:

1. the path in the ``VQJEPA_LIBRARY`` environment variable;
2. ``libvqjepa.so.0`` / ``libvqjepa.so`` next to this file (a wheel that
   bundles the library);
3. ``ctypes.util.find_library("vqjepa")`` (the loader's search path,
   ``LD_LIBRARY_PATH`` and ``ldconfig``);
4. the ``libdir`` that ``pkg-config --variable=libdir vqjepa`` prints
   (honours ``PKG_CONFIG_PATH``), then ``/usr/local/lib`` and ``/usr/lib``.

The structs below mirror include/vqjepa.h and include/vqjepa_stages.h field
for field. Params structs
carry their size, so a newer library that appended fields still accepts
them (it uses its defaults for the fields this binding does not know).
"""

import ctypes
import ctypes.util
import os
import shutil
import subprocess

from ._errors import UnsupportedError, error_for

# The SONAME major version this binding was written for.
ABI_MAJOR = 0

_SONAMES = ("libvqjepa.so.%d" % ABI_MAJOR, "libvqjepa.so", "libvqjepa.%d.dylib" % ABI_MAJOR,
            "libvqjepa.dylib")

c_float_p = ctypes.POINTER(ctypes.c_float)
c_int32_p = ctypes.POINTER(ctypes.c_int32)
c_uint8_p = ctypes.POINTER(ctypes.c_uint8)
c_size_t_p = ctypes.POINTER(ctypes.c_size_t)


def _candidates():
    env = os.environ.get("VQJEPA_LIBRARY")
    if env:
        yield env, "VQJEPA_LIBRARY"
        return
    here = os.path.dirname(os.path.abspath(__file__))
    for name in _SONAMES:
        path = os.path.join(here, name)
        if os.path.exists(path):
            yield path, "the package directory"
    found = ctypes.util.find_library("vqjepa")
    if found:
        yield found, "ctypes.util.find_library"
    pkg_config = shutil.which(os.environ.get("PKG_CONFIG", "pkg-config"))
    if pkg_config:
        try:
            out = subprocess.run([pkg_config, "--variable=libdir", "vqjepa"],
                                 capture_output=True, text=True, timeout=30)
            libdir = out.stdout.strip() if out.returncode == 0 else ""
        except (OSError, subprocess.SubprocessError):
            libdir = ""
        if libdir:
            for name in _SONAMES:
                path = os.path.join(libdir, name)
                if os.path.exists(path):
                    yield path, "pkg-config"
    for libdir in ("/usr/local/lib", "/usr/lib"):
        for name in _SONAMES:
            path = os.path.join(libdir, name)
            if os.path.exists(path):
                yield path, "the default prefix"


def _load():
    tried = []
    for path, how in _candidates():
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append("%s (from %s): %s" % (path, how, e))
    raise ImportError(
        "vqjepa: cannot load libvqjepa. Set VQJEPA_LIBRARY to the path of libvqjepa.so, or "
        "install the library (make install) where the loader or pkg-config finds it."
        + ("\n  tried: " + "\n  tried: ".join(tried) if tried else ""))


lib, path = _load()

# ---- structs (include/vqjepa.h) ----

LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p)


class _Struct(ctypes.Structure):
    def as_dict(self):
        return {name: list(v) if isinstance(v, ctypes.Array) else v
                for name, v in ((n, getattr(self, n)) for n, _ in self._fields_ if n != "size")}

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__,
                           ", ".join("%s=%r" % kv for kv in self.as_dict().items()))


class vqj_context_params(_Struct):
    _fields_ = [("size", ctypes.c_size_t), ("device", ctypes.c_int), ("device_index", ctypes.c_int),
                ("num_threads", ctypes.c_int), ("seed", ctypes.c_uint64), ("log_fn", LOG_FN),
                ("log_user_data", ctypes.c_void_p), ("log_level", ctypes.c_int)]


class vqj_weight_info(_Struct):
    _fields_ = [("name", ctypes.c_char_p), ("ndim", ctypes.c_int), ("shape", ctypes.c_int64 * 2),
                ("count", ctypes.c_size_t), ("trainable", ctypes.c_int)]


class vqj_grid(_Struct):
    _fields_ = [("height", ctypes.c_int), ("width", ctypes.c_int), ("cells", c_uint8_p)]


class vqj_tokenizer_params(_Struct):
    _fields_ = [("size", ctypes.c_size_t), ("max_objects", ctypes.c_int),
                ("max_color_features", ctypes.c_int), ("background", ctypes.c_uint16),
                ("connectivity", ctypes.c_int), ("normalize", ctypes.c_int),
                ("respect_colors", ctypes.c_int)]


class vqj_codebook_params(_Struct):
    _fields_ = [("size", ctypes.c_size_t), ("num_embeddings", ctypes.c_int), ("dim", ctypes.c_int),
                ("enabled", ctypes.c_int), ("commitment_cost", ctypes.c_float),
                ("ema_decay", ctypes.c_float), ("refresh_enabled", ctypes.c_int),
                ("refresh_interval", ctypes.c_int), ("refresh_usage_threshold", ctypes.c_float),
                ("kmeans_init", ctypes.c_int), ("dead_code_threshold", ctypes.c_float),
                ("quantizer", ctypes.c_int), ("code_dim", ctypes.c_int),
                ("fsq_levels", ctypes.c_int * 8), ("gradient_estimator", ctypes.c_int),
                ("dead_code_max_per_step", ctypes.c_int), ("num_quantizers", ctypes.c_int),
                ("num_groups", ctypes.c_int)]


class vqj_codebook_stats(_Struct):
    _fields_ = [("size", ctypes.c_size_t), ("commitment_loss", ctypes.c_float),
                ("codebook_loss", ctypes.c_float), ("perplexity", ctypes.c_float),
                ("active_codes", ctypes.c_int), ("refreshed", ctypes.c_int),
                ("usage_ratio", ctypes.c_float), ("updates", ctypes.c_int64),
                ("dead_replaced", ctypes.c_int)]


class vqj_optimizer_params(_Struct):
    _fields_ = [("size", ctypes.c_size_t), ("kind", ctypes.c_int), ("lr", ctypes.c_float),
                ("beta1", ctypes.c_float), ("beta2", ctypes.c_float), ("eps", ctypes.c_float),
                ("weight_decay", ctypes.c_float), ("max_grad_norm", ctypes.c_float),
                ("schedule", ctypes.c_int), ("warmup_steps", ctypes.c_int64),
                ("total_steps", ctypes.c_int64), ("min_lr_scale", ctypes.c_float)]


class vqj_step_info(_Struct):
    _fields_ = [("size", ctypes.c_size_t), ("applied", ctypes.c_int), ("grad_norm", ctypes.c_float),
                ("lr", ctypes.c_float), ("step", ctypes.c_int64)]


class vqj_encoder_params(_Struct):
    _fields_ = [("size", ctypes.c_size_t), ("feature_dim", ctypes.c_int), ("hidden_dim", ctypes.c_int),
                ("relational_layers", ctypes.c_int), ("relational_heads", ctypes.c_int),
                ("relational_dropout", ctypes.c_float)]


class vqj_predictor_params(_Struct):
    _fields_ = [("size", ctypes.c_size_t), ("hidden_dim", ctypes.c_int),
                ("projection_dim", ctypes.c_int), ("projection_layers", ctypes.c_int),
                ("projection_activation", ctypes.c_int), ("aggregator", ctypes.c_int),
                ("context_window", ctypes.c_int), ("final_activation", ctypes.c_int),
                ("slot_embedding", ctypes.c_int), ("grid_features", ctypes.c_int),
                ("vq_path", ctypes.c_int), ("analogy_residual", ctypes.c_int)]


class vqj_dataset_params(_Struct):
    _fields_ = [("size", ctypes.c_size_t), ("context_window", ctypes.c_int),
                ("target_offset", ctypes.c_int), ("validation_split", ctypes.c_float),
                ("validation_seed", ctypes.c_uint64), ("skip_bad", ctypes.c_int),
                ("max_examples_per_task", ctypes.c_int)]


class vqj_synthetic_params(_Struct):
    _fields_ = [("size", ctypes.c_size_t), ("num_examples", ctypes.c_int), ("seed", ctypes.c_uint64),
                ("min_side", ctypes.c_int), ("max_side", ctypes.c_int), ("min_colors", ctypes.c_int),
                ("max_colors", ctypes.c_int), ("max_primitives", ctypes.c_int)]


class vqj_augment_params(_Struct):
    _fields_ = [("size", ctypes.c_size_t), ("mask_ratio", ctypes.c_float),
                ("random_crop_radius", ctypes.c_int), ("min_grid_size_for_crop", ctypes.c_int),
                ("palette_permutation", ctypes.c_int), ("gaussian_noise_std", ctypes.c_float),
                ("background", ctypes.c_int)]


class vqj_loss_params(_Struct):
    _fields_ = [("size", ctypes.c_size_t), ("projection_dim", ctypes.c_int),
                ("queue_size", ctypes.c_int), ("temperature", ctypes.c_float),
                ("temperature_min", ctypes.c_float), ("temperature_max", ctypes.c_float),
                ("learnable_temperature", ctypes.c_int), ("relational_weight", ctypes.c_float),
                ("context_self_weight", ctypes.c_float), ("max_objects", ctypes.c_int),
                ("sigreg_weight", ctypes.c_float), ("sigreg_num_slices", ctypes.c_int),
                ("sigreg_num_points", ctypes.c_int), ("color_weight", ctypes.c_float),
                ("translation_weight", ctypes.c_float), ("symmetry_weight", ctypes.c_float),
                ("infonce_weight", ctypes.c_float),
                ("mask_duplicate_negatives", ctypes.c_int), ("objective", ctypes.c_int)]


class vqj_loss_values(_Struct):
    _fields_ = [("size", ctypes.c_size_t), ("total", ctypes.c_float), ("infonce", ctypes.c_float),
                ("relational", ctypes.c_float), ("commitment", ctypes.c_float),
                ("sigreg", ctypes.c_float), ("invariance_color", ctypes.c_float),
                ("invariance_translation", ctypes.c_float), ("invariance_symmetry", ctypes.c_float),
                ("temperature", ctypes.c_float)]


class vqj_trainer_params(_Struct):
    _fields_ = [("size", ctypes.c_size_t), ("grad_accum_steps", ctypes.c_int),
                ("target_ema_decay", ctypes.c_float), ("use_target_encoder", ctypes.c_int),
                ("translation_max_delta", ctypes.c_float), ("symmetry_modes", ctypes.c_int),
                ("background", ctypes.c_uint16), ("ema_update_passes", ctypes.c_int),
                ("object_dropout", ctypes.c_float)]


class vqj_train_metrics(_Struct):
    _fields_ = [("size", ctypes.c_size_t), ("skipped", ctypes.c_int), ("optimizer_step", ctypes.c_int),
                ("applied", ctypes.c_int), ("step", ctypes.c_int64), ("micro_step", ctypes.c_int64),
                ("batch", ctypes.c_int), ("context_tokens", ctypes.c_int), ("loss", ctypes.c_float),
                ("infonce", ctypes.c_float), ("relational", ctypes.c_float),
                ("commitment", ctypes.c_float), ("sigreg", ctypes.c_float),
                ("invariance_color", ctypes.c_float), ("invariance_translation", ctypes.c_float),
                ("invariance_symmetry", ctypes.c_float), ("temperature", ctypes.c_float),
                ("grad_norm", ctypes.c_float), ("lr", ctypes.c_float), ("perplexity", ctypes.c_float),
                ("active_codes", ctypes.c_int), ("refreshed", ctypes.c_int),
                ("usage_ratio", ctypes.c_float), ("dead_replaced", ctypes.c_int)]


class vqj_embedding_metrics(_Struct):
    _fields_ = [("size", ctypes.c_size_t), ("samples", ctypes.c_int), ("variance", ctypes.c_float),
                ("isotropy", ctypes.c_float), ("effective_rank", ctypes.c_float),
                ("gaussian_score", ctypes.c_float)]


class vqj_eval_result(_Struct):
    _fields_ = [("size", ctypes.c_size_t), ("queries", ctypes.c_size_t),
                ("candidates", ctypes.c_size_t), ("chance", ctypes.c_double),
                ("top1", ctypes.c_double), ("top5", ctypes.c_double),
                ("mean_rank", ctypes.c_double), ("hard_top1", ctypes.c_double),
                ("hard_top5", ctypes.c_double), ("grids", ctypes.c_size_t),
                ("objects", ctypes.c_size_t), ("num_codes", ctypes.c_int),
                ("distinct_codes", ctypes.c_int), ("code_usage", ctypes.c_double),
                ("code_perplexity", ctypes.c_double), ("identical_pairs", ctypes.c_double),
                ("code_same_identical", ctypes.c_double),
                ("code_shared_different", ctypes.c_double)]


class vqj_window_metrics(_Struct):
    _fields_ = [("size", ctypes.c_size_t), ("context", vqj_embedding_metrics),
                ("target", vqj_embedding_metrics), ("active_codes", ctypes.c_int),
                ("num_codes", ctypes.c_int), ("usage_ratio", ctypes.c_float),
                ("active_context", ctypes.c_int), ("active_target", ctypes.c_int),
                ("usage_context", ctypes.c_float), ("usage_target", ctypes.c_float),
                ("perplexity", ctypes.c_float), ("dead_codes", ctypes.c_int),
                ("assignments", ctypes.c_int64)]


class vqj_run_params(_Struct):
    _fields_ = [("size", ctypes.c_size_t), ("seed", ctypes.c_uint64), ("epochs", ctypes.c_int),
                ("batch_size", ctypes.c_int), ("grad_accum_steps", ctypes.c_int),
                ("shuffle", ctypes.c_int), ("dataset_manifest", ctypes.c_char_p),
                ("arc_path", ctypes.c_char_p), ("validation_split", ctypes.c_float),
                ("validation_seed", ctypes.c_uint64), ("checkpoint_dir", ctypes.c_char_p),
                ("checkpoint_interval", ctypes.c_int), ("early_stopping_enabled", ctypes.c_int),
                ("early_stopping_patience", ctypes.c_int),
                ("early_stopping_min_delta", ctypes.c_float), ("early_stopping_mode", ctypes.c_int),
                ("diagnostics_enabled", ctypes.c_int), ("diagnostics_interval", ctypes.c_int),
                ("diagnostics_max_samples", ctypes.c_int), ("device", ctypes.c_int),
                ("vq_enabled", ctypes.c_int), ("use_target_encoder", ctypes.c_int),
                ("logging_enabled", ctypes.c_int), ("log_dir", ctypes.c_char_p),
                ("run_name", ctypes.c_char_p), ("checkpoint_steps", ctypes.c_int)]


class vqj_checkpoint_entry(_Struct):
    _fields_ = [("prefix", ctypes.c_char_p), ("weights", ctypes.c_void_p)]


# Params structs and the C function that fills each with its defaults.
PARAMS_DEFAULTS = {
    vqj_context_params: "vqj_context_params_default",
    vqj_tokenizer_params: "vqj_tokenizer_params_default",
    vqj_codebook_params: "vqj_codebook_params_default",
    vqj_optimizer_params: "vqj_optimizer_params_default",
    vqj_encoder_params: "vqj_encoder_params_default",
    vqj_predictor_params: "vqj_predictor_params_default",
    vqj_dataset_params: "vqj_dataset_params_default",
    vqj_synthetic_params: "vqj_synthetic_params_default",
    vqj_augment_params: "vqj_augment_params_default",
    vqj_loss_params: "vqj_loss_params_default",
    vqj_trainer_params: "vqj_trainer_params_default",
}

# ---- functions ----



class Status(ctypes.c_int):
    """vqj_status: functions returning it raise the matching exception."""


P = ctypes.c_void_p  # every opaque handle
S = Status
I = ctypes.c_int
SZ = ctypes.c_size_t
F = ctypes.c_float
U64 = ctypes.c_uint64
I64 = ctypes.c_int64
STR = ctypes.c_char_p

_PROTOTYPES = {
    "vqj_version": (STR, []),
    "vqj_free": (None, [P]),
    "vqj_status_string": (STR, [I]),
    "vqj_context_create": (S, [ctypes.POINTER(vqj_context_params), ctypes.POINTER(P)]),
    "vqj_context_destroy": (None, [P]),
    "vqj_last_error": (STR, []),
    "vqj_context_device": (I, [P]),
    "vqj_context_num_threads": (I, [P]),
    "vqj_context_seed": (U64, [P]),
    "vqj_comm_mpi_available": (I, []),
    "vqj_comm_create_single": (S, [P, ctypes.POINTER(P)]),
    "vqj_comm_create_mpi": (S, [P, P, ctypes.POINTER(P)]),
    "vqj_comm_init_mpi": (S, [P, ctypes.POINTER(I), P, ctypes.POINTER(P)]),
    "vqj_comm_destroy": (None, [P]),
    "vqj_comm_rank": (I, [P]),
    "vqj_comm_size": (I, [P]),
    "vqj_comm_backend": (STR, [P]),
    "vqj_comm_allreduce": (S, [P, P, SZ, I, I]),
    "vqj_comm_allgather": (S, [P, P, SZ, P, I]),
    "vqj_comm_broadcast": (S, [P, P, SZ, I, I]),
    "vqj_comm_check_same": (S, [P, P, SZ, STR]),
    "vqj_context_set_comm": (S, [P, P]),
    "vqj_context_comm": (P, [P]),
    "vqj_device_compiled": (I, [I]),
    "vqj_tensor_create": (S, [P, I, I, ctypes.POINTER(P)]),
    "vqj_tensor_destroy": (None, [P]),
    "vqj_tensor_reshape": (S, [P, I, I]),
    "vqj_tensor_rows": (I, [P]),
    "vqj_tensor_cols": (I, [P]),
    "vqj_tensor_read": (S, [P, P, SZ]),
    "vqj_tensor_write": (S, [P, P, SZ]),
    "vqj_weights_num_tensors": (SZ, [P]),
    "vqj_weights_num_params": (SZ, [P]),
    "vqj_weights_info": (S, [P, SZ, ctypes.POINTER(vqj_weight_info)]),
    "vqj_weights_read": (S, [P, STR, P, SZ]),
    "vqj_weights_write": (S, [P, STR, P, SZ]),
    "vqj_weights_read_grad": (S, [P, STR, P, SZ]),
    "vqj_weights_zero_grad": (None, [P]),
    "vqj_weights_ema": (S, [P, P, F]),
    "vqj_tokenizer_feature_dim": (I, [ctypes.POINTER(vqj_tokenizer_params)]),
    "vqj_tokens_create": (S, [P, ctypes.POINTER(vqj_tokenizer_params), ctypes.POINTER(P)]),
    "vqj_tokens_destroy": (None, [P]),
    "vqj_tokenize": (S, [P, P, ctypes.POINTER(vqj_grid), SZ]),
    "vqj_tokens_num_grids": (SZ, [P]),
    "vqj_tokens_num_objects": (SZ, [P]),
    "vqj_tokens_feature_dim": (I, [P]),
    "vqj_tokens_offsets": (c_int32_p, [P]),
    "vqj_tokens_grid_ids": (ctypes.POINTER(ctypes.c_uint64), [P]),
    "vqj_tokens_features": (c_float_p, [P]),
    "vqj_tokens_adjacency": (c_uint8_p, [P, SZ]),
    "vqj_tokens_padded": (S, [P, P, SZ, P, P, P]),
    "vqj_arc_task_load": (S, [P, STR, ctypes.POINTER(P)]),
    "vqj_arc_task_parse": (S, [P, STR, SZ, STR, ctypes.POINTER(P)]),
    "vqj_arc_task_destroy": (None, [P]),
    "vqj_arc_task_name": (STR, [P]),
    "vqj_arc_task_num_pairs": (SZ, [P, I]),
    "vqj_arc_task_input": (ctypes.POINTER(vqj_grid), [P, I, SZ]),
    "vqj_arc_task_output": (ctypes.POINTER(vqj_grid), [P, I, SZ]),
    "vqj_codebook_create": (S, [P, ctypes.POINTER(vqj_codebook_params), ctypes.POINTER(P)]),
    "vqj_codebook_destroy": (None, [P]),
    "vqj_codebook_weights": (P, [P]),
    "vqj_codebook_forward": (S, [P, P, I, P, P, ctypes.POINTER(vqj_codebook_stats)]),
    "vqj_codebook_backward": (S, [P, P, P]),
    "vqj_codebook_ema_usage": (S, [P, P, SZ]),
    "vqj_codebook_get_progress": (S, [P, ctypes.POINTER(I64), ctypes.POINTER(I)]),
    "vqj_codebook_set_progress": (S, [P, I64, I]),
    "vqj_optimizer_create": (S, [P, ctypes.POINTER(vqj_optimizer_params), ctypes.POINTER(P), SZ,
                                 ctypes.POINTER(P)]),
    "vqj_optimizer_destroy": (None, [P]),
    "vqj_optimizer_step": (S, [P, F, ctypes.POINTER(vqj_step_info)]),
    "vqj_optimizer_zero_grad": (S, [P]),
    "vqj_optimizer_lr": (F, [P]),
    "vqj_optimizer_steps": (I64, [P]),
    "vqj_optimizer_set_steps": (S, [P, I64]),
    "vqj_optimizer_state": (P, [P]),
    "vqj_encoder_create": (S, [P, ctypes.POINTER(vqj_encoder_params), ctypes.POINTER(P)]),
    "vqj_encoder_destroy": (None, [P]),
    "vqj_encoder_weights": (P, [P]),
    "vqj_encoder_forward": (S, [P, P, I, P]),
    "vqj_encoder_backward": (S, [P, P, P]),
    "vqj_predictor_create": (S, [P, ctypes.POINTER(vqj_predictor_params), ctypes.POINTER(P)]),
    "vqj_predictor_destroy": (None, [P]),
    "vqj_predictor_weights": (P, [P]),
    "vqj_predictor_forward_context": (S, [P, P, P, P]),
    "vqj_predictor_forward_grids": (S, [P, P, P, P]),
    "vqj_predictor_backward_context": (S, [P, P, P]),
    "vqj_predictor_backward_grids": (S, [P, P, P]),
    "vqj_dataset_from_arc": (S, [P, ctypes.POINTER(vqj_dataset_params), STR, ctypes.POINTER(P)]),
    "vqj_dataset_from_jsonl": (S, [P, ctypes.POINTER(vqj_dataset_params), STR, ctypes.POINTER(P)]),
    "vqj_dataset_synthetic": (S, [P, ctypes.POINTER(vqj_dataset_params),
                                  ctypes.POINTER(vqj_synthetic_params), ctypes.POINTER(P)]),
    "vqj_dataset_destroy": (None, [P]),
    "vqj_dataset_num_examples": (SZ, [P]),
    "vqj_dataset_context_window": (I, [P]),
    "vqj_dataset_get_params": (S, [P, ctypes.POINTER(vqj_dataset_params)]),
    "vqj_dataset_example": (S, [P, SZ, ctypes.POINTER(ctypes.POINTER(vqj_grid)),
                                ctypes.POINTER(ctypes.POINTER(vqj_grid))]),
    "vqj_dataset_num_skipped": (SZ, [P]),
    "vqj_dataset_skipped_message": (STR, [P, SZ]),
    "vqj_dataset_split": (S, [P, F, U64, ctypes.POINTER(P), ctypes.POINTER(P)]),
    "vqj_dataset_shuffle": (S, [P, U64, I64, P]),
    "vqj_augment_seed": (U64, [U64, I64, SZ]),
    "vqj_batch_create": (S, [P, ctypes.POINTER(P)]),
    "vqj_batch_destroy": (None, [P]),
    "vqj_batch_fill": (S, [P, P, ctypes.POINTER(vqj_augment_params), U64, I64, P, SZ]),
    "vqj_batch_num_examples": (SZ, [P]),
    "vqj_batch_context_window": (I, [P]),
    "vqj_batch_context": (ctypes.POINTER(vqj_grid), [P]),
    "vqj_batch_targets": (ctypes.POINTER(vqj_grid), [P]),
    "vqj_augment_grid": (S, [P, ctypes.POINTER(vqj_augment_params), U64, ctypes.POINTER(vqj_grid), P]),
    "vqj_augment_example": (S, [P, ctypes.POINTER(vqj_augment_params), U64, ctypes.POINTER(vqj_grid),
                                I, ctypes.POINTER(vqj_grid), ctypes.POINTER(P)]),
    "vqj_view_palette": (S, [P, U64, ctypes.c_uint16, ctypes.POINTER(vqj_grid), P]),
    "vqj_view_flip": (S, [P, ctypes.POINTER(vqj_grid), I, P]),
    "vqj_view_translate_features": (S, [P, P, SZ, I, F, F]),
    "vqj_loss_create": (S, [P, ctypes.POINTER(vqj_loss_params), ctypes.POINTER(P)]),
    "vqj_loss_destroy": (None, [P]),
    "vqj_loss_weights": (P, [P]),
    "vqj_loss_reset": (None, [P]),
    "vqj_loss_get_values": (S, [P, ctypes.POINTER(vqj_loss_values)]),
    "vqj_loss_temperature": (S, [P, ctypes.POINTER(F)]),
    "vqj_loss_queue_fill": (S, [P, ctypes.POINTER(I)]),
    "vqj_loss_infonce": (S, [P, P, P, P, ctypes.POINTER(F)]),
    "vqj_loss_queue_push": (S, [P, P]),
    "vqj_loss_infonce_ids": (S, [P, P, P, P, P, ctypes.POINTER(F)]),
    "vqj_loss_queue_push_ids": (S, [P, P, P]),
    "vqj_loss_sigreg": (S, [P, P, U64, P, ctypes.POINTER(F)]),
    "vqj_loss_relational": (S, [P, P, P, P, P, P, P, ctypes.POINTER(F)]),
    "vqj_loss_invariance": (S, [P, I, P, P, P, ctypes.POINTER(F)]),
    "vqj_loss_invariance_tokens": (S, [P, I, P, P, P, P, P, P, ctypes.POINTER(F)]),
    "vqj_loss_add_commitment": (S, [P, F]),
    "vqj_trainer_create": (S, [P, ctypes.POINTER(vqj_trainer_params),
                               ctypes.POINTER(vqj_tokenizer_params), P, P, P, P, P, ctypes.POINTER(P)]),
    "vqj_trainer_destroy": (None, [P]),
    "vqj_trainer_step": (S, [P, ctypes.POINTER(vqj_grid), ctypes.POINTER(vqj_grid), I,
                             ctypes.POINTER(vqj_train_metrics)]),
    "vqj_trainer_step_tokens": (S, [P, P, P, ctypes.POINTER(vqj_train_metrics)]),
    "vqj_trainer_evaluate": (S, [P, ctypes.POINTER(vqj_grid), ctypes.POINTER(vqj_grid), I,
                                 ctypes.POINTER(vqj_train_metrics)]),
    "vqj_trainer_target_encoder": (P, [P]),
    "vqj_trainer_target_predictor": (P, [P]),
    "vqj_trainer_target_encoder_weights": (P, [P]),
    "vqj_trainer_target_predictor_weights": (P, [P]),
    "vqj_trainer_context_projections": (P, [P]),
    "vqj_trainer_target_projections": (P, [P]),
    "vqj_trainer_codes": (c_int32_p, [P, c_size_t_p]),
    "vqj_trainer_target_codes": (c_int32_p, [P, c_size_t_p]),
    "vqj_trainer_get_counters": (S, [P, ctypes.POINTER(I64), ctypes.POINTER(U64)]),
    "vqj_trainer_set_counters": (S, [P, I64, U64]),
    # diagnostics
    "vqj_embedding_metrics_compute": (S, [P, P, I, I, ctypes.POINTER(vqj_embedding_metrics)]),
    "vqj_metrics_window_create": (S, [P, I, I, I, ctypes.POINTER(P)]),
    "vqj_metrics_window_destroy": (None, [P]),
    "vqj_metrics_window_add_projections": (S, [P, P, P, I]),
    "vqj_metrics_window_add_codes": (S, [P, P, SZ]),
    "vqj_metrics_window_add_target_codes": (S, [P, P, SZ]),
    "vqj_metrics_window_compute": (S, [P, ctypes.POINTER(vqj_window_metrics)]),
    "vqj_metrics_window_rows": (I, [P]),
    "vqj_metrics_window_reset": (None, [P]),
    # configuration files
    "vqj_config_default": (S, [P, ctypes.POINTER(P)]),
    "vqj_config_load": (S, [P, STR, ctypes.POINTER(P)]),
    "vqj_config_parse": (S, [P, STR, SZ, STR, ctypes.POINTER(P)]),
    "vqj_config_destroy": (None, [P]),
    "vqj_config_tokenizer_params": (S, [P, P]),
    "vqj_config_encoder_params": (S, [P, P]),
    "vqj_config_codebook_params": (S, [P, P]),
    "vqj_config_predictor_params": (S, [P, P]),
    "vqj_config_loss_params": (S, [P, P]),
    "vqj_config_optimizer_params": (S, [P, P]),
    "vqj_config_trainer_params": (S, [P, P]),
    "vqj_config_dataset_params": (S, [P, P]),
    "vqj_config_augment_params": (S, [P, P]),
    "vqj_config_synthetic_params": (S, [P, P]),
    "vqj_config_run": (S, [P, ctypes.POINTER(vqj_run_params)]),
    "vqj_config_write_yaml": (S, [P, ctypes.POINTER(ctypes.c_void_p)]),
    "vqj_config_estimate_bytes": (S, [P, ctypes.POINTER(ctypes.c_uint64)]),
    "vqj_config_set": (S, [P, STR, STR]),
    # one-call constructors
    "vqj_trainer_create_from_config": (S, [P, P, ctypes.POINTER(P)]),
    "vqj_trainer_encoder": (P, [P]),
    "vqj_trainer_codebook": (P, [P]),
    "vqj_trainer_predictor": (P, [P]),
    "vqj_trainer_loss": (P, [P]),
    "vqj_trainer_optimizer": (P, [P]),
    "vqj_model_load": (S, [P, STR, ctypes.POINTER(P)]),
    "vqj_model_from_trainer": (S, [P, ctypes.POINTER(P)]),
    "vqj_model_with_tokenizer": (S, [P, ctypes.POINTER(vqj_tokenizer_params), ctypes.POINTER(P)]),
    "vqj_model_tokenizer_params": (S, [P, ctypes.POINTER(vqj_tokenizer_params)]),
    # checkpoints (present in libraries that have them)
    "vqj_checkpoint_save": (S, [P, STR, ctypes.POINTER(vqj_checkpoint_entry), SZ,
                                ctypes.POINTER(STR)]),
    "vqj_checkpoint_load": (S, [P, STR, ctypes.POINTER(vqj_checkpoint_entry), SZ, ctypes.c_uint]),
    "vqj_checkpoint_verify": (S, [P, STR]),
    "vqj_checkpoint_read_metadata": (S, [P, STR, STR, ctypes.c_char_p, SZ, c_size_t_p]),
    "vqj_trainer_save": (S, [P, STR, STR]),
    "vqj_trainer_save_with_metadata": (S, [P, STR, STR, ctypes.POINTER(STR)]),
    "vqj_trainer_load": (S, [P, STR]),
    # inference (thread-safe)
    "vqj_model_create": (S, [P, ctypes.POINTER(vqj_tokenizer_params), P, P, P, P, P,
                             ctypes.POINTER(P)]),
    "vqj_model_destroy": (None, [P]),
    "vqj_model_embedding_dim": (I, [P]),
    "vqj_model_max_objects": (I, [P]),
    "vqj_model_context_window": (I, [P]),
    "vqj_model_num_codes": (I, [P]),
    "vqj_model_num_quantizers": (I, [P]),
    "vqj_model_encode_grid_levels": (S, [P, ctypes.POINTER(vqj_grid), P, P, c_size_t_p]),
    "vqj_model_encode_grid": (S, [P, ctypes.POINTER(vqj_grid), P, c_size_t_p, P]),
    "vqj_model_encode_grids": (S, [P, ctypes.POINTER(vqj_grid), SZ, P, c_size_t_p, P]),
    "vqj_model_predict": (S, [P, ctypes.POINTER(vqj_grid), SZ, P]),
    "vqj_model_predict_batch": (S, [P, ctypes.POINTER(vqj_grid), SZ, P]),
    "vqj_eval_set_from_tasks": (S, [P, P, SZ, I, P]),
    "vqj_eval_set_from_dataset": (S, [P, P, P]),
    "vqj_eval_set_load": (S, [P, ctypes.c_char_p, I, P]),
    "vqj_eval_set_destroy": (None, [P]),
    "vqj_eval_set_num_queries": (SZ, [P]),
    "vqj_eval_set_num_candidates": (SZ, [P]),
    "vqj_eval_set_context_window": (I, [P]),
    "vqj_eval_model": (S, [P, P, ctypes.POINTER(vqj_eval_result)]),
    "vqj_eval_baseline": (S, [P, P, I, ctypes.POINTER(vqj_eval_result)]),
    "vqj_latent_distance": (S, [P, P, I, ctypes.POINTER(F)]),
}
for _name in PARAMS_DEFAULTS.values():
    _PROTOTYPES[_name] = (None, [P])  # takes a pointer to a (possibly larger) buffer


def _check(result, func, args):
    """errcheck of every function returning a vqj_status: raise on failure,
    with the message the library left for this thread (read at once)."""
    status = result.value if isinstance(result, ctypes.c_int) else int(result)
    if status != 0:
        msg = fn.vqj_last_error()
        msg = msg.decode("utf-8", "replace") if msg else ""
        if not msg:
            name = fn.vqj_status_string(status)
            msg = "%s: %s" % (func.__name__, name.decode() if name else "status %d" % status)
        raise error_for(status, msg)
    return status


class _Missing:
    """A C function this library build does not export."""

    def __init__(self, name):
        self.name = name

    def __call__(self, *args):
        raise UnsupportedError(3, "%s: not exported by the loaded libvqjepa (%s, version %s)"
                               % (self.name, path, version()))

    def __bool__(self):
        return False


class _Functions:
    pass


fn = _Functions()
for _name, (_res, _args) in _PROTOTYPES.items():
    try:
        _f = getattr(lib, _name)
    except AttributeError:
        setattr(fn, _name, _Missing(_name))
        continue
    _f.restype = _res
    _f.argtypes = _args
    if _res is Status:
        _f.errcheck = _check
    setattr(fn, _name, _f)


def declare(name, restype, argtypes):
    """Declare a function not in the table (used for APIs newer than it)."""
    try:
        f = getattr(lib, name)
    except AttributeError:
        f = _Missing(name)
        setattr(fn, name, f)
        return f
    f.restype = restype
    f.argtypes = argtypes
    if restype is Status:
        f.errcheck = _check
    setattr(fn, name, f)
    return f


def version():
    return fn.vqj_version().decode()


def last_error():
    msg = fn.vqj_last_error()
    return msg.decode("utf-8", "replace") if msg else ""


def defaults(struct_type):
    """A params struct filled by its C default function.

    The C function writes sizeof() of the library's struct, which may be
    larger than this binding's when the library is newer: it writes into a
    scratch buffer, and the fields this binding knows are copied out, with
    `size` set to this binding's struct size.
    """
    scratch = ctypes.create_string_buffer(max(4096, ctypes.sizeof(struct_type)))
    getattr(fn, PARAMS_DEFAULTS[struct_type])(ctypes.cast(scratch, ctypes.c_void_p))
    c_size = ctypes.c_size_t.from_buffer(scratch).value
    params = struct_type.from_buffer_copy(scratch.raw[:ctypes.sizeof(struct_type)])
    params.size = ctypes.sizeof(struct_type)
    return params, c_size

