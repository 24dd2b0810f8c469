/* Checkpoints (DESIGN.md section 7; docs/checkpoints.md): safetensors files
 * holding every tensor of a list of weights views, with a CRC-32 of the data
 * section in "__metadata__". Saving writes a temporary file next to the
 * target, fsyncs it, renames it over the target and fsyncs the folder, so a
 * crash leaves either the old file or the new one. Loading checks the whole
 * file (header, layout, shapes, checksum, finiteness) before it writes any
 * view, so a failed load changes nothing. Tensors are streamed through one
 * fixed-size host buffer in both directions: a checkpoint is never held in
 * memory next to the weights it came from. */
#include "device/tensor.h"
#include "device/device.h"
#include "train/checkpoint.h"

#include <jansson.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FORMAT_NAME "vqjepa-checkpoint-1"
#define META_FORMAT "format"
#define META_VERSION "vqjepa_version"
#define META_CHECKSUM "checksum"
#define CHECKSUM_PREFIX "crc32:"
/* safetensors' own reader refuses headers above 100 MB. */
#define HEADER_MAX ((unsigned long long)VQJI_HI_CHECKPOINT_HEADER_BYTES)
/* Bytes moved per device transfer and per read or write call. */
#define CHUNK_BYTES ((size_t)1 << 20)
#define MAX_RANK VQJI_HI_CHECKPOINT_RANK

/* ---- small helpers ---- */

/* strerror() may share one buffer between threads. */
static const char *error_text(int err, char *buf, size_t size)
{
    if (strerror_r(err, buf, size) != 0)
        snprintf(buf, size, "error %d", err);
    return buf;
}

static vqj_status io_fail(const vqj_context *ctx, const char *fn, const char *what,
                          const char *path, int err)
{
    char reason[128];
    return vqji_fail(ctx, VQJ_ERR_IO, "%s: %s %s: %s", fn, what, path,
                     error_text(err, reason, sizeof reason));
}

/* safetensors stores little-endian data; swap on a big-endian host. */
static int host_is_big_endian(void)
{
    const uint32_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 0;
}

static void swap32(void *buf, size_t n_words)
{
    unsigned char *p = buf;
    for (size_t i = 0; i < n_words; i++, p += 4) {
        unsigned char t0 = p[0], t1 = p[1];
        p[0] = p[3];
        p[1] = p[2];
        p[2] = t1;
        p[3] = t0;
    }
}

/* CRC-32 (IEEE 802.3, reflected, as zlib's crc32() and Python's
 * zlib.crc32()), table-driven. The table lives with the running value so the
 * code needs no global state. */
typedef struct crc32_state {
    uint32_t table[256];
    uint32_t value;
} crc32_state;

static void crc32_init(crc32_state *c)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t r = i;
        for (int k = 0; k < 8; k++)
            r = (r & 1u) ? (r >> 1) ^ 0xEDB88320u : r >> 1;
        c->table[i] = r;
    }
    c->value = 0xFFFFFFFFu;
}

static void crc32_update(crc32_state *c, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    uint32_t v = c->value;
    for (size_t i = 0; i < n; i++)
        v = c->table[(v ^ p[i]) & 0xFFu] ^ (v >> 8);
    c->value = v;
}

static uint32_t crc32_final(const crc32_state *c) { return c->value ^ 0xFFFFFFFFu; }

static int all_finite(const float *x, size_t n, size_t *bad)
{
    for (size_t i = 0; i < n; i++)
        if (!(x[i] - x[i] == 0.0f)) {
            *bad = i;
            return 0;
        }
    return 1;
}

/* Read exactly n bytes at offset; a short read means the file shrank. */
static int pread_all(int fd, void *buf, size_t n, uint64_t offset)
{
    unsigned char *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n, (off_t)offset);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = EIO;
            return -1;
        }
        p += r;
        n -= (size_t)r;
        offset += (uint64_t)r;
    }
    return 0;
}

static int write_all(int fd, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    while (n) {
        long r = vqji_write(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = EIO;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static char *join(const char *prefix, const char *name)
{
    size_t a = prefix ? strlen(prefix) : 0, b = strlen(name);
    char *s = malloc(a + b + 1);
    if (s) {
        if (a)
            memcpy(s, prefix, a);
        memcpy(s + a, name, b + 1);
    }
    return s;
}

/* "[3, 4]" from a safetensors shape array (or a view's shape). */
static void shape_text(char *buf, size_t size, const int64_t *dims, int ndim)
{
    size_t used = 0;
    used += (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%" PRId64, i ? ", " : "", dims[i]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
}

/* ---- the plan: which view tensor goes where ---- */

typedef struct plan_item {
    vqj_weights *w;
    size_t index;        /* in w */
    char *name;          /* prefix + tensor name (save; owned) */
    uint64_t begin, end; /* bytes in the data section */
} plan_item;

typedef struct plan {
    plan_item *items;
    size_t n;
} plan;

static void plan_free(plan *p)
{
    if (!p->items)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->items[i].name);
    free(p->items);
    p->items = NULL;
    p->n = 0;
}

/* Check the entries (non-NULL views of `ctx`, each given once) and count
 * their tensors. */
static vqj_status check_entries(vqj_context *ctx, const char *fn,
                                const vqj_checkpoint_entry *entries, size_t n, size_t *total)
{
    *total = 0;
    if (n && !entries)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: entries is NULL", fn);
    for (size_t e = 0; e < n; e++) {
        const vqj_weights *w = entries[e].weights;
        if (!w)
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: entry %zu has no weights", fn,
                             e);
        if (!vqji_same_context(w->ctx, ctx))
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "%s: entry %zu holds weights of another context", fn, e);
        for (size_t f = 0; f < e; f++)
            if (entries[f].weights == w)
                return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                                 "%s: entries %zu and %zu hold the same weights", fn, f, e);
        *total += w->count;
    }
    return VQJ_OK;
}

