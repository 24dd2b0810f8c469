/* Communicator backends: single (always), MPI (VQJ_WITH_MPI, `make MPI=1`)
 * and NCCL for the device buffers of CUDA contexts (VQJ_WITH_NCCL, `make
 * CUDA=1 MPI=1`). docs/distributed.md says what each collective carries. */
#include "comm/comm.h"
#include "device/device.h"

#include <stdlib.h>
#include <string.h>

#ifdef VQJ_WITH_MPI
#include <mpi.h>
#endif
#ifdef VQJ_WITH_NCCL
#include <cuda_runtime.h>
#include <nccl.h>
#endif

enum backend { BACKEND_SINGLE, BACKEND_MPI, BACKEND_NCCL };

struct vqj_comm {
    vqj_context *ctx;
    enum backend backend;
    int rank, size;
    int owns_mpi; /* vqj_comm_init_mpi() initialized MPI: finalize it */
    void *stage;  /* host staging for device buffers without NCCL */
    size_t stage_cap;
#ifdef VQJ_WITH_MPI
    MPI_Comm mpi; /* the library's duplicate */
#endif
#ifdef VQJ_WITH_NCCL
    ncclComm_t nccl;
    cudaStream_t stream;
#endif
};

static size_t type_size(vqj_comm_type t) { return t == VQJ_COMM_INT64 ? 8 : 4; }

static vqj_status check_type(const vqj_context *ctx, vqj_comm_type type, vqj_comm_op op,
                             const char *fn)
{
    if (type != VQJ_COMM_FLOAT32 && type != VQJ_COMM_INT32 && type != VQJ_COMM_INT64)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: unknown element type %d", fn,
                         (int)type);
    if (op != VQJ_COMM_SUM && op != VQJ_COMM_AVG && op != VQJ_COMM_MAX)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: unknown reduction %d", fn, (int)op);
    if (op == VQJ_COMM_AVG && type != VQJ_COMM_FLOAT32)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: VQJ_COMM_AVG is for float buffers; sum integers instead", fn);
    return VQJ_OK;
}

/* ---- MPI ---- */

#ifdef VQJ_WITH_MPI
static MPI_Datatype mpi_type(vqj_comm_type t)
{
    return t == VQJ_COMM_FLOAT32 ? MPI_FLOAT : t == VQJ_COMM_INT32 ? MPI_INT32_T : MPI_INT64_T;
}

static vqj_status mpi_fail(const vqj_context *ctx, int rc, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        len = 0;
    msg[len] = 0;
    return vqji_fail(ctx, VQJ_ERR_DEVICE,
                     "%s failed: %s (did a rank die or leave the run early?)", what,
                     len ? msg : "unknown MPI error");
}

/* All-reduce as reduce to rank 0 then broadcast: every rank gets the one
 * result rank 0 computed, bit for bit, whatever algorithm MPI picks. */
static vqj_status mpi_allreduce(const vqj_context *ctx, vqj_comm *c, void *buf, size_t n,
                                vqj_comm_type type, vqj_comm_op op)
{
    if (n > (size_t)INT32_MAX)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_comm: %zu elements is too many", n);
    MPI_Op mop = op == VQJ_COMM_MAX ? MPI_MAX : MPI_SUM;
    int rc = MPI_Reduce(c->rank == 0 ? MPI_IN_PLACE : buf, c->rank == 0 ? buf : NULL, (int)n,
                        mpi_type(type), mop, 0, c->mpi);
    if (rc != MPI_SUCCESS)
        return mpi_fail(ctx, rc, "MPI_Reduce");
    if (op == VQJ_COMM_AVG && c->rank == 0) {
        float *f = buf, inv = 1.0f / (float)c->size;
        for (size_t i = 0; i < n; i++)
            f[i] *= inv;
    }
    rc = MPI_Bcast(buf, (int)n, mpi_type(type), 0, c->mpi);
    return rc == MPI_SUCCESS ? VQJ_OK : mpi_fail(ctx, rc, "MPI_Bcast");
}

