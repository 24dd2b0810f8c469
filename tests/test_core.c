/* The API foundations: version, status strings, contexts, errors, tensors,
 * and the size-prefixed params convention. */
#include "testutil.h"

#include <pthread.h>

static void test_version(void **state)
{
    (void)state;
    char expected[32];
    snprintf(expected, sizeof expected, "%d.%d.%d", VQJ_VERSION_MAJOR, VQJ_VERSION_MINOR,
             VQJ_VERSION_PATCH);
    assert_string_equal(vqj_version(), expected);
}

static void test_status_strings(void **state)
{
    (void)state;
    assert_string_equal(vqj_status_string(VQJ_OK), "ok");
    assert_string_equal(vqj_status_string(VQJ_ERR_INVALID_ARGUMENT), "invalid argument");
    assert_string_equal(vqj_status_string(VQJ_ERR_UNSUPPORTED), "unsupported");
    assert_string_equal(vqj_status_string((vqj_status)999), "unknown status");
    for (int s = VQJ_OK; s <= VQJ_ERR_INTERNAL; s++)
        assert_string_not_equal(vqj_status_string((vqj_status)s), "unknown status");
}

static void test_context_defaults(void **state)
{
    (void)state;
    vqj_context_params p;
    vqj_context_params_default(&p);
    assert_int_equal(p.size, sizeof p);
    assert_int_equal(p.device, VQJ_DEVICE_CPU);
    assert_int_equal(p.num_threads, 0);
    vqj_context *ctx = NULL;
    assert_int_equal(vqj_context_create(&p, &ctx), VQJ_OK);
    assert_non_null(ctx);
    assert_true(vqj_context_num_threads(ctx) >= 1); /* 0 resolved to the core count */
    assert_int_equal(vqj_context_seed(ctx), 123);
    assert_int_equal(vqj_context_device(ctx), VQJ_DEVICE_CPU);
    assert_string_equal(vqj_last_error(), "");
    vqj_context_destroy(ctx);
    vqj_context_destroy(NULL);
    vqj_context_params_default(NULL);
}

static void test_context_errors(void **state)
{
    (void)state;
    vqj_context *ctx = (vqj_context *)&ctx; /* must be reset to NULL on failure */
    assert_int_equal(vqj_context_create(NULL, &ctx), VQJ_ERR_INVALID_ARGUMENT);
    assert_null(ctx);
    assert_non_null(strstr(vqj_last_error(), "params is NULL"));

    vqj_context_params p;
    vqj_context_params_default(&p);
    assert_int_equal(vqj_context_create(&p, NULL), VQJ_ERR_INVALID_ARGUMENT);

    p.num_threads = -2;
    assert_int_equal(vqj_context_create(&p, &ctx), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "num_threads"));

    vqj_context_params_default(&p);
    p.device = (vqj_device_kind)7;
    assert_int_equal(vqj_context_create(&p, &ctx), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "device"));

    vqj_context_params_default(&p);
    p.size = 4; /* smaller than any published version */
    assert_int_equal(vqj_context_create(&p, &ctx), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "size"));
}

static void test_cuda_request(void **state)
{
    (void)state;
    vqj_context_params p;
    vqj_context_params_default(&p);
    p.device = VQJ_DEVICE_CUDA;
    vqj_context *ctx = NULL;
    vqj_status st = vqj_context_create(&p, &ctx);
    if (!vqj_device_compiled(VQJ_DEVICE_CUDA)) {
        assert_int_equal(st, VQJ_ERR_UNSUPPORTED);
        assert_null(ctx);
        assert_non_null(strstr(vqj_last_error(), "make CUDA=1"));
    } else {
        /* A CUDA build: either a GPU is present or the error says there is none. */
        assert_true(st == VQJ_OK || st == VQJ_ERR_UNSUPPORTED || st == VQJ_ERR_DEVICE);
        if (st != VQJ_OK)
            assert_true(strlen(vqj_last_error()) > 0);
        vqj_context_destroy(ctx);
    }
}

/* A caller built against a newer header passes a larger struct: accepted when
 * the unknown tail is zero, refused otherwise. */
