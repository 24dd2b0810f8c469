/* Configuration files: YAML (libyaml) in the layout of the reference
 * system's files, mapped onto the params structs of every module plus the
 * run-level settings (docs/config.md).
 *
 * One table, keys[], holds each key's path, type, range and storage. The
 * parser, the range checks, the writer and the tests all read it, so a
 * key's range is written once. The defaults are not in the table: a config
 * starts from the modules' own *_params_default() functions, so the library
 * has one set of defaults. The modules' create-time checks are static to
 * their files; tests/test_config.c checks at the range boundaries that
 * every value this table accepts is accepted by the module too. */
#include "config/config.h"
#include "core/params.h"

#include <yaml.h>

#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_KEYS 128
#define MAX_PATH 96

struct vqj_config {
    vqj_context *ctx;
    /* Module params, filled by their default functions. Fields that several
     * modules share live in one place and are copied out by the getters:
     * encoder.hidden_dim (codebook.dim, predictor.hidden_dim),
     * dataset.context_window (predictor), tokenizer.max_objects (loss),
     * tokenizer.background (trainer, augment), predictor.projection_*
     * (loss.projection_dim). */
    vqj_tokenizer_params tok;
    vqj_encoder_params enc;
    vqj_codebook_params cb;
    vqj_predictor_params pred;
    vqj_loss_params loss;
    vqj_optimizer_params opt;
    vqj_trainer_params tr;
    vqj_dataset_params ds;
    vqj_augment_params aug;
    vqj_synthetic_params syn;

    /* Run-level settings (vqj_run_params). */
    uint64_t seed;
    int epochs, batch_size, shuffle, checkpoint_interval, checkpoint_steps;
    int device;
    int es_enabled, es_patience, es_mode;
    float es_min_delta;
    int diag_enabled, diag_interval, diag_max_samples;
    int log_enabled;
    char *dataset_manifest, *arc_path, *checkpoint_dir, *log_dir, *run_name;

    /* Keys without a params field of their own. */
    int relational;                                    /* 0: the encoder gets 0 layers */
    int model_projection_dim, model_projection_layers; /* model.* duplicates of loss.* */
    int activation;                                    /* a single-valued enum */
    float norm_type;                                   /* always 2 */

    int lines[MAX_KEYS]; /* 1-based line that set key i; 0: the default */
};

/* ------------------------------------------------------------ the table */

typedef enum key_kind {
    K_INT,        /* int, [ilo, ihi] */
    K_I64,        /* int64_t, [ilo, ihi] */
    K_U64,        /* uint64_t, any non-negative integer */
    K_FLOAT,      /* float, flo..fhi with the open/closed flags */
    K_BOOL,       /* int 0/1 */
    K_STR,        /* char *, NULL for null */
    K_ENUM,       /* int, one of names[] -> values[] */
    K_BACKGROUND, /* uint16_t mask from a color or a list of colors */
    K_SYMMETRY,   /* int bits from a list of "horizontal", "vertical" */
    K_BETAS,      /* optimizer beta1, beta2 from [b1, b2] */
    K_LEVELS,     /* int[VQJ_FSQ_MAX_LEVELS] from a list of integers in [ilo, ihi], 0-ended */
    K_NORM_TYPE   /* must be 2 */
} key_kind;

enum { LO_OPEN = 1, HI_OPEN = 2, HI_INF = 4 };

typedef struct key_def {
    const char *path;
    key_kind kind;
    size_t offset;
    long long ilo, ihi;
    double flo, fhi;
    unsigned flags;
    const char *const *names; /* K_ENUM, NULL-terminated */
    const int *values;
    int ext; /* this library's key, not in the reference files */
} key_def;

#define OFF(f) offsetof(struct vqj_config, f)
#define KINT(p, f, lo, hi) {.path = p, .kind = K_INT, .offset = OFF(f), .ilo = lo, .ihi = hi}
/* An integer key whose range is a row of core/limits.h. */
#define KLIM(p, f, name) KINT(p, f, VQJI_LO_##name, VQJI_HI_##name)
#define KI64(p, f, lo, hi) {.path = p, .kind = K_I64, .offset = OFF(f), .ilo = lo, .ihi = hi}
#define KU64(p, f) {.path = p, .kind = K_U64, .offset = OFF(f)}
#define KFLT(p, f, lo, hi, fl)                                                                 \
    {.path = p, .kind = K_FLOAT, .offset = OFF(f), .flo = lo, .fhi = hi, .flags = fl}
#define KBOOL(p, f) {.path = p, .kind = K_BOOL, .offset = OFF(f)}
#define KSTR(p, f) {.path = p, .kind = K_STR, .offset = OFF(f)}
#define KENUM(p, f, n, v) {.path = p, .kind = K_ENUM, .offset = OFF(f), .names = n, .values = v}
#define EXT .ext = 1

