/* CUDA linear algebra for the diagnostics (src/device/cpu_linalg.c;
 * docs/diagnostics.md), in double. The covariance runs on the GPU (column
 * means in row order, as the CPU forms them, then cuBLAS dsyrk). The
 * eigenvalues of the small (d <= a few hundred) covariance run on the host
 * through core/linalg.h's LAPACK dsyevd, as the CPU backend's do: it is
 * synchronous anyway, runs once per diagnostics interval, and gives the CPU's
 * values exactly. */
#include "cuda_common.h"

#include <stdlib.h>

extern "C" {
#include "core/linalg.h"
}

/* A thread per column: the mean in row order (double), then the column of
 * Xc = x - mean. */
static __global__ void k_center(int n, int d, const float *x, double *centered)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= d)
        return;
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += x[(size_t)i * d + j];
    s /= n;
    for (int i = 0; i < n; i++)
        centered[(size_t)i * d + j] = (double)x[(size_t)i * d + j] - s;
}

/* dsyrk filled the row-major lower triangle; mirror it to the upper one. */
static __global__ void k_symmetrize(int d, double *cov)
{
    size_t total = (size_t)d * d;
    CU_FOR(t, total)
    {
        size_t r = t / (size_t)d, c = t % (size_t)d;
        if (r < c)
            cov[t] = cov[c * (size_t)d + r];
    }
}

static void cuda_covariance(vqji_device *dev, int n, int d, const float *x, double *centered,
                            double *cov)
{
    cuda_device *cd = cu_dev(dev);
    if (n < 2 || d < 1 || !cu_enter(cd))
        return;
    k_center<<<(unsigned)((d + 127) / 128), 128, 0, cd->stream>>>(n, d, x, centered);
    if (!cu_launched(cd, "covariance (centering)"))
        return;
    /* Row-major Xc [n x d] is column-major A [d x n]; A A^T = Xc^T Xc. The
     * column-major upper triangle is the row-major lower one. */
    const double alpha = 1.0 / (double)(n - 1), beta = 0.0;
    cublasStatus_t s = cublasDsyrk(cd->blas, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, d, n, &alpha,
                                   centered, d, &beta, cov, d);
    if (s != CUBLAS_STATUS_SUCCESS) {
        cu_record(cd, VQJ_ERR_DEVICE, "CUDA device %d: cublasDsyrk failed: %s", cd->ordinal,
                  cublasGetStatusString(s));
        return;
    }
    k_symmetrize<<<cu_blocks(cd, (size_t)d * d, CU_THREADS), CU_THREADS, 0, cd->stream>>>(d, cov);
    cu_launched(cd, "covariance (symmetrize)");
}

static vqj_status cuda_sym_eigvals(vqji_device *dev, int n, double *a, double *w)
{
    if (n < 1)
        return VQJ_OK;
    size_t nn = (size_t)n * (size_t)n;
    double *ha = NULL, *hw = NULL;
    vqj_status st = vqji_malloc(dev->ctx, nn * sizeof(double), "the eigenproblem (host copy)",
                                (void **)&ha);
    if (!st)
        st = vqji_malloc(dev->ctx, (size_t)n * sizeof(double), "the eigenvalues (host copy)",
                         (void **)&hw);
    if (!st)
        st = dev->ops->download(dev, ha, a, nn * sizeof(double));
    if (!st)
        st = vqji_host_sym_eigvals(dev->ctx, n, ha, hw);
    if (!st)
        st = dev->ops->upload(dev, w, hw, (size_t)n * sizeof(double));
    if (!st)
        st = dev->ops->sync(dev); /* hw is freed next: the copy must be done */
    free(ha);
    free(hw);
    return st;
}

void vqji_cuda_register_linalg(vqji_device_ops *ops)
{
    ops->covariance = cuda_covariance;
    ops->sym_eigvals = cuda_sym_eigvals;
}
