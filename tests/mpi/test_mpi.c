/* Data-parallel training (docs/distributed.md), run by tests/mpi/check_mpi.sh
 * under `mpirun -np 2`: the 2-rank run equals one process training on the
 * same global batch (losses within 1e-5 relative over 20 steps), every
 * rank's model, codebook and queue are bit-identical, a checkpoint of the
 * 2-rank run resumes in one process and one of a single process on 2
 * ranks, and a non-finite value on one rank skips the step on all. Every rank makes the same collective calls whatever a check finds
 * (checks record, they do not jump), so a failure cannot hang the others.
 * Usage: test_mpi DIR (for the checkpoints). */
#include "../testutil.h"
#include "../testmodel.h"

#include <stdbool.h>

enum { T = 3, STEPS = 20, RESUME_AT = 10 };

static vqj_comm *comm;
static int rank, failures;

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "test_mpi rank %d: FAIL %s:%d: ", rank, __FILE__, __LINE__);       \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                           \
            failures++;                                                                        \
        }                                                                                      \
    } while (0)

typedef struct scenario {
    const char *name;
    int batch, accum;
    float dead_code;
} scenario;

typedef struct record {
    vqj_train_metrics m[STEPS];
} record;

static void make(test_model *m, const scenario *sc, int distributed)
{
    test_model_spec s = test_model_spec_default();
    s.dropout = 0.0f; /* masks are per rank (docs/distributed.md) */
    s.accum = sc->accum;
    s.dead_code = sc->dead_code;
    s.queue = 24; /* filled and wrapped within the run */
    s.refresh_interval = 3;
    s.refresh_threshold = 0.05f;
    s.examples = 400;
    test_model_create(m, &s);
    if (distributed)
        assert_ok(m->ctx, vqj_context_set_comm(m->ctx, comm));
}

/* Micro-steps first .. last-1 of the scenario's batches into rec. */
static void run(test_model *m, const scenario *sc, int first, int last, record *rec)
{
    vqj_grid *context = malloc((size_t)sc->batch * T * sizeof *context);
    vqj_grid *targets = malloc((size_t)sc->batch * sizeof *targets);
    assert_non_null(context);
    assert_non_null(targets);
    for (int i = first; i < last; i++) {
        test_model_batch(m, i, sc->batch, context, targets);
        vqj_train_metrics *r = &rec->m[i];
        r->size = sizeof *r;
        vqj_status st = vqj_trainer_step(m->trainer, context, targets, sc->batch, r);
        if (st != VQJ_OK) { /* every rank fails the same way, or MPI ends the run */
            fprintf(stderr, "test_mpi rank %d: step %d: %s\n", rank, i,
                    vqj_last_error());
            exit(1);
        }
    }
    free(context);
    free(targets);
}

static double rel(double a, double b, double floor_)
{
    double s = fabs(b) > floor_ ? fabs(b) : floor_;
    return fabs(a - b) / s;
}

/* Losses of two runs over micro-steps first .. last-1: 1e-5 relative (terms
 * near zero against 1e-3); the counters exactly. */
static void compare(const char *what, const record *a, const record *b, int first, int last)
{
    double worst = 0.0;
    for (int i = first; i < last; i++) {
        const vqj_train_metrics *x = &a->m[i], *y = &b->m[i];
        const float xs[] = {x->loss, x->infonce, x->relational, x->commitment, x->sigreg,
                            x->invariance_color, x->invariance_translation,
                            x->invariance_symmetry, x->temperature, x->grad_norm,
                            x->perplexity};
        const float ys[] = {y->loss, y->infonce, y->relational, y->commitment, y->sigreg,
                            y->invariance_color, y->invariance_translation,
                            y->invariance_symmetry, y->temperature, y->grad_norm,
                            y->perplexity};
        for (size_t k = 0; k < sizeof xs / sizeof *xs; k++) {
            double e = rel(xs[k], ys[k], k == 0 ? 0.0 : 1e-3);
            if (e > worst)
                worst = e;
            CHECK(e <= 1e-5, "%s: step %d, value %zu: %.9g vs %.9g (relative %.2e)", what, i, k,
                  (double)xs[k], (double)ys[k], e);
        }
        CHECK(x->batch == y->batch && x->context_tokens == y->context_tokens &&
                  x->active_codes == y->active_codes && x->refreshed == y->refreshed &&
                  x->dead_replaced == y->dead_replaced && x->skipped == y->skipped &&
                  x->step == y->step,
              "%s: step %d: counters differ (batch %d/%d tokens %d/%d active %d/%d refreshed "
              "%d/%d replaced %d/%d)",
              what, i, x->batch, y->batch, x->context_tokens, y->context_tokens, x->active_codes,
              y->active_codes, x->refreshed, y->refreshed, x->dead_replaced, y->dead_replaced);
    }
    printf("test_mpi: %s: steps %d..%d, largest relative difference %.2e\n", what, first,
           last - 1, worst);
}

