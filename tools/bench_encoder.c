/* `vqjepa bench` measurement "encoder": one training forward + backward of
 * the encoder with the codebook's nearest-code assignment, at the reference
 * sizes (DESIGN.md section 6: D 384, 3 relational layers x 8 heads, K 768),
 * on batches of ARC grids, next to this machine's sgemm rate measured in the
 * same run at a representative shape. Unlike the single-thread rows of the
 * table, it runs with all the cores (or `threads`), since that is how
 * training runs; the sgemm reference is OpenBLAS's, which the CPU backend's
 * linear layers call, on as many threads. The CLI uses the public API only:
 * it links libvqjepa.so like any program. */
#include "cli.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH_GRIDS 4096
#define MAX_TIMED 3 /* each run is seconds long: the table's repeat is capped */

int bench_encoder(vqj_context *table_ctx, const vqj_grid *grids, size_t num_grids, int repeat,
                  int threads, size_t *tokens_out, double *us_per_token);

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* GEMM FLOPs of one forward + backward, counted from the shapes: 2 n in out
 * per linear forward, twice that again backward (dx and dW) except the first
 * layer, whose input needs no gradient; the codebook's distances 2 n D K
 * (its backward has no GEMM). Attention's per-grid products are not GEMMs
 * and are left out (about 4 n D n_g, under 1% here). */
static double gemm_flops(double n, double f, double d, double layers, double k)
{
    double mlp_fwd = 2 * n * (f * d + d * d);
    double mlp_bwd = 2 * n * f * d + 2 * 2 * n * d * d;
    double block = 2 * n * (3 * d * d + d * d + 2 * d * d + 2 * d * d);
    return mlp_fwd + mlp_bwd + 3 * layers * block + 2 * n * d * k;
}

/* Best time of a plain sgemm C[m x n] = A[m x k] B[n x k]^T, the call the
 * CPU backend's linear layers make (OpenBLAS, the context's threads). */
static double sgemm_rate(int m, int n, int k)
{
    size_t sa = (size_t)m * k, sb = (size_t)n * k, sc = (size_t)m * n;
    float *a = malloc(sa * sizeof *a), *b = malloc(sb * sizeof *b), *c = malloc(sc * sizeof *c);
    double best = 0.0;
    if (a && b && c) {
        for (size_t i = 0; i < sa; i++)
            a[i] = 0.01f;
        for (size_t i = 0; i < sb; i++)
            b[i] = 0.02f;
        for (int r = 0; r < 4; r++) {
            double t0 = now_s();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, b, k, 0.0f,
                        c, n);
            double dt = now_s() - t0;
            if (r > 0 && (best == 0.0 || dt < best))
                best = dt;
        }
    }
    free(a);
    free(b);
    free(c);
    return best > 0.0 ? 2.0 * m * n * k / best : 0.0;
}