static vqj_status mpi_allgatherv(const vqj_context *ctx, vqj_comm *c, const void *send,
                                 void *recv, const int64_t *counts, vqj_comm_type type)
{
    int *cnt = malloc(2 * (size_t)c->size * sizeof *cnt);
    if (!cnt)
        return vqji_fail(ctx, VQJ_ERR_OUT_OF_MEMORY, "vqj_comm: out of memory");
    int64_t off = 0;
    for (int r = 0; r < c->size; r++) {
        if (counts[r] > INT32_MAX || off > INT32_MAX) {
            free(cnt);
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_comm: a gather is too large");
        }
        cnt[r] = (int)counts[r];
        cnt[c->size + r] = (int)off;
        off += counts[r];
    }
    /* this rank's piece already in its place: MPI's in-place form */
    if ((const char *)send == (const char *)recv + (size_t)cnt[c->size + c->rank] * type_size(type))
        send = MPI_IN_PLACE;
    int rc = MPI_Allgatherv(send, cnt[c->rank], mpi_type(type), recv, cnt, cnt + c->size,
                            mpi_type(type), c->mpi);
    free(cnt);
    return rc == MPI_SUCCESS ? VQJ_OK : mpi_fail(ctx, rc, "MPI_Allgatherv");
}

static vqj_status mpi_bcast(const vqj_context *ctx, vqj_comm *c, void *buf, size_t n,
                            vqj_comm_type type, int root)
{
    if (n > (size_t)INT32_MAX)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_comm: %zu elements is too many", n);
    int rc = MPI_Bcast(buf, (int)n, mpi_type(type), root, c->mpi);
    return rc == MPI_SUCCESS ? VQJ_OK : mpi_fail(ctx, rc, "MPI_Bcast");
}
#endif

/* ---- NCCL (device buffers of a CUDA context) ---- */

#ifdef VQJ_WITH_NCCL
static ncclDataType_t nccl_type(vqj_comm_type t)
{
    return t == VQJ_COMM_FLOAT32 ? ncclFloat32 : t == VQJ_COMM_INT32 ? ncclInt32 : ncclInt64;
}

static vqj_status nccl_done(const vqj_context *ctx, vqj_comm *c, ncclResult_t r, const char *what)
{
    if (r == ncclSuccess && cudaStreamSynchronize(c->stream) == cudaSuccess)
        return VQJ_OK;
    return vqji_fail(ctx, VQJ_ERR_DEVICE, "%s failed: %s", what,
                     r != ncclSuccess ? ncclGetErrorString(r) : "the stream failed");
}

static vqj_status nccl_allreduce(const vqj_context *ctx, vqj_comm *c, void *buf, size_t n,
                                 vqj_comm_type type, vqj_comm_op op)
{
    if (cudaDeviceSynchronize() != cudaSuccess)
        return vqji_fail(ctx, VQJ_ERR_DEVICE, "vqj_comm: the device failed before ncclAllReduce");
    ncclRedOp_t nop = op == VQJ_COMM_MAX ? ncclMax : op == VQJ_COMM_AVG ? ncclAvg : ncclSum;
    return nccl_done(ctx, c, ncclAllReduce(buf, buf, n, nccl_type(type), nop, c->nccl, c->stream),
                     "ncclAllReduce");
}

/* NCCL has no all-gather of unequal pieces: one broadcast per rank. */
static vqj_status nccl_allgatherv(const vqj_context *ctx, vqj_comm *c, const void *send,
                                  void *recv, const int64_t *counts, vqj_comm_type type)
{
    if (cudaDeviceSynchronize() != cudaSuccess)
        return vqji_fail(ctx, VQJ_ERR_DEVICE, "vqj_comm: the device failed before ncclBroadcast");
    size_t es = type_size(type), off = 0;
    ncclResult_t r = ncclGroupStart();
    for (int q = 0; q < c->size && r == ncclSuccess; q++) {
        char *dst = (char *)recv + off * es;
        r = ncclBroadcast(q == c->rank ? send : dst, dst, (size_t)counts[q], nccl_type(type), q,
                          c->nccl, c->stream);
        off += (size_t)counts[q];
    }
    ncclResult_t e = ncclGroupEnd();
    return nccl_done(ctx, c, r != ncclSuccess ? r : e, "ncclBroadcast (all-gather)");
}

static vqj_status nccl_bcast(const vqj_context *ctx, vqj_comm *c, void *buf, size_t n,
                             vqj_comm_type type, int root)
{
    if (cudaDeviceSynchronize() != cudaSuccess)
        return vqji_fail(ctx, VQJ_ERR_DEVICE, "vqj_comm: the device failed before ncclBroadcast");
    return nccl_done(ctx, c, ncclBroadcast(buf, buf, n, nccl_type(type), root, c->nccl, c->stream),
                     "ncclBroadcast");
}
#endif

/* ---- dispatch ---- */

/* A trainer built from a configuration computes in a context derived from
 * the caller's (vqji_context_derive): the communicator is the root's. */