/* Enum fields are stored through an int. */
_Static_assert(sizeof(vqj_optimizer_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(vqj_lr_schedule) == sizeof(int), "enum size");
_Static_assert(sizeof(vqj_activation) == sizeof(int), "enum size");
_Static_assert(sizeof(vqj_aggregator) == sizeof(int), "enum size");
_Static_assert(sizeof(vqj_ema_passes) == sizeof(int), "enum size");
_Static_assert(sizeof(vqj_quantizer) == sizeof(int), "enum size");
_Static_assert(sizeof(vqj_gradient_estimator) == sizeof(int), "enum size");

static const char *const opt_names[] = {"adam", "adamw", NULL};
static const int opt_values[] = {VQJ_OPT_ADAM, VQJ_OPT_ADAMW};
static const char *const sched_names[] = {"cosine", "linear", "constant", NULL};
static const int sched_values[] = {VQJ_LR_COSINE, VQJ_LR_LINEAR, VQJ_LR_CONSTANT};
static const char *const act_names[] = {"relu", "gelu", "tanh", "none", NULL};
static const int act_values[] = {VQJ_ACT_RELU, VQJ_ACT_GELU, VQJ_ACT_TANH, VQJ_ACT_NONE};
static const char *const agg_names[] = {"mean", "last", "attention", "gru", NULL};
static const int agg_values[] = {VQJ_AGG_MEAN, VQJ_AGG_LAST, VQJ_AGG_ATTENTION, VQJ_AGG_GRU};
static const char *const ema_passes_names[] = {"main", "all_online", NULL};
static const int ema_passes_values[] = {VQJ_EMA_PASSES_MAIN, VQJ_EMA_PASSES_ALL_ONLINE};
static const char *const vq_path_names[] = {"straight_through", "beside", NULL};
static const int vq_path_values[] = {VQJ_VQ_STRAIGHT_THROUGH, VQJ_VQ_BESIDE};
_Static_assert(sizeof(vqj_vq_path) == sizeof(int), "enum size");
static const char *const grad_names[] = {"straight_through", "rotation", NULL};
static const int grad_values[] = {VQJ_GRADIENT_STRAIGHT_THROUGH, VQJ_GRADIENT_ROTATION};
static const char *const quant_names[] = {"euclidean", "cosine", "fsq", "simvq", "residual",
                                          NULL};
static const int quant_values[] = {VQJ_QUANTIZER_EUCLIDEAN, VQJ_QUANTIZER_COSINE,
                                   VQJ_QUANTIZER_FSQ, VQJ_QUANTIZER_SIMVQ,
                                   VQJ_QUANTIZER_RESIDUAL};
static const char *const device_names[] = {"cpu", "cuda", NULL};
static const int device_values[] = {VQJ_DEVICE_CPU, VQJ_DEVICE_CUDA};
static const char *const mode_names[] = {"min", "max", NULL};
static const int mode_values[] = {VQJ_EARLY_STOPPING_MIN, VQJ_EARLY_STOPPING_MAX};
static const char *const conn_names[] = {"4", "8", NULL};
static const int conn_values[] = {4, 8};
/* The encoder's activation is GELU (DESIGN.md 3.1-3.2). */
static const char *const gelu_names[] = {"gelu", NULL};
static const char *const objective_names[] = {"infonce", "sigreg", NULL};
static const int objective_values[] = {VQJ_OBJECTIVE_INFONCE, VQJ_OBJECTIVE_SIGREG};
_Static_assert(sizeof(vqj_objective) == sizeof(int), "enum size");
static const int zero_values[] = {0};

/* Ranges: the modules' documented ranges (include/vqjepa_stages.h), intersected
 * where one key feeds several modules. Order: the writer's. */
static const key_def keys[] = {
    KU64("seed", seed),
    KSTR("dataset_manifest", dataset_manifest),

    KLIM("data.context_window", ds.context_window, CONTEXT_WINDOW), /* predictor 1..1024 */
    KLIM("data.target_offset", ds.target_offset, TARGET_OFFSET),
    KBOOL("data.shuffle", shuffle),
    KFLT("data.validation.split", ds.validation_split, 0, 1, HI_OPEN),
    KU64("data.validation.seed", ds.validation_seed),
    {.path = "data.arc_path", .kind = K_STR, .offset = OFF(arc_path), EXT},
    {.path = "data.skip_bad", .kind = K_BOOL, .offset = OFF(ds.skip_bad), EXT},
    {.path = "data.max_examples_per_task", .kind = K_INT, .offset = OFF(ds.max_examples_per_task),
     .ilo = 0, .ihi = INT_MAX, EXT},

    KLIM("tokenizer.max_objects", tok.max_objects, MAX_OBJECTS), /* tokenizer and loss */
    KLIM("tokenizer.max_color_features", tok.max_color_features, MAX_COLOR_FEATURES),
    {.path = "tokenizer.background", .kind = K_BACKGROUND, .offset = OFF(tok.background)},
    KENUM("tokenizer.connectivity", tok.connectivity, conn_names, conn_values),
    KBOOL("tokenizer.normalize", tok.normalize),
    KBOOL("tokenizer.respect_colors", tok.respect_colors),

    /* encoder and predictor; the codebook's dim allows more */
    KLIM("object_encoder.hidden_dim", enc.hidden_dim, HIDDEN_DIM),
    KLIM("object_encoder.num_embeddings", cb.num_embeddings, NUM_EMBEDDINGS),
    KFLT("object_encoder.commitment_cost", cb.commitment_cost, 0, 0, HI_INF),
    KFLT("object_encoder.ema_decay", cb.ema_decay, 0, 1, HI_OPEN),
    KBOOL("object_encoder.vq_enabled", cb.enabled),
    KBOOL("object_encoder.vq_refresh_enabled", cb.refresh_enabled),
    KINT("object_encoder.vq_refresh_interval", cb.refresh_interval, 1, INT_MAX),
    KFLT("object_encoder.vq_refresh_usage_threshold", cb.refresh_usage_threshold, 0, 1, 0),
    KENUM("object_encoder.activation", activation, gelu_names, zero_values),
    KBOOL("object_encoder.relational", relational),
    KLIM("object_encoder.relational_layers", enc.relational_layers, RELATIONAL_LAYERS),
    KLIM("object_encoder.relational_heads", enc.relational_heads, RELATIONAL_HEADS), /* | D */
    KFLT("object_encoder.relational_dropout", enc.relational_dropout, 0, 1, HI_OPEN),
    {.path = "object_encoder.vq_kmeans_init", .kind = K_BOOL, .offset = OFF(cb.kmeans_init), EXT},
    {.path = "object_encoder.ema_update_passes", .kind = K_ENUM,
     .offset = OFF(tr.ema_update_passes), .names = ema_passes_names, .values = ema_passes_values,
     EXT},
    {.path = "object_encoder.dead_code_threshold", .kind = K_FLOAT,
     .offset = OFF(cb.dead_code_threshold), .flo = 0, .fhi = 0, .flags = HI_INF, EXT},
    {.path = "object_encoder.quantizer", .kind = K_ENUM, .offset = OFF(cb.quantizer),
     .names = quant_names, .values = quant_values, EXT},
    {.path = "object_encoder.code_dim", .kind = K_INT, .offset = OFF(cb.code_dim),
     .ilo = VQJI_LO_CODE_DIM, .ihi = VQJI_HI_CODE_DIM, EXT},
    {.path = "object_encoder.fsq_levels", .kind = K_LEVELS, .offset = OFF(cb.fsq_levels),
     .ilo = VQJI_LO_FSQ_LEVEL, .ihi = VQJI_HI_FSQ_LEVEL, EXT},
    {.path = "object_encoder.vq_path", .kind = K_ENUM, .offset = OFF(pred.vq_path),
     .names = vq_path_names, .values = vq_path_values, EXT},
    {.path = "object_encoder.grid_features", .kind = K_BOOL, .offset = OFF(pred.grid_features),
     EXT},
    {.path = "object_encoder.gradient_estimator", .kind = K_ENUM,
     .offset = OFF(cb.gradient_estimator), .names = grad_names, .values = grad_values, EXT},
    {.path = "object_encoder.dead_code_max_per_step", .kind = K_INT,
     .offset = OFF(cb.dead_code_max_per_step), .ilo = VQJI_LO_DEAD_CODE_MAX_PER_STEP,
     .ihi = VQJI_HI_DEAD_CODE_MAX_PER_STEP, EXT},
    {.path = "object_encoder.num_quantizers", .kind = K_INT, .offset = OFF(cb.num_quantizers),
     .ilo = 1, .ihi = VQJ_MAX_QUANTIZERS, EXT},
    {.path = "object_encoder.num_groups", .kind = K_INT, .offset = OFF(cb.num_groups),
     .ilo = 1, .ihi = VQJ_MAX_GROUPS, EXT},

    KLIM("model.projection_dim", model_projection_dim, PROJECTION_DIM),
    KLIM("model.projection_layers", model_projection_layers, PROJECTION_LAYERS),
    {.path = "model.aggregator", .kind = K_ENUM, .offset = OFF(pred.aggregator),
     .names = agg_names, .values = agg_values, EXT},
    {.path = "model.slot_embedding", .kind = K_BOOL, .offset = OFF(pred.slot_embedding), EXT},
    {.path = "model.analogy_residual", .kind = K_BOOL, .offset = OFF(pred.analogy_residual), EXT},
    {.path = "model.final_activation", .kind = K_BOOL, .offset = OFF(pred.final_activation),
     EXT},

    KENUM("optimizer.name", opt.kind, opt_names, opt_values),
    KFLT("optimizer.lr", opt.lr, 0, 0, HI_INF),
    KFLT("optimizer.weight_decay", opt.weight_decay, 0, 0, HI_INF),
    {.path = "optimizer.betas", .kind = K_BETAS, .offset = OFF(opt.beta1), .flo = 0, .fhi = 1,
     .flags = HI_OPEN, EXT},
    {.path = "optimizer.eps", .kind = K_FLOAT, .offset = OFF(opt.eps), .flo = 0, .fhi = 0,
     .flags = LO_OPEN | HI_INF, EXT},

    KLIM("training.batch_size", batch_size, BATCH_SIZE),
    KLIM("training.grad_accum_steps", tr.grad_accum_steps, GRAD_ACCUM_STEPS),
    KLIM("training.epochs", epochs, EPOCHS),
    KSTR("training.checkpoint_dir", checkpoint_dir),
    KLIM("training.checkpoint_interval", checkpoint_interval, CHECKPOINT_INTERVAL),
    {.path = "training.checkpoint_steps", .kind = K_INT, .offset = OFF(checkpoint_steps),
     .ilo = VQJI_LO_CHECKPOINT_STEPS, .ihi = VQJI_HI_CHECKPOINT_STEPS, EXT},
    KENUM("training.device", device, device_names, device_values),
    KFLT("training.grad_clip.max_norm", opt.max_grad_norm, 0, 0, HI_INF),
    {.path = "training.grad_clip.norm_type", .kind = K_NORM_TYPE, .offset = OFF(norm_type)},
    KENUM("training.lr_scheduler.name", opt.schedule, sched_names, sched_values),
    KI64("training.lr_scheduler.warmup_steps", opt.warmup_steps, 0, INT64_MAX),
    KFLT("training.lr_scheduler.min_lr_scale", opt.min_lr_scale, 0, 1, 0),
    KI64("training.lr_scheduler.total_steps", opt.total_steps, 0, INT64_MAX),
    KBOOL("training.early_stopping.enabled", es_enabled),
    KLIM("training.early_stopping.patience", es_patience, EARLY_STOPPING_PATIENCE),
    KFLT("training.early_stopping.min_delta", es_min_delta, 0, 0, HI_INF),
    KENUM("training.early_stopping.mode", es_mode, mode_names, mode_values),

    KFLT("augmentations.mask_ratio", aug.mask_ratio, 0, 1, 0),
    KLIM("augmentations.random_crop_radius", aug.random_crop_radius, RANDOM_CROP_RADIUS),
    KBOOL("augmentations.palette_permutation", aug.palette_permutation),
    KFLT("augmentations.gaussian_noise_std", aug.gaussian_noise_std, 0, 0, HI_INF),
    KINT("augmentations.min_grid_size_for_crop", aug.min_grid_size_for_crop, 0, INT_MAX),
    {.path = "augmentations.object_dropout", .kind = K_FLOAT, .offset = OFF(tr.object_dropout),
     .flo = 0, .fhi = 1, .flags = HI_OPEN, EXT},

    KENUM("loss.objective", loss.objective, objective_names, objective_values),
    /* temperature is also checked against [temperature_min, temperature_max] */
    KFLT("loss.temperature", loss.temperature, 0, 0, LO_OPEN | HI_INF),
    KFLT("loss.temperature_min", loss.temperature_min, 0, 0, LO_OPEN | HI_INF),
    KFLT("loss.temperature_max", loss.temperature_max, 0, 0, LO_OPEN | HI_INF),
    KBOOL("loss.learnable_temperature", loss.learnable_temperature),
    KLIM("loss.queue_size", loss.queue_size, QUEUE_SIZE),
    KLIM("loss.projection_dim", pred.projection_dim, PROJECTION_DIM), /* predictor and loss */
    KLIM("loss.projection_layers", pred.projection_layers, PROJECTION_LAYERS),
    KENUM("loss.projection_activation", pred.projection_activation, act_names, act_values),
    KBOOL("loss.use_target_encoder", tr.use_target_encoder),
    KFLT("loss.target_ema_decay", tr.target_ema_decay, 0, 1, 0),
    {.path = "loss.infonce_weight", .kind = K_FLOAT, .offset = OFF(loss.infonce_weight),
     .flags = HI_INF, EXT},
    {.path = "loss.mask_duplicate_negatives", .kind = K_BOOL,
     .offset = OFF(loss.mask_duplicate_negatives), EXT},

    KFLT("sigreg.weight", loss.sigreg_weight, 0, 0, HI_INF),
    KLIM("sigreg.num_slices", loss.sigreg_num_slices, SIGREG_NUM_SLICES),
    KLIM("sigreg.num_points", loss.sigreg_num_points, SIGREG_NUM_POINTS),

    KFLT("invariance.color_weight", loss.color_weight, 0, 0, HI_INF),
    KFLT("invariance.translation_weight", loss.translation_weight, 0, 0, HI_INF),
    KFLT("invariance.translation_max_delta", tr.translation_max_delta, 0, 1, 0),
    KFLT("invariance.symmetry_weight", loss.symmetry_weight, 0, 0, HI_INF),
    {.path = "invariance.symmetry_modes", .kind = K_SYMMETRY, .offset = OFF(tr.symmetry_modes)},

    KFLT("relational_loss.weight", loss.relational_weight, 0, 0, HI_INF),
    KFLT("relational_loss.context_self_weight", loss.context_self_weight, 0, 0, HI_INF),

    KBOOL("logging.enabled", log_enabled),
    KSTR("logging.log_dir", log_dir),
    KSTR("logging.run_name", run_name),

    KBOOL("diagnostics.embedding_metrics.enabled", diag_enabled),
    KINT("diagnostics.embedding_metrics.interval", diag_interval, 1, INT_MAX),
    KLIM("diagnostics.embedding_metrics.max_samples", diag_max_samples, METRICS_MAX_SAMPLES),

    /* The built-in generator, used when neither dataset_manifest nor
     * data.arc_path is given; min <= max is checked after parsing. */
    {.path = "synthetic.num_examples", .kind = K_INT, .offset = OFF(syn.num_examples),
     .ilo = VQJI_LO_SYNTHETIC_NUM_EXAMPLES, .ihi = VQJI_HI_SYNTHETIC_NUM_EXAMPLES, EXT},
    {.path = "synthetic.seed", .kind = K_U64, .offset = OFF(syn.seed), EXT},
    {.path = "synthetic.min_side", .kind = K_INT, .offset = OFF(syn.min_side),
     .ilo = VQJI_LO_SYNTHETIC_SIDE, .ihi = VQJI_HI_SYNTHETIC_SIDE, EXT},
    {.path = "synthetic.max_side", .kind = K_INT, .offset = OFF(syn.max_side),
     .ilo = VQJI_LO_SYNTHETIC_SIDE, .ihi = VQJI_HI_SYNTHETIC_SIDE, EXT},
    {.path = "synthetic.min_colors", .kind = K_INT, .offset = OFF(syn.min_colors),
     .ilo = VQJI_LO_SYNTHETIC_COLORS, .ihi = VQJI_HI_SYNTHETIC_COLORS, EXT},
    {.path = "synthetic.max_colors", .kind = K_INT, .offset = OFF(syn.max_colors),
     .ilo = VQJI_LO_SYNTHETIC_COLORS, .ihi = VQJI_HI_SYNTHETIC_COLORS, EXT},
    {.path = "synthetic.max_primitives", .kind = K_INT, .offset = OFF(syn.max_primitives),
     .ilo = VQJI_LO_SYNTHETIC_PRIMITIVES, .ihi = VQJI_HI_SYNTHETIC_PRIMITIVES, EXT},
};
#define NUM_KEYS (sizeof keys / sizeof keys[0])
_Static_assert(sizeof keys / sizeof keys[0] <= MAX_KEYS, "raise MAX_KEYS");

/* Keys of the reference system's files that this library does not
 * implement: accepted, named in one warning each. A section stands for
 * every key under it. */
static const char *const ignored[] = {
    "model.type",          /* the reference's conv encoder; ours is the relational one */
    "model.embedding_dim", /* width of that conv encoder */
    "training.num_workers",     "training.drop_last", "training.mixed_precision",
    "training.pin_memory",      "logging.flush_secs",
    "pre_tokenized", /* the reference's token cache; tokenizing is cheap here */
};
#define NUM_IGNORED (sizeof ignored / sizeof ignored[0])

static int find_key(const char *path)
{
    for (size_t i = 0; i < NUM_KEYS; i++)
        if (strcmp(keys[i].path, path) == 0)
            return (int)i;
    return -1;
}

static void *field(vqj_config *c, const key_def *k)
{
    return (char *)c + k->offset;
}

static const void *cfield(const vqj_config *c, const key_def *k)
{
    return (const char *)c + k->offset;
}

/* ------------------------------------------------------- default & destroy */

static void set_defaults(vqj_config *c)
{
    vqj_tokenizer_params_default(&c->tok);
    /* Keep the objects that matter: 64, not the struct default of 16, which
     * drops most objects of ARC grids (docs/tokenizer.md). The reference
     * configurations say 16. */
    c->tok.max_objects = 64;
    vqj_encoder_params_default(&c->enc);
    vqj_codebook_params_default(&c->cb);
    vqj_predictor_params_default(&c->pred);
    vqj_loss_params_default(&c->loss);
    vqj_optimizer_params_default(&c->opt);
    vqj_trainer_params_default(&c->tr);
    vqj_dataset_params_default(&c->ds);
    vqj_augment_params_default(&c->aug);
    vqj_synthetic_params_default(&c->syn);
    /* The seed's gentle run (jepa_vq_gentle.yaml) for what no module holds. */
    vqj_context_params cp;
    vqj_context_params_default(&cp);
    c->seed = cp.seed;
    c->epochs = 30;
    c->batch_size = 512;
    c->shuffle = 1;
    c->checkpoint_interval = 5;
    c->checkpoint_steps = 100;
    c->device = VQJ_DEVICE_CPU;
    c->es_enabled = 1;
    c->es_patience = 20;
    c->es_mode = VQJ_EARLY_STOPPING_MIN;
    c->es_min_delta = 0.01f;
    c->diag_enabled = 1;
    c->diag_interval = 200;
    c->diag_max_samples = 4096;
    c->log_enabled = 1;
    c->relational = c->enc.relational_layers > 0;
    c->model_projection_dim = c->pred.projection_dim;
    c->model_projection_layers = c->pred.projection_layers;
    c->norm_type = 2.0f;
}

static vqj_status dup_string(const vqj_context *ctx, const char *s, size_t n, char **out)
{
    char *p;
    vqj_status st = vqji_malloc(ctx, n + 1, "a configuration string", (void **)&p);
    if (st)
        return st;
    memcpy(p, s, n);
    p[n] = '\0';
    *out = p;
    return VQJ_OK;
}

static vqj_status new_config(vqj_context *ctx, vqj_config **out)
{
    vqj_config *c;
    vqj_status st = vqji_calloc(ctx, 1, sizeof *c, "the configuration", (void **)&c);
    if (st)
        return st;
    c->ctx = ctx;
    set_defaults(c);
    if ((st = dup_string(ctx, "checkpoints", 11, &c->checkpoint_dir)) ||
        (st = dup_string(ctx, "logs", 4, &c->log_dir)) ||
        (st = dup_string(ctx, "vqjepa", 6, &c->run_name))) {
        vqj_config_destroy(c);
        return st;
    }
    *out = c;
    return VQJ_OK;
}

void vqj_config_destroy(vqj_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->dataset_manifest);
    free(cfg->arc_path);
    free(cfg->checkpoint_dir);
    free(cfg->log_dir);
    free(cfg->run_name);
    free(cfg);
}