/* Every float of a weights view equal on every rank, bit for bit. */
static void same_on_all_ranks(const char *what, const vqj_weights *w)
{
    size_t n = vqj_weights_num_tensors(w), total = 0;
    for (size_t t = 0; t < n; t++) {
        vqj_weight_info info;
        assert_ok(NULL, vqj_weights_info(w, t, &info));
        total += info.count;
    }
    float *mine = malloc(total * sizeof *mine);
    float *all = malloc(total * (size_t)vqj_comm_size(comm) * sizeof *all);
    assert_non_null(mine);
    assert_non_null(all);
    size_t off = 0;
    for (size_t t = 0; t < n; t++) {
        vqj_weight_info info;
        assert_ok(NULL, vqj_weights_info(w, t, &info));
        assert_ok(NULL, vqj_weights_read(w, info.name, mine + off, info.count));
        off += info.count;
    }
    assert_ok(NULL, vqj_comm_allgather(comm, mine, total, all, VQJ_COMM_FLOAT32));
    for (int r = 1; r < vqj_comm_size(comm); r++)
        CHECK(memcmp(all, all + (size_t)r * total, total * sizeof *all) == 0,
              "%s: rank %d differs from rank 0", what, r);
    free(mine);
    free(all);
}

static void barrier(void)
{
    int32_t x = 0;
    assert_ok(NULL, vqj_comm_allreduce(comm, &x, 1, VQJ_COMM_INT32, VQJ_COMM_SUM));
}

static void scenario_run(const scenario *sc, const char *dir)
{
    char ckpt2[1024], ckpt1[1024];
    snprintf(ckpt2, sizeof ckpt2, "%s/%s-2ranks.safetensors", dir, sc->name);
    snprintf(ckpt1, sizeof ckpt1, "%s/%s-1rank.safetensors", dir, sc->name);
    static record dist, single, resumed, resumed2;
    memset(&dist, 0, sizeof dist);

    /* 2 ranks, the global batch split, a checkpoint halfway (rank 0). */
    test_model a;
    make(&a, sc, 1);
    run(&a, sc, 0, RESUME_AT, &dist);
    if (rank == 0)
        assert_ok(a.ctx, vqj_trainer_save(a.trainer, ckpt2, NULL));
    run(&a, sc, RESUME_AT, STEPS, &dist);
    same_on_all_ranks("codebook", vqj_codebook_weights(a.codebook));
    same_on_all_ranks("encoder", vqj_encoder_weights(a.encoder));
    same_on_all_ranks("predictor", vqj_predictor_weights(a.predictor));
    same_on_all_ranks("loss (temperature, queue)", vqj_loss_weights(a.loss));
    same_on_all_ranks("target encoder", vqj_trainer_target_encoder_weights(a.trainer));
    test_model_destroy(&a);

    /* One process, the same global batches; its checkpoint halfway. */
    if (rank == 0) {
        test_model b;
        make(&b, sc, 0);
        run(&b, sc, 0, RESUME_AT, &single);
        assert_ok(b.ctx, vqj_trainer_save(b.trainer, ckpt1, NULL));
        run(&b, sc, RESUME_AT, STEPS, &single);
        test_model_destroy(&b);
        compare(sc->name, &dist, &single, 0, STEPS);
        int clipped = 0, refreshed = 0, replaced = 0;
        for (int i = 0; i < STEPS; i++) {
            clipped += single.m[i].grad_norm > 0.5f;
            refreshed += single.m[i].refreshed;
            replaced += single.m[i].dead_replaced;
        }
        printf("test_mpi: %s: %d steps clipped, %d codes refreshed, %d replaced\n", sc->name,
               clipped, refreshed, replaced);
        CHECK(clipped > 0, "%s: no step was clipped; the test would not see the order", sc->name);
        CHECK(sc->dead_code > 0.0f ? replaced > 0 : refreshed > 0,
              "%s: the codebook re-seeded nothing; the test would not see it", sc->name);

        /* The 2-rank checkpoint resumed in one process. */
        test_model c;
        make(&c, sc, 0);
        assert_ok(c.ctx, vqj_trainer_load(c.trainer, ckpt2));
        run(&c, sc, RESUME_AT, STEPS, &resumed);
        test_model_destroy(&c);
        char what[128];
        snprintf(what, sizeof what, "%s: 2-rank checkpoint resumed in 1 process", sc->name);
        compare(what, &resumed, &single, RESUME_AT, STEPS);
    }
    barrier();

    /* The single process's checkpoint resumed on 2 ranks. */
    test_model d;
    make(&d, sc, 1);
    assert_ok(d.ctx, vqj_trainer_load(d.trainer, ckpt1));
    run(&d, sc, RESUME_AT, STEPS, &resumed2);
    same_on_all_ranks("codebook after resuming", vqj_codebook_weights(d.codebook));
    test_model_destroy(&d);
    if (rank == 0) {
        char what[128];
        snprintf(what, sizeof what, "%s: 1-process checkpoint resumed on 2 ranks", sc->name);
        compare(what, &resumed2, &single, RESUME_AT, STEPS);
    }
}