static void test_params_size_convention(void **state)
{
    (void)state;
    struct {
        vqj_context_params p;
        uint64_t future_field;
    } newer;
    memset(&newer, 0, sizeof newer);
    vqj_context_params_default(&newer.p);
    newer.p.size = sizeof newer;
    vqj_context *ctx = NULL;
    assert_int_equal(vqj_context_create(&newer.p, &ctx), VQJ_OK);
    vqj_context_destroy(ctx);
    newer.future_field = 1;
    assert_int_equal(vqj_context_create(&newer.p, &ctx), VQJ_ERR_UNSUPPORTED);
    assert_non_null(strstr(vqj_last_error(), "newer"));
}

static void *record_error_in_thread(void *arg)
{
    vqj_context *ctx = arg;
    vqj_tensor *t = NULL;
    vqj_tensor_create(ctx, -1, 3, &t);
    return NULL;
}

/* Errors are per thread: a failure on another thread is invisible here. */
static void test_errors_per_thread(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_tensor *t = NULL;
    assert_int_equal(vqj_tensor_create(ctx, -5, 2, &t), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "-5"));
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, record_error_in_thread, ctx), 0);
    pthread_join(th, NULL);
    assert_non_null(strstr(vqj_last_error(), "-5"));
    /* A success clears the message. */
    assert_ok(ctx, vqj_tensor_create(ctx, 2, 2, &t));
    assert_string_equal(vqj_last_error(), "");
    vqj_tensor_destroy(t);
    vqj_context_destroy(ctx);
}

struct log_record {
    int calls;
    vqj_log_level level;
    char text[256];
};

static void log_record_fn(void *user, vqj_log_level level, const char *msg)
{
    struct log_record *r = user;
    r->calls++;
    r->level = level;
    snprintf(r->text, sizeof r->text, "%s", msg);
}

/* The library never prints: what it has to say goes to the callback, and the
 * level filter holds back what is below it. */
static void test_log_callback(void **state)
{
    (void)state;
    struct log_record rec = {0};
    vqj_context_params p;
    vqj_context_params_default(&p);
    p.log_fn = log_record_fn;
    p.log_user_data = &rec;
    vqj_context *ctx = NULL;
    assert_int_equal(vqj_context_create(&p, &ctx), VQJ_OK);
    vqj_context_destroy(ctx);
    assert_int_equal(rec.calls, 1);
    assert_int_equal(rec.level, VQJ_LOG_INFO);
    assert_non_null(strstr(rec.text, vqj_version()));

    rec.calls = 0;
    p.log_level = VQJ_LOG_WARNING;
    assert_int_equal(vqj_context_create(&p, &ctx), VQJ_OK);
    vqj_context_destroy(ctx);
    assert_int_equal(rec.calls, 0);
}

static void test_tensor_roundtrip(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    vqj_tensor *t = NULL;
    assert_ok(ctx, vqj_tensor_create(ctx, 3, 4, &t));
    assert_int_equal(vqj_tensor_rows(t), 3);
    assert_int_equal(vqj_tensor_cols(t), 4);
    float zeros[12], in[12], out[12];
    assert_ok(ctx, vqj_tensor_read(t, zeros, 12));
    for (int i = 0; i < 12; i++)
        assert_true(zeros[i] == 0.0f);
    test_fill(in, 12, 7, 2.0f);
    assert_ok(ctx, vqj_tensor_write(t, in, 12));
    assert_ok(ctx, vqj_tensor_read(t, out, 12));
    assert_memory_equal(in, out, sizeof in);
    assert_status(ctx, vqj_tensor_read(t, out, 11), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "11"));
    assert_status(ctx, vqj_tensor_write(t, NULL, 12), VQJ_ERR_INVALID_ARGUMENT);
    assert_ok(ctx, vqj_tensor_reshape(t, 0, 4));
    assert_int_equal(vqj_tensor_rows(t), 0);
    assert_ok(ctx, vqj_tensor_reshape(t, 100, 50));
    assert_int_equal(vqj_tensor_rows(t) * vqj_tensor_cols(t), 5000);
    assert_status(ctx, vqj_tensor_reshape(t, -1, 2), VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqj_tensor_rows(t), 100); /* unchanged by the failed call */
    vqj_tensor_destroy(t);
    vqj_tensor_destroy(NULL);
    vqj_context_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_status_strings),
        cmocka_unit_test(test_context_defaults),
        cmocka_unit_test(test_context_errors),
        cmocka_unit_test(test_cuda_request),
        cmocka_unit_test(test_params_size_convention),
        cmocka_unit_test(test_errors_per_thread),
        cmocka_unit_test(test_log_callback),
        cmocka_unit_test(test_tensor_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