/* ---- saving ---- */

/* Copy tensor `it` to the host chunk by chunk, calling `sink` on each
 * little-endian chunk. */
typedef vqj_status (*chunk_sink)(void *user, const void *bytes, size_t n, const plan_item *it,
                                 size_t first_float);

static vqj_status stream_tensor(const plan_item *it, float *buf, chunk_sink sink, void *user)
{
    vqj_weights *w = it->w;
    vqji_device *dev = w->ctx->device;
    const float *src = vqji_weights_data(w, it->index);
    size_t count = w->items[it->index].count, per = CHUNK_BYTES / sizeof(float);
    for (size_t off = 0; off < count; off += per) {
        size_t k = count - off < per ? count - off : per;
        vqj_status st = dev->ops->download(dev, buf, src + off, k * sizeof(float));
        if (st)
            return st;
        if (host_is_big_endian())
            swap32(buf, k);
        if ((st = sink(user, buf, k * sizeof(float), it, off)))
            return st;
    }
    return VQJ_OK;
}

typedef struct check_sink {
    vqj_context *ctx;
    const char *fn;
    crc32_state crc;
} check_sink;

/* First pass of a save: the checksum, and no non-finite value (a file the
 * loader would refuse must not be written). */
static vqj_status sink_check(void *user, const void *bytes, size_t n, const plan_item *it,
                             size_t first_float)
{
    check_sink *s = user;
    crc32_update(&s->crc, bytes, n);
    size_t bad;
    const float *x = bytes;
    float tmp[1];
    if (host_is_big_endian()) {
        /* Values were swapped for the file; check them one by one. */
        for (size_t i = 0; i < n / 4; i++) {
            memcpy(tmp, x + i, 4);
            swap32(tmp, 1);
            if (!all_finite(tmp, 1, &bad))
                return vqji_fail(s->ctx, VQJ_ERR_NUMERIC, "%s: tensor \"%s\"[%zu] is not finite",
                                 s->fn, it->name, first_float + i);
        }
    } else if (!all_finite(x, n / 4, &bad)) {
        return vqji_fail(s->ctx, VQJ_ERR_NUMERIC, "%s: tensor \"%s\"[%zu] is not finite", s->fn,
                         it->name, first_float + bad);
    }
    return VQJ_OK;
}

typedef struct write_sink {
    vqj_context *ctx;
    const char *fn;
    const char *path;
    int fd;
} write_sink;

static vqj_status sink_write(void *user, const void *bytes, size_t n, const plan_item *it,
                             size_t first_float)
{
    (void)it;
    (void)first_float;
    write_sink *s = user;
    if (write_all(s->fd, bytes, n))
        return io_fail(s->ctx, s->fn, "cannot write a temporary file for", s->path, errno);
    return VQJ_OK;
}

static vqj_status oom(vqj_context *ctx, const char *fn, const char *what)
{
    return vqji_fail(ctx, VQJ_ERR_OUT_OF_MEMORY, "%s: out of memory (%s)", fn, what);
}

/* The header object: "__metadata__" first (so `head -c` shows it), then one
 * entry per tensor in data order. Fills the plan's offsets and names. */
