/* Checkpoints (docs/checkpoints.md): the safetensors layout, round trips of
 * every tensor and counter, refusals that change nothing (checksum,
 * truncation, bad JSON, missing tensors, shapes), atomic writes, and a
 * resumed run that is bit-identical to an uninterrupted one. */
#include "testutil.h"
#include "testmodel.h"

#include "core/core.h"
#include "device/tensor.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

enum { T = 3, B = 2, K = 8, P = 8 };

/* ---- a small trainer ---- */

typedef test_model model;

static void model_create(model *m, uint64_t seed, int hidden)
{
    test_model_spec s = test_model_spec_default();
    s.seed = seed;
    s.hidden = hidden;
    s.layers = 1;
    s.heads = 2;
    s.dropout = 0.1f; /* dropout on: the resume must restore its step */
    s.codes = K;
    s.refresh_interval = 2; /* refresh on both sides of the save */
    s.refresh_threshold = 0.2f;
    s.projection = P;
    s.aggregator = VQJ_AGG_GRU;
    s.queue = 6; /* wraps within the run */
    s.slices = 8;
    s.warmup = 1;
    s.total_steps = 20;
    s.accum = 2;
    s.examples = 64;
    s.data_seed = 3;
    s.max_side = 8;
    test_model_create(m, &s);
}

static void model_destroy(model *m) { test_model_destroy(m); }

static void step(model *m, int i, vqj_train_metrics *out)
{
    vqj_grid context[B * T], targets[B];
    test_model_batch(m, i, B, context, targets);
    out->size = sizeof *out;
    assert_ok(m->ctx, vqj_trainer_step(m->trainer, context, targets, B, out));
    assert_int_equal(out->skipped, 0);
}

/* The views of a trainer checkpoint, in its order. */
static size_t views(model *m, vqj_weights **w)
{
    size_t n = 0;
    w[n++] = vqj_encoder_weights(m->encoder);
    w[n++] = vqj_codebook_weights(m->codebook);
    w[n++] = vqj_predictor_weights(m->predictor);
    w[n++] = vqj_loss_weights(m->loss);
    w[n++] = vqj_optimizer_state(m->optimizer);
    w[n++] = vqj_trainer_target_encoder_weights(m->trainer);
    w[n++] = vqj_trainer_target_predictor_weights(m->trainer);
    return n;
}

/* Every float of every view plus every counter. */
typedef struct snapshot {
    float *data;
    size_t len;
    int64_t micro_step, opt_steps, cb_updates;
    uint64_t dropout_step;
    int cb_init, queue_fill;
} snapshot;

static snapshot take_snapshot(model *m)
{
    snapshot s = {0};
    vqj_weights *w[8];
    size_t n = views(m, w);
    for (size_t v = 0; v < n; v++) {
        s.data = realloc(s.data, (s.len + w[v]->total) * sizeof(float));
        memcpy(s.data + s.len, w[v]->data, w[v]->total * sizeof(float));
        s.len += w[v]->total;
    }
    assert_ok(m->ctx, vqj_trainer_get_counters(m->trainer, &s.micro_step, &s.dropout_step));
    s.opt_steps = vqj_optimizer_steps(m->optimizer);
    assert_ok(m->ctx, vqj_codebook_get_progress(m->codebook, &s.cb_updates, &s.cb_init));
    assert_ok(m->ctx, vqj_loss_queue_fill(m->loss, &s.queue_fill));
    return s;
}

static void assert_same_snapshot(const snapshot *a, const snapshot *b)
{
    assert_int_equal(a->len, b->len);
    assert_memory_equal(a->data, b->data, a->len * sizeof(float));
    assert_int_equal(a->micro_step, b->micro_step);
    assert_int_equal(a->opt_steps, b->opt_steps);
    assert_int_equal(a->dropout_step, b->dropout_step);
    assert_int_equal(a->cb_updates, b->cb_updates);
    assert_int_equal(a->cb_init, b->cb_init);
    assert_int_equal(a->queue_fill, b->queue_fill);
}

/* Overwrite every tensor of every view with reproducible values (positive
 * for the codebook counts and the queue counters, which must stay valid). */
static void scramble(model *m, uint32_t seed)
{
    vqj_weights *w[8];
    size_t n = views(m, w);
    for (size_t v = 0; v < n; v++)
        for (size_t i = 0; i < vqj_weights_num_tensors(w[v]); i++) {
            vqj_weight_info info;
            assert_ok(m->ctx, vqj_weights_info(w[v], i, &info));
            float *x = malloc(info.count * sizeof *x);
            test_fill(x, info.count, seed + (uint32_t)(v * 100 + i), 1.0f);
            if (strstr(info.name, "queue_") || strstr(info.name, "ema_count"))
                for (size_t k = 0; k < info.count; k++)
                    x[k] = (float)(k % 3) + 1.0f;
            assert_ok(m->ctx, vqj_weights_write(w[v], info.name, x, info.count));
            free(x);
        }
}

/* ---- files ---- */

static char dir[64];

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/vqj_ckpt_XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static void remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char sub[512];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        remove_tree(sub);
    }
    closedir(d);
    rmdir(path);
}

static int teardown(void **state)
{
    (void)state;
    remove_tree(dir);
    return 0;
}

static char *path_in(const char *name)
{
    static char buf[4][256];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, 256, "%s/%s", dir, name);
    return p;
}

