/* `vqjepa bench` measurement "train_step": whole training steps of the
 * reference configuration (every *_params_default() of the library: D 384,
 * K 768, 3 relational layers x 8 heads, P 256, queue 8192, Adam, ...) on
 * examples built from ARC task files, or from the built-in synthetic
 * generator when there are none.
 *
 * A "step" here is one vqj_trainer_step() call on one micro-batch of B
 * examples (B*T context grids and B target grids) with grad_accum_steps = 1,
 * so every step also runs the optimizer update, the target network's EMA
 * and the queue push. Everything the trainer does is inside the timed
 * region: tokenizing the 4B grids, and for the "full" variant building the
 * invariance views (palette and flip views are re-tokenized grids, the
 * translation view shifts coordinate features).
 *
 * Variants: "full" is the reference configuration; "core" is the same with
 * the SIGReg and the three invariance weights at 0.
 *
 * Steady state: the negatives queue starts full (8192 random unit rows, as
 * after the first 32 steps of a run), then `warmup` untimed steps grow every
 * buffer and run the codebook's one-off k-means++ seeding, then `steps`
 * timed steps. max_rss_mib is the peak resident size of the whole process
 * so far (getrusage): run one variant per process to get it per variant. */
#include "bench_phases.h"
#include "cli.h"
#include "run.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

int bench_train(vqj_context *table_ctx, const char *data_dir, int batch, int steps, int warmup,
                const char *variant, int threads, int json);

/* `bench --max-objects N` (cmd_bench.c): the tokenizer's and loss's cap;
 * 0 keeps the library default (16). */
int bench_max_objects;

/* `bench --phases` (cmd_bench.c): the time split by phase (bench_phases.c). */
int bench_phases;

/* `bench --config` and `--set KEY=VALUE` (cmd_bench.c): the configuration
 * train_step times instead of the library's defaults, and keys changed in it. */
const char *bench_config;
const char *bench_sets[BENCH_MAX_SETS];
int bench_num_sets;

/* Apply the --set KEY=VALUE options to cfg. */
static vqj_status apply_sets(vqj_config *cfg)
{
    vqj_status st = VQJ_OK;
    for (int i = 0; !st && i < bench_num_sets; i++) {
        const char *eq = strchr(bench_sets[i], '=');
        char key[256];
        size_t n = (size_t)(eq - bench_sets[i]);
        if (n >= sizeof key) {
            fprintf(stderr, "vqjepa bench: --set %s: the key is too long\n", bench_sets[i]);
            return VQJ_ERR_INVALID_ARGUMENT;
        }
        memcpy(key, bench_sets[i], n);
        key[n] = 0;
        st = vqj_config_set(cfg, key, eq + 1);
    }
    return st;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double max_rss_mib(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0.0;
    return (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
}

/* `bench --device` (cmd_bench.c): where train_step runs. */
vqj_device_kind bench_device = VQJ_DEVICE_CPU;

/* The reference model (grad_accum_steps 1: a step is one micro-batch,
 * optimizer included), its queue filled as in the steady state. */
static vqj_status model_create(vqj_context *ctx, int core, vqj_trainer **tr)
{
    /* The library's defaults but the tokenizer's cap, which the config
     * raises to 64 and the params structs keep at 16. */
    char objects[16];
    snprintf(objects, sizeof objects, "%d", bench_max_objects > 0 ? bench_max_objects : 16);
    vqj_config *cfg = NULL;
    vqj_status st = bench_config ? run_config_open(ctx, bench_config, &cfg)
                                 : vqj_config_default(ctx, &cfg);
    if (!st && (!bench_config || bench_max_objects > 0))
        st = vqj_config_set(cfg, "tokenizer.max_objects", objects);
    if (!st)
        st = apply_sets(cfg);
    if (!st)
        st = vqj_config_set(cfg, "training.grad_accum_steps", "1");
    if (!st)
        st = vqj_config_set(cfg, "training.device",
                            bench_device == VQJ_DEVICE_CUDA ? "cuda" : "cpu");
    static const char *const core_zero[] = {"sigreg.weight", "invariance.color_weight",
                                            "invariance.translation_weight",
                                            "invariance.symmetry_weight"};
    for (size_t k = 0; core && !st && k < sizeof core_zero / sizeof *core_zero; k++)
        st = vqj_config_set(cfg, core_zero[k], "0");
    vqj_loss_params lp;
    vqj_loss_params_default(&lp);
    if (!st)
        st = vqj_config_loss_params(cfg, &lp);
    if (!st)
        st = vqj_trainer_create_from_config(ctx, cfg, tr);
    vqj_config_destroy(cfg);
    /* Steady state of the queue: full, as after queue_size / B steps. */
    vqj_tensor *rows = NULL;
    float *host = NULL;
    if (!st && lp.queue_size > 0) {
        size_t n = (size_t)lp.queue_size * (size_t)lp.projection_dim;
        st = vqj_tensor_create(ctx, lp.queue_size, lp.projection_dim, &rows);
        if (!st && !(host = malloc(n * sizeof *host)))
            st = VQJ_ERR_OUT_OF_MEMORY;
        if (!st) {
            uint64_t s = 0x9E3779B97F4A7C15ull;
            for (size_t r = 0; r < (size_t)lp.queue_size; r++) {
                float *row = host + r * (size_t)lp.projection_dim;
                double norm = 0.0;
                for (int j = 0; j < lp.projection_dim; j++) {
                    /* Box-Muller on xorshift64* draws: isotropic unit rows. */
                    double u[2];
                    for (int k = 0; k < 2; k++) {
                        s ^= s >> 12;
                        s ^= s << 25;
                        s ^= s >> 27;
                        u[k] = ((double)((s * 2685821657736338717ull) >> 11) + 0.5) * 0x1p-53;
                    }
                    row[j] = (float)(sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]));
                    norm += (double)row[j] * row[j];
                }
                for (int j = 0; j < lp.projection_dim; j++)
                    row[j] = (float)(row[j] / sqrt(norm));
            }
            st = vqj_tensor_write(rows, host, n);
        }
        if (!st)
            st = vqj_loss_queue_push(vqj_trainer_loss(*tr), rows);
    }
    free(host);
    vqj_tensor_destroy(rows);
    return st;
}

