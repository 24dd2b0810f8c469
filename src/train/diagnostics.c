/* Diagnostics and health (DESIGN.md section 6; formulas and thresholds in
 * docs/diagnostics.md): embedding metrics of a sample of projections, the
 * sample window of one diagnostics interval, the seed's health checks and
 * abort criteria, and early stopping. The covariance and its eigenvalues go
 * through the device's linear-algebra ops; the per-dimension moments are
 * O(n d) host loops, all in double. */
#include "core/core.h"
#include "core/linalg.h" /* the host fallback of covariance_eigvals() */
#include "core/params.h"
#include "device/device.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Embedding metrics ---- */

/* Mean variance and Gaussian score from per-dimension central moments. */
static void moment_metrics(int n, int d, const float *x, double *buf, double *variance,
                           double *gaussian_score)
{
    double *mean = buf, *m2 = buf + d, *m3 = buf + 2 * (size_t)d, *m4 = buf + 3 * (size_t)d;
    for (int j = 0; j < 4 * d; j++)
        buf[j] = 0.0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
            mean[j] += x[(size_t)i * d + j];
    for (int j = 0; j < d; j++)
        mean[j] /= n;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) {
            double c = (double)x[(size_t)i * d + j] - mean[j], c2 = c * c;
            m2[j] += c2;
            m3[j] += c2 * c;
            m4[j] += c2 * c2;
        }
    double var_sum = 0.0, skew_sum = 0.0, kurt_sum = 0.0;
    int shaped = 0;
    for (int j = 0; j < d; j++) {
        var_sum += m2[j] / (n - 1);
        /* Population (biased) moment ratios, as scipy.stats' defaults; a
         * constant dimension has no shape and is left out. */
        double s2 = m2[j] / n;
        if (!(s2 > 0.0))
            continue;
        skew_sum += fabs((m3[j] / n) / (s2 * sqrt(s2)));
        kurt_sum += fabs((m4[j] / n) / (s2 * s2) - 3.0);
        shaped++;
    }
    *variance = var_sum / d;
    *gaussian_score = shaped ? 1.0 / (1.0 + skew_sum / shaped + kurt_sum / shaped) : 0.0;
}

/* Isotropy and effective rank from the eigenvalues, negatives read as 0
 * (they are rounding error of a positive semi-definite matrix). */
static void spectrum_metrics(int d, const double *w, double *isotropy, double *effective_rank)
{
    double lo = INFINITY, hi = 0.0, total = 0.0;
    for (int j = 0; j < d; j++) {
        double l = w[j] > 0.0 ? w[j] : 0.0;
        lo = l < lo ? l : lo;
        hi = l > hi ? l : hi;
        total += l;
    }
    if (!(hi > 0.0)) {
        *isotropy = 0.0;
        *effective_rank = 0.0;
        return;
    }
    double entropy = 0.0;
    for (int j = 0; j < d; j++) {
        double p = (w[j] > 0.0 ? w[j] : 0.0) / total;
        if (p > 0.0)
            entropy -= p * log(p);
    }
    *isotropy = lo / hi;
    *effective_rank = exp(entropy);
}

/* Eigenvalues (ascending) of the covariance of x [n x d] (host, n >= 2)
 * into w [d] (host). On the context's device when it has the linear-algebra
 * ops; a backend without them is served by the host routines of
 * core/linalg.h, since the sample is on the host anyway. */