vqj_status vqj_config_default(vqj_context *ctx, vqj_config **out)
{
    if (!ctx || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_config_default: NULL argument");
    vqji_clear_error(ctx);
    return new_config(ctx, out);
}

/* ------------------------------------------------------------ the parser */

typedef struct parser {
    vqj_config *cfg;
    yaml_document_t *doc;
    const char *name;
} parser;

static size_t line_of(const yaml_node_t *n)
{
    return n->start_mark.line + 1;
}

static int is_plain(const yaml_node_t *n)
{
    return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ||
           n->data.scalar.style == YAML_ANY_SCALAR_STYLE;
}

static const char *text_of(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

static int is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || !is_plain(n))
        return 0;
    const char *s = text_of(n);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

/* How a value reads in a message: scalars as written (quoted ones with
 * their quotes), cut to a readable length; containers by kind. */
static const char *describe(const yaml_node_t *n, char *buf, size_t size)
{
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    if (is_null(n))
        return "null";
    const char *s = text_of(n);
    const int cut = strlen(s) > 60;
    snprintf(buf, size, is_plain(n) ? "%.60s%s" : "\"%.60s%s\"", s, cut ? "..." : "");
    return buf;
}

static vqj_status bad_value(const parser *p, const yaml_node_t *n, const char *path,
                            const char *fmt, ...) VQJI_PRINTF(4, 5);

/* "FILE:LINE: path is VALUE; it must be <what>" */
static vqj_status bad_value(const parser *p, const yaml_node_t *n, const char *path,
                            const char *fmt, ...)
{
    char what[256], vbuf[80];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return vqji_fail(p->cfg->ctx, VQJ_ERR_INVALID_ARGUMENT, "%s:%zu: %s is %s; it must be %s",
                     p->name, line_of(n), path, describe(n, vbuf, sizeof vbuf), what);
}

static void range_text(const key_def *k, char *buf, size_t size)
{
    if (k->kind == K_INT || k->kind == K_I64 || k->kind == K_LEVELS) {
        snprintf(buf, size, "[%lld, %lld]", k->ilo, k->ihi);
        return;
    }
    char hi[32];
    if (k->flags & HI_INF)
        snprintf(hi, sizeof hi, "inf)");
    else
        snprintf(hi, sizeof hi, "%g%c", k->fhi, (k->flags & HI_OPEN) ? ')' : ']');
    snprintf(buf, size, "%c%g, %s", (k->flags & LO_OPEN) ? '(' : '[', k->flo, hi);
}

/* Decimal integer, optional sign, '_' between digits as YAML 1.1 allows. */
static int parse_ll(const char *s, long long *out, int *overflow)
{
    char buf[64];
    size_t n = 0;
    *overflow = 0;
    if (*s == '+' || *s == '-')
        buf[n++] = *s++;
    if (!(*s >= '0' && *s <= '9'))
        return 0;
    for (; *s; s++) {
        if (*s == '_')
            continue;
        if (!(*s >= '0' && *s <= '9') || n + 1 >= sizeof buf)
            return 0;
        buf[n++] = *s;
    }
    buf[n] = '\0';
    errno = 0;
    char *end;
    *out = strtoll(buf, &end, 10);
    if (errno == ERANGE)
        *overflow = 1;
    return *end == '\0';
}

/* A YAML number in any locale: strtod reads the C locale's decimal point
 * only when the host program left LC_NUMERIC alone, so the point is
 * swapped for the current one first (as jansson does). Returns 0 for text
 * that is not a number; .inf and .nan read as such. */
static int parse_double(const char *s, double *out)
{
    const char *t = (*s == '+' || *s == '-') ? s + 1 : s;
    if (!strcmp(t, ".inf") || !strcmp(t, ".Inf") || !strcmp(t, ".INF")) {
        *out = *s == '-' ? -INFINITY : INFINITY;
        return 1;
    }
    if (!strcmp(t, ".nan") || !strcmp(t, ".NaN") || !strcmp(t, ".NAN")) {
        *out = NAN;
        return 1;
    }
    char buf[64];
    size_t n = 0;
    int digits = 0;
    const char point = localeconv()->decimal_point[0];
    for (; *s; s++) {
        char ch = *s;
        if (ch == '_')
            continue;
        if (ch >= '0' && ch <= '9')
            digits = 1;
        else if (ch == '.')
            ch = point;
        else if (ch != '+' && ch != '-' && ch != 'e' && ch != 'E')
            return 0;
        if (n + 1 >= sizeof buf)
            return 0;
        buf[n++] = ch;
    }
    buf[n] = '\0';
    if (!digits)
        return 0;
    char *end;
    *out = strtod(buf, &end);
    return *end == '\0';
}

static int parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On",
                                      "ON"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off",
                                     "OFF"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        if (!strcmp(s, yes[i])) {
            *out = 1;
            return 1;
        }
        if (!strcmp(s, no[i])) {
            *out = 0;
            return 1;
        }
    }
    return 0;
}