static vqj_status build_header(vqj_context *ctx, const char *fn,
                               const vqj_checkpoint_entry *entries, size_t n,
                               const char *const *metadata, plan *p, json_t **out_header,
                               json_t **out_meta)
{
    json_t *header = json_object(), *meta = json_object();
    if (!header || !meta || json_object_set(header, "__metadata__", meta)) {
        json_decref(header);
        json_decref(meta);
        return oom(ctx, fn, "checkpoint header");
    }
    vqj_status st = VQJ_OK;
    /* The caller's metadata: key, value pairs up to a NULL key. */
    for (size_t i = 0; metadata && metadata[i] && !st; i += 2) {
        const char *key = metadata[i], *value = metadata[i + 1];
        if (!value)
            st = vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: metadata key \"%s\" has no value",
                           fn, key);
        else if (!strcmp(key, META_FORMAT) || !strcmp(key, META_VERSION) ||
                 !strcmp(key, META_CHECKSUM))
            st = vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                           "%s: metadata key \"%s\" is reserved for the library", fn, key);
        else if (json_object_get(meta, key))
            st = vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: metadata key \"%s\" given twice",
                           fn, key);
        else {
            json_t *v = json_string(value);
            if (!v || json_object_set_new(meta, key, v))
                st = vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                               "%s: metadata \"%s\": key or value is not valid UTF-8", fn, key);
        }
    }
    uint64_t offset = 0;
    size_t k = 0;
    for (size_t e = 0; e < n && !st; e++) {
        vqj_weights *w = entries[e].weights;
        for (size_t i = 0; i < w->count && !st; i++, k++) {
            const vqji_weight *wi = &w->items[i];
            plan_item *it = &p->items[k];
            it->w = w;
            it->index = i;
            if (!(it->name = join(entries[e].prefix, wi->name))) {
                st = oom(ctx, fn, "tensor names");
                break;
            }
            if (!strcmp(it->name, "__metadata__") || json_object_get(header, it->name)) {
                st = vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                               "%s: two tensors are named \"%s\"; give the entries distinct "
                               "prefixes",
                               fn, it->name);
                break;
            }
            it->begin = offset;
            offset += (uint64_t)wi->count * sizeof(float);
            it->end = offset;
            json_t *shape = json_array();
            for (int d = 0; shape && d < wi->ndim; d++)
                if (json_array_append_new(shape, json_integer((json_int_t)wi->shape[d]))) {
                    json_decref(shape);
                    shape = NULL;
                }
            json_t *t = shape ? json_pack("{s:s, s:o, s:[I, I]}", "dtype", "F32", "shape", shape,
                                          "data_offsets", (json_int_t)it->begin,
                                          (json_int_t)it->end)
                              : NULL;
            if (!t || json_object_set_new(header, it->name, t))
                st = oom(ctx, fn, "checkpoint header");
        }
    }
    if (st) {
        json_decref(header);
        json_decref(meta);
        return st;
    }
    *out_header = header;
    *out_meta = meta; /* a second reference, for the checksum added later */
    return VQJ_OK;
}

/* The header as JSON text. Not json_dumps(): jansson 2.14 ignores a failed
 * allocation while it writes an object's key and returns text without the
 * key (found by tests/alloc_fail_test.c). Every byte goes through
 * append_text() here, whose failure sticks. */
typedef struct text_buf {
    const vqj_context *ctx;
    char *data;
    size_t len, cap;
    vqj_status st;
} text_buf;

static int append_text(const char *bytes, size_t n, void *user)
{
    text_buf *b = user;
    if (!b->st)
        b->st = vqji_reserve(b->ctx, (void **)&b->data, &b->cap, b->len + n + 1,
                             "checkpoint header");
    if (b->st)
        return -1;
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static vqj_status dump_header(const vqj_context *ctx, const json_t *header, char **out)
{
    text_buf b = {.ctx = ctx};
    if (json_dump_callback(header, append_text, &b, JSON_COMPACT) != 0 || b.st || !b.data) {
        free(b.data);
        return b.st ? b.st : vqji_fail(ctx, VQJ_ERR_OUT_OF_MEMORY,
                                       "out of memory writing the checkpoint header");
    }
    *out = b.data;
    return VQJ_OK;
}

/* The folder of `path`, to create the temporary file in and to fsync. */
static char *folder_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return join(NULL, ".");
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    char *s = malloc(len + 1);
    if (s) {
        memcpy(s, path, len);
        s[len] = '\0';
    }
    return s;
}