static vqj_status covariance_eigvals(vqj_context *ctx, int n, int d, const float *x, double *w)
{
    size_t nd = (size_t)n * d, dd = (size_t)d * d, bytes;
    if (!vqji_mul_size(nd, sizeof(double), &bytes))
        return vqji_fail(ctx, VQJ_ERR_OUT_OF_MEMORY, "%d x %d samples are too many", n, d);
    vqji_device *dev = ctx->device;
    const vqji_device_ops *ops = dev->ops;
    vqj_status st;
    if (!ops->covariance || !ops->sym_eigvals) {
        double *centered = NULL, *cov = NULL;
        st = vqji_malloc(ctx, bytes, "the centred sample", (void **)&centered);
        if (!st)
            st = vqji_malloc(ctx, dd * sizeof(double), "the covariance", (void **)&cov);
        if (!st) {
            vqji_host_covariance(n, d, x, centered, cov);
            st = vqji_host_sym_eigvals(ctx, d, cov, w);
        }
        free(cov);
        free(centered);
        return st;
    }
    float *x_dev = NULL;
    double *centered = NULL, *cov = NULL, *w_dev = NULL;
    st = ops->alloc(dev, nd * sizeof(float), (void **)&x_dev);
    if (!st)
        st = ops->alloc(dev, bytes, (void **)&centered);
    if (!st)
        st = ops->alloc(dev, dd * sizeof(double), (void **)&cov);
    if (!st)
        st = ops->alloc(dev, (size_t)d * sizeof(double), (void **)&w_dev);
    if (!st)
        st = ops->upload(dev, x_dev, x, nd * sizeof(float));
    if (!st) {
        ops->covariance(dev, n, d, x_dev, centered, cov);
        st = ops->sync(dev);
    }
    if (!st)
        st = ops->sym_eigvals(dev, d, cov, w_dev);
    if (!st)
        st = ops->download(dev, w, w_dev, (size_t)d * sizeof(double));
    ops->free(dev, w_dev);
    ops->free(dev, cov);
    ops->free(dev, centered);
    ops->free(dev, x_dev);
    return st;
}

/* Checked entry point shared with the window (which has validated its
 * rows already, so `check_finite` is off there). */
static vqj_status embedding_metrics(vqj_context *ctx, const char *fn, const float *x, int n,
                                    int d, bool check_finite, vqj_embedding_metrics *out)
{
    vqj_embedding_metrics r;
    memset(&r, 0, sizeof r);
    r.size = out->size;
    r.samples = n;
    if (check_finite)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < d; j++)
                if (!isfinite(x[(size_t)i * d + j]))
                    return vqji_fail(ctx, VQJ_ERR_NUMERIC, "%s: x[%d][%d] is %g, not finite",
                                     fn, i, j, (double)x[(size_t)i * d + j]);
    if (n < 2) { /* no estimate of a variance: the documented zeros */
        vqji_result_copy(out, &r, sizeof r);
        return VQJ_OK;
    }
    double *moments = NULL, *w = NULL;
    vqj_status st = vqji_malloc(ctx, 4 * (size_t)d * sizeof(double), "the diagnostics' moments",
                                (void **)&moments);
    if (!st)
        st = vqji_malloc(ctx, (size_t)d * sizeof(double), "the covariance eigenvalues",
                         (void **)&w);
    if (!st)
        st = covariance_eigvals(ctx, n, d, x, w);
    if (!st) {
        double variance, gaussian, isotropy, erank;
        moment_metrics(n, d, x, moments, &variance, &gaussian);
        spectrum_metrics(d, w, &isotropy, &erank);
        r.variance = (float)variance;
        r.gaussian_score = (float)gaussian;
        r.isotropy = (float)isotropy;
        r.effective_rank = (float)erank;
        vqji_result_copy(out, &r, sizeof r);
    }
    free(w);
    free(moments);
    return st;
}

static vqj_status check_dim(const vqj_context *ctx, const char *fn, int d)
{
    if (d < 1 || d > VQJ_METRICS_MAX_DIM)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: dim is %d; it must be in 1..%d", fn,
                         d, VQJ_METRICS_MAX_DIM);
    return VQJ_OK;
}

vqj_status vqj_embedding_metrics_compute(vqj_context *ctx, const float *x, int n, int d,
                                         vqj_embedding_metrics *out)
{
    static const char fn[] = "vqj_embedding_metrics_compute";
    if (!ctx || !out || (!x && n > 0))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    vqji_clear_error(ctx);
    vqj_status st = vqji_result_check(ctx, out->size, VQJI_V1_EMBEDDING_METRICS, fn,
                                      "vqj_embedding_metrics");
    if (st)
        return st;
    if (n < 0)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: n is %d; it must be >= 0", fn, n);
    if ((st = check_dim(ctx, fn, d)))
        return st;
    return embedding_metrics(ctx, fn, x, n, d, true, out);
}