static int in_float_range(const key_def *k, float v)
{
    if (!isfinite(v))
        return 0;
    if ((k->flags & LO_OPEN) ? !(v > k->flo) : !(v >= k->flo))
        return 0;
    if (k->flags & HI_INF)
        return 1;
    return (k->flags & HI_OPEN) ? v < k->fhi : v <= k->fhi;
}

static vqj_status parse_float(const parser *p, const key_def *k, const yaml_node_t *n,
                              const char *path, float *out)
{
    char range[64];
    range_text(k, range, sizeof range);
    double d;
    if (n->type != YAML_SCALAR_NODE || !is_plain(n) || !parse_double(text_of(n), &d))
        return bad_value(p, n, path, "a number in %s", range);
    /* Checked after the conversion: 0.9999999999 is 1 as a float. */
    const float f = (float)d;
    if (!in_float_range(k, f))
        return bad_value(p, n, path, "in %s", range);
    *out = f;
    return VQJ_OK;
}

static vqj_status parse_int(const parser *p, const key_def *k, const yaml_node_t *n,
                            const char *path, long long *out)
{
    char range[64];
    range_text(k, range, sizeof range);
    long long v;
    int overflow;
    if (n->type != YAML_SCALAR_NODE || !is_plain(n) || !parse_ll(text_of(n), &v, &overflow))
        return bad_value(p, n, path, "an integer in %s", range);
    if (overflow || v < k->ilo || v > k->ihi)
        return bad_value(p, n, path, "in %s", range);
    *out = v;
    return VQJ_OK;
}

static vqj_status parse_u64(const parser *p, const yaml_node_t *n, const char *path,
                            uint64_t *out)
{
    long long ignored_;
    int overflow;
    const char *s = n->type == YAML_SCALAR_NODE ? text_of(n) : "";
    if (n->type != YAML_SCALAR_NODE || !is_plain(n) || *s == '-' ||
        !parse_ll(s, &ignored_, &overflow))
        return bad_value(p, n, path, "an integer in [0, %llu]", (unsigned long long)UINT64_MAX);
    char buf[64];
    size_t m = 0;
    for (s += *s == '+'; *s && m + 1 < sizeof buf; s++)
        if (*s != '_')
            buf[m++] = *s;
    buf[m] = '\0';
    errno = 0;
    unsigned long long v = strtoull(buf, NULL, 10);
    if (errno == ERANGE)
        return bad_value(p, n, path, "in [0, %llu]", (unsigned long long)UINT64_MAX);
    *out = (uint64_t)v;
    return VQJ_OK;
}

static void names_text(const char *const *names, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; names[i]; i++) {
        int w = snprintf(buf + used, size - used, "%s%s",
                         i == 0 ? "" : (names[i + 1] ? ", " : " or "), names[i]);
        if (w < 0 || (size_t)w >= size - used)
            break;
        used += (size_t)w;
    }
}

static int match_name(const char *const *names, const char *s)
{
    for (int i = 0; names[i]; i++) {
        size_t j = 0;
        while (names[i][j] && s[j] &&
               (names[i][j] == s[j] || (names[i][j] >= 'a' && names[i][j] <= 'z' &&
                                        names[i][j] - 'a' + 'A' == s[j])))
            j++;
        if (!names[i][j] && !s[j])
            return i;
    }
    return -1;
}

static vqj_status parse_enum(const parser *p, const key_def *k, const yaml_node_t *n,
                             const char *path, int *out)
{
    char allowed[128];
    names_text(k->names, allowed, sizeof allowed);
    int i = n->type == YAML_SCALAR_NODE ? match_name(k->names, text_of(n)) : -1;
    if (i < 0)
        return bad_value(p, n, path, k->names[1] ? "one of %s" : "%s (the only one implemented)",
                         allowed);
    *out = k->values[i];
    return VQJ_OK;
}

