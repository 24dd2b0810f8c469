/* The CPU backend's thread pool (threadpool.h). A job's range is cut into a
 * few chunks per thread; the caller and the workers claim chunks one at a
 * time from a shared counter, so a worker the OS has not scheduled yet
 * delays nothing: the others take its chunks. The job's generation, its
 * number of chunks and the next chunk to claim share one 64-bit word, so a
 * claim is valid only for the job it was made for. Workers poll for a new job briefly (kernels often come back
 * to back), then sleep on a condition variable, so that between jobs they
 * leave the cores to OpenBLAS's GEMM threads. */
#include "device/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define VQJI_PAUSE() _mm_pause()
#else
#define VQJI_PAUSE() ((void)0)
#endif

/* Polls of the job word before a worker sleeps (or the caller, waiting for
 * the last chunks, starts yielding its core): a few tens of microseconds. */
#define VQJI_POOL_SPIN 2000

/* Chunks per thread: enough to even out a late or slow thread. */
#define VQJI_POOL_CHUNKS 4

/* The job word: generation (32 bits) | chunks (16) | next chunk (16). */
#define WORD(gen, chunks) ((unsigned long long)(gen) << 32 | (unsigned long long)(chunks) << 16)
#define WORD_GEN(w) ((w) >> 32)
#define WORD_CHUNKS(w) ((size_t)((w) >> 16 & 0xffffu))
#define WORD_NEXT(w) ((size_t)((w)&0xffffu))
#define VQJI_POOL_MAX_CHUNKS 0xffffu

typedef struct pool_job {
    vqji_range_fn fn;
    void *arg;
    size_t n, align;
    const int32_t *cum; /* weighted split (vqji_parallel_for_weighted), else NULL */
} pool_job;

struct vqji_pool {
    int num_threads, started; /* started: workers running */
    pthread_t *threads;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    /* WORD(generation, chunks) + next chunk to claim: stored (release)
     * after `job` is written, claimed with a compare-and-swap (acquire). */
    atomic_ullong word;
    atomic_size_t done; /* chunks finished */
    atomic_int stop;
    atomic_flag busy; /* held by the thread running a job */
    pool_job job;
};