/* ---- The sample window ---- */

struct vqj_metrics_window {
    vqj_context *ctx;
    int dim, max_samples, num_codes;
    int rows; /* filled rows, 0..max_samples */
    int head; /* next row written */
    float *context, *target; /* [max_samples x dim] rings */
    /* Assignments per code since the last reset, of context and of target
     * tokens: [num_codes] each. */
    int64_t *count_context, *count_target;
};

void vqj_metrics_window_destroy(vqj_metrics_window *w)
{
    if (!w)
        return;
    free(w->context);
    free(w->target);
    free(w->count_context);
    free(w->count_target);
    free(w);
}

vqj_status vqj_metrics_window_create(vqj_context *ctx, int dim, int max_samples, int num_codes,
                                     vqj_metrics_window **out)
{
    static const char fn[] = "vqj_metrics_window_create";
    if (!ctx || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    vqji_clear_error(ctx);
    vqj_status st = check_dim(ctx, fn, dim);
    if (st)
        return st;
    if (max_samples < VQJI_LO_METRICS_MAX_SAMPLES || max_samples > VQJI_HI_METRICS_MAX_SAMPLES)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: max_samples is %d; it must be in %d..%d (a variance needs two rows)",
                         fn, max_samples, VQJI_LO_METRICS_MAX_SAMPLES,
                         VQJI_HI_METRICS_MAX_SAMPLES);
    if (num_codes < 0 || num_codes > VQJI_HI_NUM_EMBEDDINGS)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: num_codes is %d; it must be in 0..%d", fn, num_codes,
                         VQJI_HI_NUM_EMBEDDINGS);
    size_t ring;
    if (!vqji_mul_size((size_t)max_samples * (size_t)dim, sizeof(float), &ring))
        return vqji_fail(ctx, VQJ_ERR_OUT_OF_MEMORY, "%s: %d x %d samples are too many", fn,
                         max_samples, dim);
    vqj_metrics_window *w;
    st = vqji_calloc(ctx, 1, sizeof *w, "a metrics window", (void **)&w);
    if (st)
        return st;
    w->ctx = ctx;
    w->dim = dim;
    w->max_samples = max_samples;
    w->num_codes = num_codes;
    st = vqji_malloc(ctx, ring, "the window's context projections", (void **)&w->context);
    if (!st)
        st = vqji_malloc(ctx, ring, "the window's target projections", (void **)&w->target);
    if (!st)
        st = vqji_calloc(ctx, (size_t)num_codes + 1, sizeof(int64_t), "the window's code counts",
                         (void **)&w->count_context);
    if (!st)
        st = vqji_calloc(ctx, (size_t)num_codes + 1, sizeof(int64_t), "the window's code counts",
                         (void **)&w->count_target);
    if (st) {
        vqj_metrics_window_destroy(w);
        return st;
    }
    *out = w;
    return VQJ_OK;
}