static vqj_status save_impl(vqj_context *ctx, const char *fn, const char *path,
                            const vqj_checkpoint_entry *entries, size_t n,
                            const char *const *metadata)
{
    size_t total;
    vqj_status st = check_entries(ctx, fn, entries, n, &total);
    if (st)
        return st;
    if (!*path)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: empty path", fn);

    plan p = {0};
    json_t *header = NULL, *meta = NULL;
    float *buf = NULL;
    char *text = NULL, *tmp = NULL, *folder = NULL;
    int fd = -1;
    if ((st = vqji_calloc(ctx, total ? total : 1, sizeof *p.items, "checkpoint plan",
                          (void **)&p.items)))
        return st;
    p.n = total;
    if ((st = vqji_malloc(ctx, CHUNK_BYTES, "checkpoint buffer", (void **)&buf)))
        goto done;
    if ((st = build_header(ctx, fn, entries, n, metadata, &p, &header, &meta)))
        goto done;

    /* Pass 1: checksum and finiteness, before any file exists. */
    check_sink cs = {.ctx = ctx, .fn = fn};
    crc32_init(&cs.crc);
    for (size_t i = 0; i < p.n && !st; i++)
        st = stream_tensor(&p.items[i], buf, sink_check, &cs);
    if (st)
        goto done;
    char sum[32];
    snprintf(sum, sizeof sum, CHECKSUM_PREFIX "%08" PRIx32, crc32_final(&cs.crc));
    if (json_object_set_new(meta, META_FORMAT, json_string(FORMAT_NAME)) ||
        json_object_set_new(meta, META_VERSION, json_string(vqj_version())) ||
        json_object_set_new(meta, META_CHECKSUM, json_string(sum)) ||
        (st = dump_header(ctx, header, &text))) {
        st = st ? st : oom(ctx, fn, "checkpoint header");
        goto done;
    }

    /* The header, padded with spaces so the data starts 8-byte aligned. */
    size_t len = strlen(text), padded = (len + 7) & ~(size_t)7;
    if (padded > HEADER_MAX) {
        st = vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                       "%s: the header would take %zu bytes, above the %llu that safetensors "
                       "readers accept (metadata too large?)",
                       fn, padded, (unsigned long long)HEADER_MAX);
        goto done;
    }
    unsigned char prefix[8];
    for (int b = 0; b < 8; b++)
        prefix[b] = (unsigned char)((uint64_t)padded >> (8 * b));

    size_t plen = strlen(path);
    if ((st = vqji_malloc(ctx, plen + 12, "checkpoint path", (void **)&tmp)))
        goto done;
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    if (!(folder = folder_of(path))) {
        st = oom(ctx, fn, "checkpoint path");
        goto done;
    }
    fd = vqji_io_fault(VQJI_IO_CREATE, path) ? -1 : mkstemp(tmp);
    if (fd < 0) {
        st = io_fail(ctx, fn, "cannot create a temporary file for", path, errno);
        goto done;
    }
    /* mkstemp makes the file private (0600); a checkpoint is an ordinary
     * output file, readable like one written under the usual umask 022. */
    (void)fchmod(fd, 0644);

    write_sink ws = {.ctx = ctx, .fn = fn, .path = path, .fd = fd};
    if (write_all(fd, prefix, 8) || write_all(fd, text, len)) {
        st = io_fail(ctx, fn, "cannot write a temporary file for", path, errno);
        goto done;
    }
    for (size_t i = len; i < padded; i++)
        if (write_all(fd, " ", 1)) {
            st = io_fail(ctx, fn, "cannot write a temporary file for", path, errno);
            goto done;
        }
    /* Pass 2: the data. */
    for (size_t i = 0; i < p.n && !st; i++)
        st = stream_tensor(&p.items[i], buf, sink_write, &ws);
    if (st)
        goto done;
    if (vqji_io_fault(VQJI_IO_FSYNC, path) || fsync(fd)) {
        st = io_fail(ctx, fn, "cannot sync a temporary file for", path, errno);
        goto done;
    }
    int c = close(fd);
    fd = -1;
    if (c) {
        st = io_fail(ctx, fn, "cannot close a temporary file for", path, errno);
        goto done;
    }
    if (vqji_io_fault(VQJI_IO_RENAME, path) || rename(tmp, path)) {
        st = io_fail(ctx, fn, "cannot rename the temporary file to", path, errno);
        goto done;
    }
    free(tmp);
    tmp = NULL; /* renamed: nothing to remove any more */
    /* Make the rename itself durable. Some file systems cannot sync a
     * folder (EINVAL); the data is then as safe as they allow. */
    int dfd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if ((vqji_io_fault(VQJI_IO_SYNC_FOLDER, path) || fsync(dfd)) && errno != EINVAL &&
            errno != EROFS)
            st = io_fail(ctx, fn, "wrote the file but cannot sync its folder for", path, errno);
        close(dfd);
    }

done:
    if (fd >= 0)
        close(fd);
    if (tmp)
        unlink(tmp);
    free(tmp);
    free(folder);
    free(text);
    free(buf);
    json_decref(meta);
    json_decref(header);
    plan_free(&p);
    return st;
}

/* ---- loading ---- */

typedef struct file_tensor {
    const char *name; /* borrowed from the header */
    int ndim;
    int64_t shape[MAX_RANK];
    uint64_t begin, end;
    int used;
} file_tensor;

typedef struct reader {
    vqj_context *ctx;
    const char *fn, *path;
    int fd;
    uint64_t data_start, data_size;
    json_t *header;
    json_t *meta;        /* borrowed from header; NULL when absent */
    file_tensor *t;      /* sorted by begin */
    file_tensor **named; /* sorted by name */
    size_t nt;
    int ours;            /* written by libvqjepa: "format" present */
    uint32_t checksum;
} reader;

static void reader_close(reader *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    json_decref(r->header);
    r->header = NULL;
    free(r->t);
    free(r->named);
    r->t = NULL;
    r->named = NULL;
}

#define PARSE_FAIL(r, ...) vqji_fail((r)->ctx, VQJ_ERR_PARSE, __VA_ARGS__)

static int by_begin(const void *a, const void *b)
{
    const file_tensor *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const file_tensor *const *)a)->name, (*(const file_tensor *const *)b)->name);
}

static file_tensor *reader_find(const reader *r, const char *name)
{
    file_tensor key = {.name = name}, *pk = &key;
    file_tensor **hit = bsearch(&pk, r->named, r->nt, sizeof *r->named, by_name);
    return hit ? *hit : NULL;
}