static vqj_status parse_background(const parser *p, const yaml_node_t *n, const char *path,
                                   uint16_t *out)
{
    static const key_def color = {.kind = K_INT, .ilo = 0, .ihi = VQJ_NUM_COLORS - 1};
    long long v;
    vqj_status st;
    if (n->type == YAML_SCALAR_NODE) {
        if ((st = parse_int(p, &color, n, path, &v)))
            return st;
        *out = (uint16_t)(1u << v);
        return VQJ_OK;
    }
    if (n->type != YAML_SEQUENCE_NODE || n->data.sequence.items.top == n->data.sequence.items.start)
        return bad_value(p, n, path, "a color in [0, 9] or a non-empty list of colors");
    uint16_t mask = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        const yaml_node_t *c = yaml_document_get_node(p->doc, *it);
        if ((st = parse_int(p, &color, c, path, &v)))
            return st;
        mask |= (uint16_t)(1u << v);
    }
    *out = mask;
    return VQJ_OK;
}

static vqj_status parse_symmetry(const parser *p, const yaml_node_t *n, const char *path,
                                 int *out)
{
    static const char *const modes[] = {"horizontal", "vertical", NULL};
    const yaml_node_t *one[1] = {n};
    const yaml_node_t *const *items = one;
    size_t count = 1;
    const yaml_node_t *list[8];
    if (n->type == YAML_SEQUENCE_NODE) {
        count = 0;
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
             it++) {
            if (count == sizeof list / sizeof *list)
                return bad_value(p, n, path, "a list of \"horizontal\" and \"vertical\"");
            list[count++] = yaml_document_get_node(p->doc, *it);
        }
        items = list;
    } else if (n->type != YAML_SCALAR_NODE || is_null(n)) {
        return bad_value(p, n, path, "a list of \"horizontal\" and \"vertical\"");
    }
    int bits = 0;
    for (size_t i = 0; i < count; i++) {
        int m = items[i]->type == YAML_SCALAR_NODE ? match_name(modes, text_of(items[i])) : -1;
        if (m < 0)
            return bad_value(p, items[i], path, "\"horizontal\" or \"vertical\" (in a list)");
        bits |= 1 << m;
    }
    *out = bits;
    return VQJ_OK;
}

static vqj_status parse_betas(const parser *p, const key_def *k, const yaml_node_t *n,
                              const char *path, float *b1, float *b2)
{
    if (n->type != YAML_SEQUENCE_NODE ||
        n->data.sequence.items.top - n->data.sequence.items.start != 2)
        return bad_value(p, n, path, "a list of two numbers in [0, 1)");
    const yaml_node_t *a = yaml_document_get_node(p->doc, n->data.sequence.items.start[0]);
    const yaml_node_t *b = yaml_document_get_node(p->doc, n->data.sequence.items.start[1]);
    float x, y;
    vqj_status st;
    if ((st = parse_float(p, k, a, path, &x)) || (st = parse_float(p, k, b, path, &y)))
        return st;
    *b1 = x;
    *b2 = y;
    return VQJ_OK;
}

/* A list of 1..VQJ_FSQ_MAX_LEVELS integers in [ilo, ihi]; the rest 0. */
static vqj_status parse_levels(const parser *p, const key_def *k, const yaml_node_t *n,
                               const char *path, int *out)
{
    const char *want = "a list of 1 to 8 integers in [2, 256]";
    _Static_assert(VQJ_FSQ_MAX_LEVELS == 8, "the message above");
    if (n->type != YAML_SEQUENCE_NODE)
        return bad_value(p, n, path, "%s", want);
    long count = (long)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count < 1 || count > VQJ_FSQ_MAX_LEVELS)
        return bad_value(p, n, path, "%s", want);
    int levels[VQJ_FSQ_MAX_LEVELS] = {0};
    for (long i = 0; i < count; i++) {
        const yaml_node_t *it = yaml_document_get_node(p->doc, n->data.sequence.items.start[i]);
        long long v;
        vqj_status st = parse_int(p, k, it, path, &v);
        if (st)
            return st;
        levels[i] = (int)v;
    }
    memcpy(out, levels, sizeof levels);
    return VQJ_OK;
}

/* Parse the value of key k and store it. */
static vqj_status set_key(parser *p, size_t ki, const yaml_node_t *n)
{
    const key_def *k = &keys[ki];
    vqj_config *c = p->cfg;
    void *f = field(c, k);
    vqj_status st = VQJ_OK;
    long long v;
    switch (k->kind) {
    case K_INT:
        if (!(st = parse_int(p, k, n, k->path, &v)))
            *(int *)f = (int)v;
        break;
    case K_I64:
        if (!(st = parse_int(p, k, n, k->path, &v)))
            *(int64_t *)f = (int64_t)v;
        break;
    case K_U64:
        st = parse_u64(p, n, k->path, (uint64_t *)f);
        break;
    case K_FLOAT:
        st = parse_float(p, k, n, k->path, (float *)f);
        break;
    case K_BOOL: {
        int b;
        if (n->type != YAML_SCALAR_NODE || !is_plain(n) || !parse_bool(text_of(n), &b))
            return bad_value(p, n, k->path, "true or false");
        *(int *)f = b;
        break;
    }
    case K_STR: {
        if (n->type != YAML_SCALAR_NODE)
            return bad_value(p, n, k->path, "a string or null");
        char *s = NULL;
        if (!is_null(n) &&
            (st = dup_string(c->ctx, text_of(n), n->data.scalar.length, &s)))
            return st;
        free(*(char **)f);
        *(char **)f = s;
        break;
    }
    case K_ENUM: {
        int e = 0;
        if (!(st = parse_enum(p, k, n, k->path, &e)))
            memcpy(f, &e, sizeof e);
        break;
    }
    case K_BACKGROUND:
        st = parse_background(p, n, k->path, (uint16_t *)f);
        break;
    case K_SYMMETRY:
        st = parse_symmetry(p, n, k->path, (int *)f);
        break;
    case K_BETAS:
        st = parse_betas(p, k, n, k->path, &c->opt.beta1, &c->opt.beta2);
        break;
    case K_LEVELS:
        st = parse_levels(p, k, n, k->path, (int *)f);
        break;
    case K_NORM_TYPE: {
        double d;
        if (n->type != YAML_SCALAR_NODE || !is_plain(n) || !parse_double(text_of(n), &d) ||
            d != 2.0)
            return bad_value(p, n, k->path, "2 (the L2 norm, the only one implemented)");
        break;
    }
    }
    if (!st)
        c->lines[ki] = (int)line_of(n);
    return st;
}

static int is_ignored(const char *path)
{
    for (size_t i = 0; i < NUM_IGNORED; i++)
        if (!strcmp(ignored[i], path))
            return 1;
    return 0;
}

/* Whether some key lies under `path` (a section such as "training.grad_clip"). */
static int is_section(const char *path)
{
    const size_t n = strlen(path);
    for (size_t i = 0; i < NUM_KEYS; i++)
        if (!strncmp(keys[i].path, path, n) && keys[i].path[n] == '.')
            return 1;
    return 0;
}

static vqj_status walk(parser *p, const yaml_node_t *map, const char *prefix, int ignoring);

/* One warning per key of an ignored section, or for the key itself. */
static vqj_status warn_ignored(parser *p, const yaml_node_t *n, const char *path,
                               const yaml_node_t *key)
{
    if (n->type == YAML_MAPPING_NODE && n->data.mapping.pairs.top > n->data.mapping.pairs.start)
        return walk(p, n, path, 1);
    vqji_log(p->cfg->ctx, VQJ_LOG_WARNING, "%s:%zu: key %s is not implemented and is ignored",
             p->name, line_of(key), path);
    return VQJ_OK;
}

static vqj_status walk(parser *p, const yaml_node_t *map, const char *prefix, int ignoring)
{
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top;
         pr++) {
        const yaml_node_t *kn = yaml_document_get_node(p->doc, pr->key);
        const yaml_node_t *vn = yaml_document_get_node(p->doc, pr->value);
        char kbuf[80];
        if (kn->type != YAML_SCALAR_NODE)
            return vqji_fail(p->cfg->ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "%s:%zu: a key under %s is %s; keys must be names", p->name,
                             line_of(kn), *prefix ? prefix : "the top level",
                             describe(kn, kbuf, sizeof kbuf));
        /* PyYAML would let a repeated key win silently; here it is a mistake. */
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < pr; q++) {
            const yaml_node_t *k2 = yaml_document_get_node(p->doc, q->key);
            if (k2->type == YAML_SCALAR_NODE && !strcmp(text_of(k2), text_of(kn)))
                return vqji_fail(p->cfg->ctx, VQJ_ERR_INVALID_ARGUMENT,
                                 "%s:%zu: key %s%s%s appears twice (first at line %zu)",
                                 p->name, line_of(kn), prefix, *prefix ? "." : "", text_of(kn),
                                 line_of(k2));
        }
        char path[MAX_PATH];
        int w = snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", text_of(kn));
        if (w < 0 || (size_t)w >= sizeof path) {
            vqji_log(p->cfg->ctx, VQJ_LOG_WARNING, "%s:%zu: key %.60s... is unknown and is ignored",
                     p->name, line_of(kn), path);
            continue;
        }
        vqj_status st = VQJ_OK;
        int ki;
        if (ignoring || is_ignored(path)) {
            st = warn_ignored(p, vn, path, kn);
        } else if ((ki = find_key(path)) >= 0) {
            st = set_key(p, (size_t)ki, vn);
        } else if (is_section(path)) {
            if (vn->type == YAML_MAPPING_NODE)
                st = walk(p, vn, path, 0);
            else if (!is_null(vn))
                return bad_value(p, vn, path, "a mapping of keys");
        } else {
            vqji_log(p->cfg->ctx, VQJ_LOG_WARNING, "%s:%zu: key %s is unknown and is ignored",
                     p->name, line_of(kn), path);
        }
        if (st)
            return st;
    }
    return VQJ_OK;
}

