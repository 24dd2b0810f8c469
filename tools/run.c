/* The training loop of `vqjepa train` and `vqjepa ablate`: data, epochs,
 * validation, diagnostics, early stopping, checkpoints, progress, Ctrl-C.
 * Everything random is a function of the seed, the epoch and the batch, so
 * a resumed run continues exactly where the checkpoint left it. */
#include "run.h"

#include "cli.h"
#include "runlog.h"
#include "core/limits.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef VQJ_WITH_MPI
#include <mpi.h>
#endif

static void log_to_stderr(void *user, vqj_log_level level, const char *message)
{
    const char *command = user;
    fprintf(stderr, "vqjepa %s: %s%s\n", command, level >= VQJ_LOG_WARNING ? "warning: " : "",
            message);
}

static vqj_comm *world;
static vqj_context *world_ctx; /* the communicator's context (its errors) */
static int world_tried;

static void world_finish(void)
{
    vqj_comm_destroy(world);
    vqj_context_destroy(world_ctx);
    world = NULL;
    world_ctx = NULL;
}

vqj_comm *run_comm(void)
{
    if (world_tried)
        return world;
    world_tried = 1;
    /* Only under a launcher: a plain `vqjepa train` stays one process. */
    if (!vqj_comm_mpi_available() ||
        !(getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK")))
        return NULL;
    vqj_context_params p;
    vqj_context_params_default(&p);
    p.num_threads = 1;
    if (vqj_context_create(&p, &world_ctx) != VQJ_OK ||
        vqj_comm_init_mpi(world_ctx, NULL, NULL, &world) != VQJ_OK) {
        fprintf(stderr, "vqjepa: cannot join the MPI run: %s\n", vqj_last_error());
        world_finish();
        return NULL;
    }
    atexit(world_finish);
    return world;
}

int run_rank(void) { return vqj_comm_rank(run_comm()); }

void run_comm_fail(int status)
{
#ifdef VQJ_WITH_MPI
    if (vqj_comm_size(world) > 1) {
        fprintf(stderr, "vqjepa: rank %d failed (exit status %d): ending every rank\n",
                vqj_comm_rank(world), status);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, status);
    }
#else
    (void)status;
#endif
}

vqj_context *run_context(const char *command, int threads, vqj_device_kind device)
{
    vqj_context_params p;
    vqj_context_params_default(&p);
    p.num_threads = threads;
    p.device = device;
    p.log_fn = log_to_stderr;
    p.log_user_data = (void *)command;
    p.log_level = VQJ_LOG_WARNING;
    vqj_context *ctx = NULL;
    if (vqj_context_create(&p, &ctx) != VQJ_OK) {
        fprintf(stderr, "vqjepa %s: %s\n", command, vqj_last_error());
        return NULL;
    }
    return ctx;
}

int run_parse_device(const char *command, const char *name, vqj_device_kind *out)
{
    vqj_device_kind d;
    if (!strcmp(name, "cpu"))
        d = VQJ_DEVICE_CPU;
    else if (!strcmp(name, "cuda"))
        d = VQJ_DEVICE_CUDA;
    else {
        fprintf(stderr, "vqjepa %s: --device is '%s'; use cpu or cuda\n", command, name);
        return -1;
    }
    if (!vqj_device_compiled(d)) {
        fprintf(stderr,
                "vqjepa %s: --device %s: this build has no CUDA backend; rebuild with "
                "`make CUDA=1` or use --device cpu\n",
                command, name);
        return -1;
    }
    *out = d;
    return 0;
}

int run_config_device(vqj_config *cfg, vqj_device_kind device)
{
    if (vqj_config_set(cfg, "training.device", device == VQJ_DEVICE_CUDA ? "cuda" : "cpu") !=
        VQJ_OK) {
        fprintf(stderr, "vqjepa: %s\n", vqj_last_error());
        return -1;
    }
    return 0;
}

/* The built-in default of the command line: a small model that learns from
 * the built-in ARC data in minutes on two cores (docs/defaults.md says why
 * each key and what it measured). Keys it does not set keep the library's
 * defaults, the seed's gentle run, which `--config builtin:gentle` gives. */
static const char builtin_default_yaml[] =
    "# vqjepa built-in default (docs/defaults.md)\n"
    "object_encoder:\n"
    "  hidden_dim: 128\n"
    "  num_embeddings: 512\n"
    "  relational_layers: 2\n"
    "  relational_heads: 4\n"
    "  vq_path: beside\n"
    "  grid_features: true\n"
    "  dead_code_threshold: 0.5\n"
    "  dead_code_max_per_step: 5\n"
    "model:\n"
    "  projection_dim: 128\n"
    "  aggregator: gru\n"
    "  final_activation: false\n"
    "  analogy_residual: true\n"
    "optimizer:\n"
    "  lr: 1.0e-3\n"
    "training:\n"
    "  batch_size: 128\n"
    "  grad_accum_steps: 1\n"
    "  epochs: 36\n"
    "  lr_scheduler:\n"
    "    warmup_steps: 100\n"
    "    total_steps: 1200\n"
    "sigreg:\n"
    "  weight: 0.0\n"
    "loss:\n"
    "  queue_size: 4096\n"
    "invariance:\n"
    "  color_weight: 0.0\n"
    "  translation_weight: 0.0\n"
    "  symmetry_weight: 0.0\n"
    "diagnostics:\n"
    "  embedding_metrics:\n"
    "    interval: 100\n";

vqj_status run_config_open(vqj_context *ctx, const char *path, vqj_config **out)
{
    if (!path || !strcmp(path, "builtin:default"))
        return vqj_config_parse(ctx, builtin_default_yaml, strlen(builtin_default_yaml),
                                "builtin:default", out);
    if (!strcmp(path, "builtin:gentle"))
        return vqj_config_default(ctx, out);
    if (!strncmp(path, "builtin:", 8)) {
        fprintf(stderr, "vqjepa: unknown built-in configuration '%s'; there are "
                        "builtin:default and builtin:gentle\n", path);
        return VQJ_ERR_INVALID_ARGUMENT;
    }
    return vqj_config_load(ctx, path, out);
}

vqj_config *run_load_config(vqj_context *ctx, const run_options *o)
{
    vqj_config *cfg = NULL;
    vqj_status st;
    if (o->config_text)
        st = vqj_config_parse(ctx, o->config_text, strlen(o->config_text), o->label, &cfg);
    else
        st = run_config_open(ctx, o->config_path, &cfg);
    if (st != VQJ_OK) {
        if (*vqj_last_error()) /* else run_config_open() said why */
            fprintf(stderr, "vqjepa: %s\n", vqj_last_error());
        return NULL;
    }
    return cfg;
}

/* The configuration stored in a checkpoint, with the seed its trainer ran
 * with (older runs kept a --seed override out of the text). */
static vqj_config *checkpoint_config(const char *command, vqj_context *ctx, const char *path)
{
    size_t len = 0;
    char *yaml = NULL, seedbuf[32];
    vqj_config *cfg = NULL;
    if (vqj_checkpoint_read_metadata(ctx, path, "config", NULL, 0, &len) != VQJ_OK ||
        !(yaml = malloc(len + 1)) ||
        vqj_checkpoint_read_metadata(ctx, path, "config", yaml, len + 1, &len) != VQJ_OK ||
        vqj_checkpoint_read_metadata(ctx, path, "seed", seedbuf, sizeof seedbuf, &len) !=
            VQJ_OK ||
        vqj_config_parse(ctx, yaml, strlen(yaml), path, &cfg) != VQJ_OK ||
        vqj_config_set(cfg, "seed", seedbuf) != VQJ_OK) {
        fprintf(stderr, "vqjepa %s: %s\n", command,
                yaml ? vqj_last_error() : "out of memory");
        vqj_config_destroy(cfg);
        cfg = NULL;
    }
    free(yaml);
    return cfg;
}

int run_checkpoint_open(const char *command, const char *path, int threads,
                        vqj_device_kind device, int trained, const vqj_tokenizer_params *over,
                        run_checkpoint *c)
{
    memset(c, 0, sizeof *c);
    if (!(c->ctx = run_context(command, threads, device)))
        return -1;
    vqj_status st;
    if (trained) {
        st = vqj_model_load(c->ctx, path, &c->model);
    } else {
        /* An untrained model: the checkpoint's configuration built afresh. */
        vqj_config *cfg = checkpoint_config(command, c->ctx, path);
        if (!cfg || run_config_device(cfg, device)) {
            vqj_config_destroy(cfg);
            run_checkpoint_close(c);
            return -1;
        }
        st = vqj_trainer_create_from_config(c->ctx, cfg, &c->init);
        vqj_config_destroy(cfg);
        if (!st)
            st = vqj_model_from_trainer(c->init, &c->model);
    }
    if (!st && over) { /* the fields given (not the -1 / 0xffff left by the caller) */
        vqj_tokenizer_params t;
        vqj_tokenizer_params_default(&t);
        st = vqj_model_tokenizer_params(c->model, &t);
        t.max_objects = over->max_objects >= 0 ? over->max_objects : t.max_objects;
        t.max_color_features =
            over->max_color_features >= 0 ? over->max_color_features : t.max_color_features;
        t.background = over->background != 0xffff ? over->background : t.background;
        t.connectivity = over->connectivity >= 0 ? over->connectivity : t.connectivity;
        t.normalize = over->normalize >= 0 ? over->normalize : t.normalize;
        t.respect_colors = over->respect_colors >= 0 ? over->respect_colors : t.respect_colors;
        c->base = c->model;
        c->model = NULL;
        if (!st)
            st = vqj_model_with_tokenizer(c->base, &t, &c->model);
    }
    if (st) {
        fprintf(stderr, "vqjepa %s: %s\n", command, vqj_last_error());
        run_checkpoint_close(c);
        return -1;
    }
    return 0;
}

void run_checkpoint_close(run_checkpoint *c)
{
    vqj_model_destroy(c->model);
    vqj_model_destroy(c->base);
    vqj_trainer_destroy(c->init);
    vqj_context_destroy(c->ctx);
    memset(c, 0, sizeof *c);
}

/* ---- data ---- */

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static vqj_dataset *load_data(vqj_context *ctx, const vqj_config *cfg, const vqj_run_params *rp,
                              const run_options *o)
{
    vqj_dataset_params dp;
    vqj_dataset_params_default(&dp);
    vqj_synthetic_params sp;
    vqj_synthetic_params_default(&sp);
    if (vqj_config_dataset_params(cfg, &dp) || vqj_config_synthetic_params(cfg, &sp)) {
        fprintf(stderr, "vqjepa: %s\n", vqj_last_error());
        return NULL;
    }
    dp.skip_bad = o->skip_bad ? 1 : dp.skip_bad;
    const char *path = o->data_path;
    int jsonl = 0;
    if (!path && rp->dataset_manifest) {
        if (access(rp->dataset_manifest, R_OK) == 0) {
            path = rp->dataset_manifest;
            jsonl = 1;
        } else {
            fprintf(stderr,
                    "vqjepa: warning: dataset_manifest %s is not readable here; training on "
                    "the built-in ARC-AGI-1 training tasks instead\n",
                    rp->dataset_manifest);
        }
    }
    if (!path && rp->arc_path)
        path = rp->arc_path;
    /* No data given: the built-in ARC-AGI-1 training tasks. */
    if (!path)
        path = VQJ_ARC_BUILTIN_TRAINING;
    const int synthetic = strcmp(path, "synthetic") == 0;
    if (!jsonl)
        jsonl = ends_with(path, ".jsonl");
    vqj_dataset *ds = NULL;
    vqj_status st;
    if (synthetic)
        st = vqj_dataset_synthetic(ctx, &dp, &sp, &ds);
    else if (jsonl)
        st = vqj_dataset_from_jsonl(ctx, &dp, path, &ds);
    else
        st = vqj_dataset_from_arc(ctx, &dp, path, &ds);
    if (st) {
        fprintf(stderr, "vqjepa: %s\n", vqj_last_error());
        return NULL;
    }
    if (vqj_dataset_num_skipped(ds))
        fprintf(stderr, "vqjepa: skipped %zu bad records of %s\n", vqj_dataset_num_skipped(ds),
                path);
    if (!o->quiet)
        fprintf(stderr, "vqjepa: %zu examples from %s\n", vqj_dataset_num_examples(ds),
                synthetic ? "the built-in synthetic generator" : path);
    return ds;
}

/* ---- interruption ---- */

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* ---- JSON records ---- */

static json_t *real(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *loss_object(const vqj_train_metrics *m, double scale)
{
    json_t *o = json_object();
    json_object_set_new(o, "total", real(m->loss * scale));
    json_object_set_new(o, "infonce", real(m->infonce * scale));
    json_object_set_new(o, "relational", real(m->relational * scale));
    json_object_set_new(o, "commitment", real(m->commitment * scale));
    json_object_set_new(o, "sigreg", real(m->sigreg * scale));
    json_object_set_new(o, "invariance_color", real(m->invariance_color * scale));
    json_object_set_new(o, "invariance_translation", real(m->invariance_translation * scale));
    json_object_set_new(o, "invariance_symmetry", real(m->invariance_symmetry * scale));
    return o;
}

/* Each loss term's share of the total (docs/diagnostics.md): the terms of
 * loss_object() divided by the total, which is their sum. */
static json_t *share_object(const vqj_train_metrics *m)
{
    json_t *o = loss_object(m, m->loss != 0.0f ? 1.0 / (double)m->loss : NAN);
    json_object_del(o, "total");
    return o;
}

static void add_metrics(vqj_train_metrics *sum, const vqj_train_metrics *m, double w)
{
    sum->loss += (float)(m->loss * w);
    sum->infonce += (float)(m->infonce * w);
    sum->relational += (float)(m->relational * w);
    sum->commitment += (float)(m->commitment * w);
    sum->sigreg += (float)(m->sigreg * w);
    sum->invariance_color += (float)(m->invariance_color * w);
    sum->invariance_translation += (float)(m->invariance_translation * w);
    sum->invariance_symmetry += (float)(m->invariance_symmetry * w);
}

static json_t *embedding_object(const vqj_embedding_metrics *e)
{
    json_t *o = json_object();
    json_object_set_new(o, "samples", json_integer(e->samples));
    json_object_set_new(o, "variance", real(e->variance));
    json_object_set_new(o, "isotropy", real(e->isotropy));
    json_object_set_new(o, "effective_rank", real(e->effective_rank));
    json_object_set_new(o, "gaussian_score", real(e->gaussian_score));
    return o;
}

/* ---- the run ---- */

typedef struct run_state {
    int epoch;        /* 0-based epoch in progress */
    size_t next;      /* next batch of the epoch */
    double sum_w;     /* examples summed into epoch_sum */
    vqj_train_metrics epoch_sum;
    vqj_early_stopping es;
    float val_hist[4096];
    int val_count;
} run_state;

static int mkdir_p(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir(buf, 0777) != 0 && errno != EEXIST ? -1 : 0;
}

/* The run's position and early-stopping state in the checkpoint metadata. */
static int save_checkpoint(vqj_trainer *tr, const char *path, const char *yaml, const run_state *s)
{
    if (run_rank() != 0) /* data-parallel: rank 0 writes, the others hold the same */
        return 0;
    char epoch[32], next[32], sum_w[48], es[256], loss[256], vals[4096 * 16 + 8];
    snprintf(epoch, sizeof epoch, "%d", s->epoch);
    snprintf(next, sizeof next, "%zu", s->next);
    snprintf(sum_w, sizeof sum_w, "%.17g", s->sum_w);
    const vqj_train_metrics *e = &s->epoch_sum;
    snprintf(loss, sizeof loss, "%.9g %.9g %.9g %.9g %.9g %.9g %.9g %.9g", (double)e->loss,
             (double)e->infonce, (double)e->relational, (double)e->commitment, (double)e->sigreg,
             (double)e->invariance_color, (double)e->invariance_translation,
             (double)e->invariance_symmetry);
    snprintf(es, sizeof es, "%d %.9g %d %.9g %d %d %d %d", s->es.patience,
             (double)s->es.min_delta, (int)s->es.mode, (double)s->es.best, s->es.has_best,
             s->es.best_epoch, s->es.bad_epochs, s->es.updates);
    size_t off = 0;
    vals[0] = '\0';
    for (int i = 0; i < s->val_count && off + 20 < sizeof vals; i++)
        off += (size_t)snprintf(vals + off, sizeof vals - off, "%s%.9g", i ? " " : "",
                                (double)s->val_hist[i]);
    const char *meta[] = {"run.epoch", epoch,           "run.next_batch", next,
                          "run.epoch_examples", sum_w, "run.epoch_loss", loss,
                          "run.early_stopping", es,    "run.val_losses", vals,
                          NULL};
    if (vqj_trainer_save_with_metadata(tr, path, yaml, meta) != VQJ_OK) {
        fprintf(stderr, "vqjepa: %s\n", vqj_last_error());
        return -1;
    }
    return 0;
}

static int read_meta(vqj_context *ctx, const char *path, const char *key, char *buf, size_t cap)
{
    size_t len = 0;
    if (vqj_checkpoint_read_metadata(ctx, path, key, buf, cap, &len) != VQJ_OK) {
        fprintf(stderr, "vqjepa: %s\n", vqj_last_error());
        return -1;
    }
    return 0;
}

/* An integer of the run metadata, checked against [lo, hi] before it is
 * used; -1 after a message. */
static int read_meta_int(vqj_context *ctx, const char *path, const char *key, long long lo,
                         long long hi, long long *out)
{
    char buf[32], *end = NULL;
    if (read_meta(ctx, path, key, buf, sizeof buf))
        return -1;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (end == buf || *end || errno || v < lo || v > hi) {
        fprintf(stderr,
                "vqjepa: %s: metadata %s is \"%s\"; it must be an integer in [%lld, %lld]\n",
                path, key, buf, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int resume_state(vqj_context *ctx, const char *path, run_state *s)
{
    char buf[4096 * 16 + 8];
    long long v;
    /* An epoch is at most training.epochs; an epoch holds at most one batch
     * per example of the largest dataset an index can address. */
    if (read_meta_int(ctx, path, "run.epoch", 0, VQJI_HI_EPOCHS, &v))
        return -1;
    s->epoch = (int)v;
    if (read_meta_int(ctx, path, "run.next_batch", 0, UINT32_MAX, &v))
        return -1;
    s->next = (size_t)v;
    if (read_meta(ctx, path, "run.epoch_examples", buf, sizeof buf))
        return -1;
    s->sum_w = strtod(buf, NULL);
    if (read_meta(ctx, path, "run.epoch_loss", buf, sizeof buf))
        return -1;
    vqj_train_metrics *e = &s->epoch_sum;
    if (sscanf(buf, "%f %f %f %f %f %f %f %f", &e->loss, &e->infonce, &e->relational,
               &e->commitment, &e->sigreg, &e->invariance_color, &e->invariance_translation,
               &e->invariance_symmetry) != 8) {
        fprintf(stderr, "vqjepa: %s: malformed run.epoch_loss metadata\n", path);
        return -1;
    }
    if (read_meta(ctx, path, "run.early_stopping", buf, sizeof buf))
        return -1;
    int mode = 0;
    if (sscanf(buf, "%d %f %d %f %d %d %d %d", &s->es.patience, &s->es.min_delta, &mode,
               &s->es.best, &s->es.has_best, &s->es.best_epoch, &s->es.bad_epochs,
               &s->es.updates) != 8) {
        fprintf(stderr, "vqjepa: %s: malformed run.early_stopping metadata\n", path);
        return -1;
    }
    if (s->es.patience < VQJI_LO_EARLY_STOPPING_PATIENCE ||
        s->es.patience > VQJI_HI_EARLY_STOPPING_PATIENCE ||
        (mode != VQJ_EARLY_STOPPING_MIN && mode != VQJ_EARLY_STOPPING_MAX) ||
        (s->es.has_best & ~1) || s->es.best_epoch < -1 || s->es.bad_epochs < 0 ||
        s->es.updates < 0) {
        fprintf(stderr, "vqjepa: %s: run.early_stopping metadata out of range: %s\n", path, buf);
        return -1;
    }
    s->es.mode = (vqj_early_stopping_mode)mode;
    if (read_meta(ctx, path, "run.val_losses", buf, sizeof buf))
        return -1;
    s->val_count = 0;
    for (char *p = buf, *end; *p && s->val_count < 4096; p = end) {
        float v = strtof(p, &end);
        if (end == p)
            break;
        s->val_hist[s->val_count++] = v;
    }
    return 0;
}

static double max_rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

static void fmt_duration(char *buf, size_t cap, double s)
{
    if (!isfinite(s) || s < 0)
        snprintf(buf, cap, "--");
    else if (s < 90)
        snprintf(buf, cap, "%.0fs", s);
    else if (s < 5400)
        snprintf(buf, cap, "%.0fm%02.0fs", floor(s / 60), fmod(s, 60));
    else
        snprintf(buf, cap, "%.0fh%02.0fm", floor(s / 3600), fmod(s / 60, 60));
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Count the codes of the trainer's last step or evaluation, context and
 * target tokens, in the window. */
static void add_codes(const vqj_trainer *tr, vqj_metrics_window *win)
{
    size_t nc = 0, nt = 0;
    const int32_t *codes = vqj_trainer_codes(tr, &nc);
    const int32_t *tcodes = vqj_trainer_target_codes(tr, &nt);
    if (codes)
        vqj_metrics_window_add_codes(win, codes, nc);
    if (tcodes)
        vqj_metrics_window_add_target_codes(win, tcodes, nt);
}

/* Validation loss: the mean over the validation set in batches. With
 * `codes`, the codes of every context and target token go into it too. */
static int validate(vqj_trainer *tr, const vqj_dataset *val, int B, vqj_batch *b,
                    vqj_metrics_window *codes, double *out, double *infonce)
{
    size_t n = vqj_dataset_num_examples(val);
    *out = NAN;
    if (infonce)
        *infonce = NAN;
    if (!n)
        return 0;
    size_t *order = malloc(n * sizeof *order);
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    double sum = 0, sum_nce = 0, w = 0;
    for (size_t first = 0; first < n; first += (size_t)B) {
        int cnt = (int)(n - first < (size_t)B ? n - first : (size_t)B);
        vqj_train_metrics m = {.size = sizeof m};
        if (vqj_batch_fill(b, val, NULL, 0, 0, order + first, (size_t)cnt) != VQJ_OK ||
            vqj_trainer_evaluate(tr, vqj_batch_context(b), vqj_batch_targets(b), cnt, &m) !=
                VQJ_OK) {
            fprintf(stderr, "vqjepa: %s\n", vqj_last_error());
            free(order);
            return -1;
        }
        if (!m.skipped) {
            sum += (double)m.loss * cnt;
            sum_nce += (double)m.infonce * cnt;
            w += cnt;
        }
        if (codes)
            add_codes(tr, codes);
    }
    free(order);
    *out = w > 0 ? sum / w : NAN;
    if (infonce && w > 0)
        *infonce = sum_nce / w;
    return 0;
}

/* The seed's abort criteria over what the run has measured; 1 (with the
 * reason in out) when one fires. */
static int collapse_fired(const run_state *s, int epoch, int have_vq, float usage, float crank,
                          float trank, float min_delta, run_outcome *out)
{
    vqj_health_input hi;
    vqj_health_input_default(&hi);
    hi.val_loss = s->val_hist;
    hi.epochs = s->val_count;
    hi.epoch = epoch;
    hi.have_vq = have_vq && !isnan(usage);
    hi.vq_usage = usage;
    hi.have_embedding = !isnan(crank);
    hi.context_rank = crank;
    hi.target_rank = trank;
    hi.min_delta = min_delta;
    char reason[200];
    if (vqj_health_abort(&hi, reason, sizeof reason) <= 0)
        return 0;
    fprintf(stderr, "vqjepa: aborting on collapse: %s\n", reason);
    snprintf(out->abort_reason, sizeof out->abort_reason, "%s", reason);
    out->aborted = 1;
    return 1;
}

/* The evaluation of the trained model on the validation split
 * (docs/evaluation.md), printed unless quiet and written to DIR/eval.json;
 * the init baseline is the same configuration (and seed) built afresh. */
static int end_eval(vqj_context *ctx, const vqj_config *cfg, const run_options *o,
                    vqj_trainer *trainer, const vqj_dataset *val, const char *dir)
{
    vqj_trainer *init = NULL;
    vqj_model *model = NULL, *init_model = NULL;
    vqj_eval_set *set = NULL;
    json_t *r = NULL;
    int rc = -1;
    if (vqj_model_from_trainer(trainer, &model) != VQJ_OK ||
        vqj_eval_set_from_dataset(ctx, val, &set) != VQJ_OK ||
        vqj_trainer_create_from_config(ctx, cfg, &init) != VQJ_OK ||
        vqj_model_from_trainer(init, &init_model) != VQJ_OK) {
        fprintf(stderr, "vqjepa: evaluation: %s\n", vqj_last_error());
        goto done;
    }
    if (!(r = eval_measure(ctx, model, init_model, set, 1)))
        goto done;
    json_object_set_new(r, "data", json_string("validation split"));
    char path[4096];
    snprintf(path, sizeof path, "%s/eval.json", dir);
    char tmp[4200];
    FILE *f = runlog_create(path, tmp, sizeof tmp);
    if (!f ||
        runlog_commit(f, tmp, path, json_dumpf(r, f, JSON_COMPACT | JSON_REAL_PRECISION(6)) == 0))
        goto done;
    if (!o->quiet) {
        printf("evaluation on the validation split (%s):\n", path);
        eval_print_table(stdout, r);
    }
    rc = 0;
done:
    json_decref(r);
    vqj_eval_set_destroy(set);
    vqj_model_destroy(model);
    vqj_model_destroy(init_model);
    vqj_trainer_destroy(init);
    return rc;
}

int run_training(const run_options *o, run_outcome *out)
{
    run_outcome local;
    if (!out)
        out = &local;
    memset(out, 0, sizeof *out);
    out->final_val = out->best_val = NAN;
    out->context_rank_start = out->context_rank_end = NAN;
    out->target_rank_start = out->target_rank_end = NAN;
    out->usage_start = out->usage_min = out->usage_end = NAN;
    out->usage_min_after_warmup = out->perplexity_end = out->final_val_infonce = NAN;

    int rc = CLI_FAILED;
    /* The configuration says everything, seed and device included; the
     * command line's --seed and --device are written into it, so the
     * checkpoints' copy says what ran. */
    vqj_context *pctx = run_context("train", o->threads, VQJ_DEVICE_CPU);
    if (!pctx)
        return CLI_FAILED;
    vqj_config *cfg = run_load_config(pctx, o);
    if (!cfg) {
        vqj_context_destroy(pctx);
        return CLI_BAD_INPUT;
    }
    char seedbuf[32];
    snprintf(seedbuf, sizeof seedbuf, "%lld", (long long)o->seed);
    if ((o->seed >= 0 && vqj_config_set(cfg, "seed", seedbuf) != VQJ_OK) ||
        (o->device >= 0 && run_config_device(cfg, (vqj_device_kind)o->device))) {
        if (o->seed >= 0)
            fprintf(stderr, "vqjepa: %s\n", vqj_last_error());
        vqj_config_destroy(cfg);
        vqj_context_destroy(pctx);
        return CLI_BAD_INPUT;
    }
    /* --batch goes into the configuration as well, so that the memory
     * estimate and its refusal (vqj_trainer_create_from_config) count the
     * batch that will run, and the checkpoints say what ran. */
    if (o->batch > 0) {
        char batchbuf[32];
        snprintf(batchbuf, sizeof batchbuf, "%d", o->batch);
        if (vqj_config_set(cfg, "training.batch_size", batchbuf) != VQJ_OK) {
            fprintf(stderr, "vqjepa: --batch: %s\n", vqj_last_error());
            vqj_config_destroy(cfg);
            vqj_context_destroy(pctx);
            return CLI_BAD_INPUT;
        }
    }
    vqj_run_params rp = {.size = sizeof rp};
    char *yaml = NULL;
    vqj_config_run(cfg, &rp);
    if (vqj_config_write_yaml(cfg, &yaml) != VQJ_OK) {
        fprintf(stderr, "vqjepa: %s\n", vqj_last_error());
        vqj_config_destroy(cfg);
        vqj_context_destroy(pctx);
        return CLI_FAILED;
    }
    const uint64_t seed = rp.seed;
    int epochs = o->epochs > 0 ? o->epochs : rp.epochs;
    int B = o->batch > 0 ? o->batch : rp.batch_size;
    /* The config must outlive the run: its strings back rp. */
    vqj_context *ctx =
        rp.device == VQJ_DEVICE_CPU ? pctx : run_context("train", o->threads, rp.device);
    vqj_dataset *all = NULL, *train = NULL, *val = NULL;
    vqj_trainer *tr = NULL;
    vqj_metrics_window *win = NULL, *val_win = NULL;
    size_t *order = NULL;
    vqj_batch *bb = NULL;
    float *proj_c = NULL, *proj_t = NULL;
    char path[4096];
    if (!ctx)
        goto done;
    /* Data-parallel (docs/distributed.md): every rank trains its share of
     * each global batch; they must start from the same configuration. Rank
     * 0 alone prints progress and writes the run folder. */
    vqj_comm *comm = run_comm();
    run_options rank_o;
    if (comm) {
        char *id = NULL;
        size_t idn = 0;
        FILE *f = open_memstream(&id, &idn);
        if (f) {
            fprintf(f, "%s\nseed %llu batch %d epochs %d steps %lld data %s resume %s", yaml,
                    (unsigned long long)seed, B, epochs, (long long)o->steps,
                    o->data_path ? o->data_path : "-", o->resume ? o->resume : "-");
            fclose(f);
        }
        if (!id || vqj_context_set_comm(ctx, comm) != VQJ_OK ||
            vqj_comm_check_same(comm, id, idn, "the configuration (with seed, batch, steps, "
                                               "data and resume)") != VQJ_OK) {
            fprintf(stderr, "vqjepa: %s\n", id ? vqj_last_error() : "out of memory");
            free(id);
            rc = CLI_BAD_INPUT;
            goto done;
        }
        free(id);
        if (vqj_comm_rank(comm) > 0) {
            rank_o = *o;
            rank_o.quiet = 1;
            o = &rank_o;
        } else if (!o->quiet) {
            fprintf(stderr, "vqjepa: data-parallel over %d ranks (%s): global batch %d\n",
                    vqj_comm_size(comm), vqj_comm_backend(comm), B);
        }
    }
    all = load_data(ctx, cfg, &rp, o);
    if (!all)
        goto done;
    if (vqj_dataset_split(all, rp.validation_split, rp.validation_seed, &train, &val) !=
        VQJ_OK) {
        fprintf(stderr, "vqjepa: %s\n", vqj_last_error());
        goto done;
    }
    size_t n_train = vqj_dataset_num_examples(train);
    if (n_train == 0) {
        fprintf(stderr, "vqjepa: no training examples\n");
        rc = CLI_BAD_INPUT;
        goto done;
    }
    vqj_status cst = vqj_trainer_create_from_config(ctx, cfg, &tr);
    if (cst != VQJ_OK) {
        fprintf(stderr, "vqjepa: %s\n", vqj_last_error());
        if (cst == VQJ_ERR_INVALID_ARGUMENT) /* e.g. needs more memory than the limit */
            rc = CLI_BAD_INPUT;
        goto done;
    }
    vqj_augment_params aug;
    vqj_augment_params_default(&aug);
    vqj_config_augment_params(cfg, &aug);
    vqj_codebook_params cbp;
    vqj_codebook_params_default(&cbp);
    vqj_config_codebook_params(cfg, &cbp);
    vqj_optimizer_params opp;
    vqj_optimizer_params_default(&opp);
    vqj_config_optimizer_params(cfg, &opp);
    const int64_t warmup = opp.warmup_steps;
    int64_t step_reseeded = 0; /* codes re-seeded in the optimizer step under way */
    vqj_loss_params lp;
    vqj_loss_params_default(&lp);
    vqj_config_loss_params(cfg, &lp);
    int P = lp.projection_dim;
    if (vqj_metrics_window_create(ctx, P, rp.diagnostics_max_samples,
                                  cbp.enabled ? cbp.num_embeddings : 0, &win) != VQJ_OK ||
        vqj_metrics_window_create(ctx, P, 2, cbp.enabled ? cbp.num_embeddings : 0,
                                  &val_win) != VQJ_OK) {
        fprintf(stderr, "vqjepa: %s\n", vqj_last_error());
        goto done;
    }

    const char *dir = o->out_dir ? o->out_dir : rp.checkpoint_dir;
    snprintf(out->out_dir, sizeof out->out_dir, "%s", dir);
    if (run_rank() == 0 && mkdir_p(dir) != 0) {
        fprintf(stderr, "vqjepa: cannot create %s: %s\n", dir, strerror(errno));
        goto done;
    }
    int stale = run_rank() == 0 ? runlog_remove_stale(dir) : 0; /* rank 0 writes the folder */
    if (stale && !o->quiet)
        fprintf(stderr, "vqjepa: removed %d unfinished temporary file%s from %s\n", stale,
                stale > 1 ? "s" : "", dir);
    int torn = run_rank() == 0 ? runlog_trim_torn(dir) : 0;
    if (torn < 0)
        goto done;
    if (torn && !o->quiet)
        fprintf(stderr, "vqjepa: cut the unfinished last line of %d log%s in %s\n", torn,
                torn > 1 ? "s" : "", dir);
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    char tmp[4200];
    FILE *cf = run_rank() == 0 ? runlog_create(path, tmp, sizeof tmp) : NULL;
    if (run_rank() == 0 && (!cf || runlog_commit(cf, tmp, path, fputs(yaml, cf) >= 0)))
        goto done;

    run_state s;
    memset(&s, 0, sizeof s);
    s.epoch_sum.size = sizeof s.epoch_sum;
    vqj_early_stopping_init(&s.es, rp.early_stopping_patience, rp.early_stopping_min_delta,
                            rp.early_stopping_mode);
    if (o->resume) {
        if (vqj_trainer_load(tr, o->resume) != VQJ_OK) {
            fprintf(stderr, "vqjepa: %s\n", vqj_last_error());
            rc = CLI_BAD_INPUT;
            goto done;
        }
        if (resume_state(ctx, o->resume, &s))
            goto done;
        if (!o->quiet)
            fprintf(stderr, "vqjepa: resumed from %s at epoch %d, batch %zu, step %lld\n",
                    o->resume, s.epoch + 1, s.next,
                    (long long)vqj_optimizer_steps(vqj_trainer_optimizer(tr)));
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    interrupted = 0;

    order = malloc(n_train * sizeof *order);
    proj_c = malloc((size_t)B * P * sizeof *proj_c);
    proj_t = malloc((size_t)B * P * sizeof *proj_t);
    if (!order || !proj_c || !proj_t) {
        fprintf(stderr, "vqjepa: out of memory\n");
        goto done;
    }
    if (vqj_batch_create(ctx, &bb) != VQJ_OK) {
        fprintf(stderr, "vqjepa: %s\n", vqj_last_error());
        goto done;
    }
    /* An epoch is a whole number of accumulation cycles, so that the
     * checkpoints written at its end hold no half-accumulated gradient. */
    int accum = rp.grad_accum_steps > 0 ? rp.grad_accum_steps : 1;
    if ((size_t)B * (size_t)accum > n_train) {
        B = (int)(n_train / (size_t)accum);
        if (B < 1) {
            fprintf(stderr, "vqjepa: %zu training examples cannot fill %d micro-batches\n",
                    n_train, accum);
            rc = CLI_BAD_INPUT;
            goto done;
        }
        fprintf(stderr, "vqjepa: warning: batch size lowered to %d to fit %zu examples\n", B,
                n_train);
    }
    size_t batches = n_train / (size_t)B;
    batches -= batches % (size_t)accum;
    int64_t start_steps = vqj_optimizer_steps(vqj_trainer_optimizer(tr));
    int64_t max_steps = o->steps > 0 ? start_steps + o->steps : INT64_MAX;
    int tty = isatty(STDERR_FILENO) && !o->quiet;
    double t0 = now(), last_print = 0;
    int64_t last_diag_step = -1;
    int stop = 0, aborted = 0, interrupted_by_abort = 0;
    float last_usage = NAN, last_crank = NAN, last_trank = NAN;
    const char *label = o->label ? o->label : "train";
    int ckpt_steps = o->checkpoint_steps > 0 ? o->checkpoint_steps
                     : o->checkpoint_steps < 0 ? 0 : rp.checkpoint_steps;
    rc = CLI_OK;

    /* Diagnostics over the window: one embedding_metrics.jsonl record. A
     * window is diagnostics.embedding_metrics.interval optimizer steps
     * (epochs do not cut it); the one left at the end of a run is shorter,
     * marked partial, and counts for the run's usage summary only when no
     * whole window was measured. The validation split's codes are measured
     * at every diagnostic too. */
    int64_t window_start = start_steps;
    int64_t window_len = rp.diagnostics_interval > 0 ? rp.diagnostics_interval : 1;
#define DIAGNOSE(step_, epoch_, mm_)                                                            \
    do {                                                                                       \
        vqj_window_metrics wm = {.size = sizeof wm}, vm = {.size = sizeof vm};                 \
        wm.context.size = wm.target.size = sizeof wm.context;                                  \
        int64_t wsteps_ = (step_) - window_start;                                              \
        int partial_ = wsteps_ < window_len;                                                   \
        if (vqj_metrics_window_rows(win) >= 2 &&                                               \
            vqj_metrics_window_compute(win, &wm) == VQJ_OK) {                                  \
            double vloss_ = NAN;                                                               \
            vqj_metrics_window_reset(val_win);                                                 \
            if (validate(tr, val, B, bb, val_win, &vloss_, NULL) ||                  \
                vqj_metrics_window_compute(val_win, &vm) != VQJ_OK) {                          \
                rc = CLI_FAILED;                                                               \
                goto done;                                                                     \
            }                                                                                  \
            json_t *r = json_object();                                                         \
            json_object_set_new(r, "step", json_integer(step_));                               \
            json_object_set_new(r, "epoch", json_integer(epoch_));                             \
            json_object_set_new(r, "window_steps", json_integer(wsteps_));                     \
            json_object_set_new(r, "partial", json_boolean(partial_));                         \
            json_object_set_new(r, "context", embedding_object(&wm.context));                  \
            json_object_set_new(r, "target", embedding_object(&wm.target));                    \
            if (cbp.enabled) {                                                                 \
                json_object_set_new(r, "vq_active_codes", json_integer(wm.active_codes));      \
                json_object_set_new(r, "vq_usage_ratio", real(wm.usage_ratio));                \
                json_object_set_new(r, "vq_usage_context", real(wm.usage_context));            \
                json_object_set_new(r, "vq_usage_target", real(wm.usage_target));              \
                json_object_set_new(r, "vq_perplexity", real(wm.perplexity));                  \
                json_object_set_new(r, "vq_dead_codes", json_integer(wm.dead_codes));          \
                if (vm.assignments > 0) {                                                      \
                    json_object_set_new(r, "val_vq_usage_ratio", real(vm.usage_ratio));        \
                    json_object_set_new(r, "val_vq_perplexity", real(vm.perplexity));          \
                    json_object_set_new(r, "val_vq_dead_codes", json_integer(vm.dead_codes));  \
                }                                                                              \
                if (!partial_ || isnan(out->usage_end)) {                                      \
                    last_usage = wm.usage_ratio;                                               \
                    if (isnan(out->usage_start))                                               \
                        out->usage_start = wm.usage_ratio;                                     \
                    out->usage_min = isnan(out->usage_min)                                     \
                                         ? wm.usage_ratio                                      \
                                         : fmin(out->usage_min, wm.usage_ratio);               \
                    out->usage_end = wm.usage_ratio;                                           \
                    out->perplexity_end = wm.perplexity;                                       \
                    if ((step_) > warmup && !(out->usage_min_after_warmup <=                   \
                                              wm.usage_ratio))                                 \
                        out->usage_min_after_warmup = wm.usage_ratio;                          \
                }                                                                              \
            }                                                                                  \
            if (!isnan(vloss_))                                                                \
                json_object_set_new(r, "val_loss", real(vloss_));                              \
            json_object_set_new(r, "temperature", real((mm_).temperature));                    \
            json_object_set_new(r, "grad_norm", real((mm_).grad_norm));                        \
            json_object_set_new(r, "lr", real((mm_).lr));                                      \
            runlog_append(dir, RUNLOG_EMBEDDING, r);                                           \
            json_decref(r);                                                                    \
            last_crank = wm.context.effective_rank;                                            \
            last_trank = wm.target.effective_rank;                                             \
            if (isnan(out->context_rank_start)) {                                              \
                out->context_rank_start = last_crank;                                          \
                out->target_rank_start = last_trank;                                           \
            }                                                                                  \
            out->context_rank_end = last_crank;                                                \
            out->target_rank_end = last_trank;                                                 \
            vqj_metrics_window_reset(win);                                                     \
            window_start = (step_);                                                            \
            last_diag_step = (step_);                                                          \
        }                                                                                      \
    } while (0)

    vqj_train_metrics last = {.size = sizeof last};
    for (; s.epoch < epochs && !stop; s.epoch++, s.next = 0) {
        for (size_t i = 0; i < n_train; i++)
            order[i] = i;
        if (rp.shuffle && vqj_dataset_shuffle(train, seed, s.epoch, order) != VQJ_OK) {
            fprintf(stderr, "vqjepa: %s\n", vqj_last_error());
            rc = CLI_FAILED;
            goto done;
        }
        if (s.next == 0) {
            s.sum_w = 0;
            memset(&s.epoch_sum, 0, sizeof s.epoch_sum);
            s.epoch_sum.size = sizeof s.epoch_sum;
        }
        for (; s.next < batches; s.next++) {
            vqj_train_metrics mm = {.size = sizeof mm};
            if (vqj_batch_fill(bb, train, &aug, seed, s.epoch, order + s.next * (size_t)B,
                               (size_t)B) != VQJ_OK ||
                vqj_trainer_step(tr, vqj_batch_context(bb), vqj_batch_targets(bb), B, &mm) !=
                    VQJ_OK) {
                fprintf(stderr, "vqjepa: %s\n", vqj_last_error());
                rc = CLI_FAILED;
                goto done;
            }
            step_reseeded += mm.dead_replaced;
            if (!mm.skipped) {
                add_metrics(&s.epoch_sum, &mm, B);
                s.sum_w += B;
                last = mm;
                if (rp.diagnostics_enabled) {
                    vqj_tensor_read(vqj_trainer_context_projections(tr), proj_c,
                                    (size_t)B * P);
                    vqj_tensor_read(vqj_trainer_target_projections(tr), proj_t,
                                    (size_t)B * P);
                    vqj_metrics_window_add_projections(win, proj_c, proj_t, B);
                    if (cbp.enabled)
                        add_codes(tr, win);
                }
            }
            if (mm.optimizer_step || mm.skipped) {
                json_t *r = json_object();
                json_object_set_new(r, "step", json_integer(mm.step));
                json_object_set_new(r, "micro_step", json_integer(mm.micro_step));
                json_object_set_new(r, "epoch", json_integer(s.epoch + 1));
                json_object_set_new(r, "skipped", json_boolean(mm.skipped));
                json_object_set_new(r, "loss", loss_object(&mm, 1.0));
                json_object_set_new(r, "loss_share", share_object(&mm));
                json_object_set_new(r, "temperature", real(mm.temperature));
                json_object_set_new(r, "grad_norm", real(mm.grad_norm));
                json_object_set_new(r, "lr", real(mm.lr));
                json_object_set_new(r, "perplexity", real(mm.perplexity));
                json_object_set_new(r, "batch_active_codes", json_integer(mm.active_codes));
                json_object_set_new(r, "refreshed", json_integer(mm.refreshed));
                json_object_set_new(r, "dead_replaced", json_integer(step_reseeded));
                if (mm.step > warmup && step_reseeded > out->reseeded_max_after_warmup)
                    out->reseeded_max_after_warmup = step_reseeded;
                step_reseeded = 0;
                runlog_append(dir, RUNLOG_LOSS, r);
                json_decref(r);
            }
            int64_t step = vqj_optimizer_steps(vqj_trainer_optimizer(tr));
            if (mm.applied && rp.diagnostics_enabled && rp.diagnostics_interval > 0 &&
                step % rp.diagnostics_interval == 0) {
                DIAGNOSE(step, s.epoch + 1, mm);
                if (o->abort_on_collapse &&
                    collapse_fired(&s, s.epoch + 1, cbp.enabled, last_usage, last_crank,
                                   last_trank, rp.early_stopping_min_delta, out))
                    aborted = interrupted_by_abort = 1;
            }
            if (runlog_failures) {
                rc = CLI_FAILED;
                goto done;
            }
            double t = now();
            if (!o->quiet && (tty || t - last_print >= 10.0 || s.next + 1 == batches)) {
                double done_steps = (double)(step - start_steps);
                double per = done_steps > 0 ? (t - t0) / done_steps : 0.0;
                int64_t total = (int64_t)epochs * (int64_t)batches / accum;
                int64_t left = (o->steps > 0 ? max_steps : total) - step;
                char eta[32], usage[32];
                fmt_duration(eta, sizeof eta, per * (double)left);
                if (isnan(last_usage))
                    snprintf(usage, sizeof usage, "--");
                else
                    snprintf(usage, sizeof usage, "%.1f%%", 100.0 * last_usage);
                fprintf(stderr,
                        "%s[%s] epoch %d/%d batch %zu/%zu step %lld loss %.4f usage %s "
                        "%.2f s/step eta %s%s",
                        tty ? "\r" : "", label, s.epoch + 1, epochs, s.next + 1, batches,
                        (long long)step, (double)mm.loss, usage, per, eta, tty ? "   " : "\n");
                last_print = t;
            }
            /* Stop only between optimizer steps: a checkpoint then holds no
             * half-accumulated gradient, and resuming is exact. */
            int boundary = mm.optimizer_step || (mm.micro_step % accum == 0);
            if (boundary && comm) { /* Ctrl-C on any rank stops every rank here */
                int32_t flag = interrupted;
                if (vqj_comm_allreduce(comm, &flag, 1, VQJ_COMM_INT32, VQJ_COMM_MAX) != VQJ_OK) {
                    fprintf(stderr, "vqjepa: %s\n", vqj_last_error());
                    rc = CLI_FAILED;
                    goto done;
                }
                interrupted = flag;
            }
            if (boundary && (step >= max_steps || interrupted || interrupted_by_abort)) {
                s.next++;
                stop = 1;
                break;
            }
            /* Every ckpt_steps optimizer steps, last.safetensors to resume
             * from after a crash (written atomically: the old one stays
             * whole until the new one is). */
            if (mm.applied && ckpt_steps > 0 && step % ckpt_steps == 0) {
                run_state at = s;
                at.next = s.next + 1;
                snprintf(path, sizeof path, "%s/last.safetensors", dir);
                if (save_checkpoint(tr, path, yaml, &at))
                    goto fail;
            }
        }
        if (tty)
            fprintf(stderr, "\n");
        if (stop && s.next < batches) {
            /* Mid-epoch: a validation loss for the record (marked partial;
             * evaluation changes nothing, so a resumed run is unaffected),
             * then the checkpoint to resume from. */
            double vloss;
            if (validate(tr, val, B, bb, NULL, &vloss, &out->final_val_infonce)) {
                rc = CLI_FAILED;
                goto done;
            }
            json_t *r = json_object();
            json_object_set_new(r, "epoch", json_integer(s.epoch + 1));
            json_object_set_new(r, "step", json_integer(vqj_optimizer_steps(vqj_trainer_optimizer(tr))));
            json_object_set_new(r, "partial", json_true());
            json_object_set_new(r, "loss_mean",
                                loss_object(&s.epoch_sum, s.sum_w > 0 ? 1.0 / s.sum_w : NAN));
            json_object_set_new(r, "val_loss", real(vloss));
            json_object_set_new(r, "seconds", real(now() - t0));
            json_object_set_new(r, "max_rss_mib", real(max_rss_mib()));
            runlog_append(dir, RUNLOG_EPOCH, r);
            json_decref(r);
            if (!isnan(vloss)) {
                out->final_val = vloss;
                out->best_val = isnan(out->best_val) ? vloss : fmin(out->best_val, vloss);
            }
            break;
        }
        /* End of epoch: validation, diagnostics, early stopping, checkpoints. */
        double vloss;
        if (validate(tr, val, B, bb, NULL, &vloss, &out->final_val_infonce)) {
            rc = CLI_FAILED;
            goto done;
        }
        int64_t step = vqj_optimizer_steps(vqj_trainer_optimizer(tr));
        int improved = 0, should_stop = 0;
        if (!isnan(vloss)) {
            vqj_early_stopping_update(&s.es, s.epoch + 1, (float)vloss, &improved, &should_stop);
            if (s.val_count < 4096)
                s.val_hist[s.val_count++] = (float)vloss;
            out->final_val = vloss;
            out->best_val = isnan(out->best_val) ? vloss : fmin(out->best_val, vloss);
        }
        json_t *r = json_object();
        json_object_set_new(r, "epoch", json_integer(s.epoch + 1));
        json_object_set_new(r, "step", json_integer(step));
        json_object_set_new(r, "loss_mean", loss_object(&s.epoch_sum, s.sum_w > 0 ? 1.0 / s.sum_w : NAN));
        json_object_set_new(r, "val_loss", real(vloss));
        json_object_set_new(r, "best", json_boolean(improved));
        json_object_set_new(r, "min_delta", real(rp.early_stopping_min_delta));
        json_object_set_new(r, "seconds", real(now() - t0));
        json_object_set_new(r, "max_rss_mib", real(max_rss_mib()));
        runlog_append(dir, RUNLOG_EPOCH, r);
        json_decref(r);
        out->epochs = s.epoch + 1;
        if (!o->quiet)
            fprintf(stderr, "[%s] epoch %d: train loss %.4f, validation loss %.4f%s\n", label,
                    s.epoch + 1, s.sum_w > 0 ? (double)s.epoch_sum.loss / s.sum_w : NAN, vloss,
                    improved ? " (best)" : "");

        run_state next = s;
        next.epoch = s.epoch + 1;
        next.next = 0;
        next.sum_w = 0;
        if (improved) {
            snprintf(path, sizeof path, "%s/best.safetensors", dir);
            if (save_checkpoint(tr, path, yaml, &next))
                goto fail;
        }
        if (rp.checkpoint_interval > 0 && (s.epoch + 1) % rp.checkpoint_interval == 0) {
            snprintf(path, sizeof path, "%s/epoch_%d.safetensors", dir, s.epoch + 1);
            if (save_checkpoint(tr, path, yaml, &next))
                goto fail;
        }
        if (o->abort_on_collapse &&
            collapse_fired(&s, s.epoch + 1, cbp.enabled, last_usage, last_crank, last_trank,
                           rp.early_stopping_min_delta, out))
            aborted = stop = 1;
        if (rp.early_stopping_enabled && should_stop && !stop) {
            if (!o->quiet)
                fprintf(stderr, "[%s] early stopping: no improvement for %d epochs\n", label,
                        s.es.bad_epochs);
            stop = 1;
        }
        if (stop) {
            s = next;
            break;
        }
    }
    out->steps = vqj_optimizer_steps(vqj_trainer_optimizer(tr));
    if (rp.diagnostics_enabled && last_diag_step != out->steps)
        DIAGNOSE(out->steps, s.epoch + 1, last);
    snprintf(path, sizeof path, "%s/last.safetensors", dir);
    if (save_checkpoint(tr, path, yaml, &s))
        goto fail;
    if (!interrupted && run_rank() == 0 && vqj_dataset_num_examples(val) > 0 &&
        end_eval(ctx, cfg, o, tr, val, dir))
        goto fail;
    if (interrupted) {
        fprintf(stderr, "vqjepa: interrupted; checkpoint written to %s\n", path);
        rc = RUN_INTERRUPTED;
    } else if (aborted) {
        rc = RUN_ABORTED;
    }
    if (!o->quiet)
        fprintf(stderr, "vqjepa: %lld optimizer steps; checkpoint %s\n", (long long)out->steps,
                path);
    goto done;
fail:
    rc = CLI_FAILED;
done:
    if (rc != CLI_OK && rc != RUN_INTERRUPTED && rc != RUN_ABORTED)
        run_comm_fail(rc);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    free(order);
    free(proj_c);
    free(proj_t);
    vqj_batch_destroy(bb);
    vqj_metrics_window_destroy(win);
    vqj_metrics_window_destroy(val_win);
    vqj_trainer_destroy(tr);
    vqj_dataset_destroy(train);
    vqj_dataset_destroy(val);
    vqj_dataset_destroy(all);
    free(yaml);
    vqj_config_destroy(cfg);
    if (ctx != pctx)
        vqj_context_destroy(ctx);
    vqj_context_destroy(pctx);
    return rc;
}