vqj_status vqj_metrics_window_add_projections(vqj_metrics_window *w, const float *context,
                                              const float *target, int rows)
{
    static const char fn[] = "vqj_metrics_window_add_projections";
    if (!w || ((!context || !target) && rows > 0))
        return vqji_fail(w ? w->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    vqji_clear_error(w->ctx);
    if (rows < 0)
        return vqji_fail(w->ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: rows is %d; it must be >= 0",
                         fn, rows);
    size_t count = (size_t)rows * (size_t)w->dim;
    /* Checked first so that a bad batch adds nothing, and the window never
     * holds a value the metrics would refuse. */
    for (size_t i = 0; i < count; i++) {
        if (!isfinite(context[i]))
            return vqji_fail(w->ctx, VQJ_ERR_NUMERIC, "%s: context[%zu][%zu] is %g, not finite",
                             fn, i / w->dim, i % w->dim, (double)context[i]);
        if (!isfinite(target[i]))
            return vqji_fail(w->ctx, VQJ_ERR_NUMERIC, "%s: target[%zu][%zu] is %g, not finite",
                             fn, i / w->dim, i % w->dim, (double)target[i]);
    }
    /* Only the last max_samples rows can survive. */
    int skip = rows > w->max_samples ? rows - w->max_samples : 0;
    size_t row_bytes = (size_t)w->dim * sizeof(float);
    for (int r = skip; r < rows; r++) {
        memcpy(w->context + (size_t)w->head * w->dim, context + (size_t)r * w->dim, row_bytes);
        memcpy(w->target + (size_t)w->head * w->dim, target + (size_t)r * w->dim, row_bytes);
        w->head = (w->head + 1) % w->max_samples;
        if (w->rows < w->max_samples)
            w->rows++;
    }
    return VQJ_OK;
}

static vqj_status add_codes(vqj_metrics_window *w, const char *fn, int64_t *count,
                            const int32_t *codes, size_t n)
{
    if (!w || (!codes && n > 0))
        return vqji_fail(w ? w->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    vqji_clear_error(w->ctx);
    for (size_t i = 0; i < n; i++)
        if (codes[i] >= w->num_codes)
            return vqji_fail(w->ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "%s: codes[%zu] is %d; codes must be below K = %d", fn, i,
                             (int)codes[i], w->num_codes);
    for (size_t i = 0; i < n; i++)
        if (codes[i] >= 0)
            count[codes[i]]++;
    return VQJ_OK;
}

vqj_status vqj_metrics_window_add_codes(vqj_metrics_window *w, const int32_t *codes, size_t n)
{
    return add_codes(w, "vqj_metrics_window_add_codes", w ? w->count_context : NULL, codes, n);
}

vqj_status vqj_metrics_window_add_target_codes(vqj_metrics_window *w, const int32_t *codes,
                                               size_t n)
{
    return add_codes(w, "vqj_metrics_window_add_target_codes", w ? w->count_target : NULL, codes,
                     n);
}

/* Usage, perplexity and dead codes of the window's code counts
 * (docs/diagnostics.md, "Codebook health"). */
static void code_metrics(const vqj_metrics_window *w, vqj_window_metrics *r)
{
    int k = w->num_codes;
    int64_t total = 0;
    for (int c = 0; c < k; c++) {
        int64_t both = w->count_context[c] + w->count_target[c];
        r->active_context += w->count_context[c] > 0;
        r->active_target += w->count_target[c] > 0;
        r->active_codes += both > 0;
        total += both;
    }
    double h = 0.0;
    for (int c = 0; c < k && total > 0; c++) {
        int64_t both = w->count_context[c] + w->count_target[c];
        if (both > 0) {
            double pk = (double)both / (double)total;
            h -= pk * log(pk);
        }
    }
    r->num_codes = k;
    r->assignments = total;
    r->perplexity = total > 0 ? (float)exp(h) : 0.0f;
    r->dead_codes = k - r->active_codes;
    r->usage_ratio = k ? (float)((double)r->active_codes / k) : 0.0f;
    r->usage_context = k ? (float)((double)r->active_context / k) : 0.0f;
    r->usage_target = k ? (float)((double)r->active_target / k) : 0.0f;
}

vqj_status vqj_metrics_window_compute(vqj_metrics_window *w, vqj_window_metrics *out)
{
    static const char fn[] = "vqj_metrics_window_compute";
    if (!w || !out)
        return vqji_fail(w ? w->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    vqji_clear_error(w->ctx);
    /* Callers built against the first published struct (up to usage_ratio)
     * get its fields; the rest is written only when out->size has room. */
    vqj_status st = vqji_result_check(w->ctx, out->size, VQJI_V1_WINDOW_METRICS, fn,
                                      "vqj_window_metrics");
    if (st)
        return st;
    vqj_window_metrics r;
    memset(&r, 0, sizeof r);
    r.size = out->size;
    r.context.size = sizeof r.context;
    r.target.size = sizeof r.target;
    /* The metrics do not depend on row order, so the ring is measured as it
     * lies: its first `rows` rows are exactly the window's rows. */
    st = embedding_metrics(w->ctx, fn, w->context, w->rows, w->dim, false, &r.context);
    if (!st)
        st = embedding_metrics(w->ctx, fn, w->target, w->rows, w->dim, false, &r.target);
    if (st)
        return st;
    code_metrics(w, &r);
    vqji_result_copy(out, &r, sizeof r);
    return VQJ_OK;
}

int vqj_metrics_window_rows(const vqj_metrics_window *w) { return w ? w->rows : 0; }

void vqj_metrics_window_reset(vqj_metrics_window *w)
{
    if (!w)
        return;
    w->rows = 0;
    w->head = 0;
    memset(w->count_context, 0, (size_t)w->num_codes * sizeof(int64_t));
    memset(w->count_target, 0, (size_t)w->num_codes * sizeof(int64_t));
}

/* ---- Health checks and abort criteria ---- */

void vqj_health_input_default(vqj_health_input *in)
{
    if (!in)
        return;
    memset(in, 0, sizeof *in);
    in->size = sizeof *in;
}

static vqj_status validate_health(const vqj_health_input *in, const char *fn)
{
    if (!in)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: NULL input", fn);
    if (in->size < sizeof *in)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: in->size is %zu, expected at least %zu; fill the struct with "
                         "vqj_health_input_default()",
                         fn, in->size, sizeof *in);
    if (in->epochs < 0)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: epochs is %d; it must be >= 0",
                         fn, in->epochs);
    if (in->epochs > 0 && !in->val_loss)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: val_loss is NULL with epochs %d",
                         fn, in->epochs);
    if (in->epoch < 0)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: epoch is %d; it must be >= 0", fn,
                         in->epoch);
    if (!(isfinite(in->min_delta) && in->min_delta >= 0.0f))
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: min_delta is %g; it must be finite and >= 0", fn,
                         (double)in->min_delta);
    return VQJ_OK;
}