static vqj_comm *comm_of(const vqj_context *ctx)
{
    return ctx ? vqji_context_root(ctx)->comm : NULL;
}

int vqji_comm_size(const vqj_context *ctx)
{
    vqj_comm *c = comm_of(ctx);
    return c ? c->size : 1;
}

int vqji_comm_rank(const vqj_context *ctx)
{
    vqj_comm *c = comm_of(ctx);
    return c ? c->rank : 0;
}

static vqj_status host_allreduce(const vqj_context *ctx, vqj_comm *c, void *buf, size_t n,
                                 vqj_comm_type type, vqj_comm_op op)
{
    vqj_status st = check_type(ctx, type, op, "vqj_comm_allreduce");
    if (st || c->size == 1 || n == 0)
        return st;
#ifdef VQJ_WITH_MPI
    return mpi_allreduce(ctx, c, buf, n, type, op);
#else
    (void)buf;
    return vqji_fail(ctx, VQJ_ERR_INTERNAL, "vqj_comm: a communicator of size %d without MPI",
                     c->size);
#endif
}

static vqj_status host_allgatherv(const vqj_context *ctx, vqj_comm *c, const void *send,
                                  void *recv, const int64_t *counts, vqj_comm_type type)
{
    vqj_status st = check_type(ctx, type, VQJ_COMM_SUM, "vqj_comm_allgather");
    if (st)
        return st;
    if (c->size == 1) {
        if (counts[0] > 0 && recv != send)
            memmove(recv, send, (size_t)counts[0] * type_size(type));
        return VQJ_OK;
    }
#ifdef VQJ_WITH_MPI
    return mpi_allgatherv(ctx, c, send, recv, counts, type);
#else
    return vqji_fail(ctx, VQJ_ERR_INTERNAL, "vqj_comm: a communicator of size %d without MPI",
                     c->size);
#endif
}

static vqj_status host_bcast(const vqj_context *ctx, vqj_comm *c, void *buf, size_t n,
                             vqj_comm_type type, int root)
{
    vqj_status st = check_type(ctx, type, VQJ_COMM_SUM, "vqj_comm_broadcast");
    if (st)
        return st;
    if (root < 0 || root >= c->size)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_comm_broadcast: root %d is not a rank of 0..%d", root, c->size - 1);
    if (c->size == 1 || n == 0)
        return VQJ_OK;
#ifdef VQJ_WITH_MPI
    return mpi_bcast(ctx, c, buf, n, type, root);
#else
    (void)buf;
    return vqji_fail(ctx, VQJ_ERR_INTERNAL, "vqj_comm: a communicator of size %d without MPI",
                     c->size);
#endif
}

/* Device buffers: direct on the CPU device (its memory is the host's), over
 * NCCL where there is one, else staged through host memory. */
static int direct(const vqj_context *ctx) { return ctx->params.device == VQJ_DEVICE_CPU; }

static vqj_status stage(const vqj_context *ctx, vqj_comm *c, size_t bytes)
{
    return vqji_reserve(ctx, &c->stage, &c->stage_cap, bytes ? bytes : 1,
                        "the communicator's staging buffer");
}

/* An in-place collective on device memory through the host staging buffer:
 * download, the host all-reduce (or broadcast from `root` when root >= 0),
 * upload. */
static vqj_status staged(const vqj_context *ctx, vqj_comm *c, void *buf, size_t n,
                         vqj_comm_type type, vqj_comm_op op, int root)
{
    vqji_device *dev = ctx->device;
    size_t bytes = n * type_size(type);
    vqj_status st = stage(ctx, c, bytes);
    if (!st)
        st = dev->ops->download(dev, c->stage, buf, bytes);
    if (!st)
        st = root >= 0 ? host_bcast(ctx, c, c->stage, n, type, root)
                       : host_allreduce(ctx, c, c->stage, n, type, op);
    if (!st)
        st = dev->ops->upload(dev, buf, c->stage, bytes);
    return st;
}

vqj_status vqji_comm_allreduce_dev(const vqj_context *ctx, void *buf, size_t n,
                                   vqj_comm_type type, vqj_comm_op op)
{
    vqj_comm *c = comm_of(ctx);
    if (!c || c->size == 1 || n == 0)
        return VQJ_OK;
    if (direct(ctx))
        return host_allreduce(ctx, c, buf, n, type, op);
#ifdef VQJ_WITH_NCCL
    if (c->backend == BACKEND_NCCL) {
        vqj_status st = check_type(ctx, type, op, "vqj_comm_allreduce");
        return st ? st : nccl_allreduce(ctx, c, buf, n, type, op);
    }
#endif
    return staged(ctx, c, buf, n, type, op, -1);
}

