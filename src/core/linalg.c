/* Host linear algebra in double (core/linalg.h): the sample covariance
 * through BLAS dsyrk and the eigenvalues of a symmetric matrix through
 * LAPACK's dsyevd. OpenBLAS ships LAPACK in the same library (`pkg-config
 * --libs openblas` links it), but Debian installs no lapacke.h for it, so the
 * Fortran entry point is declared here. */
#include "core/linalg.h"

#include <cblas.h>
#include <limits.h>
#include <stdlib.h>

/* LAPACK's dsyevd (LP64 build: Fortran INTEGER is int). gfortran appends the
 * lengths of CHARACTER arguments as hidden trailing size_t arguments; passing
 * them is what a Fortran caller does, and harmless where they are ignored. */
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
                    double *w, double *work, const int *lwork, int *iwork, const int *liwork,
                    int *info, size_t jobz_len, size_t uplo_len);

void vqji_host_covariance(int n, int d, const float *x, double *centered, double *cov)
{
    if (n < 2 || d < 1)
        return;
    /* Column means in double first, so that centering loses nothing to the
     * mean's magnitude (projections sit far from 0 on a collapsed run). */
    for (int j = 0; j < d; j++)
        centered[j] = 0.0;
    for (int i = 0; i < n; i++) {
        const float *row = x + (size_t)i * d;
        for (int j = 0; j < d; j++)
            centered[j] += row[j];
    }
    /* Row 0 of `centered` holds the sums until it is overwritten last. */
    for (int j = 0; j < d; j++)
        centered[j] /= n;
    for (int i = n - 1; i >= 0; i--) {
        const float *row = x + (size_t)i * d;
        double *out = centered + (size_t)i * d;
        for (int j = 0; j < d; j++)
            out[j] = (double)row[j] - centered[j];
    }
    /* cov = Xc^T Xc / (n - 1): row-major Trans takes Xc as n x d. */
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, n, 1.0 / (double)(n - 1), centered, d,
                0.0, cov, d);
    for (int i = 0; i < d; i++)
        for (int j = 0; j < i; j++)
            cov[(size_t)i * d + j] = cov[(size_t)j * d + i];
}

vqj_status vqji_host_sym_eigvals(const vqj_context *ctx, int n, double *a, double *w)
{
    if (n < 1)
        return VQJ_OK;
    const char jobz = 'N', uplo = 'U'; /* eigenvalues only; a is full, any triangle does */
    int lwork = -1, liwork = -1, info = 0, iwork_query = 0;
    double work_query = 0.0;
    /* Workspace query first: dsyevd reports its optimal sizes. */
    dsyevd_(&jobz, &uplo, &n, a, &n, w, &work_query, &lwork, &iwork_query, &liwork, &info, 1, 1);
    if (info != 0)
        return vqji_fail(ctx, VQJ_ERR_DEVICE,
                         "LAPACK dsyevd workspace query failed (info %d) for a %d x %d matrix",
                         info, n, n);
    /* The documented minimum for JOBZ = 'N' is 2n + 1 and 1. */
    double want = work_query > 2.0 * n + 1.0 ? work_query : 2.0 * n + 1.0;
    if (!(want < (double)INT_MAX))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "a %d x %d eigenproblem needs more LAPACK workspace than an int counts",
                         n, n);
    lwork = (int)want;
    liwork = iwork_query > 1 ? iwork_query : 1;
    double *work = malloc((size_t)lwork * sizeof *work);
    int *iwork = malloc((size_t)liwork * sizeof *iwork);
    if (!work || !iwork) {
        free(work);
        free(iwork);
        return vqji_fail(ctx, VQJ_ERR_OUT_OF_MEMORY,
                         "out of memory for the LAPACK workspace of a %d x %d eigenproblem", n,
                         n);
    }
    dsyevd_(&jobz, &uplo, &n, a, &n, w, work, &lwork, iwork, &liwork, &info, 1, 1);
    free(work);
    free(iwork);
    if (info != 0)
        return vqji_fail(ctx, VQJ_ERR_DEVICE,
                         "LAPACK dsyevd failed (info %d) on a %d x %d covariance matrix%s", info,
                         n, n, info > 0 ? ": the eigensolver did not converge" : "");
    return VQJ_OK;
}