/* The outcome of one check, before it is copied out. */
typedef struct verdict {
    vqj_health_level level;
    char message[sizeof(((vqj_health_check *)0)->message)];
} verdict;

static void say(verdict *v, vqj_health_level level, const char *fmt, ...) VQJI_PRINTF(3, 4);
static void say(verdict *v, vqj_health_level level, const char *fmt, ...)
{
    v->level = level;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->message, sizeof v->message, fmt, ap);
    va_end(ap);
}

/* Threshold tests are written as negated "healthy" comparisons so that a
 * NaN metric fails them. */

static void check_vq_usage(const vqj_health_input *in, verdict *v)
{
    double pct = 100.0 * in->vq_usage;
    if (!(in->vq_usage >= VQJ_HEALTH_VQ_USAGE_ALERT))
        say(v, VQJ_HEALTH_ALERT, "VQ usage %.1f%% < %.0f%%: codebook collapsing", pct,
            100.0 * VQJ_HEALTH_VQ_USAGE_ALERT);
    else if (!(in->vq_usage >= VQJ_HEALTH_VQ_USAGE_WARN))
        say(v, VQJ_HEALTH_WARN, "VQ usage %.1f%% < %.0f%%: below target", pct,
            100.0 * VQJ_HEALTH_VQ_USAGE_WARN);
    else
        say(v, VQJ_HEALTH_OK, "VQ usage %.1f%% >= %.0f%%", pct, 100.0 * VQJ_HEALTH_VQ_USAGE_WARN);
}

static void check_rank(const char *which, float rank, float alert, float warn, verdict *v)
{
    if (!(rank >= alert))
        say(v, VQJ_HEALTH_ALERT, "%s effective rank %.2f < %.0f: embedding collapsing", which,
            (double)rank, (double)alert);
    else if (!(rank >= warn))
        say(v, VQJ_HEALTH_WARN, "%s effective rank %.2f < %.0f: below target", which,
            (double)rank, (double)warn);
    else
        say(v, VQJ_HEALTH_OK, "%s effective rank %.2f >= %.0f", which, (double)rank,
            (double)warn);
}