int bench_encoder(vqj_context *table_ctx, const vqj_grid *grids, size_t num_grids, int repeat,
                  int threads, size_t *tokens_out, double *us_per_token)
{
    int status = CLI_FAILED;
    vqj_context *ctx = cli_context("bench", threads);
    if (!ctx)
        return CLI_FAILED;
    vqj_grid *batch = malloc(BATCH_GRIDS * sizeof *batch);
    vqj_tokens *tokens = NULL;
    vqj_encoder *enc = NULL;
    vqj_codebook *cb = NULL;
    vqj_tensor *z = NULL, *q = NULL, *dq = NULL, *dz = NULL;
    float *host = NULL, *zeros = NULL;
    if (!batch || !num_grids) {
        fprintf(stderr, "vqjepa bench: encoder: no grids or out of memory\n");
        goto done;
    }
    /* A batch as a data loader would make: the grids in order, cycled. */
    for (size_t i = 0; i < BATCH_GRIDS; i++)
        batch[i] = grids[i % num_grids];
    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    vqj_encoder_params ep;
    vqj_encoder_params_default(&ep);
    vqj_codebook_params bp;
    vqj_codebook_params_default(&bp);
    bp.kmeans_init = 0; /* a one-off at the first batch, not the steady state */
    bp.dim = ep.hidden_dim;
    if (vqj_tokens_create(ctx, &tp, &tokens) || vqj_tokenize(ctx, tokens, batch, BATCH_GRIDS) ||
        vqj_encoder_create(ctx, &ep, &enc) || vqj_codebook_create(ctx, &bp, &cb) ||
        vqj_tensor_create(ctx, 0, 0, &z) || vqj_tensor_create(ctx, 0, 0, &q) ||
        vqj_tensor_create(ctx, 0, 0, &dz))
        goto fail;
    const int n = (int)vqj_tokens_num_objects(tokens), d = ep.hidden_dim;
    if (vqj_tensor_create(ctx, n, d, &dq) || !(host = malloc((size_t)n * d * sizeof *host)) ||
        !(zeros = calloc((size_t)n * d, sizeof *zeros)))
        goto fail;
    /* A fixed upstream gradient of the size a loss would give. */
    for (size_t i = 0; i < (size_t)n * d; i++)
        host[i] = 1e-4f * (float)((int)(i * 2654435761u >> 20) % 17 - 8);
    if (vqj_tensor_write(dq, host, (size_t)n * d))
        goto fail;

    vqj_weights *w = vqj_encoder_weights(enc);
    double best = 0.0, best_fwd = 0.0, best_cb = 0.0, best_bwd = 0.0;
    int timed = repeat < MAX_TIMED ? repeat : MAX_TIMED;
    for (int r = 0; r <= timed; r++) { /* run 0 grows the buffers */
        double t0 = now_s();
        vqj_weights_zero_grad(w);
        if (vqj_encoder_forward(enc, tokens, 1, z))
            goto fail;
        double t1 = now_s();
        if (vqj_codebook_forward(cb, z, 1, q, NULL, NULL))
            goto fail;
        double t2 = now_s();
        /* The backward passes accumulate into dz: start it at zero. */
        if (vqj_tensor_reshape(dz, n, d) || vqj_tensor_write(dz, zeros, (size_t)n * d))
            goto fail;
        if (vqj_codebook_backward(cb, dq, dz) || vqj_encoder_backward(enc, dz, NULL))
            goto fail;
        double t3 = now_s();
        if (r > 0 && (best == 0.0 || t3 - t0 < best)) {
            best = t3 - t0;
            best_fwd = t1 - t0;
            best_cb = t2 - t1;
            best_bwd = t3 - t2;
        }
    }
    double flops = gemm_flops(n, ep.feature_dim, d, ep.relational_layers, bp.num_embeddings);
    double rate = flops / best;
    double ref = sgemm_rate(n, d, d);
    fflush(stdout); /* keep the table's rows and these lines in order */
    fprintf(stderr,
            "encoder: D %d, %d layers x %d heads, K %d; %d grids/batch = %d tokens (%.2f per "
            "grid); %d threads\n"
            "encoder: fwd+bwd %.1f ms (encoder fwd %.1f, codebook fwd %.1f, backward %.1f), "
            "%.0f tokens/s, %.1f GFLOP/s over %.1f GEMM GFLOP\n"
            "encoder: sgemm %d x %d x %d on this machine %.1f GFLOP/s; encoder/sgemm %.0f%%\n",
            d, ep.relational_layers, ep.relational_heads, bp.num_embeddings, BATCH_GRIDS, n,
            (double)n / BATCH_GRIDS, vqj_context_num_threads(ctx), best * 1e3, best_fwd * 1e3,
            best_cb * 1e3, best_bwd * 1e3, n / best, rate * 1e-9, flops * 1e-9, n, d, d,
            ref * 1e-9, ref > 0 ? 100.0 * rate / ref : 0.0);
    *tokens_out = (size_t)n;
    *us_per_token = best * 1e6 / (n ? n : 1);
    status = CLI_OK;
    goto done;
fail:
    fprintf(stderr, "vqjepa bench: encoder: %s\n", vqj_last_error());
done:
    free(host);
    free(zeros);
    vqj_tensor_destroy(z);
    vqj_tensor_destroy(q);
    vqj_tensor_destroy(dq);
    vqj_tensor_destroy(dz);
    vqj_codebook_destroy(cb);
    vqj_encoder_destroy(enc);
    vqj_tokens_destroy(tokens);
    free(batch);
    vqj_context_destroy(ctx);
    /* OpenBLAS's thread count is process-wide and the context above set it:
     * give the table's context its own back. */
    if (table_ctx)
        openblas_set_num_threads(vqj_context_num_threads(table_ctx));
    return status;
}
