/* Dense linear algebra in double on host memory (docs/diagnostics.md),
 * below the device layer: the CPU backend's covariance and eigenvalue ops
 * are these, the CUDA backend hands its small eigenproblem to them, and the
 * diagnostics use them directly when a device leaves its linear-algebra
 * slots empty. BLAS dsyrk and LAPACK dsyevd (OpenBLAS ships both). */
#ifndef VQJ_LINALG_H
#define VQJ_LINALG_H

#include "core/core.h"

/* cov [d x d] (both triangles) = Xc^T Xc / (n - 1), Xc = x [n x d] minus its
 * column means; n >= 2 (else nothing is written). centered [n x d] is
 * scratch (it ends as Xc). */
void vqji_host_covariance(int n, int d, const float *x, double *centered, double *cov);

/* Eigenvalues of the symmetric a [n x n] into w [n], ascending; a is
 * destroyed. Failures (workspace, convergence) are recorded against ctx. */
vqj_status vqji_host_sym_eigvals(const vqj_context *ctx, int n, double *a, double *w);

#endif