/* One header entry: {"dtype": "F32", "shape": [...], "data_offsets": [b, e]}. */
static vqj_status parse_tensor(reader *r, const char *name, json_t *v, file_tensor *t)
{
    const char *fn = r->fn, *path = r->path;
    if (!json_is_object(v))
        return PARSE_FAIL(r, "%s: %s: tensor \"%s\": the header entry is not an object", fn,
                          path, name);
    json_t *dtype = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
           *offs = json_object_get(v, "data_offsets");
    if (!json_is_string(dtype) || !json_is_array(shape) || !json_is_array(offs) ||
        json_array_size(offs) != 2 || !json_is_integer(json_array_get(offs, 0)) ||
        !json_is_integer(json_array_get(offs, 1)))
        return PARSE_FAIL(r,
                          "%s: %s: tensor \"%s\": needs \"dtype\" (a string), \"shape\" (an "
                          "array) and \"data_offsets\" (two integers)",
                          fn, path, name);
    if (strcmp(json_string_value(dtype), "F32"))
        return vqji_fail(r->ctx, VQJ_ERR_UNSUPPORTED,
                         "%s: %s: tensor \"%s\" has dtype %s; only F32 is supported", fn, path,
                         name, json_string_value(dtype));
    size_t rank = json_array_size(shape);
    if (rank > MAX_RANK)
        return PARSE_FAIL(r, "%s: %s: tensor \"%s\" has %zu dimensions; at most %d are read", fn,
                          path, name, rank, MAX_RANK);
    t->name = name;
    t->ndim = (int)rank;
    uint64_t elems = 1;
    for (size_t d = 0; d < rank; d++) {
        json_t *x = json_array_get(shape, d);
        json_int_t s = json_is_integer(x) ? json_integer_value(x) : -1;
        if (s < 0)
            return PARSE_FAIL(r, "%s: %s: tensor \"%s\": shape entry %zu is not a size", fn, path,
                              name, d);
        t->shape[d] = (int64_t)s;
        if (s && elems > UINT64_MAX / 4 / (uint64_t)s)
            return PARSE_FAIL(r, "%s: %s: tensor \"%s\": the shape is too large", fn, path, name);
        elems *= (uint64_t)s;
    }
    json_int_t b = json_integer_value(json_array_get(offs, 0));
    json_int_t e = json_integer_value(json_array_get(offs, 1));
    if (b < 0 || e < b || (uint64_t)e > r->data_size)
        return PARSE_FAIL(r,
                          "%s: %s: tensor \"%s\": data_offsets [%lld, %lld] outside the %llu "
                          "bytes of data (truncated file?)",
                          fn, path, name, (long long)b, (long long)e,
                          (unsigned long long)r->data_size);
    t->begin = (uint64_t)b;
    t->end = (uint64_t)e;
    if (t->end - t->begin != elems * 4)
        return PARSE_FAIL(r,
                          "%s: %s: tensor \"%s\": data_offsets span %llu bytes but the shape "
                          "needs %llu",
                          fn, path, name, (unsigned long long)(t->end - t->begin),
                          (unsigned long long)(elems * 4));
    return VQJ_OK;
}

/* Open `path` and check everything but the data: the header length, the
 * JSON, every entry, that the tensors tile the data section exactly, the
 * metadata and, for our own files, the format and checksum fields. */