/* One variant: build, warm up, time. An exit status. */
static int run_variant(vqj_context *ctx, const vqj_dataset *data, const size_t *order,
                       const char *variant, int batch, int steps, int warmup, int json)
{
    int core = strcmp(variant, "core") == 0;
    size_t n = vqj_dataset_num_examples(data);
    int T = vqj_dataset_context_window(data);
    vqj_trainer *tr = NULL;
    vqj_grid *context = malloc((size_t)batch * (size_t)T * sizeof *context);
    vqj_grid *targets = malloc((size_t)batch * sizeof *targets);
    double *times = calloc((size_t)steps, sizeof *times); /* of the timed steps */
    int status = CLI_FAILED;
    if (!context || !targets || !times) {
        fprintf(stderr, "vqjepa bench: train_step: out of memory\n");
        goto done;
    }
    vqj_status st = model_create(ctx, core, &tr);
    if (st == VQJ_ERR_OUT_OF_MEMORY && !*vqj_last_error()) {
        fprintf(stderr, "vqjepa bench: train_step: out of memory\n");
        goto done;
    }
    if (st != VQJ_OK)
        goto fail;
    if (bench_phases)
        bench_phases_install(ctx);
    double total = 0.0, best = -1.0;
    long tokens = 0;
    int skipped = 0;
    vqj_train_metrics last = {.size = sizeof last};
    for (int s = 0; s < warmup + steps; s++) {
        for (int e = 0; e < batch; e++) {
            const vqj_grid *cg, *tg;
            size_t i = order[((size_t)s * (size_t)batch + (size_t)e) % n];
            if (vqj_dataset_example(data, i, &cg, &tg) != VQJ_OK)
                goto fail;
            for (int k = 0; k < T; k++)
                context[(size_t)e * T + k] = cg[k];
            targets[e] = *tg;
        }
        vqj_train_metrics met = {.size = sizeof met};
        if (bench_phases && s == warmup)
            bench_phases_reset(1);
        double t0 = now_s();
        if (vqj_trainer_step(tr, context, targets, batch, &met) != VQJ_OK)
            goto fail;
        double dt = now_s() - t0;
        if (s < warmup)
            continue;
        total += dt;
        times[s - warmup] = dt;
        if (best < 0 || dt < best)
            best = dt;
        tokens += met.context_tokens;
        skipped += met.skipped;
        last = met;
    }
    double ms = steps ? 1e3 * total / steps : 0.0;
    double sps = total > 0 ? (double)batch * steps / total : 0.0;
    double rss = max_rss_mib();
    int threads = vqj_context_num_threads(ctx);
    /* Data-parallel (under mpirun): rank 0 reports the global batch's rate. */
    int ranks = vqj_comm_size(vqj_context_comm(ctx));
    if (vqj_comm_rank(vqj_context_comm(ctx)) != 0) {
        status = CLI_OK;
        goto done;
    }
    if (json && ranks > 1)
        printf("{\"what\":\"train_step\",\"impl\":\"c\",\"variant\":\"%s\",\"batch\":%d,"
               "\"threads\":%d,\"ranks\":%d,\"ms_per_step\":%.2f,\"samples_per_s\":%.2f,"
               "\"max_rss_mib\":%.1f,\"max_objects\":%d}\n",
               variant, batch, threads, ranks, ms, sps, rss,
               bench_max_objects ? bench_max_objects : 16);
    else if (json)
        printf("{\"what\":\"train_step\",\"impl\":\"c\",\"variant\":\"%s\",\"batch\":%d,"
               "\"threads\":%d,\"ms_per_step\":%.2f,\"samples_per_s\":%.2f,"
               "\"max_rss_mib\":%.1f,\"max_objects\":%d}\n",
               variant, batch, threads, ms, sps, rss, bench_max_objects ? bench_max_objects : 16);
    else
        printf("train_step %s: batch %d, %d threads, max_objects %d, %.1f ms/step, "
               "%.1f samples/s, max RSS %.0f MiB\n",
               variant, batch, threads, bench_max_objects ? bench_max_objects : 16, ms, sps, rss);
    fflush(stdout);
    fprintf(stderr,
            "train_step %s: %d warm-up + %d timed steps (best %.1f ms); %.0f context tokens/step "
            "(%.2f per grid); last loss %.4f (infonce %.4f sigreg %.4f), %d codes active%s\n",
            variant, warmup, steps, best * 1e3, steps ? (double)tokens / steps : 0.0,
            steps ? (double)tokens / steps / ((double)batch * T) : 0.0, (double)last.loss,
            (double)last.infonce, (double)last.sigreg, last.active_codes,
            skipped ? " (some steps were skipped as non-finite)" : "");
    fprintf(stderr, "train_step %s: timed steps", variant);
    for (int s = 0; s < steps; s++)
        fprintf(stderr, " %.0f", times[s] * 1e3);
    fprintf(stderr, " ms\n");
    if (bench_phases) {
        bench_phases_report(stderr, variant, steps, steps ? total / steps : 0.0, 0);
        if (json)
            bench_phases_report(stdout, variant, steps, steps ? total / steps : 0.0, 1);
        fflush(stdout);
    }
    status = CLI_OK;
    goto done;
fail:
    fprintf(stderr, "vqjepa bench: train_step %s: %s\n", variant, vqj_last_error());
done:
    if (bench_phases)
        bench_phases_uninstall(ctx);
    vqj_trainer_destroy(tr);
    free(context);
    free(targets);
    free(times);
    return status;
}