vqj_status vqji_comm_allgatherv_dev(const vqj_context *ctx, const void *send, void *recv,
                                    const int64_t *counts, vqj_comm_type type)
{
    vqj_comm *c = comm_of(ctx);
    if (!c || c->size == 1) {
        size_t bytes = (size_t)counts[0] * type_size(type);
        if (bytes && recv != send)
            ctx->device->ops->copy(ctx->device, recv, send, bytes);
        return VQJ_OK;
    }
    if (direct(ctx))
        return host_allgatherv(ctx, c, send, recv, counts, type);
#ifdef VQJ_WITH_NCCL
    if (c->backend == BACKEND_NCCL)
        return nccl_allgatherv(ctx, c, send, recv, counts, type);
#endif
    vqji_device *dev = ctx->device;
    size_t es = type_size(type), total = 0, first = 0;
    for (int r = 0; r < c->size; r++) {
        if (r == c->rank)
            first = total;
        total += (size_t)counts[r];
    }
    vqj_status st = stage(ctx, c, total * es);
    char *h = c->stage;
    if (!st)
        st = dev->ops->download(dev, h + first * es, send, (size_t)counts[c->rank] * es);
    if (!st)
        st = host_allgatherv(ctx, c, h + first * es, h, counts, type);
    if (!st)
        st = dev->ops->upload(dev, recv, h, total * es);
    return st;
}

vqj_status vqji_comm_broadcast_dev(const vqj_context *ctx, void *buf, size_t n,
                                   vqj_comm_type type, int root)
{
    vqj_comm *c = comm_of(ctx);
    if (!c || c->size == 1 || n == 0)
        return VQJ_OK;
    if (direct(ctx))
        return host_bcast(ctx, c, buf, n, type, root);
#ifdef VQJ_WITH_NCCL
    if (c->backend == BACKEND_NCCL)
        return nccl_bcast(ctx, c, buf, n, type, root);
#endif
    if (root < 0 || root >= c->size)
        return host_bcast(ctx, c, buf, n, type, root); /* its error */
    return staged(ctx, c, buf, n, type, VQJ_COMM_SUM, root);
}

vqj_status vqji_comm_allreduce_host(const vqj_context *ctx, void *buf, size_t n,
                                    vqj_comm_type type, vqj_comm_op op)
{
    vqj_comm *c = comm_of(ctx);
    return c ? host_allreduce(ctx, c, buf, n, type, op) : VQJ_OK;
}

/* All-gather of n elements from every rank. */
static vqj_status host_allgather(const vqj_context *ctx, vqj_comm *c, const void *send, size_t n,
                                 void *recv, vqj_comm_type type)
{
    int size = c ? c->size : 1;
    if (size == 1) {
        if (n && recv != send)
            memmove(recv, send, n * type_size(type));
        return VQJ_OK;
    }
    int64_t *counts = malloc((size_t)size * sizeof *counts);
    if (!counts)
        return vqji_fail(ctx, VQJ_ERR_OUT_OF_MEMORY, "vqj_comm: out of memory");
    for (int r = 0; r < size; r++)
        counts[r] = (int64_t)n;
    vqj_status st = host_allgatherv(ctx, c, send, recv, counts, type);
    free(counts);
    return st;
}

vqj_status vqji_comm_allgather_host(const vqj_context *ctx, const void *send, size_t n,
                                    void *recv, vqj_comm_type type)
{
    return host_allgather(ctx, comm_of(ctx), send, n, recv, type);
}

vqj_status vqji_comm_allgatherv_host(const vqj_context *ctx, const void *send, void *recv,
                                     const int64_t *counts, vqj_comm_type type)
{
    vqj_comm *c = comm_of(ctx);
    if (!c) {
        if (counts[0] > 0 && recv != send)
            memmove(recv, send, (size_t)counts[0] * type_size(type));
        return VQJ_OK;
    }
    return host_allgatherv(ctx, c, send, recv, counts, type);
}

vqj_status vqji_comm_counts(const vqj_context *ctx, int64_t mine, int64_t *counts,
                            int64_t *total, int64_t *first)
{
    vqj_status st = vqji_comm_allgather_host(ctx, &mine, 1, counts, VQJ_COMM_INT64);
    if (st)
        return st;
    int size = vqji_comm_size(ctx), rank = vqji_comm_rank(ctx);
    *total = *first = 0;
    for (int r = 0; r < size; r++) {
        if (r == rank)
            *first = *total;
        *total += counts[r];
    }
    return VQJ_OK;
}