static vqj_status reader_open(reader *r, vqj_context *ctx, const char *fn, const char *path)
{
    *r = (reader){.ctx = ctx, .fn = fn, .path = path, .fd = -1};
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0)
        return io_fail(ctx, fn, "cannot open", path, errno);
    struct stat sb;
    if (fstat(r->fd, &sb))
        return io_fail(ctx, fn, "cannot stat", path, errno);
    if (!S_ISREG(sb.st_mode))
        return vqji_fail(ctx, VQJ_ERR_IO, "%s: %s is not a regular file", fn, path);
    uint64_t size = (uint64_t)sb.st_size;
    unsigned char prefix[8];
    if (size < 8)
        return PARSE_FAIL(r, "%s: %s: %llu bytes, too short for a safetensors file (truncated?)",
                          fn, path, (unsigned long long)size);
    if (pread_all(r->fd, prefix, 8, 0))
        return io_fail(ctx, fn, "cannot read", path, errno);
    uint64_t hlen = 0;
    for (int b = 7; b >= 0; b--)
        hlen = (hlen << 8) | prefix[b];
    if (hlen > HEADER_MAX)
        return PARSE_FAIL(r, "%s: %s: header length %llu is above %llu (not a safetensors file?)",
                          fn, path, (unsigned long long)hlen, (unsigned long long)HEADER_MAX);
    if (hlen > size - 8)
        return PARSE_FAIL(r,
                          "%s: %s: the header needs %llu bytes but only %llu follow (truncated "
                          "file?)",
                          fn, path, (unsigned long long)hlen, (unsigned long long)(size - 8));
    r->data_start = 8 + hlen;
    r->data_size = size - r->data_start;

    char *text;
    vqj_status st = vqji_malloc(ctx, hlen ? (size_t)hlen : 1, "checkpoint header", (void **)&text);
    if (st)
        return st;
    if (pread_all(r->fd, text, (size_t)hlen, 8)) {
        free(text);
        return io_fail(ctx, fn, "cannot read", path, errno);
    }
    /* safetensors headers start with '{'; jansson alone would also take
     * leading blanks. */
    int object = hlen && text[0] == '{';
    json_error_t err;
    r->header = object ? json_loadb(text, (size_t)hlen, JSON_REJECT_DUPLICATES, &err) : NULL;
    free(text);
    if (object && !r->header)
        return PARSE_FAIL(r, "%s: %s: header JSON at byte %d: %s", fn, path, err.position,
                          err.text);
    if (!object || !json_is_object(r->header))
        return PARSE_FAIL(r, "%s: %s: the header is not a JSON object", fn, path);

    size_t n = json_object_size(r->header);
    if ((st = vqji_calloc(ctx, n ? n : 1, sizeof *r->t, "checkpoint index", (void **)&r->t)) ||
        (st = vqji_calloc(ctx, n ? n : 1, sizeof *r->named, "checkpoint index",
                          (void **)&r->named)))
        return st;
    const char *key;
    json_t *v;
    json_object_foreach(r->header, key, v) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(v))
                return PARSE_FAIL(r, "%s: %s: \"__metadata__\" is not an object", fn, path);
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv) {
                if (!json_is_string(mv))
                    return PARSE_FAIL(r, "%s: %s: metadata \"%s\" is not a string", fn, path, mk);
            }
            r->meta = v;
            continue;
        }
        if ((st = parse_tensor(r, key, v, &r->t[r->nt])))
            return st;
        r->nt++;
    }
    /* The tensors must tile the data section: no gap, no overlap, nothing
     * after the last one. */
    qsort(r->t, r->nt, sizeof *r->t, by_begin);
    uint64_t at = 0;
    for (size_t i = 0; i < r->nt; i++) {
        if (r->t[i].begin < at)
            return PARSE_FAIL(r, "%s: %s: tensors \"%s\" and \"%s\" overlap", fn, path,
                              r->t[i - 1].name, r->t[i].name);
        if (r->t[i].begin > at)
            return PARSE_FAIL(r, "%s: %s: %llu unused bytes before tensor \"%s\"", fn, path,
                              (unsigned long long)(r->t[i].begin - at), r->t[i].name);
        at = r->t[i].end;
    }
    if (at != r->data_size)
        return PARSE_FAIL(r,
                          "%s: %s: the tensors cover %llu bytes of data but the file holds "
                          "%llu",
                          fn, path, (unsigned long long)at, (unsigned long long)r->data_size);
    for (size_t i = 0; i < r->nt; i++)
        r->named[i] = &r->t[i];
    qsort(r->named, r->nt, sizeof *r->named, by_name);

    json_t *format = r->meta ? json_object_get(r->meta, META_FORMAT) : NULL;
    if (format) {
        if (strcmp(json_string_value(format), FORMAT_NAME))
            return vqji_fail(ctx, VQJ_ERR_UNSUPPORTED,
                             "%s: %s: format \"%s\" is not \"%s\" (written by a newer "
                             "libvqjepa?)",
                             fn, path, json_string_value(format), FORMAT_NAME);
        r->ours = 1;
        json_t *sum = json_object_get(r->meta, META_CHECKSUM);
        const char *s = sum ? json_string_value(sum) : "";
        size_t pl = strlen(CHECKSUM_PREFIX);
        char *end = NULL;
        unsigned long value = 0;
        if (!strncmp(s, CHECKSUM_PREFIX, pl) && strlen(s) == pl + 8) {
            errno = 0;
            value = strtoul(s + pl, &end, 16);
        }
        if (!end || *end || value > 0xFFFFFFFFul)
            return PARSE_FAIL(r, "%s: %s: metadata \"%s\" is missing or not \"%sXXXXXXXX\"", fn,
                              path, META_CHECKSUM, CHECKSUM_PREFIX);
        r->checksum = (uint32_t)value;
    }
    return VQJ_OK;
}

/* Match every view tensor to a file tensor of the same shape; with
 * `allow_extra` 0, every file tensor must be used. */
static vqj_status reader_match(reader *r, const vqj_checkpoint_entry *entries, size_t n,
                               int allow_extra, plan *p)
{
    const char *fn = r->fn, *path = r->path;
    size_t k = 0;
    for (size_t e = 0; e < n; e++) {
        vqj_weights *w = entries[e].weights;
        for (size_t i = 0; i < w->count; i++, k++) {
            const vqji_weight *wi = &w->items[i];
            plan_item *it = &p->items[k];
            it->w = w;
            it->index = i;
            if (!(it->name = join(entries[e].prefix, wi->name)))
                return oom(r->ctx, fn, "tensor names");
            file_tensor *t = reader_find(r, it->name);
            if (!t && wi->optional) {
                it->begin = it->end = 0; /* nothing to read: keeps its value */
                continue;
            }
            if (!t)
                return vqji_fail(r->ctx, VQJ_ERR_INVALID_ARGUMENT,
                                 "%s: %s: tensor \"%s\" is missing from the file", fn, path,
                                 it->name);
            if (t->used)
                return vqji_fail(r->ctx, VQJ_ERR_INVALID_ARGUMENT,
                                 "%s: tensor \"%s\" is wanted twice (entries need distinct "
                                 "prefixes)",
                                 fn, it->name);
            int same = t->ndim == wi->ndim;
            for (int d = 0; same && d < t->ndim; d++)
                same = t->shape[d] == wi->shape[d];
            if (!same) {
                char a[96], b[96];
                shape_text(a, sizeof a, t->shape, t->ndim);
                shape_text(b, sizeof b, wi->shape, wi->ndim);
                return vqji_fail(r->ctx, VQJ_ERR_INVALID_ARGUMENT,
                                 "%s: %s: tensor \"%s\" has shape %s in the file but %s in the "
                                 "model",
                                 fn, path, it->name, a, b);
            }
            t->used = 1;
            it->begin = t->begin;
            it->end = t->end;
        }
    }
    if (!allow_extra)
        for (size_t i = 0; i < r->nt; i++)
            if (!r->t[i].used)
                return vqji_fail(r->ctx, VQJ_ERR_INVALID_ARGUMENT,
                                 "%s: %s: tensor \"%s\" of the file has no place in the model "
                                 "(another configuration?)",
                                 fn, path, r->t[i].name);
    return VQJ_OK;
}