/* A rank that passes another batch size is told so, on every rank. */
static void mismatched_batch(void)
{
    scenario sc = {"mismatch", 6, 1, 0.0f};
    test_model m;
    make(&m, &sc, 1);
    vqj_grid context[7 * T], targets[7];
    int b = rank == 0 ? 6 : 7;
    test_model_batch(&m, 0, b, context, targets);
    vqj_train_metrics r = {.size = sizeof r};
    vqj_status st = vqj_trainer_step(m.trainer, context, targets, b, &r);
    CHECK(st == VQJ_ERR_INVALID_ARGUMENT && strstr(vqj_last_error(), "same global"),
          "a mismatched batch gave %d: %s", (int)st, vqj_last_error());
    const char *cfg = rank == 0 ? "a: 1" : "a: 2";
    st = vqj_comm_check_same(comm, cfg, strlen(cfg), "the configuration");
    CHECK(st == VQJ_ERR_INVALID_ARGUMENT && strstr(vqj_last_error(), "differs across ranks"),
          "a mismatched configuration gave %d: %s", (int)st, vqj_last_error());
    CHECK(vqj_comm_check_same(comm, "same", 4, "x") == VQJ_OK, "equal bytes differ");
    test_model_destroy(&m);
}

/* A non-finite value on one rank only (rank 1's encoder blown up): every
 * rank skips the step, and nothing waits for ever. */
static void skipped_together(void)
{
    scenario sc = {"skip", 6, 1, 0.0f};
    test_model m;
    make(&m, &sc, 1);
    vqj_weights *w = vqj_encoder_weights(m.encoder);
    vqj_weight_info info;
    assert_ok(m.ctx, vqj_weights_info(w, 0, &info));
    float *big = malloc(info.count * sizeof *big);
    assert_non_null(big);
    for (size_t i = 0; i < info.count; i++)
        big[i] = 3e38f;
    if (rank == 1)
        assert_ok(m.ctx, vqj_weights_write(w, info.name, big, info.count));
    vqj_grid context[6 * T], targets[6];
    test_model_batch(&m, 0, 6, context, targets);
    vqj_train_metrics r = {.size = sizeof r};
    assert_ok(m.ctx, vqj_trainer_step(m.trainer, context, targets, 6, &r));
    CHECK(r.skipped == 1 && r.step == 0, "rank %d: skipped %d, step %lld", rank, r.skipped,
          (long long)r.step);
    free(big);
    test_model_destroy(&m);
}

int main(int argc, char **argv)
{
    vqj_context *cctx = test_context();
    if (vqj_comm_init_mpi(cctx, &argc, &argv, &comm) != VQJ_OK) {
        fprintf(stderr, "test_mpi: %s\n", vqj_last_error());
        return 1;
    }
    rank = vqj_comm_rank(comm);
    if (argc < 2 || vqj_comm_size(comm) != 2) {
        fprintf(stderr, "usage: mpirun -np 2 test_mpi DIR\n");
        return 2;
    }
    if (rank == 0)
        printf("test_mpi: %d ranks over %s\n", vqj_comm_size(comm), vqj_comm_backend(comm));
    /* An odd global batch (5 + 4) with refresh; an even one with
     * accumulation and dead-code replacement. */
    const scenario scenarios[] = {{"refresh", 9, 1, 0.0f}, {"accumulate", 8, 2, 3.0f}};
    for (size_t i = 0; i < sizeof scenarios / sizeof *scenarios; i++)
        scenario_run(&scenarios[i], argv[1]);
    mismatched_batch();
    skipped_together();
    int32_t total = failures;
    assert_ok(cctx, vqj_comm_allreduce(comm, &total, 1, VQJ_COMM_INT32, VQJ_COMM_SUM));
    vqj_comm_destroy(comm);
    vqj_context_destroy(cctx);
    if (rank == 0)
        printf("test_mpi: %s (%d failed checks)\n", total ? "FAILED" : "passed", (int)total);
    return total ? 1 : 0;
}