/* Files whose name holds ".tmp." in a folder. */
static int temp_files(const char *folder)
{
    DIR *d = opendir(folder);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

static unsigned char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static void write_file(const char *path, const unsigned char *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    fclose(f);
}

static uint64_t header_len(const unsigned char *buf)
{
    uint64_t n = 0;
    for (int b = 7; b >= 0; b--)
        n = (n << 8) | buf[b];
    return n;
}

/* Bitwise CRC-32 (zlib's), independent of the library's table version. */
static uint32_t crc32_ref(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

#define assert_message(ctx, text)                                                              \
    do {                                                                                       \
        const char *msg_ = vqj_last_error();                                        \
        if (!strstr(msg_, (text)))                                                             \
            fail_msg("message \"%s\" lacks \"%s\"", msg_, (text));                             \
    } while (0)

/* ---- tests ---- */

/* Every tensor and counter survives a save and a load into other handles. */
static void test_trainer_round_trip(void **state)
{
    (void)state;
    model a, b;
    model_create(&a, 42, 16);
    vqj_train_metrics r;
    for (int i = 0; i < 2; i++)
        step(&a, i, &r);
    scramble(&a, 1);
    assert_ok(a.ctx, vqj_codebook_set_progress(a.codebook, 12345, 1));
    assert_ok(a.ctx, vqj_optimizer_set_steps(a.optimizer, 77));
    assert_ok(a.ctx, vqj_trainer_set_counters(a.trainer, 40, 9000000000ull));
    const char *yaml = "model:\n  hidden_dim: 16 # \"quoted\" \xc3\xa9\n";
    const char *extra[] = {"epoch", "3", "best_val_loss", "0.25", NULL};
    const char *path = path_in("rt.safetensors");
    assert_ok(a.ctx, vqj_trainer_save_with_metadata(a.trainer, path, yaml, extra));
    snapshot sa = take_snapshot(&a);

    model_create(&b, 42, 16);
    snapshot sb0 = take_snapshot(&b);
    assert_true(memcmp(sa.data, sb0.data, sa.len * sizeof(float)) != 0);
    assert_ok(b.ctx, vqj_trainer_load(b.trainer, path));
    snapshot sb = take_snapshot(&b);
    assert_same_snapshot(&sa, &sb);
    assert_int_equal(sb.dropout_step, 9000000000ull); /* above 2^32: a decimal string */

    /* Metadata: the config text byte for byte, the caller's keys, the
     * library's; the length query; a buffer too small. */
    char buf[256];
    size_t len = 0;
    assert_ok(b.ctx, vqj_checkpoint_read_metadata(b.ctx, path, "config", buf, sizeof buf, &len));
    assert_string_equal(buf, yaml);
    assert_int_equal(len, strlen(yaml));
    assert_ok(b.ctx, vqj_checkpoint_read_metadata(b.ctx, path, "epoch", buf, sizeof buf, NULL));
    assert_string_equal(buf, "3");
    assert_ok(b.ctx, vqj_checkpoint_read_metadata(b.ctx, path, "format", buf, sizeof buf, NULL));
    assert_string_equal(buf, "vqjepa-checkpoint-1");
    assert_ok(b.ctx,
              vqj_checkpoint_read_metadata(b.ctx, path, "vqjepa_version", buf, sizeof buf, NULL));
    assert_string_equal(buf, vqj_version());
    assert_ok(b.ctx, vqj_checkpoint_read_metadata(b.ctx, path, "optimizer.steps", buf, 8, NULL));
    assert_string_equal(buf, "77");
    len = 0;
    assert_ok(b.ctx, vqj_checkpoint_read_metadata(b.ctx, path, "config", NULL, 0, &len));
    assert_int_equal(len, strlen(yaml));
    strcpy(buf, "unchanged");
    assert_status(b.ctx, vqj_checkpoint_read_metadata(b.ctx, path, "config", buf, 10, &len),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_string_equal(buf, "unchanged");
    assert_int_equal(len, strlen(yaml));
    assert_status(b.ctx, vqj_checkpoint_read_metadata(b.ctx, path, "nope", buf, 10, NULL),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_message(b.ctx, "nope");
    assert_ok(b.ctx, vqj_checkpoint_verify(b.ctx, path));

    /* Reserved keys. */
    const char *bad1[] = {"seed", "1", NULL}, *bad2[] = {"checksum", "x", NULL},
               *bad3[] = {"epoch", NULL};
    assert_status(a.ctx, vqj_trainer_save_with_metadata(a.trainer, path, NULL, bad1),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(a.ctx, vqj_trainer_save_with_metadata(a.trainer, path, NULL, bad2),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(a.ctx, vqj_trainer_save_with_metadata(a.trainer, path, NULL, bad3),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(temp_files(dir), 0);
    free(sa.data);
    free(sb0.data);
    free(sb.data);
    model_destroy(&a);
    model_destroy(&b);
}

/* The file is a safetensors file, checked by parsing it here (and by the
 * Python safetensors package when it is installed). */
static void test_layout(void **state)
{
    (void)state;
    model m;
    model_create(&m, 42, 16);
    scramble(&m, 2);
    const char *path = path_in("layout.safetensors");
    assert_ok(m.ctx, vqj_trainer_save(m.trainer, path, "a: 1\n"));
    size_t size;
    unsigned char *buf = read_file(path, &size);
    assert_true(size >= 8);
    uint64_t n = header_len(buf);
    assert_int_equal(n % 8, 0);
    assert_true(8 + n <= size);
    assert_int_equal(buf[8], '{');
    json_error_t err;
    json_t *h = json_loadb((const char *)buf + 8, (size_t)n, 0, &err);
    if (!h)
        fail_msg("header: %s", err.text);
    const unsigned char *data = buf + 8 + n;
    size_t data_size = size - 8 - (size_t)n;

    vqj_weights *w[8];
    size_t nv = views(&m, w);
    const char *prefixes[] = {"encoder.", "", "predictor.", "", "optimizer.", "target_encoder.",
                              "target_predictor."};
    uint64_t expect_begin = 0;
    size_t tensors = 0;
    for (size_t v = 0; v < nv; v++)
        for (size_t i = 0; i < vqj_weights_num_tensors(w[v]); i++, tensors++) {
            vqj_weight_info info;
            assert_ok(m.ctx, vqj_weights_info(w[v], i, &info));
            char name[160];
            snprintf(name, sizeof name, "%s%s", prefixes[v], info.name);
            json_t *t = json_object_get(h, name);
            if (!t)
                fail_msg("tensor %s missing from the header", name);
            assert_string_equal(json_string_value(json_object_get(t, "dtype")), "F32");
            json_t *shape = json_object_get(t, "shape");
            assert_int_equal(json_array_size(shape), (size_t)info.ndim);
            for (int d = 0; d < info.ndim; d++)
                assert_int_equal(json_integer_value(json_array_get(shape, (size_t)d)),
                                 info.shape[d]);
            json_t *off = json_object_get(t, "data_offsets");
            uint64_t b = (uint64_t)json_integer_value(json_array_get(off, 0));
            uint64_t e = (uint64_t)json_integer_value(json_array_get(off, 1));
            assert_int_equal(b, expect_begin); /* contiguous, in view order */
            assert_int_equal(e - b, info.count * 4);
            expect_begin = e;
            float *x = malloc(info.count * sizeof *x);
            assert_ok(m.ctx, vqj_weights_read(w[v], info.name, x, info.count));
            assert_memory_equal(data + b, x, info.count * 4); /* little-endian host */
            free(x);
        }
    assert_int_equal(expect_begin, data_size);
    assert_int_equal(json_object_size(h), tensors + 1);
    json_t *meta = json_object_get(h, "__metadata__");
    assert_true(json_is_object(meta));
    const char *key;
    json_t *val;
    json_object_foreach(meta, key, val) assert_true(json_is_string(val));
    assert_string_equal(json_string_value(json_object_get(meta, "format")),
                        "vqjepa-checkpoint-1");
    assert_string_equal(json_string_value(json_object_get(meta, "config")), "a: 1\n");
    char sum[32];
    snprintf(sum, sizeof sum, "crc32:%08x", (unsigned)crc32_ref(data, data_size));
    assert_string_equal(json_string_value(json_object_get(meta, "checksum")), sum);
    /* The padding is spaces. */
    for (uint64_t i = n; i > 0 && buf[8 + i - 1] != '}'; i--)
        assert_int_equal(buf[8 + i - 1], ' ');
    json_decref(h);
    free(buf);

    /* The reference implementation, when present. */
    if (system("python3 -c 'import safetensors' >/dev/null 2>&1") == 0) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "python3 -c '"
                 "import json, struct, sys, zlib, safetensors\n"
                 "b = open(sys.argv[1], \"rb\").read()\n"
                 "n = struct.unpack(\"<Q\", b[:8])[0]\n"
                 "h = json.loads(b[8:8 + n])\n"
                 "t = safetensors.deserialize(b)\n"
                 "assert len(t) == len(h) - 1, (len(t), len(h))\n"
                 "assert all(d[\"dtype\"].lower() in (\"f32\", \"float32\") for _, d in t)\n"
                 "c = \"crc32:%%08x\" %% zlib.crc32(b[8 + n:])\n"
                 "assert h[\"__metadata__\"][\"checksum\"] == c\n"
                 "' %s",
                 path);
        assert_int_equal(system(cmd), 0);

        /* A file written by the reference writer (sorted by name, so laid
         * out in another order, no checksum) loads into fresh handles. */
        const char *script = path_in("rewrite.py"), *foreign = path_in("foreign.safetensors");
        FILE *f = fopen(script, "w");
        assert_non_null(f);
        fputs("import ctypes, json, struct, sys, safetensors\n"
              "b = open(sys.argv[1], 'rb').read()\n"
              "n = struct.unpack('<Q', b[:8])[0]\n"
              "h = json.loads(b[8:8 + n])\n"
              "keep, spec = [], {}\n"
              "for k, v in h.items():\n"
              "    if k == '__metadata__':\n"
              "        continue\n"
              "    lo, hi = v['data_offsets']\n"
              "    buf = ctypes.create_string_buffer(b[8 + n + lo:8 + n + hi], hi - lo)\n"
              "    keep.append(buf)\n"
              "    spec[k] = safetensors.TensorSpec(dtype='float32', shape=v['shape'],\n"
              "                                     data_ptr=ctypes.addressof(buf), data_len=hi - lo)\n"
              "open(sys.argv[2], 'wb').write(safetensors.serialize(spec, {'origin': 'python'}))\n",
              f);
        fclose(f);
        snprintf(cmd, sizeof cmd, "python3 %s %s %s", script, path, foreign);
        assert_int_equal(system(cmd), 0);
        model m2;
        model_create(&m2, 9, 16);
        vqj_weights *w2[8];
        views(&m2, w2);
        vqj_checkpoint_entry entries[7];
        for (size_t v = 0; v < nv; v++)
            entries[v] = (vqj_checkpoint_entry){prefixes[v], w2[v]};
        assert_ok(m2.ctx, vqj_checkpoint_load(m2.ctx, foreign, entries, nv, 0));
        for (size_t v = 0; v < nv; v++) {
            assert_int_equal(w[v]->total, w2[v]->total);
            assert_memory_equal(w[v]->data, w2[v]->data, w[v]->total * sizeof(float));
        }
        /* Without the library's format key it is not a trainer checkpoint. */
        assert_status(m2.ctx, vqj_checkpoint_verify(m2.ctx, foreign), VQJ_ERR_PARSE);
        model_destroy(&m2);
    } else {
        print_message("python3 safetensors not importable: skipping the reference check\n");
    }
    model_destroy(&m);
}

/* Damaged files are refused with a clear error and change nothing. */
static void test_refusals(void **state)
{
    (void)state;
    model a, b;
    model_create(&a, 42, 16);
    scramble(&a, 3);
    const char *good = path_in("good.safetensors"), *bad = path_in("bad.safetensors");
    assert_ok(a.ctx, vqj_trainer_save(a.trainer, good, NULL));
    size_t size;
    unsigned char *orig = read_file(good, &size);
    uint64_t n = header_len(orig);
    size_t data_start = 8 + (size_t)n;
    model_create(&b, 42, 16);
    snapshot s0 = take_snapshot(&b);
    unsigned char *buf = malloc(size);

    /* One corrupted data byte: the lowest mantissa byte of a float, so the
     * value stays finite and only the checksum can tell. */
    memcpy(buf, orig, size);
    buf[data_start + 4 * 37] ^= 0x01;
    write_file(bad, buf, size);
    assert_status(b.ctx, vqj_trainer_load(b.trainer, bad), VQJ_ERR_PARSE);
    assert_message(b.ctx, "checksum");
    assert_message(b.ctx, bad);
    assert_status(b.ctx, vqj_checkpoint_verify(b.ctx, bad), VQJ_ERR_PARSE);
    vqj_checkpoint_entry enc = {"encoder.", vqj_encoder_weights(b.encoder)};
    assert_status(b.ctx,
                  vqj_checkpoint_load(b.ctx, bad, &enc, 1, VQJ_CHECKPOINT_ALLOW_EXTRA),
                  VQJ_ERR_PARSE);

    /* A NaN in the data. */
    memcpy(buf, orig, size);
    const float nan = NAN;
    memcpy(buf + size - 4, &nan, 4);
    write_file(bad, buf, size);
    assert_status(b.ctx, vqj_trainer_load(b.trainer, bad), VQJ_ERR_NUMERIC);

    /* Truncations: inside the length, inside the header, inside the data. */
    const size_t cuts[] = {0, 5, 8, 8 + (size_t)n / 2, data_start, size - 1};
    for (size_t c = 0; c < sizeof cuts / sizeof *cuts; c++) {
        write_file(bad, orig, cuts[c]);
        assert_status(b.ctx, vqj_trainer_load(b.trainer, bad), VQJ_ERR_PARSE);
        assert_message(b.ctx, bad);
    }
    /* Bytes after the last tensor. */
    memcpy(buf, orig, size);
    write_file(bad, buf, size);
    FILE *f = fopen(bad, "ab");
    fputs("xxxx", f);
    fclose(f);
    assert_status(b.ctx, vqj_trainer_load(b.trainer, bad), VQJ_ERR_PARSE);

    /* Bad JSON: a broken character in the header; a header length that
     * points past the end. */
    memcpy(buf, orig, size);
    buf[8 + 1] = '#';
    write_file(bad, buf, size);
    assert_status(b.ctx, vqj_trainer_load(b.trainer, bad), VQJ_ERR_PARSE);
    assert_message(b.ctx, "JSON");
    memcpy(buf, orig, size);
    buf[0] = 0xFF;
    buf[1] = 0xFF;
    buf[2] = 0x0F;
    write_file(bad, buf, size);
    assert_status(b.ctx, vqj_trainer_load(b.trainer, bad), VQJ_ERR_PARSE);

    /* A header whose offsets overlap: one tensor pointed at another's bytes
     * (same size), leaving a gap at the end. */
    json_error_t err;
    json_t *h = json_loadb((const char *)orig + 8, (size_t)n, 0, &err);
    assert_non_null(h);
    json_t *wt = json_object_get(h, "encoder.relational.0.ln1.weight");
    json_t *bt = json_object_get(h, "encoder.relational.0.ln1.bias");
    assert_non_null(wt);
    assert_non_null(bt);
    json_object_set(bt, "data_offsets", json_object_get(wt, "data_offsets"));
    char *text = json_dumps(h, JSON_COMPACT);
    size_t tl = strlen(text), padded = (tl + 7) & ~(size_t)7;
    unsigned char *alt = malloc(8 + padded + (size - data_start));
    for (int k = 0; k < 8; k++)
        alt[k] = (unsigned char)((uint64_t)padded >> (8 * k));
    memcpy(alt + 8, text, tl);
    memset(alt + 8 + tl, ' ', padded - tl);
    memcpy(alt + 8 + padded, orig + data_start, size - data_start);
    write_file(bad, alt, 8 + padded + (size - data_start));
    assert_status(b.ctx, vqj_trainer_load(b.trainer, bad), VQJ_ERR_PARSE);
    assert_message(b.ctx, "overlap");
    /* The same header with the original offsets loads: the rewrite itself
     * (another header length) is not what was refused. */
    json_decref(h);
    free(text);
    h = json_loadb((const char *)orig + 8, (size_t)n, 0, &err);
    json_object_set_new(json_object_get(h, "__metadata__"), "extra_key_for_length",
                        json_string("x"));
    text = json_dumps(h, JSON_COMPACT);
    tl = strlen(text);
    padded = (tl + 7) & ~(size_t)7;
    free(alt);
    alt = malloc(8 + padded + (size - data_start));
    for (int k = 0; k < 8; k++)
        alt[k] = (unsigned char)((uint64_t)padded >> (8 * k));
    memcpy(alt + 8, text, tl);
    memset(alt + 8 + tl, ' ', padded - tl);
    memcpy(alt + 8 + padded, orig + data_start, size - data_start);
    write_file(bad, alt, 8 + padded + (size - data_start));
    assert_ok(b.ctx, vqj_checkpoint_verify(b.ctx, bad));
    write_file(bad, alt, 8 + padded + (size - data_start) - 4);
    assert_status(b.ctx, vqj_trainer_load(b.trainer, bad), VQJ_ERR_PARSE);
    free(alt);
    free(text);
    json_decref(h);

    /* A missing file. */
    assert_status(b.ctx, vqj_trainer_load(b.trainer, path_in("absent.safetensors")),
                  VQJ_ERR_IO);
    assert_message(b.ctx, "absent.safetensors");

    snapshot s1 = take_snapshot(&b);
    assert_same_snapshot(&s0, &s1);
    /* The good file still loads after all that. */
    assert_ok(b.ctx, vqj_trainer_load(b.trainer, good));
    free(s0.data);
    free(s1.data);
    free(buf);
    free(orig);
    model_destroy(&a);
    model_destroy(&b);
}

/* Files that do not fit the model: a missing tensor, a tensor too many, a
 * shape mismatch, a generic file in place of a trainer's. */
static void test_mismatch(void **state)
{
    (void)state;
    model a, b, small;
    model_create(&a, 42, 16);
    model_create(&b, 7, 16);
    model_create(&small, 42, 8);
    scramble(&a, 4);
    const char *part = path_in("part.safetensors"), *full = path_in("full.safetensors");
    vqj_checkpoint_entry two[] = {{"encoder.", vqj_encoder_weights(a.encoder)},
                                  {NULL, vqj_codebook_weights(a.codebook)}};
    const char *meta[] = {"note", "encoder and codebook", NULL};
    assert_ok(a.ctx, vqj_checkpoint_save(a.ctx, part, two, 2, meta));
    assert_ok(a.ctx, vqj_trainer_save(a.trainer, full, NULL));

    snapshot s0 = take_snapshot(&b);
    vqj_checkpoint_entry three[] = {{"encoder.", vqj_encoder_weights(b.encoder)},
                                    {"", vqj_codebook_weights(b.codebook)},
                                    {"predictor.", vqj_predictor_weights(b.predictor)}};
    assert_status(b.ctx, vqj_checkpoint_load(b.ctx, part, three, 3, 0),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_message(b.ctx, "predictor.");
    assert_message(b.ctx, "missing");
    /* The encoder alone: the codebook's tensors are extra. */
    assert_status(b.ctx, vqj_checkpoint_load(b.ctx, part, three, 1, 0),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_message(b.ctx, "codebook.");
    /* A generic file has no trainer counters. */
    assert_status(b.ctx, vqj_trainer_load(b.trainer, part), VQJ_ERR_INVALID_ARGUMENT);
    snapshot s1 = take_snapshot(&b);
    assert_same_snapshot(&s0, &s1);

    /* Shapes: hidden 16 into hidden 8. */
    snapshot t0 = take_snapshot(&small);
    assert_status(small.ctx, vqj_trainer_load(small.trainer, full), VQJ_ERR_INVALID_ARGUMENT);
    assert_message(small.ctx, "shape");
    assert_message(small.ctx, full);
    vqj_checkpoint_entry enc_small = {"encoder.", vqj_encoder_weights(small.encoder)};
    assert_status(small.ctx,
                  vqj_checkpoint_load(small.ctx, part, &enc_small, 1, VQJ_CHECKPOINT_ALLOW_EXTRA),
                  VQJ_ERR_INVALID_ARGUMENT);
    snapshot t1 = take_snapshot(&small);
    assert_same_snapshot(&t0, &t1);

    /* What does fit: the encoder alone with ALLOW_EXTRA, from either file. */
    assert_ok(b.ctx, vqj_checkpoint_load(b.ctx, part, three, 1, VQJ_CHECKPOINT_ALLOW_EXTRA));
    assert_ok(b.ctx, vqj_checkpoint_load(b.ctx, full, three, 1, VQJ_CHECKPOINT_ALLOW_EXTRA));
    assert_ok(b.ctx, vqj_checkpoint_load(b.ctx, part, three, 2, 0));
    size_t cnt = vqj_weights_num_params(vqj_encoder_weights(a.encoder));
    float *x = malloc(cnt * sizeof *x), *y = malloc(cnt * sizeof *y);
    memcpy(x, vqj_encoder_weights(a.encoder)->data, cnt * sizeof *x);
    memcpy(y, vqj_encoder_weights(b.encoder)->data, cnt * sizeof *y);
    assert_memory_equal(x, y, cnt * sizeof *x);
    /* A generic file's own metadata. */
    char note[64];
    assert_ok(b.ctx, vqj_checkpoint_read_metadata(b.ctx, part, "note", note, sizeof note, NULL));
    assert_string_equal(note, "encoder and codebook");
    free(x);
    free(y);
    free(s0.data);
    free(s1.data);
    free(t0.data);
    free(t1.data);
    model_destroy(&a);
    model_destroy(&b);
    model_destroy(&small);
}

/* Atomic writes: no temporary file survives, an old file survives a failed
 * save, and failures name the path. */
static void test_atomic(void **state)
{
    (void)state;
    model m;
    model_create(&m, 42, 16);
    const char *path = path_in("atomic.safetensors");
    assert_ok(m.ctx, vqj_trainer_save(m.trainer, path, NULL));
    assert_int_equal(temp_files(dir), 0);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644);
    size_t size0;
    unsigned char *before = read_file(path, &size0);

    /* A missing folder; a folder that is a file. */
    assert_status(m.ctx, vqj_trainer_save(m.trainer, path_in("no/such/dir/x"), NULL),
                  VQJ_ERR_IO);
    assert_message(m.ctx, "no/such/dir/x");
    assert_status(m.ctx, vqj_trainer_save(m.trainer, path_in("atomic.safetensors/x"), NULL),
                  VQJ_ERR_IO);
    /* The target is a folder: the file is written, then the rename fails;
     * the temporary file must go. */
    const char *folder = path_in("a_folder");
    assert_int_equal(mkdir(folder, 0755), 0);
    assert_status(m.ctx, vqj_trainer_save(m.trainer, folder, NULL), VQJ_ERR_IO);
    assert_message(m.ctx, "rename");
    assert_int_equal(temp_files(dir), 0);

    /* A non-finite weight: refused before any file is touched, so the old
     * checkpoint stays. */
    vqj_weights *w = vqj_predictor_weights(m.predictor);
    float keep = w->data[3];
    w->data[3] = NAN;
    assert_status(m.ctx, vqj_trainer_save(m.trainer, path, NULL), VQJ_ERR_NUMERIC);
    assert_message(m.ctx, "predictor.");
    w->data[3] = keep;
    assert_int_equal(temp_files(dir), 0);
    size_t size1;
    unsigned char *after = read_file(path, &size1);
    assert_int_equal(size0, size1);
    assert_memory_equal(before, after, size0);

    /* Saving again replaces the file in place. */
    scramble(&m, 5);
    assert_ok(m.ctx, vqj_trainer_save(m.trainer, path, NULL));
    free(after);
    after = read_file(path, &size1);
    assert_true(size0 != size1 || memcmp(before, after, size0) != 0);
    assert_int_equal(temp_files(dir), 0);
    free(before);
    free(after);
    model_destroy(&m);
}

/* Mid-cycle saves are refused; argument errors. */
static void test_errors(void **state)
{
    (void)state;
    model m;
    model_create(&m, 42, 16);
    vqj_context *ctx = m.ctx;
    const char *path = path_in("errors.safetensors");
    vqj_train_metrics r;
    step(&m, 0, &r); /* 1 of 2 micro-batches */
    assert_int_equal(r.optimizer_step, 0);
    assert_status(ctx, vqj_trainer_save(m.trainer, path, NULL), VQJ_ERR_STATE);
    assert_int_equal(access(path, F_OK), -1);
    step(&m, 1, &r);
    assert_int_equal(r.optimizer_step, 1);
    assert_ok(ctx, vqj_trainer_save(m.trainer, path, NULL));

    vqj_checkpoint_entry e = {"enc.", vqj_encoder_weights(m.encoder)};
    vqj_checkpoint_entry twice[] = {e, {"again.", e.weights}};
    vqj_checkpoint_entry null_view = {"x.", NULL};
    assert_status(ctx, vqj_checkpoint_save(NULL, path, &e, 1, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_checkpoint_save(ctx, NULL, &e, 1, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_checkpoint_save(ctx, path, NULL, 1, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_checkpoint_save(ctx, path, twice, 2, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_checkpoint_save(ctx, path, &null_view, 1, NULL),
                  VQJ_ERR_INVALID_ARGUMENT);
    const char *bad_utf8[] = {"k", "\xff\xfe", NULL};
    assert_status(ctx, vqj_checkpoint_save(ctx, path, &e, 1, bad_utf8), VQJ_ERR_INVALID_ARGUMENT);
    const char *dup[] = {"k", "1", "k", "2", NULL};
    assert_status(ctx, vqj_checkpoint_save(ctx, path, &e, 1, dup), VQJ_ERR_INVALID_ARGUMENT);
    /* Two views whose full names collide. */
    vqj_checkpoint_entry collide[] = {{"x.", vqj_encoder_weights(m.encoder)},
                                      {"x.", vqj_trainer_target_encoder_weights(m.trainer)}};
    assert_status(ctx, vqj_checkpoint_save(ctx, path, collide, 2, NULL),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_message(ctx, "x.feature_mlp");
    assert_status(ctx, vqj_checkpoint_load(ctx, path, &e, 1, 0x10), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_checkpoint_load(ctx, NULL, &e, 1, 0), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_checkpoint_load(ctx, path, NULL, 1, 0), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_checkpoint_load(ctx, path, twice, 2, 0), VQJ_ERR_INVALID_ARGUMENT);
    assert_message(ctx, "same weights");
    assert_status(ctx, vqj_trainer_save(NULL, path, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_trainer_load(NULL, path), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_trainer_load(m.trainer, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_checkpoint_read_metadata(ctx, path, NULL, NULL, 0, NULL),
                  VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_checkpoint_verify(ctx, path_in("absent")), VQJ_ERR_IO);
    /* An empty checkpoint is valid. */
    assert_ok(ctx, vqj_checkpoint_save(ctx, path_in("empty.safetensors"), NULL, 0, NULL));
    assert_ok(ctx, vqj_checkpoint_load(ctx, path_in("empty.safetensors"), NULL, 0, 0));
    assert_int_equal(temp_files(dir), 0);
    model_destroy(&m);
}

/* 2N micro-steps in one run equal N steps, save, a fresh process's worth of
 * handles, load, N steps: every weight, the queue, every counter and the
 * losses of the last N steps, bit for bit. */
static void test_resume_bit_identical(void **state)
{
    (void)state;
    enum { N = 6 };
    model a;
    model_create(&a, 42, 16);
    vqj_train_metrics ra[2 * N];
    for (int i = 0; i < 2 * N; i++)
        step(&a, i, &ra[i]);
    snapshot sa = take_snapshot(&a);
    assert_int_equal(sa.opt_steps, N);
    assert_true(sa.cb_updates > 2); /* refreshes happened on both sides */
    assert_int_equal(sa.queue_fill, 6);

    const char *path = path_in("resume.safetensors");
    model b;
    model_create(&b, 42, 16);
    vqj_train_metrics rb[2 * N];
    for (int i = 0; i < N; i++)
        step(&b, i, &rb[i]);
    assert_int_equal(rb[N - 1].optimizer_step, 1);
    assert_ok(b.ctx, vqj_trainer_save(b.trainer, path, "resume test"));
    model_destroy(&b);

    model c;
    model_create(&c, 42, 16);
    assert_ok(c.ctx, vqj_trainer_load(c.trainer, path));
    for (int i = N; i < 2 * N; i++)
        step(&c, i, &rb[i]);
    snapshot sc = take_snapshot(&c);
    assert_same_snapshot(&sa, &sc);
    for (int i = N; i < 2 * N; i++) {
        assert_memory_equal(&ra[i].loss, &rb[i].loss, sizeof(float));
        assert_memory_equal(&ra[i].infonce, &rb[i].infonce, sizeof(float));
        assert_memory_equal(&ra[i].sigreg, &rb[i].sigreg, sizeof(float));
        assert_memory_equal(&ra[i].invariance_color, &rb[i].invariance_color, sizeof(float));
        assert_memory_equal(&ra[i].temperature, &rb[i].temperature, sizeof(float));
        assert_memory_equal(&ra[i].grad_norm, &rb[i].grad_norm, sizeof(float));
        assert_int_equal(ra[i].step, rb[i].step);
        assert_int_equal(ra[i].micro_step, rb[i].micro_step);
        assert_int_equal(ra[i].refreshed, rb[i].refreshed);
    }
    /* The same file loaded into handles of another seed still loads (with a
     * warning), and the weights match. */
    model d;
    model_create(&d, 43, 16);
    assert_ok(d.ctx, vqj_trainer_load(d.trainer, path));
    model_destroy(&d);
    free(sa.data);
    free(sc.data);
    model_destroy(&a);
    model_destroy(&c);
}

/* I/O faults (docs/failures.md): a write hook (vqji_set_write_hook())
 * makes the k-th write(2) of a save fail with ENOSPC or EIO or make no
 * progress, for every k of the save, or cuts every write to 7 bytes. A
 * failed save is a VQJ_ERR_IO naming the path and the system's reason; no
 * temporary file is left; the previous checkpoint stays whole and loads to
 * its weights. Short writes still give a whole file. */
static long io_writes, io_fail_at, io_short;
static int io_errno;

static long faulty_write(int fd, const void *buf, size_t n)
{
    io_writes++;
    if (io_fail_at && io_writes == io_fail_at) {
        if (!io_errno)
            return 0; /* a write that makes no progress */
        errno = io_errno;
        return -1;
    }
    if (io_short && n > (size_t)io_short)
        n = (size_t)io_short;
    return (long)write(fd, buf, n);
}

static void read_codes(model *m, float *out)
{
    assert_ok(m->ctx, vqj_weights_read(vqj_codebook_weights(m->codebook), "codebook.embedding",
                                       out, (size_t)K * 32));
}

static void test_write_faults(void **state)
{
    (void)state;
    model m;
    model_create(&m, 5, 32);
    vqj_train_metrics mm;
    const char *path = path_in("faults.safetensors");
    float saved[K * 32], now[K * 32];
    step(&m, 0, &mm);
    step(&m, 1, &mm);
    vqji_set_write_hook(faulty_write);
    const int errs[] = {ENOSPC, EIO, 0};
    int failures = 0;
    for (size_t e = 0; e < sizeof errs / sizeof *errs; e++) {
        io_fail_at = 0;
        assert_ok(m.ctx, vqj_trainer_save(m.trainer, path, NULL)); /* the previous checkpoint */
        read_codes(&m, saved);
        step(&m, 2 + 2 * (int)e, &mm);
        step(&m, 3 + 2 * (int)e, &mm); /* the weights now differ from the file's */
        for (long k = 1;; k++) {
            io_writes = 0;
            io_fail_at = k;
            io_errno = errs[e];
            vqj_status st = vqj_trainer_save(m.trainer, path, NULL);
            if (io_writes < k) { /* every write of the save has failed once */
                assert_int_equal(st, VQJ_OK);
                break;
            }
            assert_int_equal(st, VQJ_ERR_IO);
            const char *msg = vqj_last_error();
            assert_non_null(strstr(msg, path));
            if (errs[e])
                assert_non_null(strstr(msg, strerror(errs[e])));
            assert_int_equal(temp_files(dir), 0);
            failures++;
            if (k == 1 || k % 16 == 0) { /* the previous checkpoint is whole and loads */
                vqji_set_write_hook(NULL);
                assert_ok(m.ctx, vqj_checkpoint_verify(m.ctx, path));
                model other;
                model_create(&other, 5, 32);
                assert_ok(other.ctx, vqj_trainer_load(other.trainer, path));
                read_codes(&other, now);
                assert_memory_equal(now, saved, sizeof now);
                model_destroy(&other);
                vqji_set_write_hook(faulty_write);
            }
        }
    }
    /* Writes of at most 7 bytes still give the whole file. */
    io_fail_at = 0;
    io_short = 7;
    io_writes = 0;
    read_codes(&m, saved);
    assert_ok(m.ctx, vqj_trainer_save(m.trainer, path, NULL));
    assert_true(io_writes > 100);
    io_short = 0;
    vqji_set_write_hook(NULL);
    step(&m, 9, &mm);
    assert_ok(m.ctx, vqj_trainer_load(m.trainer, path));
    read_codes(&m, now);
    assert_memory_equal(now, saved, sizeof now);
    print_message("%d failed saves, each leaving the previous checkpoint whole\n", failures);
    unlink(path);
    model_destroy(&m);
}

/* The other steps of an atomic save (vqji_set_io_fault_hook()): creating
 * the temporary file, fsyncing it and renaming it fail with EIO, ENOSPC or
 * EACCES. Each failure is a VQJ_ERR_IO naming the path and the system's
 * reason; no temporary file is left; the previous checkpoint verifies and
 * loads to its weights. A folder that cannot be synced after the rename is
 * an error too, and the new file is then whole under the final name; a
 * file system that cannot sync folders (EINVAL) is not. */
static vqji_io_op fault_op;
static int fault_errno, fault_hits;

static int faulty_io(vqji_io_op op, const char *path)
{
    (void)path;
    if (op != fault_op)
        return 0;
    fault_hits++;
    return fault_errno;
}

static void assert_loads_to(const char *path, const float *codes)
{
    float now[K * 32];
    model other;
    model_create(&other, 6, 32);
    assert_ok(other.ctx, vqj_checkpoint_verify(other.ctx, path));
    assert_ok(other.ctx, vqj_trainer_load(other.trainer, path));
    read_codes(&other, now);
    assert_memory_equal(now, codes, sizeof now);
    model_destroy(&other);
}

static void test_sync_rename_faults(void **state)
{
    (void)state;
    model m;
    model_create(&m, 6, 32);
    vqj_train_metrics mm;
    const char *path = path_in("sync.safetensors");
    float saved[K * 32];
    const vqji_io_op ops[] = {VQJI_IO_CREATE, VQJI_IO_FSYNC, VQJI_IO_RENAME};
    const int errs[] = {EIO, ENOSPC, EACCES};
    int failures = 0, i = 0;
    for (size_t o = 0; o < sizeof ops / sizeof *ops; o++) {
        for (size_t e = 0; e < sizeof errs / sizeof *errs; e++) {
            step(&m, i++, &mm);
            step(&m, i++, &mm);
            assert_ok(m.ctx, vqj_trainer_save(m.trainer, path, NULL)); /* the previous one */
            read_codes(&m, saved);
            step(&m, i++, &mm);
            step(&m, i++, &mm); /* the weights now differ from the file's */
            fault_op = ops[o];
            fault_errno = errs[e];
            fault_hits = 0;
            vqji_set_io_fault_hook(faulty_io);
            vqj_status st = vqj_trainer_save(m.trainer, path, NULL);
            vqji_set_io_fault_hook(NULL);
            assert_int_equal(fault_hits, 1);
            assert_int_equal(st, VQJ_ERR_IO);
            const char *msg = vqj_last_error();
            assert_non_null(strstr(msg, path));
            assert_non_null(strstr(msg, strerror(errs[e])));
            assert_int_equal(temp_files(dir), 0);
            assert_loads_to(path, saved);
            failures++;
        }
    }
    /* The folder sync fails after the rename: an error, and the new file. */
    read_codes(&m, saved);
    fault_op = VQJI_IO_SYNC_FOLDER;
    fault_errno = EIO;
    vqji_set_io_fault_hook(faulty_io);
    assert_int_equal(vqj_trainer_save(m.trainer, path, NULL), VQJ_ERR_IO);
    assert_non_null(strstr(vqj_last_error(), "cannot sync its folder"));
    assert_int_equal(temp_files(dir), 0);
    assert_loads_to(path, saved);
    fault_errno = EINVAL;
    step(&m, i++, &mm);
    step(&m, i++, &mm);
    read_codes(&m, saved);
    assert_ok(m.ctx, vqj_trainer_save(m.trainer, path, NULL));
    vqji_set_io_fault_hook(NULL);
    assert_loads_to(path, saved);
    print_message("%d failed creates, fsyncs and renames, each leaving the previous checkpoint\n",
                  failures);
    unlink(path);
    model_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trainer_round_trip),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_mismatch),
        cmocka_unit_test(test_atomic),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_resume_bit_identical),
        cmocka_unit_test(test_write_faults),
        cmocka_unit_test(test_sync_rename_faults),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