/* Consecutive epochs, ending at the last, whose loss rose over the previous. */
static int rising_run(const vqj_health_input *in)
{
    int run = 0;
    for (int e = in->epochs - 1; e >= 1; e--) {
        if (!(in->val_loss[e] > in->val_loss[e - 1]))
            break;
        run++;
    }
    return run;
}

static void check_trend(const vqj_health_input *in, verdict *v)
{
    int run = rising_run(in);
    if (run >= VQJ_HEALTH_VAL_RISING_EPOCHS)
        say(v, VQJ_HEALTH_ALERT, "validation loss rose %d epochs in a row (alert at %d): %.4f",
            run, VQJ_HEALTH_VAL_RISING_EPOCHS, (double)in->val_loss[in->epochs - 1]);
    else
        say(v, VQJ_HEALTH_OK, "validation loss rose %d epoch%s in a row (alert at %d): %.4f",
            run, run == 1 ? "" : "s", VQJ_HEALTH_VAL_RISING_EPOCHS,
            (double)in->val_loss[in->epochs - 1]);
}

static void abort_vq(const vqj_health_input *in, verdict *v)
{
    double pct = 100.0 * in->vq_usage;
    if (in->epoch > VQJ_ABORT_VQ_AFTER_EPOCH && !(in->vq_usage >= VQJ_ABORT_VQ_USAGE))
        say(v, VQJ_HEALTH_ALERT, "VQ collapse: usage %.1f%% < %.0f%% at epoch %d (after %d)",
            pct, 100.0 * VQJ_ABORT_VQ_USAGE, in->epoch, VQJ_ABORT_VQ_AFTER_EPOCH);
    else if (in->epoch > VQJ_ABORT_VQ_AFTER_EPOCH)
        say(v, VQJ_HEALTH_OK, "VQ usage %.1f%% >= %.0f%% at epoch %d", pct,
            100.0 * VQJ_ABORT_VQ_USAGE, in->epoch);
    else
        say(v, VQJ_HEALTH_OK, "VQ usage %.1f%%; the VQ-collapse abort applies after epoch %d",
            pct, VQJ_ABORT_VQ_AFTER_EPOCH);
}

static void abort_embedding(const vqj_health_input *in, verdict *v)
{
    bool ctx_low = !(in->context_rank >= VQJ_ABORT_CONTEXT_RANK);
    bool tgt_low = !(in->target_rank >= VQJ_ABORT_TARGET_RANK);
    if (ctx_low || tgt_low)
        say(v, VQJ_HEALTH_ALERT,
            "embedding collapse: context rank %.2f%s%.0f, target rank %.2f%s%.0f",
            (double)in->context_rank, ctx_low ? " < " : " >= ", (double)VQJ_ABORT_CONTEXT_RANK,
            (double)in->target_rank, tgt_low ? " < " : " >= ", (double)VQJ_ABORT_TARGET_RANK);
    else
        say(v, VQJ_HEALTH_OK, "context rank %.2f >= %.0f, target rank %.2f >= %.0f",
            (double)in->context_rank, (double)VQJ_ABORT_CONTEXT_RANK, (double)in->target_rank,
            (double)VQJ_ABORT_TARGET_RANK);
}

static void abort_jump(const vqj_health_input *in, verdict *v)
{
    if (in->epochs < 2) {
        say(v, VQJ_HEALTH_OK, "one validation epoch: no jump yet");
        return;
    }
    double prev = in->val_loss[in->epochs - 2], last = in->val_loss[in->epochs - 1];
    double jump = last - prev;
    /* In double so that the difference of two floats is exact at the
     * threshold; a loss that turns non-finite after a finite one is a jump. */
    if (isfinite(prev) && !(jump <= VQJ_ABORT_VAL_JUMP))
        say(v, VQJ_HEALTH_ALERT, "validation loss jumped %.4f -> %.4f (%+.4f > %.1f)", prev,
            last, jump, (double)VQJ_ABORT_VAL_JUMP);
    else
        say(v, VQJ_HEALTH_OK, "validation loss %.4f -> %.4f (jump alert above +%.1f)", prev,
            last, (double)VQJ_ABORT_VAL_JUMP);
}