static int line(const vqj_config *c, const char *path)
{
    int i = find_key(path);
    return i >= 0 ? c->lines[i] : 0;
}

/* The line of whichever of two keys the file set (the first when both). */
static int line2(const vqj_config *c, const char *a, const char *b)
{
    int la = line(c, a);
    return la ? la : line(c, b);
}

/* Rules between keys, checked once every key is read. */
static vqj_status cross_check(parser *p)
{
    vqj_config *c = p->cfg;
    const vqj_context *ctx = c->ctx;
    const char *nm = p->name;
    if (c->enc.hidden_dim % c->enc.relational_heads)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s:%d: object_encoder.relational_heads is %d; it must divide "
                         "object_encoder.hidden_dim (%d)",
                         nm,
                         line2(c, "object_encoder.relational_heads", "object_encoder.hidden_dim"),
                         c->enc.relational_heads, c->enc.hidden_dim);
    if (!(c->loss.temperature_max >= c->loss.temperature_min))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s:%d: loss.temperature_max is %g; it must be in [loss.temperature_min, "
                         "inf) = [%g, inf)",
                         nm, line2(c, "loss.temperature_max", "loss.temperature_min"),
                         (double)c->loss.temperature_max, (double)c->loss.temperature_min);
    if (!(c->loss.temperature >= c->loss.temperature_min &&
          c->loss.temperature <= c->loss.temperature_max))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s:%d: loss.temperature is %g; it must be in [loss.temperature_min, "
                         "loss.temperature_max] = [%g, %g]",
                         nm,
                         line(c, "loss.temperature") ? line(c, "loss.temperature")
                                                     : line2(c, "loss.temperature_min",
                                                             "loss.temperature_max"),
                         (double)c->loss.temperature, (double)c->loss.temperature_min,
                         (double)c->loss.temperature_max);
    if (c->syn.min_side > c->syn.max_side)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s:%d: synthetic.max_side is %d; it must be in [synthetic.min_side, %d] "
                         "= [%d, %d]",
                         nm, line2(c, "synthetic.max_side", "synthetic.min_side"), c->syn.max_side,
                         VQJ_MAX_GRID_SIDE, c->syn.min_side, VQJ_MAX_GRID_SIDE);
    if (c->syn.min_colors > c->syn.max_colors)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s:%d: synthetic.max_colors is %d; it must be in [synthetic.min_colors, "
                         "%d] = [%d, %d]",
                         nm, line2(c, "synthetic.max_colors", "synthetic.min_colors"),
                         c->syn.max_colors, VQJ_NUM_COLORS, c->syn.min_colors, VQJ_NUM_COLORS);
    if (c->dataset_manifest && c->arc_path)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s:%d: dataset_manifest and data.arc_path are both set; give one "
                         "source (neither: the synthetic generator)",
                         nm, line2(c, "data.arc_path", "dataset_manifest"));

    /* The reference has the head's size under both model and loss; loss
     * wins because it also holds the head's activation. */
    static const struct {
        const char *model, *loss;
        size_t shadow, value;
    } twins[] = {
        {"model.projection_dim", "loss.projection_dim", OFF(model_projection_dim),
         OFF(pred.projection_dim)},
        {"model.projection_layers", "loss.projection_layers", OFF(model_projection_layers),
         OFF(pred.projection_layers)},
    };
    for (size_t i = 0; i < sizeof twins / sizeof *twins; i++) {
        int *shadow = (int *)((char *)c + twins[i].shadow);
        int *value = (int *)((char *)c + twins[i].value);
        const int lm = line(c, twins[i].model), ll = line(c, twins[i].loss);
        if (lm && ll && *shadow != *value)
            vqji_log(ctx, VQJ_LOG_WARNING,
                     "%s:%d: %s is %d but %s is %d (line %d); %s is used", nm, lm,
                     twins[i].model, *shadow, twins[i].loss, *value, ll, twins[i].loss);
        else if (lm && !ll)
            *value = *shadow;
        *shadow = *value;
    }

    if (c->device == VQJ_DEVICE_CUDA && !vqj_device_compiled(VQJ_DEVICE_CUDA)) {
        vqji_log(ctx, VQJ_LOG_WARNING,
                 "%s:%d: training.device is cuda, but this build has no CUDA backend (make "
                 "CUDA=1); using cpu",
                 nm, line(c, "training.device"));
        c->device = VQJ_DEVICE_CPU;
    }
    return VQJ_OK;
}

static vqj_status yaml_error(const vqj_context *ctx, const yaml_parser_t *yp, const char *name)
{
    if (yp->error == YAML_MEMORY_ERROR)
        return vqji_fail(ctx, VQJ_ERR_OUT_OF_MEMORY, "%s: out of memory while parsing YAML", name);
    const char *problem = yp->problem ? yp->problem : "malformed YAML";
    if (yp->error == YAML_READER_ERROR)
        return vqji_fail(ctx, VQJ_ERR_PARSE, "%s: byte %zu: %s", name, yp->problem_offset,
                         problem);
    return vqji_fail(ctx, VQJ_ERR_PARSE, "%s:%zu:%zu: %s%s%s", name, yp->problem_mark.line + 1,
                     yp->problem_mark.column + 1, problem, yp->context ? " " : "",
                     yp->context ? yp->context : "");
}

static vqj_status parse_text(vqj_context *ctx, const char *text, size_t length, const char *name,
                             vqj_config **out)
{
    vqj_config *c;
    vqj_status st = new_config(ctx, &c);
    if (st)
        return st;
    yaml_parser_t yp;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&yp)) {
        vqj_config_destroy(c);
        return vqji_fail(ctx, VQJ_ERR_OUT_OF_MEMORY, "%s: out of memory for the YAML parser",
                         name);
    }
    yaml_parser_set_input_string(&yp, (const unsigned char *)text, length);
    if (!yaml_parser_load(&yp, &doc)) {
        st = yaml_error(ctx, &yp, name);
        yaml_parser_delete(&yp);
        vqj_config_destroy(c);
        return st;
    }
    parser p = {.cfg = c, .doc = &doc, .name = name};
    const yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && root->type == YAML_MAPPING_NODE)
        st = walk(&p, root, "", 0);
    else if (root && !is_null(root))
        st = vqji_fail(ctx, VQJ_ERR_PARSE,
                       "%s:%zu: the file is %s; it must be a mapping of sections (data:, "
                       "training:, ...)",
                       name, line_of(root),
                       root->type == YAML_SEQUENCE_NODE ? "a list" : "a scalar");
    if (!st)
        st = cross_check(&p);
    const int had_root = root != NULL;
    yaml_document_delete(&doc);
    /* A second document would be silently dropped; read it to say so (and
     * to report a syntax error in it). */
    if (!st && had_root) {
        if (!yaml_parser_load(&yp, &doc)) {
            st = yaml_error(ctx, &yp, name);
        } else {
            const yaml_node_t *r2 = yaml_document_get_root_node(&doc);
            if (r2)
                vqji_log(ctx, VQJ_LOG_WARNING,
                         "%s:%zu: only the first YAML document is read; the rest is ignored",
                         name, line_of(r2));
            yaml_document_delete(&doc);
        }
    }
    yaml_parser_delete(&yp);
    if (st) {
        vqj_config_destroy(c);
        return st;
    }
    *out = c;
    return VQJ_OK;
}

vqj_status vqj_config_parse(vqj_context *ctx, const char *text, size_t length, const char *name,
                            vqj_config **out)
{
    if (!ctx || !out || (!text && length))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_config_parse: NULL argument");
    vqji_clear_error(ctx);
    return parse_text(ctx, text ? text : "", length, name ? name : "<config>", out);
}