/* Read the whole data section once: the checksum (our files) and that every
 * value is finite (vqj_weights_write() refuses non-finite values too). */
static vqj_status reader_verify(reader *r, float *buf)
{
    crc32_state crc;
    crc32_init(&crc);
    size_t ti = 0;
    for (uint64_t off = 0; off < r->data_size;) {
        size_t k = r->data_size - off < CHUNK_BYTES ? (size_t)(r->data_size - off) : CHUNK_BYTES;
        if (pread_all(r->fd, buf, k, r->data_start + off))
            return io_fail(r->ctx, r->fn, "cannot read", r->path, errno);
        crc32_update(&crc, buf, k);
        if (host_is_big_endian())
            swap32(buf, k / 4);
        size_t bad;
        if (!all_finite(buf, k / 4, &bad)) {
            uint64_t at = off + (uint64_t)bad * 4;
            while (ti + 1 < r->nt && r->t[ti].end <= at)
                ti++;
            return vqji_fail(r->ctx, VQJ_ERR_NUMERIC,
                             "%s: %s: tensor \"%s\"[%llu] is not finite", r->fn, r->path,
                             r->t[ti].name, (unsigned long long)((at - r->t[ti].begin) / 4));
        }
        off += k;
    }
    if (r->ours && crc32_final(&crc) != r->checksum)
        return PARSE_FAIL(r,
                          "%s: %s: checksum mismatch (data crc32 %08" PRIx32
                          ", header says %08" PRIx32 "): the file is corrupted",
                          r->fn, r->path, crc32_final(&crc), r->checksum);
    return VQJ_OK;
}

/* Copy the planned tensors into their views. Only called after every check
 * passed: what can still fail here is the disk or the device. */
static vqj_status reader_write(reader *r, const plan *p, float *buf)
{
    for (size_t i = 0; i < p->n; i++) {
        const plan_item *it = &p->items[i];
        vqji_device *dev = it->w->ctx->device;
        float *dst = vqji_weights_data(it->w, it->index);
        uint64_t bytes = it->end - it->begin;
        for (uint64_t off = 0; off < bytes; off += CHUNK_BYTES) {
            size_t k = bytes - off < CHUNK_BYTES ? (size_t)(bytes - off) : CHUNK_BYTES;
            if (pread_all(r->fd, buf, k, r->data_start + it->begin + off))
                return io_fail(r->ctx, r->fn, "cannot read", r->path, errno);
            if (host_is_big_endian())
                swap32(buf, k / 4);
            vqj_status st = dev->ops->upload(dev, dst + off / 4, buf, k);
            if (st)
                return st;
        }
    }
    return VQJ_OK;
}

/* Everything before the write: open, match, verify. On success the plan
 * and the buffer are ready for reader_write(). */
static vqj_status load_prepare(reader *r, vqj_context *ctx, const char *fn, const char *path,
                               const vqj_checkpoint_entry *entries, size_t n, int allow_extra,
                               plan *p, float **buf)
{
    *r = (reader){.fd = -1}; /* reader_close() is safe whatever fails */
    size_t total;
    vqj_status st = check_entries(ctx, fn, entries, n, &total);
    if (st)
        return st;
    if ((st = reader_open(r, ctx, fn, path)))
        return st;
    if ((st = vqji_calloc(ctx, total ? total : 1, sizeof *p->items, "checkpoint plan",
                          (void **)&p->items)))
        return st;
    p->n = total;
    if ((st = reader_match(r, entries, n, allow_extra, p)))
        return st;
    if ((st = vqji_malloc(ctx, CHUNK_BYTES, "checkpoint buffer", (void **)buf)))
        return st;
    return reader_verify(r, *buf);
}

/* ---- public: generic checkpoints ---- */

vqj_status vqj_checkpoint_save(vqj_context *ctx, const char *path,
                               const vqj_checkpoint_entry *entries, size_t num_entries,
                               const char *const *metadata)
{
    const char *fn = "vqj_checkpoint_save";
    if (!ctx)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: ctx is NULL", fn);
    vqji_clear_error(ctx);
    if (!path)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: path is NULL", fn);
    return save_impl(ctx, fn, path, entries, num_entries, metadata);
}