static void abort_plateau(const vqj_health_input *in, verdict *v)
{
    /* The first finite loss improves on +inf; a loss improves when it is
     * below the best so far minus min_delta. */
    double best = INFINITY;
    int best_index = -1;
    for (int e = 0; e < in->epochs; e++)
        if ((double)in->val_loss[e] < best - (double)in->min_delta) {
            best = in->val_loss[e];
            best_index = e;
        }
    int since = in->epochs - 1 - best_index;
    if (since >= VQJ_ABORT_PLATEAU_EPOCHS)
        say(v, VQJ_HEALTH_ALERT,
            "validation loss plateau: no improvement for %d epochs (best %.4f; alert at %d)",
            since, best, VQJ_ABORT_PLATEAU_EPOCHS);
    else
        say(v, VQJ_HEALTH_OK, "last improvement %d epoch%s ago (best %.4f; alert at %d)", since,
            since == 1 ? "" : "s", best, VQJ_ABORT_PLATEAU_EPOCHS);
}

typedef struct health_check_def {
    const char *name;
    int needs; /* 1: have_vq, 2: have_embedding, 3: epochs > 0 */
    void (*run)(const vqj_health_input *in, verdict *v);
} health_check_def;

static void run_vq_usage(const vqj_health_input *in, verdict *v) { check_vq_usage(in, v); }
static void run_context_rank(const vqj_health_input *in, verdict *v)
{
    check_rank("context", in->context_rank, VQJ_HEALTH_CONTEXT_RANK_ALERT,
               VQJ_HEALTH_CONTEXT_RANK_WARN, v);
}
static void run_target_rank(const vqj_health_input *in, verdict *v)
{
    check_rank("target", in->target_rank, VQJ_HEALTH_TARGET_RANK_ALERT,
               VQJ_HEALTH_TARGET_RANK_WARN, v);
}

enum { NEEDS_VQ = 1, NEEDS_EMBEDDING = 2, NEEDS_EPOCHS = 3 };

/* In the order of vqj_health_check's documentation; the abort criteria in
 * vqj_abort_criterion order, so index - 3 is the criterion. */
static const health_check_def health_checks[VQJ_HEALTH_MAX_CHECKS] = {
    {"vq_usage", NEEDS_VQ, run_vq_usage},
    {"context_rank", NEEDS_EMBEDDING, run_context_rank},
    {"target_rank", NEEDS_EMBEDDING, run_target_rank},
    {"val_loss_trend", NEEDS_EPOCHS, check_trend},
    {"abort_vq_collapse", NEEDS_VQ, abort_vq},
    {"abort_embedding_collapse", NEEDS_EMBEDDING, abort_embedding},
    {"abort_val_loss_jump", NEEDS_EPOCHS, abort_jump},
    {"abort_val_loss_plateau", NEEDS_EPOCHS, abort_plateau},
};
#define FIRST_ABORT_CHECK 4

static bool has_data(const vqj_health_input *in, int needs)
{
    switch (needs) {
    case NEEDS_VQ: return in->have_vq != 0;
    case NEEDS_EMBEDDING: return in->have_embedding != 0;
    default: return in->epochs > 0;
    }
}

vqj_status vqj_health_evaluate(const vqj_health_input *in, vqj_health_check *checks, size_t cap,
                               size_t *count)
{
    static const char fn[] = "vqj_health_evaluate";
    if (!count || (!checks && cap > 0))
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    vqj_status st = validate_health(in, fn);
    if (st)
        return st;
    vqji_clear_error(NULL);
    size_t needed = 0;
    for (size_t i = 0; i < VQJ_HEALTH_MAX_CHECKS; i++)
        needed += has_data(in, health_checks[i].needs);
    if (cap < needed) {
        *count = needed;
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: room for %zu checks, %zu needed (VQJ_HEALTH_MAX_CHECKS is enough)",
                         fn, cap, needed);
    }
    size_t k = 0;
    for (size_t i = 0; i < VQJ_HEALTH_MAX_CHECKS; i++) {
        if (!has_data(in, health_checks[i].needs))
            continue;
        verdict v;
        health_checks[i].run(in, &v);
        checks[k].name = health_checks[i].name;
        checks[k].level = v.level;
        memcpy(checks[k].message, v.message, sizeof v.message);
        k++;
    }
    *count = k;
    return VQJ_OK;
}