/* ---- public ---- */

int vqj_comm_mpi_available(void)
{
#ifdef VQJ_WITH_MPI
    return 1;
#else
    return 0;
#endif
}

static vqj_status comm_new(vqj_context *ctx, enum backend b, vqj_comm **out)
{
    vqj_comm *c;
    vqj_status st = vqji_calloc(ctx, 1, sizeof *c, "the communicator", (void **)&c);
    if (st)
        return st;
    c->ctx = ctx;
    c->backend = b;
    c->size = 1;
    *out = c;
    return VQJ_OK;
}

vqj_status vqj_comm_create_single(vqj_context *ctx, vqj_comm **out)
{
    if (!ctx || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_comm_create_single: NULL argument");
    vqji_clear_error(ctx);
    *out = NULL;
    return comm_new(ctx, BACKEND_SINGLE, out);
}

#ifdef VQJ_WITH_NCCL
static vqj_status nccl_open(vqj_comm *c)
{
    ncclUniqueId id;
    if (c->rank == 0 && ncclGetUniqueId(&id) != ncclSuccess)
        return vqji_fail(c->ctx, VQJ_ERR_DEVICE, "vqj_comm_create_mpi: ncclGetUniqueId failed");
    int rc = MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, c->mpi);
    if (rc != MPI_SUCCESS)
        return mpi_fail(c->ctx, rc, "MPI_Bcast of the NCCL id");
    if (cudaSetDevice(c->ctx->params.device_index) != cudaSuccess ||
        cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking) != cudaSuccess)
        return vqji_fail(c->ctx, VQJ_ERR_DEVICE, "vqj_comm_create_mpi: no CUDA stream");
    ncclResult_t r = ncclCommInitRank(&c->nccl, c->size, id, c->rank);
    if (r != ncclSuccess) {
        cudaStreamDestroy(c->stream);
        return vqji_fail(c->ctx, VQJ_ERR_DEVICE, "vqj_comm_create_mpi: ncclCommInitRank: %s",
                         ncclGetErrorString(r));
    }
    c->backend = BACKEND_NCCL;
    return VQJ_OK;
}
#endif

