/* Reader for the "VQJT" test-vector files under tests/data/, written by
 * tools/reference/make_vectors.py (format documented at the top of that file):
 *
 *   "VQJT", u32 version (1), u32 count, then per tensor:
 *   u32 name_len, name bytes, u32 dtype (0 f32, 1 i32, 2 u8, 3 i64),
 *   u32 ndim, i64 dims[ndim], raw little-endian row-major data.
 *
 * Header-only, C11, no dependencies. Usage:
 *
 *   char err[256];
 *   vqjt_file *f = vqjt_load("tests/data/model.bin", err, sizeof err);
 *   if (!f) fail_msg("%s", err);
 *   const vqjt_tensor *t = vqjt_get(f, "fwd.z");         // NULL when absent
 *   const float *z = vqjt_f32(f, "fwd.z", &n);           // NULL unless f32
 *   vqjt_free(f);
 *
 * Every tensor's data is copied into its own malloc'd (so aligned) buffer. */
#ifndef VQJ_TEST_VECTORS_H
#define VQJ_TEST_VECTORS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VQJT_MAX_DIMS 8

typedef enum vqjt_dtype { VQJT_F32 = 0, VQJT_I32 = 1, VQJT_U8 = 2, VQJT_I64 = 3 } vqjt_dtype;

typedef struct vqjt_tensor {
    char *name;                     /* NUL-terminated */
    vqjt_dtype dtype;
    int ndim;                       /* 0 for a scalar */
    int64_t dims[VQJT_MAX_DIMS];
    size_t count;                   /* product of dims (1 for a scalar) */
    void *data;                     /* count elements of dtype; never NULL */
} vqjt_tensor;

typedef struct vqjt_file {
    size_t count;
    vqjt_tensor *tensors;
} vqjt_file;

static inline size_t vqjt_dtype_size(vqjt_dtype dtype)
{
    switch (dtype) {
    case VQJT_F32: return 4;
    case VQJT_I32: return 4;
    case VQJT_U8: return 1;
    case VQJT_I64: return 8;
    }
    return 0;
}

static inline void vqjt_free(vqjt_file *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->count; i++) {
        free(f->tensors[i].name);
        free(f->tensors[i].data);
    }
    free(f->tensors);
    free(f);
}

/* Cursor over the file bytes. */
typedef struct vqjt_cursor_ {
    const unsigned char *p;
    size_t left;
} vqjt_cursor_;

static inline int vqjt_take_(vqjt_cursor_ *c, void *dst, size_t n)
{
    if (n > c->left)
        return 0;
    memcpy(dst, c->p, n);
    c->p += n;
    c->left -= n;
    return 1;
}

static inline int vqjt_u32_(vqjt_cursor_ *c, uint32_t *v)
{
    unsigned char b[4];
    if (!vqjt_take_(c, b, 4))
        return 0;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 1;
}

static inline int vqjt_i64_(vqjt_cursor_ *c, int64_t *v)
{
    unsigned char b[8];
    if (!vqjt_take_(c, b, 8))
        return 0;
    uint64_t u = 0;
    for (int i = 7; i >= 0; i--)
        u = u << 8 | b[i];
    memcpy(v, &u, 8);
    return 1;
}