int vqj_health_abort(const vqj_health_input *in, char *reason, size_t cap)
{
    if (reason && cap)
        reason[0] = '\0';
    if (validate_health(in, "vqj_health_abort")) {
        if (reason && cap)
            snprintf(reason, cap, "%s", vqj_last_error());
        return -1;
    }
    vqji_clear_error(NULL);
    for (int i = FIRST_ABORT_CHECK; i < VQJ_HEALTH_MAX_CHECKS; i++) {
        if (!has_data(in, health_checks[i].needs))
            continue;
        verdict v;
        health_checks[i].run(in, &v);
        if (v.level == VQJ_HEALTH_ALERT) {
            if (reason && cap)
                snprintf(reason, cap, "%s", v.message);
            return i - FIRST_ABORT_CHECK + 1;
        }
    }
    return VQJ_ABORT_NONE;
}

/* ---- Early stopping ---- */

static vqj_status validate_early_stopping(const char *fn, int patience, float min_delta,
                                          vqj_early_stopping_mode mode)
{
    if (patience < 0)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: patience is %d; it must be >= 0",
                         fn, patience);
    if (!(isfinite(min_delta) && min_delta >= 0.0f))
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: min_delta is %g; it must be finite and >= 0", fn,
                         (double)min_delta);
    if (mode != VQJ_EARLY_STOPPING_MIN && mode != VQJ_EARLY_STOPPING_MAX)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: mode is %d; it must be VQJ_EARLY_STOPPING_MIN (0) or "
                         "VQJ_EARLY_STOPPING_MAX (1)",
                         fn, (int)mode);
    return VQJ_OK;
}

vqj_status vqj_early_stopping_init(vqj_early_stopping *es, int patience, float min_delta,
                                   vqj_early_stopping_mode mode)
{
    static const char fn[] = "vqj_early_stopping_init";
    if (!es)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    vqj_status st = validate_early_stopping(fn, patience, min_delta, mode);
    if (st)
        return st;
    vqji_clear_error(NULL);
    memset(es, 0, sizeof *es);
    es->size = sizeof *es;
    es->patience = patience;
    es->min_delta = min_delta;
    es->mode = mode;
    es->best_epoch = -1;
    return VQJ_OK;
}

vqj_status vqj_early_stopping_update(vqj_early_stopping *es, int epoch, float value,
                                     int *improved, int *should_stop)
{
    static const char fn[] = "vqj_early_stopping_update";
    if (!es)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    if (es->size != sizeof *es)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: es->size is %zu, not %zu: set the struct up with "
                         "vqj_early_stopping_init()",
                         fn, es->size, sizeof *es);
    vqj_status st = validate_early_stopping(fn, es->patience, es->min_delta, es->mode);
    if (st)
        return st;
    vqji_clear_error(NULL);
    bool better = false;
    if (isfinite(value)) {
        if (!es->has_best)
            better = true;
        else if (es->mode == VQJ_EARLY_STOPPING_MIN)
            better = (double)value < (double)es->best - (double)es->min_delta;
        else
            better = (double)value > (double)es->best + (double)es->min_delta;
    }
    es->updates++;
    if (better) {
        es->has_best = 1;
        es->best = value;
        es->best_epoch = epoch;
        es->bad_epochs = 0;
    } else {
        es->bad_epochs++;
    }
    if (improved)
        *improved = better;
    /* bad_epochs > 0: patience 0 stops at the first update that does not
     * improve, never at one that does. */
    if (should_stop)
        *should_stop = es->bad_epochs > 0 && es->bad_epochs >= es->patience;
    return VQJ_OK;
}