vqj_status vqj_config_set(vqj_config *cfg, const char *key, const char *value)
{
    static const char fn[] = "vqj_config_set";
    if (!cfg || !key || !value)
        return vqji_fail(cfg ? cfg->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    vqj_context *ctx = cfg->ctx;
    vqji_clear_error(ctx);
    const int ki = find_key(key);
    if (ki < 0)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: %s is %s", fn, key,
                         is_ignored(key) ? "not implemented" : "not a key (docs/config.md)");
    yaml_parser_t yp;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&yp))
        return vqji_fail(ctx, VQJ_ERR_OUT_OF_MEMORY, "%s: out of memory for the YAML parser", fn);
    yaml_parser_set_input_string(&yp, (const unsigned char *)value, strlen(value));
    if (!yaml_parser_load(&yp, &doc)) {
        vqj_status st = yaml_error(ctx, &yp, fn);
        yaml_parser_delete(&yp);
        return st;
    }
    yaml_parser_delete(&yp);
    const yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        yaml_document_delete(&doc);
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: %s: the value is empty", fn, key);
    }
    /* Everything a failed set or check could touch comes back from `saved`;
     * a string key's old text is freed only once the new one stands. */
    vqj_config *saved;
    vqj_status st = vqji_malloc(ctx, sizeof *saved, "a configuration copy", (void **)&saved);
    if (st) {
        yaml_document_delete(&doc);
        return st;
    }
    memcpy(saved, cfg, sizeof *saved);
    char **str = keys[ki].kind == K_STR ? (char **)field(cfg, &keys[ki]) : NULL;
    if (str)
        *str = NULL;
    parser p = {.cfg = cfg, .doc = &doc, .name = fn};
    st = set_key(&p, (size_t)ki, root);
    if (!st)
        st = cross_check(&p);
    if (st) {
        if (str)
            free(*str);
        memcpy(cfg, saved, sizeof *saved);
    } else if (str) {
        free(*(char **)field(saved, &keys[ki]));
    }
    free(saved);
    yaml_document_delete(&doc);
    return st;
}

vqj_status vqj_config_load(vqj_context *ctx, const char *path, vqj_config **out)
{
    if (!ctx || !path || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_config_load: NULL argument");
    vqji_clear_error(ctx);
    FILE *f = fopen(path, "rb");
    if (!f) {
        char why[128];
        if (strerror_r(errno, why, sizeof why) != 0)
            snprintf(why, sizeof why, "error %d", errno);
        return vqji_fail(ctx, VQJ_ERR_IO, "cannot open %s: %s", path, why);
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    vqj_status st = VQJ_OK;
    for (;;) {
        if ((st = vqji_reserve(ctx, (void **)&buf, &cap, len + 65536, "the configuration file")))
            break;
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f))
                st = vqji_fail(ctx, VQJ_ERR_IO, "cannot read %s", path);
            break;
        }
    }
    fclose(f);
    if (!st)
        st = parse_text(ctx, buf, len, path, out);
    free(buf);
    return st;
}

/* ----------------------------------------------------------- the getters */

/* Copy a full struct into a caller's size-prefixed one: a newer caller
 * keeps its defaults for the fields this version lacks. */
/* A params struct out to a caller of any published version: its size must
 * reach the end of the first release's fields (first_size); only what fits
 * in its size is written, so an older caller gets the fields it knows. */
static vqj_status copy_out(const vqj_config *cfg, void *out, const void *full, size_t full_size,
                           size_t first_size, const char *fn)
{
    if (*(const size_t *)out < first_size)
        return vqji_fail(cfg->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: out->size is %zu, smaller than any published version (%zu); fill "
                         "it with its *_default() function (or set size) first",
                         fn, *(const size_t *)out, first_size);
    vqji_result_copy(out, full, full_size);
    return VQJ_OK;
}

#define GETTER_START(fn)                                                                       \
    if (!cfg || !out)                                                                          \
        return vqji_fail(cfg ? cfg->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT, fn ": NULL argument"); \
    vqji_clear_error(cfg->ctx)

vqj_status vqj_config_tokenizer_params(const vqj_config *cfg, vqj_tokenizer_params *out)
{
    GETTER_START("vqj_config_tokenizer_params");
    return copy_out(cfg, out, &cfg->tok, sizeof cfg->tok, VQJI_V1_TOKENIZER_PARAMS,
                    "vqj_config_tokenizer_params");
}

vqj_status vqj_config_encoder_params(const vqj_config *cfg, vqj_encoder_params *out)
{
    GETTER_START("vqj_config_encoder_params");
    vqj_encoder_params p = cfg->enc;
    p.feature_dim = vqj_tokenizer_feature_dim(&cfg->tok);
    if (!cfg->relational)
        p.relational_layers = 0;
    return copy_out(cfg, out, &p, sizeof p, VQJI_V1_ENCODER_PARAMS,
                    "vqj_config_encoder_params");
}

vqj_status vqj_config_codebook_params(const vqj_config *cfg, vqj_codebook_params *out)
{
    GETTER_START("vqj_config_codebook_params");
    vqj_codebook_params p = cfg->cb;
    p.dim = cfg->enc.hidden_dim;
    if (p.quantizer == VQJ_QUANTIZER_FSQ) { /* FSQ's K is the product of its levels */
        long long k = 1;
        for (int j = 0; j < VQJ_FSQ_MAX_LEVELS && p.fsq_levels[j] && k <= 65536; j++)
            k *= p.fsq_levels[j];
        p.num_embeddings = (int)(k <= 65536 ? k : 65537);
    }
    return copy_out(cfg, out, &p, sizeof p, VQJI_V1_CODEBOOK_PARAMS,
                    "vqj_config_codebook_params");
}

vqj_status vqj_config_predictor_params(const vqj_config *cfg, vqj_predictor_params *out)
{
    GETTER_START("vqj_config_predictor_params");
    vqj_predictor_params p = cfg->pred;
    p.hidden_dim = cfg->enc.hidden_dim;
    p.context_window = cfg->ds.context_window;
    return copy_out(cfg, out, &p, sizeof p, VQJI_V1_PREDICTOR_PARAMS,
                    "vqj_config_predictor_params");
}

vqj_status vqj_config_loss_params(const vqj_config *cfg, vqj_loss_params *out)
{
    GETTER_START("vqj_config_loss_params");
    vqj_loss_params p = cfg->loss;
    p.projection_dim = cfg->pred.projection_dim;
    p.max_objects = cfg->tok.max_objects;
    return copy_out(cfg, out, &p, sizeof p, VQJI_V1_LOSS_PARAMS,
                    "vqj_config_loss_params");
}

vqj_status vqj_config_optimizer_params(const vqj_config *cfg, vqj_optimizer_params *out)
{
    GETTER_START("vqj_config_optimizer_params");
    return copy_out(cfg, out, &cfg->opt, sizeof cfg->opt, VQJI_V1_OPTIMIZER_PARAMS,
                    "vqj_config_optimizer_params");
}

vqj_status vqj_config_trainer_params(const vqj_config *cfg, vqj_trainer_params *out)
{
    GETTER_START("vqj_config_trainer_params");
    vqj_trainer_params p = cfg->tr;
    p.background = cfg->tok.background;
    return copy_out(cfg, out, &p, sizeof p, VQJI_V1_TRAINER_PARAMS,
                    "vqj_config_trainer_params");
}

vqj_status vqj_config_dataset_params(const vqj_config *cfg, vqj_dataset_params *out)
{
    GETTER_START("vqj_config_dataset_params");
    return copy_out(cfg, out, &cfg->ds, sizeof cfg->ds, VQJI_V1_DATASET_PARAMS,
                    "vqj_config_dataset_params");
}

vqj_status vqj_config_augment_params(const vqj_config *cfg, vqj_augment_params *out)
{
    GETTER_START("vqj_config_augment_params");
    vqj_augment_params p = cfg->aug;
    /* Augmentations take one background color: the tokenizer's lowest. */
    p.background = 0;
    while (p.background < VQJ_NUM_COLORS - 1 && !(cfg->tok.background & (1u << p.background)))
        p.background++;
    return copy_out(cfg, out, &p, sizeof p, VQJI_V1_AUGMENT_PARAMS,
                    "vqj_config_augment_params");
}

vqj_status vqj_config_synthetic_params(const vqj_config *cfg, vqj_synthetic_params *out)
{
    GETTER_START("vqj_config_synthetic_params");
    return copy_out(cfg, out, &cfg->syn, sizeof cfg->syn, VQJI_V1_SYNTHETIC_PARAMS,
                    "vqj_config_synthetic_params");
}