/* The first index of chunk c of `chunks`. */
static size_t chunk_start(const pool_job *job, size_t c, size_t chunks)
{
    if (c == 0)
        return 0;
    if (c >= chunks)
        return job->n;
    if (job->cum) {
        /* The first item whose start is at or past c / chunks of the total. */
        int64_t total = job->cum[job->n];
        int64_t goal = (int64_t)(((unsigned long long)total * c + chunks - 1) / chunks);
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
    size_t s = job->n / chunks * c + job->n % chunks * c / chunks;
    return s - s % job->align;
}

/* Claim and run chunks of generation `gen` until none is left (or a newer
 * job replaced it). The job's fields are read only after a successful
 * claim: the job cannot change before that chunk is counted done. */
static void run_chunks(vqji_pool *pool, unsigned long long gen)
{
    unsigned long long w = atomic_load_explicit(&pool->word, memory_order_acquire);
    for (;;) {
        if (WORD_GEN(w) != gen || WORD_NEXT(w) >= WORD_CHUNKS(w))
            return;
        if (!atomic_compare_exchange_weak_explicit(&pool->word, &w, w + 1, memory_order_acquire,
                                                   memory_order_acquire))
            continue; /* w now holds the current word */
        size_t c = WORD_NEXT(w), chunks = WORD_CHUNKS(w);
        const pool_job *job = &pool->job;
        size_t b = chunk_start(job, c, chunks), e = chunk_start(job, c + 1, chunks);
        if (b < e)
            job->fn(job->arg, b, e);
        atomic_fetch_add_explicit(&pool->done, 1, memory_order_release);
        w = atomic_load_explicit(&pool->word, memory_order_acquire);
    }
}

static void *worker_main(void *p)
{
    vqji_pool *pool = p;
    unsigned long long seen = 0;
    for (;;) {
        unsigned long long g = WORD_GEN(atomic_load_explicit(&pool->word, memory_order_acquire));
        for (int spin = 0; g == seen && spin < VQJI_POOL_SPIN; spin++) {
            VQJI_PAUSE();
            g = WORD_GEN(atomic_load_explicit(&pool->word, memory_order_acquire));
        }
        if (g == seen) {
            pthread_mutex_lock(&pool->mutex);
            while ((g = WORD_GEN(atomic_load_explicit(&pool->word, memory_order_acquire))) ==
                       seen &&
                   !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->wake, &pool->mutex);
            pthread_mutex_unlock(&pool->mutex);
        }
        if (atomic_load(&pool->stop))
            return NULL;
        seen = g;
        run_chunks(pool, g);
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
    atomic_init(&pool->word, 0ull);
    atomic_init(&pool->done, 0);
    atomic_init(&pool->stop, 0);
    atomic_flag_clear(&pool->busy);
    if (pool->num_threads == 1) {
        *out = pool;
        return VQJ_OK;
    }
    int nw = pool->num_threads - 1;
    if ((st = vqji_calloc(ctx, (size_t)nw, sizeof *pool->threads, "the CPU thread pool",
                          (void **)&pool->threads))) {
        free(pool);
        return st;
    }
    if (pthread_mutex_init(&pool->mutex, NULL) != 0) {
        free(pool->threads);
        free(pool);
        return vqji_fail(ctx, VQJ_ERR_INTERNAL, "cannot initialise the CPU thread pool's mutex");
    }
    if (pthread_cond_init(&pool->wake, NULL) != 0) {
        pthread_mutex_destroy(&pool->mutex);
        free(pool->threads);
        free(pool);
        return vqji_fail(ctx, VQJ_ERR_INTERNAL,
                         "cannot initialise the CPU thread pool's condition variable");
    }
    for (int i = 0; i < nw; i++) {
        int rc = pthread_create(&pool->threads[i], NULL, worker_main, pool);
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
    free(pool->threads);
    free(pool);
}

static void pool_run(vqji_pool *pool, const pool_job *job)
{
    if (atomic_flag_test_and_set_explicit(&pool->busy, memory_order_acquire)) {
        job->fn(job->arg, 0, job->n); /* serial: the same bits (threadpool.h) */
        return;
    }
    /* No claim of the previous job can still succeed (its chunks are all
     * done), so the job may be rewritten before the word is. */
    pool->job = *job;
    size_t chunks = (size_t)pool->num_threads * VQJI_POOL_CHUNKS;
    chunks = chunks < job->n ? chunks : job->n;
    chunks = chunks < VQJI_POOL_MAX_CHUNKS ? chunks : VQJI_POOL_MAX_CHUNKS;
    atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
    unsigned long long gen =
        (WORD_GEN(atomic_load_explicit(&pool->word, memory_order_relaxed)) + 1) & 0xffffffffull;
    pthread_mutex_lock(&pool->mutex);
    atomic_store_explicit(&pool->word, WORD(gen, chunks), memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    run_chunks(pool, gen);
    /* Chunks claimed by workers may still run: spin briefly, then yield the
     * core, which an oversubscribed machine may need to run that worker. */
    for (int spin = 0; atomic_load_explicit(&pool->done, memory_order_acquire) != chunks; spin++) {
        if (spin < VQJI_POOL_SPIN)
            VQJI_PAUSE();
        else
            sched_yield();
    }
    atomic_flag_clear_explicit(&pool->busy, memory_order_release);
}

void vqji_parallel_for(vqji_pool *pool, size_t n, size_t min_per_thread, size_t align,
                       vqji_range_fn fn, void *arg)
{
    if (n == 0)
        return;
    if (!pool || pool->num_threads <= 1 || n < 2 * (min_per_thread ? min_per_thread : 1)) {
        fn(arg, 0, n);
        return;
    }
    pool_job job = {.fn = fn, .arg = arg, .n = n, .align = align ? align : 1};
    pool_run(pool, &job);
}

void vqji_parallel_for_weighted(vqji_pool *pool, size_t n, const int32_t *cum,
                                size_t min_total, vqji_range_fn fn, void *arg)
{
    if (n == 0)
        return;
    if (!pool || pool->num_threads <= 1 || n < 2 || (size_t)(cum[n] - cum[0]) < min_total) {
        fn(arg, 0, n);
        return;
    }
    pool_job job = {.fn = fn, .arg = arg, .n = n, .align = 1, .cum = cum};
    pool_run(pool, &job);
}