vqj_status vqj_checkpoint_load(vqj_context *ctx, const char *path,
                               const vqj_checkpoint_entry *entries, size_t num_entries,
                               unsigned flags)
{
    const char *fn = "vqj_checkpoint_load";
    if (!ctx)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: ctx is NULL", fn);
    vqji_clear_error(ctx);
    if (!path)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: path is NULL", fn);
    if (flags & ~(unsigned)VQJ_CHECKPOINT_ALLOW_EXTRA)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: unknown flags 0x%x", fn, flags);
    reader r;
    plan p = {0};
    float *buf = NULL;
    vqj_status st = load_prepare(&r, ctx, fn, path, entries, num_entries,
                                 (flags & VQJ_CHECKPOINT_ALLOW_EXTRA) != 0, &p, &buf);
    if (!st)
        st = reader_write(&r, &p, buf);
    free(buf);
    plan_free(&p);
    reader_close(&r);
    return st;
}

vqj_status vqj_checkpoint_verify(vqj_context *ctx, const char *path)
{
    const char *fn = "vqj_checkpoint_verify";
    if (!ctx)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: ctx is NULL", fn);
    vqji_clear_error(ctx);
    if (!path)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: path is NULL", fn);
    reader r;
    float *buf = NULL;
    vqj_status st = reader_open(&r, ctx, fn, path);
    if (!st && !r.ours)
        st = PARSE_FAIL(&r, "%s: %s: no \"%s\" in the metadata: not a libvqjepa checkpoint", fn,
                        path, META_FORMAT);
    if (!st)
        st = vqji_malloc(ctx, CHUNK_BYTES, "checkpoint buffer", (void **)&buf);
    if (!st)
        st = reader_verify(&r, buf);
    free(buf);
    reader_close(&r);
    return st;
}

vqj_status vqj_checkpoint_read_metadata(vqj_context *ctx, const char *path, const char *key,
                                        char *buf, size_t capacity, size_t *length)
{
    const char *fn = "vqj_checkpoint_read_metadata";
    if (!ctx)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "%s: ctx is NULL", fn);
    vqji_clear_error(ctx);
    if (!path || !key || (!buf && capacity))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    reader r;
    vqj_status st = reader_open(&r, ctx, fn, path);
    if (!st) {
        json_t *v = r.meta ? json_object_get(r.meta, key) : NULL;
        if (!v) {
            st = vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "%s: %s: no metadata key \"%s\"", fn,
                           path, key);
        } else {
            const char *s = json_string_value(v);
            size_t len = json_string_length(v);
            if (memchr(s, '\0', len))
                st = vqji_fail(ctx, VQJ_ERR_PARSE, "%s: %s: metadata \"%s\" holds a NUL byte",
                               fn, path, key);
            else if (buf && capacity <= len)
                st = vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                               "%s: %s: metadata \"%s\" needs %zu bytes, the buffer has %zu", fn,
                               path, key, len + 1, capacity);
            if (!st && buf)
                memcpy(buf, s, len + 1);
            if ((!st || st == VQJ_ERR_INVALID_ARGUMENT) && length)
                *length = len;
        }
    }
    reader_close(&r);
    return st;
}

/* ---- for the trainer's schema (train/checkpoint.h) ---- */

vqj_status vqji_checkpoint_save_meta(vqj_context *ctx, const char *fn, const char *path,
                                     const vqj_checkpoint_entry *entries, size_t n,
                                     const char *const *meta)
{
    return save_impl(ctx, fn, path, entries, n, meta);
}

/* A decimal counter from the metadata, in [0, max]. */
static vqj_status read_counter(reader *r, const char *key, uint64_t max, uint64_t *out)
{
    json_t *v = r->meta ? json_object_get(r->meta, key) : NULL;
    const char *s = v ? json_string_value(v) : NULL;
    char *end = NULL;
    unsigned long long x = 0;
    if (s && *s >= '0' && *s <= '9') {
        errno = 0;
        x = strtoull(s, &end, 10);
        if (errno)
            end = NULL;
    }
    if (!end || *end || x > max)
        return PARSE_FAIL(r, "%s: %s: metadata \"%s\" is %s%s%s; expected an integer in 0..%llu",
                          r->fn, r->path, key, s ? "\"" : "", s ? s : "missing", s ? "\"" : "",
                          (unsigned long long)max);
    *out = x;
    return VQJ_OK;
}

vqj_status vqji_checkpoint_load_counters(vqj_context *ctx, const char *fn, const char *path,
                                         const vqj_checkpoint_entry *entries, size_t n,
                                         const char *const *keys, const uint64_t *max,
                                         size_t num_keys, uint64_t *values)
{
    reader r;
    plan p = {0};
    float *buf = NULL;
    vqj_status st = load_prepare(&r, ctx, fn, path, entries, n, 0, &p, &buf);
    if (!st && !r.ours)
        st = PARSE_FAIL(&r, "%s: %s: no \"%s\" in the metadata: not a libvqjepa checkpoint", fn,
                        path, META_FORMAT);
    for (size_t k = 0; k < num_keys && !st; k++)
        st = read_counter(&r, keys[k], max[k], &values[k]);
    if (!st)
        st = reader_write(&r, &p, buf);
    free(buf);
    plan_free(&p);
    reader_close(&r);
    return st;
}
