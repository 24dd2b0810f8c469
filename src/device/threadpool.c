/* The CPU backend's thread pool (threadpool.h). A job is published by
 * bumping a generation counter; workers spin on it briefly (kernels often
 * come back to back), then sleep on a condition variable, so that between
 * jobs they leave the cores to OpenBLAS's GEMM threads. */
#include "device/threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define VQJI_PAUSE() _mm_pause()
#else
#define VQJI_PAUSE() ((void)0)
#endif

/* Polls of the generation counter before a worker sleeps: a few tens of
 * microseconds, about one kernel launch's worth of waiting. */
#define VQJI_POOL_SPIN 2000

typedef struct pool_job {
    vqji_range_fn fn;
    void *arg;
    size_t n, align;
    const int32_t *cum; /* weighted split (vqji_parallel_for_weighted), else NULL */
} pool_job;

typedef struct pool_worker {
    vqji_pool *pool;
    int index; /* 1 .. num_threads - 1 */
} pool_worker;

struct vqji_pool {
    int num_threads, started; /* started: workers running */
    pthread_t *threads;
    pool_worker *workers;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    atomic_uint generation; /* bumped (release) after `job` is written */
    atomic_int pending;     /* workers still on the current job */
    atomic_int stop;
    atomic_flag busy; /* held by the thread running a job */
    const pool_job *job;
};

/* The first index of thread t's part. */
static size_t part_start(const pool_job *job, int t, int nth)
{
    if (t <= 0)
        return 0;
    if (t >= nth)
        return job->n;
    if (job->cum) {
        /* The first item whose start is at or past t / nth of the total. */
        int64_t total = job->cum[job->n];
        int64_t goal = (total * t + nth - 1) / nth;
        size_t lo = 0, hi = job->n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (job->cum[mid] < goal)
                lo = mid + 1;
            else
                hi = mid;
        }
        return lo;
    }
    size_t s = job->n / (size_t)nth * (size_t)t + job->n % (size_t)nth * (size_t)t / (size_t)nth;
    s -= s % job->align;
    return s;
}

static void run_part(const pool_job *job, int t, int nth)
{
    size_t b = part_start(job, t, nth), e = part_start(job, t + 1, nth);
    if (b < e)
        job->fn(job->arg, b, e);
}

static void *worker_main(void *p)
{
    pool_worker *w = p;
    vqji_pool *pool = w->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g = atomic_load_explicit(&pool->generation, memory_order_acquire);
        for (int spin = 0; g == seen && spin < VQJI_POOL_SPIN; spin++) {
            VQJI_PAUSE();
            g = atomic_load_explicit(&pool->generation, memory_order_acquire);
        }
        if (g == seen) {
            pthread_mutex_lock(&pool->mutex);
            while ((g = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen &&
                   !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->wake, &pool->mutex);
            pthread_mutex_unlock(&pool->mutex);
        }
        if (atomic_load(&pool->stop))
            return NULL;
        seen = g;
        run_part(pool->job, w->index, pool->num_threads);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_release);
    }
}

vqj_status vqji_pool_create(const vqj_context *ctx, int num_threads, vqji_pool **out)
{
    vqji_pool *pool;
    *out = NULL;
    vqj_status st = vqji_calloc(ctx, 1, sizeof *pool, "the CPU thread pool", (void **)&pool);
    if (st)
        return st;
    pool->num_threads = num_threads > 1 ? num_threads : 1;
    atomic_init(&pool->generation, 0u);
    atomic_init(&pool->pending, 0);
    atomic_init(&pool->stop, 0);
    atomic_flag_clear(&pool->busy);
    if (pool->num_threads == 1) {
        *out = pool;
        return VQJ_OK;
    }
    int nw = pool->num_threads - 1;
    if ((st = vqji_calloc(ctx, (size_t)nw, sizeof *pool->threads, "the CPU thread pool",
                          (void **)&pool->threads)) ||
        (st = vqji_calloc(ctx, (size_t)nw, sizeof *pool->workers, "the CPU thread pool",
                          (void **)&pool->workers))) {
        free(pool->threads);
        free(pool);
        return st;
    }
    if (pthread_mutex_init(&pool->mutex, NULL) != 0) {
        free(pool->workers);
        free(pool->threads);
        free(pool);
        return vqji_fail(ctx, VQJ_ERR_INTERNAL, "cannot initialise the CPU thread pool's mutex");
    }
    if (pthread_cond_init(&pool->wake, NULL) != 0) {
        pthread_mutex_destroy(&pool->mutex);
        free(pool->workers);
        free(pool->threads);
        free(pool);
        return vqji_fail(ctx, VQJ_ERR_INTERNAL,
                         "cannot initialise the CPU thread pool's condition variable");
    }
    for (int i = 0; i < nw; i++) {
        pool->workers[i] = (pool_worker){.pool = pool, .index = i + 1};
        int rc = pthread_create(&pool->threads[i], NULL, worker_main, &pool->workers[i]);
        if (rc != 0) {
            vqji_pool_destroy(pool);
            return vqji_fail(ctx, VQJ_ERR_INTERNAL,
                             "cannot start CPU worker thread %d of %d (pthread_create: error %d)",
                             i + 1, nw, rc);
        }
        pool->started++;
    }
    *out = pool;
    return VQJ_OK;
}

void vqji_pool_destroy(vqji_pool *pool)
{
    if (!pool)
        return;
    if (pool->num_threads > 1) {
        pthread_mutex_lock(&pool->mutex);
        atomic_store(&pool->stop, 1);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->mutex);
        for (int i = 0; i < pool->started; i++)
            pthread_join(pool->threads[i], NULL);
        pthread_cond_destroy(&pool->wake);
        pthread_mutex_destroy(&pool->mutex);
    }
    free(pool->workers);
    free(pool->threads);
    free(pool);
}

static void pool_run(vqji_pool *pool, const pool_job *job)
{
    int nth = pool ? pool->num_threads : 1;
    if (nth <= 1 || atomic_flag_test_and_set_explicit(&pool->busy, memory_order_acquire)) {
        job->fn(job->arg, 0, job->n); /* serial: the same bits (threadpool.h) */
        return;
    }
    pool->job = job;
    atomic_store_explicit(&pool->pending, nth - 1, memory_order_relaxed);
    pthread_mutex_lock(&pool->mutex);
    atomic_fetch_add_explicit(&pool->generation, 1u, memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    run_part(job, 0, nth);
    while (atomic_load_explicit(&pool->pending, memory_order_acquire) != 0)
        VQJI_PAUSE();
    atomic_flag_clear_explicit(&pool->busy, memory_order_release);
}

void vqji_parallel_for(vqji_pool *pool, size_t n, size_t min_per_thread, size_t align,
                       vqji_range_fn fn, void *arg)
{
    if (n == 0)
        return;
    pool_job job = {.fn = fn, .arg = arg, .n = n, .align = align ? align : 1};
    if (!pool || pool->num_threads <= 1 || n < 2 * (min_per_thread ? min_per_thread : 1)) {
        fn(arg, 0, n);
        return;
    }
    pool_run(pool, &job);
}

void vqji_parallel_for_weighted(vqji_pool *pool, size_t n, const int32_t *cum,
                                size_t min_total, vqji_range_fn fn, void *arg)
{
    if (n == 0)
        return;
    pool_job job = {.fn = fn, .arg = arg, .n = n, .align = 1, .cum = cum};
    if (!pool || pool->num_threads <= 1 || n < 2 || (size_t)(cum[n] - cum[0]) < min_total) {
        fn(arg, 0, n);
        return;
    }
    pool_run(pool, &job);
}