/* The train_step rows: one line per variant ("core", "full" or "both").
 * data_dir NULL: the synthetic generator. */
int bench_train(vqj_context *table_ctx, const char *data_dir, int batch, int steps, int warmup,
                const char *variant, int threads, int json)
{
    vqj_context *ctx = run_context("bench", threads, bench_device);
    if (!ctx)
        return CLI_FAILED;
    if (run_comm()) /* under mpirun: the global batch split over the ranks */
        vqj_context_set_comm(ctx, run_comm());
    int status = CLI_FAILED;
    vqj_dataset *data = NULL;
    size_t *order = NULL;
    vqj_dataset_params dp;
    vqj_dataset_params_default(&dp);
    vqj_status st;
    if (data_dir) {
        st = vqj_dataset_from_arc(ctx, &dp, data_dir, &data);
    } else {
        vqj_synthetic_params sp;
        vqj_synthetic_params_default(&sp);
        long want = (long)batch * (warmup + steps);
        sp.num_examples = want < 1 ? 1 : (want > 100000 ? 100000 : (int)want);
        st = vqj_dataset_synthetic(ctx, &dp, &sp, &data);
    }
    if (st) {
        fprintf(stderr, "vqjepa bench: train_step: %s\n", vqj_last_error());
        goto done;
    }
    size_t n = vqj_dataset_num_examples(data);
    /* The order of a run's first epoch (tools/reference/bench_ref.py uses
     * the same one). */
    if (!(order = malloc(n * sizeof *order)) ||
        vqj_dataset_shuffle(data, vqj_context_seed(ctx), 0, order) != VQJ_OK) {
        fprintf(stderr, "vqjepa bench: train_step: cannot shuffle the examples\n");
        goto done;
    }
    status = CLI_OK;
    static const char *const names[] = {"core", "full"};
    for (int v = 0; v < 2 && status == CLI_OK; v++)
        if (strcmp(variant, "both") == 0 || strcmp(variant, names[v]) == 0)
            status = run_variant(ctx, data, order, names[v], batch, steps, warmup, json);
done:
    free(order);
    vqj_dataset_destroy(data);
    vqj_context_destroy(ctx);
    /* OpenBLAS's thread count is process-wide: give the table's context its
     * own back. */
    if (table_ctx)
        openblas_set_num_threads(vqj_context_num_threads(table_ctx));
    return status;
}
