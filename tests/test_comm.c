/* The communicator layer in one process (docs/distributed.md): the single
 * backend's collectives, their errors, the MPI calls of a build without
 * MPI, and a trainer whose context has a communicator of size 1, which
 * must compute exactly what it computes without one. The 2-rank tests are
 * tests/mpi/ (make check-mpi). */
#include "testutil.h"
#include "testmodel.h"

static void test_single(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_comm *comm = NULL;
    assert_ok(ctx, vqj_comm_create_single(ctx, &comm));
    assert_int_equal(vqj_comm_rank(comm), 0);
    assert_int_equal(vqj_comm_size(comm), 1);
    assert_string_equal(vqj_comm_backend(comm), "single");
    assert_int_equal(vqj_comm_size(NULL), 1);
    float f[3] = {1.5f, -2.0f, 3.25f};
    assert_ok(ctx, vqj_comm_allreduce(comm, f, 3, VQJ_COMM_FLOAT32, VQJ_COMM_SUM));
    assert_ok(ctx, vqj_comm_allreduce(comm, f, 3, VQJ_COMM_FLOAT32, VQJ_COMM_AVG));
    assert_true(f[0] == 1.5f && f[1] == -2.0f && f[2] == 3.25f);
    int64_t i[2] = {7, -9}, g[2] = {0, 0};
    assert_ok(ctx, vqj_comm_allgather(comm, i, 2, g, VQJ_COMM_INT64));
    assert_true(g[0] == 7 && g[1] == -9);
    assert_ok(ctx, vqj_comm_broadcast(comm, i, 2, VQJ_COMM_INT64, 0));
    assert_ok(ctx, vqj_comm_check_same(comm, "abc", 3, "the configuration"));
    /* errors */
    int32_t n = 1;
    assert_status(ctx, vqj_comm_allreduce(comm, &n, 1, VQJ_COMM_INT32, VQJ_COMM_AVG),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "VQJ_COMM_AVG"));
    assert_status(ctx, vqj_comm_broadcast(comm, &n, 1, VQJ_COMM_INT32, 1),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_comm_allreduce(comm, NULL, 1, VQJ_COMM_INT32, VQJ_COMM_SUM),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_comm_allreduce(comm, &n, 1, (vqj_comm_type)9, VQJ_COMM_SUM),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_comm_create_single(NULL, &comm), VQJ_ERR_INVALID_ARGUMENT);
    /* attach and detach */
    assert_ok(ctx, vqj_context_set_comm(ctx, comm));
    assert_ptr_equal(vqj_context_comm(ctx), comm);
    assert_ok(ctx, vqj_context_set_comm(ctx, NULL));
    assert_null(vqj_context_comm(ctx));
    vqj_comm_destroy(comm);
    vqj_comm_destroy(NULL);
    vqj_context_destroy(ctx);
}

static void test_without_mpi(void **state)
{
    (void)state;
    if (vqj_comm_mpi_available())
        skip(); /* the MPI flavor: tests/mpi/ */
    vqj_context *ctx = test_context();
    vqj_comm *comm = NULL;
    assert_status(ctx, vqj_comm_create_mpi(ctx, NULL, &comm), VQJ_ERR_UNSUPPORTED);
    assert_non_null(strstr(vqj_last_error(), "MPI=1"));
    assert_status(ctx, vqj_comm_init_mpi(ctx, NULL, NULL, &comm), VQJ_ERR_UNSUPPORTED);
    assert_null(comm);
    vqj_context_destroy(ctx);
}

/* 6 steps (refresh, queue, views) of a trainer with and without a
 * communicator of size 1: every weight equal, bit for bit. */
static void run_steps(int with_comm, float *codebook, size_t count, float *loss)
{
    test_model_spec s = test_model_spec_default();
    s.refresh_interval = 2;
    s.queue = 8;
    s.examples = 64;
    test_model m;
    test_model_create(&m, &s);
    vqj_comm *comm = NULL;
    if (with_comm) {
        assert_ok(m.ctx, vqj_comm_create_single(m.ctx, &comm));
        assert_ok(m.ctx, vqj_context_set_comm(m.ctx, comm));
    }
    enum { B = 5, T = 3 };
    vqj_grid context[B * T], targets[B];
    for (int i = 0; i < 6; i++) {
        test_model_batch(&m, i, B, context, targets);
        vqj_train_metrics r = {.size = sizeof r};
        assert_ok(m.ctx, vqj_trainer_step(m.trainer, context, targets, B, &r));
        loss[i] = r.loss;
    }
    const vqj_weights *w = vqj_codebook_weights(m.codebook);
    assert_ok(m.ctx, vqj_weights_read(w, "codebook.embedding", codebook, count));
    assert_ok(m.ctx, vqj_context_set_comm(m.ctx, NULL));
    vqj_comm_destroy(comm);
    test_model_destroy(&m);
}

static void test_trainer_unchanged(void **state)
{
    (void)state;
    test_model_spec s = test_model_spec_default();
    size_t count = (size_t)s.codes * (size_t)s.hidden;
    float *a = malloc(count * sizeof *a), *b = malloc(count * sizeof *b);
    float la[6], lb[6];
    assert_non_null(a);
    assert_non_null(b);
    run_steps(0, a, count, la);
    run_steps(1, b, count, lb);
    assert_memory_equal(a, b, count * sizeof *a);
    assert_memory_equal(la, lb, sizeof la);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single),
        cmocka_unit_test(test_without_mpi),
        cmocka_unit_test(test_trainer_unchanged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