static inline void vqjt_err_(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Load a whole file. Returns NULL on failure with a message in err (which
 * may be NULL). The host must be little-endian (checked). */
static inline vqjt_file *vqjt_load(const char *path, char *err, size_t errlen)
{
    const uint16_t probe = 1;
    unsigned char first;
    memcpy(&first, &probe, 1);
    if (first != 1) {
        vqjt_err_(err, errlen, "vqjt: big-endian hosts are not supported");
        return NULL;
    }
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        vqjt_err_(err, errlen, "vqjt: cannot open %s", path);
        return NULL;
    }
    unsigned char *buf = NULL;
    size_t size = 0, cap = 0;
    for (;;) {
        if (size == cap) {
            size_t ncap = cap ? cap * 2 : 1 << 16;
            unsigned char *nb = (unsigned char *)realloc(buf, ncap);
            if (!nb) {
                free(buf);
                fclose(fp);
                vqjt_err_(err, errlen, "vqjt: out of memory reading %s", path);
                return NULL;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + size, 1, cap - size, fp);
        size += got;
        if (got == 0)
            break;
    }
    int read_error = ferror(fp);
    fclose(fp);
    if (read_error) {
        free(buf);
        vqjt_err_(err, errlen, "vqjt: read error on %s", path);
        return NULL;
    }

    vqjt_cursor_ c = {buf, size};
    vqjt_file *f = (vqjt_file *)calloc(1, sizeof *f);
    char magic[4];
    uint32_t version = 0, count = 0;
    const char *why = NULL;
    if (!f) {
        why = "out of memory";
        goto fail;
    }
    if (!vqjt_take_(&c, magic, 4) || memcmp(magic, "VQJT", 4) != 0) {
        why = "bad magic (not a VQJT file)";
        goto fail;
    }
    if (!vqjt_u32_(&c, &version) || version != 1) {
        why = "unsupported version";
        goto fail;
    }
    if (!vqjt_u32_(&c, &count) || count > c.left) {
        why = "bad tensor count";
        goto fail;
    }
    f->tensors = (vqjt_tensor *)calloc(count ? count : 1, sizeof *f->tensors);
    if (!f->tensors) {
        why = "out of memory";
        goto fail;
    }
    for (uint32_t i = 0; i < count; i++) {
        vqjt_tensor *t = &f->tensors[i];
        uint32_t name_len, dtype, ndim;
        if (!vqjt_u32_(&c, &name_len) || name_len > c.left) {
            why = "truncated name";
            goto fail;
        }
        f->count = (size_t)i + 1; /* so vqjt_free releases this entry */
        t->name = (char *)malloc((size_t)name_len + 1);
        if (!t->name) {
            why = "out of memory";
            goto fail;
        }
        vqjt_take_(&c, t->name, name_len);
        t->name[name_len] = '\0';
        if (!vqjt_u32_(&c, &dtype) || dtype > VQJT_I64) {
            why = "bad dtype";
            goto fail;
        }
        if (!vqjt_u32_(&c, &ndim) || ndim > VQJT_MAX_DIMS) {
            why = "bad ndim";
            goto fail;
        }
        t->dtype = (vqjt_dtype)dtype;
        t->ndim = (int)ndim;
        t->count = 1;
        for (uint32_t d = 0; d < ndim; d++) {
            if (!vqjt_i64_(&c, &t->dims[d]) || t->dims[d] < 0 ||
                (t->dims[d] > 0 && t->count > SIZE_MAX / 8 / (size_t)t->dims[d])) {
                why = "bad dims";
                goto fail;
            }
            t->count *= (size_t)t->dims[d];
        }
        size_t bytes = t->count * vqjt_dtype_size(t->dtype);
        if (bytes > c.left) {
            why = "truncated data";
            goto fail;
        }
        t->data = malloc(bytes ? bytes : 1);
        if (!t->data) {
            why = "out of memory";
            goto fail;
        }
        vqjt_take_(&c, t->data, bytes);
    }
    if (c.left != 0) {
        why = "trailing bytes";
        goto fail;
    }
    free(buf);
    return f;
fail:
    vqjt_err_(err, errlen, "vqjt: %s: %s (at byte %zu)", path, why, size - c.left);
    free(buf);
    vqjt_free(f);
    return NULL;
}

/* The tensor called `name`, or NULL. */
static inline const vqjt_tensor *vqjt_get(const vqjt_file *f, const char *name)
{
    if (!f || !name)
        return NULL;
    for (size_t i = 0; i < f->count; i++)
        if (strcmp(f->tensors[i].name, name) == 0)
            return &f->tensors[i];
    return NULL;
}

/* Typed access: the data of `name` when it exists with that dtype, else
 * NULL; *count (if not NULL) receives the element count (0 on NULL). */
static inline const void *vqjt_typed_(const vqjt_file *f, const char *name, vqjt_dtype dtype,
                                      size_t *count)
{
    const vqjt_tensor *t = vqjt_get(f, name);
    if (!t || t->dtype != dtype) {
        if (count)
            *count = 0;
        return NULL;
    }
    if (count)
        *count = t->count;
    return t->data;
}

static inline const float *vqjt_f32(const vqjt_file *f, const char *name, size_t *count)
{
    return (const float *)vqjt_typed_(f, name, VQJT_F32, count);
}

static inline const int32_t *vqjt_i32(const vqjt_file *f, const char *name, size_t *count)
{
    return (const int32_t *)vqjt_typed_(f, name, VQJT_I32, count);
}

static inline const uint8_t *vqjt_u8(const vqjt_file *f, const char *name, size_t *count)
{
    return (const uint8_t *)vqjt_typed_(f, name, VQJT_U8, count);
}

static inline const int64_t *vqjt_i64(const vqjt_file *f, const char *name, size_t *count)
{
    return (const int64_t *)vqjt_typed_(f, name, VQJT_I64, count);
}

/* A scalar (or the first element) of an i32 tensor, or `fallback`. */
static inline int vqjt_int(const vqjt_file *f, const char *name, int fallback)
{
    const int32_t *v = vqjt_i32(f, name, NULL);
    return v ? (int)v[0] : fallback;
}

/* A scalar (or the first element) of an f32 tensor, or `fallback`. */
static inline float vqjt_float(const vqjt_file *f, const char *name, float fallback)
{
    const float *v = vqjt_f32(f, name, NULL);
    return v ? v[0] : fallback;
}

static inline const char *vqjt_dtype_name(vqjt_dtype dtype)
{
    switch (dtype) {
    case VQJT_F32: return "f32";
    case VQJT_I32: return "i32";
    case VQJT_U8: return "u8";
    case VQJT_I64: return "i64";
    }
    return "?";
}

#endif
