#include "device/tensor.h"
#include "device/device.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

vqj_status vqj_tensor_create(vqj_context *ctx, int rows, int cols, vqj_tensor **out)
{
    if (!ctx || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_tensor_create: NULL argument");
    vqji_clear_error(ctx);
    if (rows < 0 || cols < 0)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_tensor_create: negative shape %d x %d", rows, cols);
    vqj_tensor *t;
    vqj_status st = vqji_calloc(ctx, 1, sizeof *t, "a tensor", (void **)&t);
    if (st)
        return st;
    t->ctx = ctx;
    st = vqj_tensor_reshape(t, rows, cols);
    if (st) {
        free(t);
        return st;
    }
    ctx->device->ops->fill(ctx->device, (size_t)rows * (size_t)cols, 0.0f, t->data);
    *out = t;
    return VQJ_OK;
}

void vqj_tensor_destroy(vqj_tensor *t)
{
    if (!t)
        return;
    t->ctx->device->ops->free(t->ctx->device, t->data);
    free(t);
}

vqj_status vqj_tensor_reshape(vqj_tensor *t, int rows, int cols)
{
    if (!t)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "vqj_tensor_reshape: tensor is NULL");
    if (rows < 0 || cols < 0)
        return vqji_fail(t->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_tensor_reshape: negative shape %d x %d", rows, cols);
    size_t need = (size_t)rows * (size_t)cols, cap = t->capacity * sizeof(float);
    vqj_status st = vqji_device_reserve(t->ctx->device, (void **)&t->data, &cap,
                                        need * sizeof(float));
    if (st)
        return st;
    t->capacity = cap / sizeof(float);
    t->rows = rows;
    t->cols = cols;
    return VQJ_OK;
}

int vqj_tensor_rows(const vqj_tensor *t) { return t ? t->rows : 0; }
int vqj_tensor_cols(const vqj_tensor *t) { return t ? t->cols : 0; }

static vqj_status check_count(const vqj_tensor *t, const void *host, size_t count,
                              const char *fn)
{
    if (!t || !host)
        return vqji_fail(t ? t->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    size_t n = (size_t)t->rows * (size_t)t->cols;
    if (count != n)
        return vqji_fail(t->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: count is %zu but the tensor holds %d x %d = %zu values", fn, count,
                         t->rows, t->cols, n);
    return VQJ_OK;
}

vqj_status vqj_tensor_read(const vqj_tensor *t, float *dst, size_t count)
{
    vqj_status st = check_count(t, dst, count, "vqj_tensor_read");
    if (st)
        return st;
    vqji_device *dev = t->ctx->device;
    return dev->ops->download(dev, dst, t->data, count * sizeof(float));
}

vqj_status vqj_tensor_write(vqj_tensor *t, const float *src, size_t count)
{
    vqj_status st = check_count(t, src, count, "vqj_tensor_write");
    if (st)
        return st;
    vqji_device *dev = t->ctx->device;
    return dev->ops->upload(dev, t->data, src, count * sizeof(float));
}

void vqji_tensor_zero(vqj_tensor *t)
{
    vqji_device *dev = t->ctx->device;
    dev->ops->fill(dev, (size_t)t->rows * (size_t)t->cols, 0.0f, t->data);
}

bool vqji_tensor_all_finite(const vqj_tensor *t)
{
    vqji_device *dev = t->ctx->device;
    return dev->ops->all_finite(dev, (size_t)t->rows * (size_t)t->cols, t->data);
}

vqj_status vqji_tensor_append_rows(vqj_tensor *dst, const vqj_tensor *src)
{
    int rows = dst->rows;
    size_t have = (size_t)rows * (size_t)src->cols, add = (size_t)src->rows * (size_t)src->cols;
    if (rows == 0 || dst->cols != src->cols) {
        rows = 0;
        have = 0;
    }
    vqji_device *dev = dst->ctx->device;
    /* reshape may move the storage without keeping it: grow through a copy. */
    if (have + add > dst->capacity) {
        float *p;
        vqj_status st = dev->ops->alloc(dev, 2 * (have + add) * sizeof(float), (void **)&p);
        if (st)
            return st;
        dev->ops->copy(dev, p, dst->data, have * sizeof(float));
        dev->ops->free(dev, dst->data);
        dst->data = p;
        dst->capacity = 2 * (have + add);
    }
    dev->ops->copy(dev, dst->data + have, src->data, add * sizeof(float));
    dst->rows = rows + src->rows;
    dst->cols = src->cols;
    return VQJ_OK;
}

void vqji_tensor_add_rows(vqj_tensor *dst, const vqj_tensor *src, int64_t first)
{
    vqji_device *dev = dst->ctx->device;
    size_t cols = (size_t)src->cols;
    dev->ops->axpy(dev, (size_t)dst->rows * cols, 1.0f, src->data + (size_t)first * cols,
                   dst->data);
}

/* ---- named weights ---- */

void vqji_weights_init(vqj_weights *w, vqj_context *ctx)
{
    memset(w, 0, sizeof *w);
    w->ctx = ctx;
}

vqj_status vqji_weights_add(vqj_weights *w, const char *name, int64_t rows, int64_t cols,
                            int trainable, size_t *index)
{
    if (w->data)
        return vqji_fail(w->ctx, VQJ_ERR_INTERNAL, "weight %s added after finalize", name);
    if (strlen(name) >= VQJI_WEIGHT_NAME_MAX || rows < 1 || cols < 1)
        return vqji_fail(w->ctx, VQJ_ERR_INTERNAL, "bad weight %s (%lld x %lld)", name,
                         (long long)rows, (long long)cols);
    if (w->count == w->capacity) {
        size_t bytes = (w->capacity ? 2 * w->capacity : 16) * sizeof *w->items;
        size_t cap_bytes = w->capacity * sizeof *w->items;
        vqj_status st = vqji_reserve(w->ctx, (void **)&w->items, &cap_bytes, bytes, "weights");
        if (st)
            return st;
        w->capacity = cap_bytes / sizeof *w->items;
    }
    vqji_weight *it = &w->items[w->count];
    memset(it, 0, sizeof *it);
    strcpy(it->name, name);
    it->ndim = cols == 1 ? 1 : 2;
    it->shape[0] = rows;
    it->shape[1] = cols;
    it->count = (size_t)rows * (size_t)cols;
    it->trainable = trainable;
    if (index)
        *index = w->count;
    w->count++;
    return VQJ_OK;
}

vqj_status vqji_weights_finalize(vqj_weights *w)
{
    size_t off = 0;
    for (int pass = 1; pass >= 0; pass--)
        for (size_t i = 0; i < w->count; i++)
            if (w->items[i].trainable == pass) {
                w->items[i].offset = off;
                off += w->items[i].count;
                if (pass)
                    w->num_params = off;
            }
    w->total = off;
    vqji_device *dev = w->ctx->device;
    vqj_status st = dev->ops->alloc(dev, w->total * sizeof(float), (void **)&w->data);
    if (st)
        return st;
    st = dev->ops->alloc(dev, w->num_params * sizeof(float), (void **)&w->grad);
    if (st) {
        dev->ops->free(dev, w->data);
        w->data = NULL;
        return st;
    }
    dev->ops->fill(dev, w->total, 0.0f, w->data);
    dev->ops->fill(dev, w->num_params, 0.0f, w->grad);
    return VQJ_OK;
}

void vqji_weights_release(vqj_weights *w)
{
    if (!w || !w->ctx)
        return;
    vqji_device *dev = w->ctx->device;
    dev->ops->free(dev, w->data);
    dev->ops->free(dev, w->grad);
    free(w->items);
    memset(w, 0, sizeof *w);
}

float *vqji_weights_data(const vqj_weights *w, size_t index)
{
    return w->data + w->items[index].offset;
}

float *vqji_weights_grad(const vqj_weights *w, size_t index)
{
    return w->items[index].trainable ? w->grad + w->items[index].offset : NULL;
}

vqj_status vqji_weights_find(const vqj_weights *w, const char *name, size_t *index)
{
    for (size_t i = 0; i < w->count; i++)
        if (strcmp(w->items[i].name, name) == 0) {
            *index = i;
            return VQJ_OK;
        }
    return vqji_fail(w->ctx, VQJ_ERR_INVALID_ARGUMENT, "no weight named \"%s\"", name);
}

void vqji_weights_zero_grad(vqj_weights *w)
{
    w->ctx->device->ops->fill(w->ctx->device, w->num_params, 0.0f, w->grad);
}

vqj_status vqji_weights_save(const vqj_weights *w, vqj_tensor *copy)
{
    if (w->total > INT_MAX)
        return vqji_fail(w->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "a snapshot of %zu values does not fit one tensor", w->total);
    vqj_status st = vqj_tensor_reshape(copy, (int)w->total, 1);
    if (st)
        return st;
    vqji_device *dev = w->ctx->device;
    dev->ops->copy(dev, copy->data, w->data, w->total * sizeof(float));
    return VQJ_OK;
}

void vqji_weights_restore(vqj_weights *w, const vqj_tensor *copy)
{
    vqji_device *dev = w->ctx->device;
    dev->ops->copy(dev, w->data, copy->data, w->total * sizeof(float));
}

vqj_status vqji_weights_grad_download(const vqj_weights *w, float *host, size_t count)
{
    vqji_device *dev = w->ctx->device;
    return dev->ops->download(dev, host, w->grad, count * sizeof(float));
}

vqj_status vqji_weights_grad_upload(vqj_weights *w, const float *host, size_t count)
{
    vqji_device *dev = w->ctx->device;
    return dev->ops->upload(dev, w->grad, host, count * sizeof(float));
}

size_t vqj_weights_num_tensors(const vqj_weights *w) { return w ? w->count : 0; }
size_t vqj_weights_num_params(const vqj_weights *w) { return w ? w->num_params : 0; }

vqj_status vqj_weights_info(const vqj_weights *w, size_t index, vqj_weight_info *out)
{
    if (!w || !out)
        return vqji_fail(w ? w->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_weights_info: NULL argument");
    if (index >= w->count)
        return vqji_fail(w->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_weights_info: index %zu out of range (%zu tensors)", index,
                         w->count);
    const vqji_weight *it = &w->items[index];
    out->name = it->name;
    out->ndim = it->ndim;
    out->shape[0] = it->shape[0];
    out->shape[1] = it->shape[1];
    out->count = it->count;
    out->trainable = it->trainable;
    return VQJ_OK;
}

static vqj_status lookup(const vqj_weights *w, const char *name, const void *host, size_t count,
                         const char *fn, size_t *index)
{
    if (!w || !name || !host)
        return vqji_fail(w ? w->ctx : NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    vqj_status st = vqji_weights_find(w, name, index);
    if (st)
        return st;
    if (count != w->items[*index].count)
        return vqji_fail(w->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "%s: \"%s\" holds %zu values, count is %zu", fn, name,
                         w->items[*index].count, count);
    return VQJ_OK;
}

vqj_status vqj_weights_read(const vqj_weights *w, const char *name, float *dst, size_t count)
{
    size_t i;
    vqj_status st = lookup(w, name, dst, count, "vqj_weights_read", &i);
    if (st)
        return st;
    vqji_device *dev = w->ctx->device;
    return dev->ops->download(dev, dst, vqji_weights_data(w, i), count * sizeof(float));
}

vqj_status vqj_weights_write(vqj_weights *w, const char *name, const float *src, size_t count)
{
    size_t i;
    vqj_status st = lookup(w, name, src, count, "vqj_weights_write", &i);
    if (st)
        return st;
    for (size_t k = 0; k < count; k++)
        if (!(src[k] - src[k] == 0.0f))
            return vqji_fail(w->ctx, VQJ_ERR_NUMERIC,
                             "vqj_weights_write: \"%s\"[%zu] is not finite", name, k);
    vqji_device *dev = w->ctx->device;
    return dev->ops->upload(dev, vqji_weights_data(w, i), src, count * sizeof(float));
}

vqj_status vqj_weights_read_grad(const vqj_weights *w, const char *name, float *dst, size_t count)
{
    size_t i;
    vqj_status st = lookup(w, name, dst, count, "vqj_weights_read_grad", &i);
    if (st)
        return st;
    if (!w->items[i].trainable)
        return vqji_fail(w->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_weights_read_grad: \"%s\" is state, not a trainable weight", name);
    vqji_device *dev = w->ctx->device;
    return dev->ops->download(dev, dst, vqji_weights_grad(w, i), count * sizeof(float));
}

void vqj_weights_zero_grad(vqj_weights *w)
{
    if (w && w->grad)
        vqji_weights_zero_grad(w);
}