vqj_status vqj_config_run(const vqj_config *cfg, vqj_run_params *out)
{
    GETTER_START("vqj_config_run");
    vqj_run_params r;
    memset(&r, 0, sizeof r);
    r.size = sizeof r;
    r.seed = cfg->seed;
    r.epochs = cfg->epochs;
    r.batch_size = cfg->batch_size;
    r.grad_accum_steps = cfg->tr.grad_accum_steps;
    r.shuffle = cfg->shuffle;
    r.dataset_manifest = cfg->dataset_manifest;
    r.arc_path = cfg->arc_path;
    r.validation_split = cfg->ds.validation_split;
    r.validation_seed = cfg->ds.validation_seed;
    r.checkpoint_dir = cfg->checkpoint_dir;
    r.checkpoint_interval = cfg->checkpoint_interval;
    r.early_stopping_enabled = cfg->es_enabled;
    r.early_stopping_patience = cfg->es_patience;
    r.early_stopping_min_delta = cfg->es_min_delta;
    r.early_stopping_mode = (vqj_early_stopping_mode)cfg->es_mode;
    r.diagnostics_enabled = cfg->diag_enabled;
    r.diagnostics_interval = cfg->diag_interval;
    r.diagnostics_max_samples = cfg->diag_max_samples;
    r.device = (vqj_device_kind)cfg->device;
    r.vq_enabled = cfg->cb.enabled;
    r.use_target_encoder = cfg->tr.use_target_encoder;
    r.logging_enabled = cfg->log_enabled;
    r.log_dir = cfg->log_dir;
    r.run_name = cfg->run_name;
    r.checkpoint_steps = cfg->checkpoint_steps;
    vqj_status st = vqji_result_check(cfg->ctx, out->size, VQJI_V1_RUN_PARAMS, "vqj_config_run",
                                      "vqj_run_params");
    if (!st)
        vqji_result_copy(out, &r, sizeof r);
    return st;
}

/* ------------------------------------------------------------ the writer */

typedef struct sbuf {
    const vqj_context *ctx;
    char *data;
    size_t len, cap;
    vqj_status st;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) VQJI_PRINTF(2, 3);
static void put(sbuf *b, const char *fmt, ...)
{
    if (b->st)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->data ? b->data + b->len : NULL, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (w < 0) {
            b->st = vqji_fail(b->ctx, VQJ_ERR_INTERNAL, "vqj_config_write_yaml: bad format");
            return;
        }
        if ((size_t)w < b->cap - b->len) {
            b->len += (size_t)w;
            return;
        }
        if ((b->st = vqji_reserve(b->ctx, (void **)&b->data, &b->cap, b->len + (size_t)w + 4096,
                                  "the YAML text")))
            return;
    }
}

/* The shortest text that reads back as the same float, always with a
 * decimal point so that PyYAML reads it as a float too (it takes "1e-05"
 * for a string), and with '.' whatever the locale. */
static void put_float(sbuf *b, float v)
{
    char s[48];
    const char point = localeconv()->decimal_point[0];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, (double)v);
        for (char *q = s; *q; q++)
            if (*q == point)
                *q = '.';
        double back;
        /* 9 digits always read back exactly; fewer often do. */
        if (parse_double(s, &back) && (float)back == v)
            break;
    }
    char out[64];
    char *e = strpbrk(s, "eE");
    if (strchr(s, '.'))
        snprintf(out, sizeof out, "%s", s);
    else if (e)
        snprintf(out, sizeof out, "%.*s.0%s", (int)(e - s), s, e);
    else
        snprintf(out, sizeof out, "%s.0", s);
    put(b, "%s", out);
}

static void put_string(sbuf *b, const char *s)
{
    if (!s) {
        put(b, "null");
        return;
    }
    put(b, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            put(b, "\\%c", ch);
        else if (ch == '\n')
            put(b, "\\n");
        else if (ch == '\t')
            put(b, "\\t");
        else if (ch < 0x20 || ch == 0x7f)
            put(b, "\\x%02x", ch);
        else
            put(b, "%c", ch);
    }
    put(b, "\"");
}

static const char *enum_name(const key_def *k, int v)
{
    for (size_t i = 0; k->names[i]; i++)
        if (k->values[i] == v)
            return k->names[i];
    return "?";
}

static void put_value(sbuf *b, const vqj_config *c, const key_def *k)
{
    const void *f = cfield(c, k);
    switch (k->kind) {
    case K_INT: put(b, "%d", *(const int *)f); break;
    case K_I64: put(b, "%lld", (long long)*(const int64_t *)f); break;
    case K_U64: put(b, "%llu", (unsigned long long)*(const uint64_t *)f); break;
    case K_FLOAT: put_float(b, *(const float *)f); break;
    case K_BOOL: put(b, "%s", *(const int *)f ? "true" : "false"); break;
    case K_STR: put_string(b, *(char *const *)f); break;
    case K_ENUM: {
        int v;
        memcpy(&v, f, sizeof v);
        put(b, "%s", enum_name(k, v));
        break;
    }
    case K_BACKGROUND: {
        const unsigned mask = *(const uint16_t *)f;
        int n = 0, first = 0;
        for (int col = VQJ_NUM_COLORS - 1; col >= 0; col--)
            if (mask & (1u << col)) {
                n++;
                first = col;
            }
        if (n == 1) {
            put(b, "%d", first);
            break;
        }
        put(b, "[");
        for (int col = 0, k2 = 0; col < VQJ_NUM_COLORS; col++)
            if (mask & (1u << col))
                put(b, "%s%d", k2++ ? ", " : "", col);
        put(b, "]");
        break;
    }
    case K_SYMMETRY: {
        const int bits = *(const int *)f;
        put(b, "[%s%s%s]", (bits & 1) ? "\"horizontal\"" : "", (bits & 3) == 3 ? ", " : "",
            (bits & 2) ? "\"vertical\"" : "");
        break;
    }
    case K_BETAS:
        put(b, "[");
        put_float(b, c->opt.beta1);
        put(b, ", ");
        put_float(b, c->opt.beta2);
        put(b, "]");
        break;
    case K_LEVELS: {
        const int *lv = (const int *)f;
        put(b, "[");
        for (int j = 0; j < VQJ_FSQ_MAX_LEVELS && lv[j]; j++)
            put(b, "%s%d", j ? ", " : "", lv[j]);
        put(b, "]");
        break;
    }
    case K_NORM_TYPE: put(b, "2.0"); break;
    }
}

/* Split "a.b.c" into at most 4 components in `parts` (views into `buf`). */
static int split_path(const char *path, char *buf, size_t size, const char *parts[4])
{
    snprintf(buf, size, "%s", path);
    int n = 0;
    char *s = buf;
    parts[n++] = s;
    while ((s = strchr(s, '.')) && n < 4) {
        *s++ = '\0';
        parts[n++] = s;
    }
    return n;
}

vqj_status vqj_config_write_yaml(const vqj_config *cfg, char **text_out)
{
    if (!cfg || !text_out)
        return vqji_fail(cfg ? cfg->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_config_write_yaml: NULL argument");
    vqji_clear_error(cfg->ctx);
    sbuf b = {.ctx = cfg->ctx};
    put(&b, "# libvqjepa %s: resolved configuration (docs/config.md)\n", vqj_version());
    char prev_buf[MAX_PATH], cur_buf[MAX_PATH];
    const char *prev[4] = {NULL, NULL, NULL, NULL};
    int nprev = 0;
    for (size_t i = 0; i < NUM_KEYS; i++) {
        const char *cur[4];
        const int n = split_path(keys[i].path, cur_buf, sizeof cur_buf, cur);
        /* Sections shared with the previous key stay open. */
        int common = 0;
        while (common < n - 1 && common < nprev - 1 && !strcmp(cur[common], prev[common]))
            common++;
        if (common == 0 && (n > 1 || nprev > 1) && i > 0)
            put(&b, "\n");
        for (int d = common; d < n - 1; d++)
            put(&b, "%*s%s:\n", 2 * d, "", cur[d]);
        put(&b, "%*s%s: ", 2 * (n - 1), "", cur[n - 1]);
        put_value(&b, cfg, &keys[i]);
        put(&b, "\n");
        memcpy(prev_buf, cur_buf, sizeof prev_buf);
        for (int d = 0; d < n; d++)
            prev[d] = prev_buf + (cur[d] - cur_buf);
        nprev = n;
    }
    if (b.st) {
        free(b.data);
        return b.st;
    }
    *text_out = b.data;
    return VQJ_OK;
}

/* ------------------------------------------------------------- internal */

size_t vqji_config_num_keys(void)
{
    return NUM_KEYS;
}

const char *vqji_config_key(size_t i)
{
    return i < NUM_KEYS ? keys[i].path : NULL;
}

int vqji_config_key_is_extension(size_t i)
{
    return i < NUM_KEYS && keys[i].ext;
}

size_t vqji_config_num_ignored(void)
{
    return NUM_IGNORED;
}

const char *vqji_config_ignored(size_t i)
{
    return i < NUM_IGNORED ? ignored[i] : NULL;
}

int vqji_config_key_line(const vqj_config *cfg, const char *path)
{
    return cfg && path ? line(cfg, path) : 0;
}