static vqj_status create_mpi(vqj_context *ctx, void *mpi_comm, int init, int *argc,
                             char ***argv, vqj_comm **out)
{
    const char *fn = init ? "vqj_comm_init_mpi" : "vqj_comm_create_mpi";
    if (!ctx || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    vqji_clear_error(ctx);
    *out = NULL;
#ifndef VQJ_WITH_MPI
    (void)mpi_comm, (void)argc, (void)argv;
    return vqji_fail(ctx, VQJ_ERR_UNSUPPORTED,
                     "%s: this build has no MPI; rebuild with `make MPI=1`", fn);
#else
    int flag = 0, owns = 0;
    MPI_Initialized(&flag);
    if (!flag && init) {
        int provided;
        if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return vqji_fail(ctx, VQJ_ERR_DEVICE, "%s: MPI_Init_thread failed", fn);
        owns = 1;
    } else if (!flag) {
        return vqji_fail(ctx, VQJ_ERR_UNSUPPORTED,
                         "%s: MPI is not initialized; call MPI_Init first, or "
                         "vqj_comm_init_mpi() to have the library do it",
                         fn);
    }
    vqj_comm *c;
    vqj_status st = comm_new(ctx, BACKEND_MPI, &c);
    if (st) {
        if (owns)
            MPI_Finalize();
        return st;
    }
    c->owns_mpi = owns;
    MPI_Comm host = mpi_comm ? *(MPI_Comm *)mpi_comm : MPI_COMM_WORLD;
    int rc = MPI_Comm_dup(host, &c->mpi);
    if (rc != MPI_SUCCESS) {
        st = mpi_fail(ctx, rc, "MPI_Comm_dup");
        c->mpi = MPI_COMM_NULL;
    }
    if (!st)
        MPI_Comm_set_errhandler(c->mpi, MPI_ERRORS_RETURN);
    if (!st) {
        MPI_Comm_rank(c->mpi, &c->rank);
        MPI_Comm_size(c->mpi, &c->size);
    }
#ifdef VQJ_WITH_NCCL
    if (!st && ctx->params.device == VQJ_DEVICE_CUDA)
        st = nccl_open(c);
#endif
    if (st) {
        vqj_comm_destroy(c);
        return st;
    }
    *out = c;
    return VQJ_OK;
#endif
}

vqj_status vqj_comm_create_mpi(vqj_context *ctx, void *mpi_comm, vqj_comm **out)
{
    return create_mpi(ctx, mpi_comm, 0, NULL, NULL, out);
}

vqj_status vqj_comm_init_mpi(vqj_context *ctx, int *argc, char ***argv, vqj_comm **out)
{
    return create_mpi(ctx, NULL, 1, argc, argv, out);
}

void vqj_comm_destroy(vqj_comm *c)
{
    if (!c)
        return;
#ifdef VQJ_WITH_NCCL
    if (c->backend == BACKEND_NCCL) {
        ncclCommDestroy(c->nccl);
        cudaStreamDestroy(c->stream);
    }
#endif
#ifdef VQJ_WITH_MPI
    if (c->backend != BACKEND_SINGLE) {
        if (c->mpi != MPI_COMM_NULL)
            MPI_Comm_free(&c->mpi);
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (c->owns_mpi && !finalized)
            MPI_Finalize();
    }
#endif
    free(c->stage);
    free(c);
}

int vqj_comm_rank(const vqj_comm *c) { return c ? c->rank : 0; }

int vqj_comm_size(const vqj_comm *c) { return c ? c->size : 1; }

const char *vqj_comm_backend(const vqj_comm *c)
{
    if (!c)
        return "single";
    return c->backend == BACKEND_NCCL ? "nccl" : c->backend == BACKEND_MPI ? "mpi" : "single";
}

vqj_status vqj_comm_allreduce(vqj_comm *c, void *buf, size_t count, vqj_comm_type type,
                              vqj_comm_op op)
{
    if (!c || (!buf && count))
        return vqji_fail(c ? c->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_comm_allreduce: NULL argument");
    vqji_clear_error(c->ctx);
    return host_allreduce(c->ctx, c, buf, count, type, op);
}

vqj_status vqj_comm_allgather(vqj_comm *c, const void *send, size_t count, void *recv,
                              vqj_comm_type type)
{
    if (!c || ((!send || !recv) && count))
        return vqji_fail(c ? c->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_comm_allgather: NULL argument");
    vqji_clear_error(c->ctx);
    vqj_status st = check_type(c->ctx, type, VQJ_COMM_SUM, "vqj_comm_allgather");
    return st ? st : host_allgather(c->ctx, c, send, count, recv, type);
}

vqj_status vqj_comm_broadcast(vqj_comm *c, void *buf, size_t count, vqj_comm_type type, int root)
{
    if (!c || (!buf && count))
        return vqji_fail(c ? c->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_comm_broadcast: NULL argument");
    vqji_clear_error(c->ctx);
    return host_bcast(c->ctx, c, buf, count, type, root);
}

vqj_status vqj_comm_check_same(vqj_comm *c, const void *bytes, size_t n, const char *what)
{
    if (!c || (!bytes && n))
        return vqji_fail(c ? c->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_comm_check_same: NULL argument");
    vqji_clear_error(c->ctx);
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const unsigned char *)bytes)[i]) * 0x100000001b3ull;
    int64_t *all = malloc((size_t)c->size * sizeof *all);
    if (!all)
        return vqji_fail(c->ctx, VQJ_ERR_OUT_OF_MEMORY, "vqj_comm_check_same: out of memory");
    int64_t mine = (int64_t)h;
    vqj_status st = vqj_comm_allgather(c, &mine, 1, all, VQJ_COMM_INT64);
    for (int r = 1; !st && r < c->size; r++)
        if (all[r] != all[0])
            st = vqji_fail(c->ctx, VQJ_ERR_INVALID_ARGUMENT,
                           "%s differs across ranks: rank %d's hash is %016llx, rank 0's "
                           "%016llx; start every rank with the same one",
                           what ? what : "the input", r, (unsigned long long)all[r],
                           (unsigned long long)all[0]);
    free(all);
    return st;
}

vqj_status vqj_context_set_comm(vqj_context *ctx, vqj_comm *comm)
{
    if (!ctx)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "vqj_context_set_comm: ctx is NULL");
    vqji_clear_error(ctx);
    ctx->comm = comm;
    return VQJ_OK;
}

vqj_comm *vqj_context_comm(const vqj_context *ctx) { return comm_of(ctx); }
