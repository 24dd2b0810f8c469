/* Configuration files: the built-in defaults are DESIGN.md section 6's
 * reference configuration; the reference system's five files load with the
 * values they set and a warning for each key not implemented; invalid
 * values fail with FILE:LINE and the allowed range; malformed YAML with
 * FILE:LINE:COLUMN; the written YAML reads back to the same configuration;
 * every value the config accepts at a range boundary is accepted by the
 * module it feeds; docs/config.md names every key. */
#include "testutil.h"

#include "config/config.h"
#include "data/data.h"

#include <unistd.h>

/* ------------------------------------------------------------ helpers */

#define MAX_MESSAGES 64
static int num_messages;
static char messages[MAX_MESSAGES][512];

static void capture(void *user, vqj_log_level level, const char *message)
{
    (void)user;
    if (level == VQJ_LOG_WARNING && num_messages < MAX_MESSAGES)
        snprintf(messages[num_messages++], sizeof messages[0], "%s", message);
}

static vqj_context *log_context(void)
{
    vqj_context_params p;
    vqj_context_params_default(&p);
    p.num_threads = 1;
    p.seed = 42;
    p.log_fn = capture;
    vqj_context *ctx = NULL;
    if (vqj_context_create(&p, &ctx) != VQJ_OK)
        fail_msg("vqj_context_create: %s", vqj_last_error());
    num_messages = 0;
    return ctx;
}

static vqj_config *parse_ok(vqj_context *ctx, const char *text)
{
    vqj_config *cfg = NULL;
    assert_ok(ctx, vqj_config_parse(ctx, text, strlen(text), "t.yaml", &cfg));
    assert_non_null(cfg);
    return cfg;
}

/* Parse `text` expecting `status` and a message containing `want`. */
static void parse_fails(vqj_context *ctx, const char *text, vqj_status status, const char *want)
{
    vqj_config *cfg = (vqj_config *)&cfg; /* must stay untouched */
    vqj_config *const sentinel = cfg;
    vqj_status st = vqj_config_parse(ctx, text, strlen(text), "t.yaml", &cfg);
    const char *msg = vqj_last_error();
    if (st != status || !strstr(msg, want))
        fail_msg("parsing\n%s\ngave %d '%s'; expected %d with '%s'", text, (int)st, msg,
                 (int)status, want);
    assert_ptr_equal(cfg, sentinel);
}

static char *write_yaml(vqj_context *ctx, const vqj_config *cfg)
{
    char *text = NULL;
    assert_ok(ctx, vqj_config_write_yaml(cfg, &text));
    assert_non_null(text);
    return text;
}

/* Compare "a.b: 1" and "a.c: 2" by their paths (the text before ':'). */
static int path_cmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        const int ca = *a == ':' ? 0 : (unsigned char)*a, cb = *b == ':' ? 0 : (unsigned char)*b;
        if (ca != cb || !ca)
            return ca - cb;
    }
}

/* Nested YAML from "a.b.c: value" lines: later lines replace earlier ones
 * with the same path; sections are grouped. `pairs` ends with NULL. */
static void yaml_from(const char *const *base, const char *const *over, char *out, size_t size)
{
    const char *all[128];
    size_t n = 0;
    for (int pass = 0; pass < 2; pass++) {
        const char *const *list = pass ? over : base;
        for (size_t i = 0; list && list[i]; i++) {
            const size_t plen = (size_t)(strchr(list[i], ':') - list[i]);
            size_t j = 0;
            while (j < n && !(strncmp(all[j], list[i], plen) == 0 && all[j][plen] == ':'))
                j++;
            all[j] = list[i];
            if (j == n)
                n++;
        }
    }
    /* Sort by path: '.' sorts before every character of a name, so the
     * keys of a section end up contiguous. */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && path_cmp(all[j - 1], all[j]) > 0; j--) {
            const char *t = all[j - 1];
            all[j - 1] = all[j];
            all[j] = t;
        }
    size_t used = 0;
    out[0] = '\0';
    char prev[128] = "";
    for (size_t i = 0; i < n; i++) {
        char path[128];
        const char *colon = strchr(all[i], ':');
        snprintf(path, sizeof path, "%.*s", (int)(colon - all[i]), all[i]);
        /* Open the sections this path does not share with the previous one. */
        int depth = 0;
        const char *p = path, *q = prev;
        const char *dot;
        while ((dot = strchr(p, '.'))) {
            const size_t len = (size_t)(dot - p);
            const int shared = q && strncmp(p, q, len) == 0 && q[len] == '.';
            if (!shared) {
                used += (size_t)snprintf(out + used, size - used, "%*s%.*s:\n", 2 * depth, "",
                                         (int)len, p);
                q = NULL;
            } else {
                q += len + 1;
            }
            p = dot + 1;
            depth++;
        }
        used += (size_t)snprintf(out + used, size - used, "%*s%s%s\n", 2 * depth, "", p, colon);
        snprintf(prev, sizeof prev, "%s", path);
        assert_true(used < size);
    }
}

/* Small model sizes so that creating every module is cheap. */
static const char *const small[] = {
    "object_encoder.hidden_dim: 8", "object_encoder.relational_heads: 2",
    "object_encoder.num_embeddings: 16", "loss.projection_dim: 4", "loss.queue_size: 16",
    "sigreg.num_slices: 8", "synthetic.num_examples: 1", NULL};

/* The lines "- key is not implemented" / device warnings, as key names. */
static int warned_about(const char *key)
{
    char want[160];
    snprintf(want, sizeof want, "key %s is not implemented and is ignored", key);
    for (int i = 0; i < num_messages; i++)
        if (strstr(messages[i], want))
            return 1;
    return 0;
}

static const char *reference_dir(void)
{
    const char *d = getenv("VQJ_REFERENCE_CONFIGS");
    return d && *d ? d : "../shared/reference-configs";
}

static int load_reference(vqj_context *ctx, const char *file, vqj_config **cfg)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", reference_dir(), file);
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    fclose(f);
    num_messages = 0;
    assert_ok(ctx, vqj_config_load(ctx, path, cfg));
    return 1;
}

/* ------------------------------------------------------------ defaults */

static void test_defaults_are_design_section_6(void **state)
{
    (void)state;
    vqj_context *ctx = log_context();
    vqj_config *cfg = NULL;
    assert_ok(ctx, vqj_config_default(ctx, &cfg));
    assert_int_equal(num_messages, 0);

    vqj_encoder_params ep;
    vqj_encoder_params_default(&ep);
    assert_ok(ctx, vqj_config_encoder_params(cfg, &ep));
    assert_int_equal(ep.hidden_dim, 384);
    assert_int_equal(ep.relational_layers, 3);
    assert_int_equal(ep.relational_heads, 8);
    assert_float_equal(ep.relational_dropout, 0.1f, 0.0f);
    assert_int_equal(ep.feature_dim, 23);

    vqj_codebook_params cp;
    vqj_codebook_params_default(&cp);
    assert_ok(ctx, vqj_config_codebook_params(cfg, &cp));
    assert_int_equal(cp.num_embeddings, 768);
    assert_int_equal(cp.dim, 384);
    assert_int_equal(cp.enabled, 1);
    assert_float_equal(cp.commitment_cost, 0.15f, 0.0f);
    assert_float_equal(cp.ema_decay, 0.95f, 0.0f);
    assert_int_equal(cp.refresh_enabled, 1);
    assert_int_equal(cp.refresh_interval, 3000);
    assert_float_equal(cp.refresh_usage_threshold, 0.01f, 0.0f);

    vqj_predictor_params pp;
    vqj_predictor_params_default(&pp);
    assert_ok(ctx, vqj_config_predictor_params(cfg, &pp));
    assert_int_equal(pp.hidden_dim, 384);
    assert_int_equal(pp.projection_dim, 256);
    assert_int_equal(pp.projection_layers, 2);
    assert_int_equal(pp.projection_activation, VQJ_ACT_RELU);
    assert_int_equal(pp.context_window, 3);

    vqj_loss_params lp;
    vqj_loss_params_default(&lp);
    assert_ok(ctx, vqj_config_loss_params(cfg, &lp));
    assert_int_equal(lp.projection_dim, 256);
    assert_float_equal(lp.temperature, 0.07f, 0.0f);
    assert_float_equal(lp.temperature_min, 0.05f, 0.0f);
    assert_float_equal(lp.temperature_max, 0.20f, 0.0f);
    assert_int_equal(lp.learnable_temperature, 1);
    assert_int_equal(lp.queue_size, 8192);
    assert_float_equal(lp.relational_weight, 0.025f, 0.0f);
    assert_float_equal(lp.context_self_weight, 0.01f, 0.0f);
    assert_float_equal(lp.sigreg_weight, 0.1f, 0.0f);
    assert_int_equal(lp.sigreg_num_slices, 1024);
    assert_int_equal(lp.sigreg_num_points, 17);
    assert_float_equal(lp.color_weight, 0.1f, 0.0f);
    assert_float_equal(lp.translation_weight, 0.05f, 0.0f);
    assert_float_equal(lp.symmetry_weight, 0.05f, 0.0f);
    assert_int_equal(lp.max_objects, 64); /* the configuration's default tokenizer cap */

    vqj_trainer_params tp;
    vqj_trainer_params_default(&tp);
    assert_ok(ctx, vqj_config_trainer_params(cfg, &tp));
    assert_float_equal(tp.target_ema_decay, 0.99f, 0.0f);
    assert_int_equal(tp.use_target_encoder, 1);
    assert_float_equal(tp.translation_max_delta, 0.1f, 0.0f);
    assert_int_equal(tp.symmetry_modes, 3);
    assert_int_equal(tp.grad_accum_steps, 2);

    vqj_optimizer_params op;
    vqj_optimizer_params_default(&op);
    assert_ok(ctx, vqj_config_optimizer_params(cfg, &op));
    assert_int_equal(op.kind, VQJ_OPT_ADAM);
    assert_float_equal(op.lr, 5e-5f, 0.0f);
    assert_float_equal(op.weight_decay, 1e-6f, 0.0f);
    assert_float_equal(op.max_grad_norm, 0.5f, 0.0f);
    assert_int_equal(op.schedule, VQJ_LR_COSINE);
    assert_int_equal(op.warmup_steps, 1000);
    assert_float_equal(op.min_lr_scale, 0.1f, 0.0f);
    assert_int_equal(op.total_steps, 1500);

    vqj_run_params rp = {.size = sizeof rp};
    assert_ok(ctx, vqj_config_run(cfg, &rp));
    assert_int_equal(rp.batch_size, 512);
    assert_int_equal(rp.grad_accum_steps, 2);
    assert_int_equal(rp.early_stopping_enabled, 1);
    assert_int_equal(rp.early_stopping_patience, 20);
    assert_float_equal(rp.early_stopping_min_delta, 0.01f, 0.0f);
    assert_int_equal(rp.early_stopping_mode, VQJ_EARLY_STOPPING_MIN);
    assert_int_equal(rp.diagnostics_enabled, 1);
    assert_int_equal(rp.diagnostics_interval, 200);
    assert_int_equal(rp.diagnostics_max_samples, 4096);
    assert_float_equal(rp.validation_split, 0.02f, 0.0f);
    assert_int_equal(rp.validation_seed, 13);
    assert_int_equal(rp.checkpoint_interval, 5);
    assert_int_equal(rp.checkpoint_steps, 100);
    assert_int_equal(rp.epochs, 30); /* jepa_vq_gentle.yaml */
    assert_int_equal(rp.seed, 123);
    assert_int_equal(rp.shuffle, 1);
    assert_int_equal(rp.vq_enabled, 1);
    assert_int_equal(rp.use_target_encoder, 1);
    assert_int_equal(rp.device, VQJ_DEVICE_CPU);
    assert_null(rp.dataset_manifest);
    assert_null(rp.arc_path);
    assert_string_equal(rp.checkpoint_dir, "checkpoints");
    assert_string_equal(rp.log_dir, "logs");
    assert_string_equal(rp.run_name, "vqjepa");

    vqj_dataset_params dp;
    vqj_dataset_params_default(&dp);
    assert_ok(ctx, vqj_config_dataset_params(cfg, &dp));
    assert_float_equal(dp.validation_split, 0.02f, 0.0f);
    assert_int_equal(dp.context_window, 3);

    vqj_config_destroy(cfg);
    vqj_context_destroy(ctx);
}

/* The config's defaults are the modules' own (one set of defaults). */
static void test_defaults_are_the_modules_defaults(void **state)
{
    (void)state;
    vqj_context *ctx = log_context();
    vqj_config *cfg = NULL;
    assert_ok(ctx, vqj_config_default(ctx, &cfg));

    vqj_tokenizer_params a, b;
    vqj_tokenizer_params_default(&a);
    vqj_tokenizer_params_default(&b);
    a.max_objects = -1;
    assert_ok(ctx, vqj_config_tokenizer_params(cfg, &a));
    assert_int_equal(a.max_objects, 64); /* the one exception: 16 drops most ARC objects */
    assert_int_equal(a.max_color_features, b.max_color_features);
    assert_int_equal(a.background, b.background);
    assert_int_equal(a.connectivity, b.connectivity);
    assert_int_equal(a.normalize, b.normalize);
    assert_int_equal(a.respect_colors, b.respect_colors);

    vqj_augment_params g, gd;
    vqj_augment_params_default(&g);
    vqj_augment_params_default(&gd);
    assert_ok(ctx, vqj_config_augment_params(cfg, &g));
    assert_float_equal(g.mask_ratio, gd.mask_ratio, 0.0f);
    assert_int_equal(g.random_crop_radius, gd.random_crop_radius);
    assert_int_equal(g.min_grid_size_for_crop, gd.min_grid_size_for_crop);
    assert_int_equal(g.palette_permutation, gd.palette_permutation);
    assert_float_equal(g.gaussian_noise_std, gd.gaussian_noise_std, 0.0f);
    assert_int_equal(g.background, gd.background);

    vqj_synthetic_params s, sd;
    vqj_synthetic_params_default(&s);
    vqj_synthetic_params_default(&sd);
    s.num_examples = 0;
    assert_ok(ctx, vqj_config_synthetic_params(cfg, &s));
    assert_int_equal(s.num_examples, sd.num_examples);
    assert_int_equal(s.seed, sd.seed);
    assert_int_equal(s.min_side, sd.min_side);
    assert_int_equal(s.max_side, sd.max_side);
    assert_int_equal(s.max_primitives, sd.max_primitives);

    vqj_optimizer_params o, od;
    vqj_optimizer_params_default(&o);
    vqj_optimizer_params_default(&od);
    o.beta1 = 0;
    assert_ok(ctx, vqj_config_optimizer_params(cfg, &o));
    assert_float_equal(o.beta1, od.beta1, 0.0f);
    assert_float_equal(o.beta2, od.beta2, 0.0f);
    assert_float_equal(o.eps, od.eps, 0.0f);

    vqj_dataset_params d, dd;
    vqj_dataset_params_default(&d);
    vqj_dataset_params_default(&dd);
    assert_ok(ctx, vqj_config_dataset_params(cfg, &d));
    assert_int_equal(d.target_offset, dd.target_offset);
    assert_int_equal(d.validation_seed, dd.validation_seed);
    assert_int_equal(d.max_examples_per_task, dd.max_examples_per_task);
    assert_int_equal(d.skip_bad, dd.skip_bad);

    vqj_codebook_params c, cd;
    vqj_codebook_params_default(&c);
    vqj_codebook_params_default(&cd);
    assert_ok(ctx, vqj_config_codebook_params(cfg, &c));
    assert_int_equal(c.kmeans_init, cd.kmeans_init);

    vqj_loss_params l, ld;
    vqj_loss_params_default(&l);
    vqj_loss_params_default(&ld);
    assert_ok(ctx, vqj_config_loss_params(cfg, &l));
    assert_float_equal(l.infonce_weight, ld.infonce_weight, 0.0f);

    vqj_predictor_params p, pd;
    vqj_predictor_params_default(&p);
    vqj_predictor_params_default(&pd);
    assert_ok(ctx, vqj_config_predictor_params(cfg, &p));
    assert_int_equal(p.aggregator, pd.aggregator);

    vqj_context_params xp;
    vqj_context_params_default(&xp);
    vqj_run_params r = {.size = sizeof r};
    assert_ok(ctx, vqj_config_run(cfg, &r));
    assert_int_equal(r.seed, xp.seed);
    assert_int_equal(r.device, xp.device);

    vqj_config_destroy(cfg);
    vqj_context_destroy(ctx);
}

/* ------------------------------------------------- the reference files */

static const char *const reference_files[] = {
    "jepa_pretrain_a6000.yaml", "jepa_diagnostic_no_vq.yaml", "jepa_vq_no_refresh.yaml",
    "jepa_vq_gentle.yaml", "jepa_stable_production.yaml"};

/* Every reference file loads, warning about exactly the keys the library
 * does not implement (and about cuda in a build without it). */
static void test_reference_files_warn_exactly(void **state)
{
    (void)state;
    static const char *const unimplemented[] = {
        "model.type",         "model.embedding_dim", "training.num_workers",
        "training.drop_last", "training.mixed_precision", "training.pin_memory",
        "logging.flush_secs", "pre_tokenized.path",  "pre_tokenized.shuffle",
        "pre_tokenized.drop_last"};
    const int n_unimpl = (int)(sizeof unimplemented / sizeof *unimplemented);
    const int cuda = vqj_device_compiled(VQJ_DEVICE_CUDA);
    vqj_context *ctx = log_context();
    int found = 0;
    for (size_t f = 0; f < sizeof reference_files / sizeof *reference_files; f++) {
        vqj_config *cfg = NULL;
        if (!load_reference(ctx, reference_files[f], &cfg))
            continue;
        found++;
        for (int k = 0; k < n_unimpl; k++)
            if (!warned_about(unimplemented[k]))
                fail_msg("%s: no warning for %s", reference_files[f], unimplemented[k]);
        int device_warnings = 0;
        for (int i = 0; i < num_messages; i++) {
            /* Each names its file and line. */
            if (!strstr(messages[i], reference_files[f]))
                fail_msg("warning without the file name: %s", messages[i]);
            if (strstr(messages[i], "training.device is cuda"))
                device_warnings++;
        }
        assert_int_equal(device_warnings, cuda ? 0 : 1);
        if (num_messages != n_unimpl + device_warnings) {
            for (int i = 0; i < num_messages; i++)
                print_message("  %s\n", messages[i]);
            fail_msg("%s: %d warnings, expected %d", reference_files[f], num_messages,
                     n_unimpl + device_warnings);
        }
        /* The line of model.type differs between the files; check one. */
        if (f == 0)
            assert_non_null(strstr(messages[0], "jepa_pretrain_a6000.yaml:37: key model.type"));
        vqj_run_params rp = {.size = sizeof rp};
        assert_ok(ctx, vqj_config_run(cfg, &rp));
        assert_int_equal(rp.device, cuda ? VQJ_DEVICE_CUDA : VQJ_DEVICE_CPU);
        assert_string_equal(rp.dataset_manifest, "data/pilot_curriculum_large/manifest.jsonl");
        vqj_config_destroy(cfg);
    }
    vqj_context_destroy(ctx);
    if (!found)
        skip();
}

/* The values that differ between the runs the seed compares. */
static void test_reference_files_values(void **state)
{
    (void)state;
    vqj_context *ctx = log_context();
    vqj_config *cfg = NULL;
    vqj_codebook_params cp;
    vqj_run_params rp = {.size = sizeof rp};
    vqj_loss_params lp;
    vqj_optimizer_params op;
    int found = 0;

    if (load_reference(ctx, "jepa_pretrain_a6000.yaml", &cfg)) {
        found++;
        vqj_codebook_params_default(&cp);
        assert_ok(ctx, vqj_config_codebook_params(cfg, &cp));
        assert_float_equal(cp.commitment_cost, 0.3f, 0.0f);
        assert_float_equal(cp.ema_decay, 0.99f, 0.0f);
        assert_int_equal(cp.enabled, 1);
        assert_int_equal(cp.refresh_enabled, 1);
        assert_int_equal(cp.refresh_interval, 500);
        assert_float_equal(cp.refresh_usage_threshold, 0.05f, 0.0f);
        vqj_loss_params_default(&lp);
        assert_ok(ctx, vqj_config_loss_params(cfg, &lp));
        assert_float_equal(lp.temperature_min, 0.07f, 0.0f);
        assert_float_equal(lp.temperature_max, 0.15f, 0.0f);
        assert_float_equal(lp.relational_weight, 0.05f, 0.0f);
        assert_float_equal(lp.context_self_weight, 0.025f, 0.0f);
        vqj_optimizer_params_default(&op);
        assert_ok(ctx, vqj_config_optimizer_params(cfg, &op));
        assert_int_equal(op.total_steps, 4000);
        assert_ok(ctx, vqj_config_run(cfg, &rp));
        assert_int_equal(rp.epochs, 80);
        assert_int_equal(rp.early_stopping_patience, 15);
        assert_string_equal(rp.checkpoint_dir, "artifacts/jepa/pretrain_a6000");
        assert_string_equal(rp.run_name, "jepa_a6000_stability");
        vqj_config_destroy(cfg);
    }
    if (load_reference(ctx, "jepa_diagnostic_no_vq.yaml", &cfg)) {
        found++;
        vqj_codebook_params_default(&cp);
        assert_ok(ctx, vqj_config_codebook_params(cfg, &cp));
        assert_int_equal(cp.enabled, 0);
        assert_int_equal(cp.refresh_enabled, 0);
        assert_ok(ctx, vqj_config_run(cfg, &rp));
        assert_int_equal(rp.vq_enabled, 0);
        assert_int_equal(rp.epochs, 30);
        vqj_config_destroy(cfg);
    }
    if (load_reference(ctx, "jepa_vq_no_refresh.yaml", &cfg)) {
        found++;
        vqj_codebook_params_default(&cp);
        assert_ok(ctx, vqj_config_codebook_params(cfg, &cp));
        assert_int_equal(cp.enabled, 1);
        assert_int_equal(cp.refresh_enabled, 0);
        assert_float_equal(cp.commitment_cost, 0.3f, 0.0f);
        vqj_config_destroy(cfg);
    }
    if (load_reference(ctx, "jepa_stable_production.yaml", &cfg)) {
        found++;
        assert_ok(ctx, vqj_config_run(cfg, &rp));
        assert_int_equal(rp.epochs, 80);
        assert_int_equal(rp.early_stopping_patience, 25);
        assert_float_equal(rp.early_stopping_min_delta, 0.005f, 0.0f);
        assert_int_equal(rp.diagnostics_interval, 100);
        vqj_codebook_params_default(&cp);
        assert_ok(ctx, vqj_config_codebook_params(cfg, &cp));
        assert_float_equal(cp.commitment_cost, 0.15f, 0.0f);
        assert_int_equal(cp.refresh_interval, 3000);
        vqj_config_destroy(cfg);
    }
    vqj_context_destroy(ctx);
    if (!found)
        skip();
}

/* Drop the lines of `text` whose key is one of `skip` (run-specific
 * strings), so that two configs can be compared on the rest. */
static void drop_keys(char *text, const char *const *skip)
{
    char *out = text;
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line + 1) : strlen(line);
        const char *k = line;
        while (*k == ' ')
            k++;
        int drop = 0;
        for (size_t i = 0; skip[i]; i++)
            if (!strncmp(k, skip[i], strlen(skip[i])) && k[strlen(skip[i])] == ':')
                drop = 1;
        if (!drop) {
            memmove(out, line, len);
            out += len;
        }
        line += len;
    }
    *out = '\0';
}

/* The gentle run is the built-in default: every setting but the paths and
 * names of the run (and the device, cuda there) is the same. */
static void test_gentle_file_is_the_default(void **state)
{
    (void)state;
    vqj_context *ctx = log_context();
    vqj_config *gentle = NULL, *def = NULL;
    if (!load_reference(ctx, "jepa_vq_gentle.yaml", &gentle)) {
        vqj_context_destroy(ctx);
        skip();
    }
    assert_ok(ctx, vqj_config_default(ctx, &def));
    char *a = write_yaml(ctx, gentle), *b = write_yaml(ctx, def);
    /* max_objects: the reference keeps 16, the default is 64 (docs/tokenizer.md). */
    static const char *const skip_keys[] = {"dataset_manifest", "checkpoint_dir", "log_dir",
                                            "run_name", "device", "max_objects", NULL};
    drop_keys(a, skip_keys);
    drop_keys(b, skip_keys);
    assert_string_equal(a, b);
    free(a);
    free(b);
    vqj_config_destroy(gentle);
    vqj_config_destroy(def);
    vqj_context_destroy(ctx);
}

/* ------------------------------------------------------------ writing */

/* write -> parse -> write gives the same text, with no warning. */
static void check_round_trip(vqj_context *ctx, const vqj_config *cfg)
{
    char *a = write_yaml(ctx, cfg);
    num_messages = 0;
    vqj_config *back = parse_ok(ctx, a);
    if (num_messages)
        fail_msg("the written YAML gave a warning: %s", messages[0]);
    char *b = write_yaml(ctx, back);
    assert_string_equal(a, b);
    free(a);
    free(b);
    vqj_config_destroy(back);
}

static void test_round_trip(void **state)
{
    (void)state;
    vqj_context *ctx = log_context();
    vqj_config *cfg = NULL;
    assert_ok(ctx, vqj_config_default(ctx, &cfg));
    check_round_trip(ctx, cfg);
    vqj_config_destroy(cfg);

    /* Every special form and a value off its default in each section. */
    const char *text =
        "seed: 18446744073709551615\n"
        "data:\n  context_window: 5\n  target_offset: 2\n  shuffle: no\n"
        "  validation: {split: 0.125, seed: 7}\n  arc_path: \"tasks/a \\\"b\\\"\\n\"\n"
        "  skip_bad: true\n  max_examples_per_task: 0\n"
        "tokenizer:\n  max_objects: 30\n  max_color_features: 4\n  background: [0, 5]\n"
        "  connectivity: 8\n  normalize: false\n  respect_colors: off\n"
        "object_encoder:\n  hidden_dim: 96\n  num_embeddings: 64\n  commitment_cost: 0.3\n"
        "  ema_decay: 0.0\n  vq_enabled: false\n  vq_refresh_enabled: false\n"
        "  vq_refresh_interval: 7\n  vq_refresh_usage_threshold: 1.0e-3\n"
        "  relational: false\n  relational_layers: 5\n  relational_heads: 12\n"
        "  relational_dropout: 0.0\n  vq_kmeans_init: false\n"
        "model:\n  aggregator: gru\n"
        "optimizer:\n  name: adamw\n  lr: 3e-4\n  weight_decay: 0.01\n  betas: [0.8, 0.95]\n"
        "  eps: 1e-6\n"
        "training:\n  batch_size: 7\n  grad_accum_steps: 3\n  epochs: 2\n"
        "  checkpoint_dir: null\n  checkpoint_interval: 1\n  checkpoint_steps: 0\n  device: cpu\n"
        "  grad_clip: {max_norm: 1.5, norm_type: 2}\n"
        "  lr_scheduler: {name: linear, warmup_steps: 0, min_lr_scale: 0.0, "
        "total_steps: 10000000000}\n"
        "  early_stopping: {enabled: false, patience: 0, min_delta: 0.0, mode: max}\n"
        "augmentations:\n  mask_ratio: 0.0\n  random_crop_radius: 3\n"
        "  palette_permutation: false\n  gaussian_noise_std: 0.5\n  min_grid_size_for_crop: 0\n"
        "loss:\n  temperature: 0.1\n  temperature_min: 0.1\n  temperature_max: 0.1\n"
        "  learnable_temperature: false\n  queue_size: 0\n  projection_dim: 32\n"
        "  projection_layers: 3\n  projection_activation: tanh\n  use_target_encoder: false\n"
        "  target_ema_decay: 0.999\n  infonce_weight: 0.5\n"
        "sigreg: {weight: 0.0, num_slices: 3, num_points: 2}\n"
        "invariance:\n  color_weight: 0.0\n  translation_weight: 1.0\n"
        "  translation_max_delta: 1.0\n  symmetry_weight: 0.2\n  symmetry_modes: [vertical]\n"
        "relational_loss: {weight: 1.0, context_self_weight: 2.0}\n"
        "logging: {enabled: false, log_dir: \"l\", run_name: 'r'}\n"
        "diagnostics: {embedding_metrics: {enabled: false, interval: 1, max_samples: 2}}\n"
        "synthetic: {num_examples: 5, seed: 9, min_side: 4, max_side: 30, min_colors: 2, "
        "max_colors: 10, max_primitives: 16}\n";
    cfg = parse_ok(ctx, text);
    assert_int_equal(num_messages, 0);
    check_round_trip(ctx, cfg);

    /* The parsed values themselves. */
    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    assert_ok(ctx, vqj_config_tokenizer_params(cfg, &tp));
    assert_int_equal(tp.background, (1 << 0) | (1 << 5));
    assert_int_equal(tp.connectivity, 8);
    assert_int_equal(tp.respect_colors, 0);
    vqj_encoder_params ep;
    vqj_encoder_params_default(&ep);
    assert_ok(ctx, vqj_config_encoder_params(cfg, &ep));
    assert_int_equal(ep.relational_layers, 0); /* relational: false */
    assert_int_equal(ep.feature_dim, VQJ_BASE_FEATURES + 4);
    assert_int_equal(ep.hidden_dim, 96);
    vqj_predictor_params pp;
    vqj_predictor_params_default(&pp);
    assert_ok(ctx, vqj_config_predictor_params(cfg, &pp));
    assert_int_equal(pp.aggregator, VQJ_AGG_GRU);
    assert_int_equal(pp.projection_activation, VQJ_ACT_TANH);
    assert_int_equal(pp.context_window, 5);
    assert_int_equal(pp.projection_dim, 32);
    vqj_optimizer_params op;
    vqj_optimizer_params_default(&op);
    assert_ok(ctx, vqj_config_optimizer_params(cfg, &op));
    assert_int_equal(op.kind, VQJ_OPT_ADAMW);
    assert_float_equal(op.lr, 3e-4f, 0.0f);
    assert_float_equal(op.beta1, 0.8f, 0.0f);
    assert_float_equal(op.beta2, 0.95f, 0.0f);
    assert_int_equal(op.schedule, VQJ_LR_LINEAR);
    assert_true(op.total_steps == 10000000000LL);
    vqj_trainer_params trp;
    vqj_trainer_params_default(&trp);
    assert_ok(ctx, vqj_config_trainer_params(cfg, &trp));
    assert_int_equal(trp.symmetry_modes, 2);
    assert_int_equal(trp.background, (1 << 0) | (1 << 5));
    assert_int_equal(trp.grad_accum_steps, 3);
    vqj_augment_params ap;
    vqj_augment_params_default(&ap);
    assert_ok(ctx, vqj_config_augment_params(cfg, &ap));
    assert_int_equal(ap.background, 0);
    vqj_loss_params lp;
    vqj_loss_params_default(&lp);
    assert_ok(ctx, vqj_config_loss_params(cfg, &lp));
    assert_int_equal(lp.max_objects, 30);
    assert_int_equal(lp.projection_dim, 32);
    vqj_run_params rp = {.size = sizeof rp};
    assert_ok(ctx, vqj_config_run(cfg, &rp));
    assert_true(rp.seed == UINT64_MAX);
    assert_string_equal(rp.arc_path, "tasks/a \"b\"\n");
    assert_null(rp.checkpoint_dir);
    assert_int_equal(rp.early_stopping_mode, VQJ_EARLY_STOPPING_MAX);
    assert_int_equal(rp.early_stopping_patience, 0);
    assert_int_equal(rp.shuffle, 0);
    assert_string_equal(rp.run_name, "r");
    vqj_config_destroy(cfg);

    /* The reference files too. */
    for (size_t f = 0; f < sizeof reference_files / sizeof *reference_files; f++) {
        if (!load_reference(ctx, reference_files[f], &cfg))
            continue;
        check_round_trip(ctx, cfg);
        vqj_config_destroy(cfg);
    }
    vqj_context_destroy(ctx);
}

/* Floats are written so that PyYAML reads them as floats: with a point. */
static void test_written_floats_have_a_point(void **state)
{
    (void)state;
    vqj_context *ctx = log_context();
    vqj_config *cfg = NULL;
    assert_ok(ctx, vqj_config_default(ctx, &cfg));
    char *text = write_yaml(ctx, cfg);
    assert_non_null(strstr(text, "\n  lr: 5.0e-05\n"));
    assert_non_null(strstr(text, "\n  weight_decay: 1.0e-06\n"));
    assert_non_null(strstr(text, "\n    norm_type: 2.0\n"));
    assert_non_null(strstr(text, "\n  temperature: 0.07\n"));
    assert_non_null(strstr(text, "\n  infonce_weight: 1.0\n"));
    free(text);
    vqj_config_destroy(cfg);
    vqj_context_destroy(ctx);
}

/* ------------------------------------------------------------ errors */

static void test_invalid_values(void **state)
{
    (void)state;
    vqj_context *ctx = log_context();
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"object_encoder:\n  hidden_dim: 0\n",
         "t.yaml:2: object_encoder.hidden_dim is 0; it must be in [1, 16384]"},
        {"object_encoder:\n  hidden_dim: 16385\n", "it must be in [1, 16384]"},
        {"object_encoder:\n  hidden_dim: [384]\n",
         "t.yaml:2: object_encoder.hidden_dim is a list; it must be an integer in [1, 16384]"},
        {"object_encoder:\n  ema_decay: 1\n",
         "t.yaml:2: object_encoder.ema_decay is 1; it must be in [0, 1)"},
        /* below 1 as a double, 1 as a float */
        {"object_encoder:\n  ema_decay: 0.99999999\n", "it must be in [0, 1)"},
        {"object_encoder:\n  relational_dropout: 1.0\n", "it must be in [0, 1)"},
        {"object_encoder:\n  relational_layers: 65\n", "it must be in [0, 64]"},
        {"object_encoder:\n  commitment_cost: -0.1\n", "it must be in [0, inf)"},
        {"object_encoder:\n  vq_refresh_usage_threshold: 1.5\n", "it must be in [0, 1]"},
        {"object_encoder:\n  activation: \"relu\"\n",
         "t.yaml:2: object_encoder.activation is \"relu\"; it must be gelu (the only one "
         "implemented)"},
        {"object_encoder:\n  hidden_dim: 384\n  relational_heads: 7\n",
         "t.yaml:3: object_encoder.relational_heads is 7; it must divide "
         "object_encoder.hidden_dim (384)"},
        {"object_encoder:\n  hidden_dim: 100\n",
         "t.yaml:2: object_encoder.relational_heads is 8; it must divide"},
        {"loss:\n  objective: byol\n", "it must be one of infonce or sigreg"},
        {"loss:\n  temperature: 0.3\n",
         "t.yaml:2: loss.temperature is 0.3; it must be in [loss.temperature_min, "
         "loss.temperature_max] = [0.05, 0.2]"},
        {"loss:\n  temperature_min: 0\n", "loss.temperature_min is 0; it must be in (0, inf)"},
        {"loss:\n  temperature_max: 0.01\n",
         "t.yaml:2: loss.temperature_max is 0.01; it must be in [loss.temperature_min, inf)"},
        {"loss:\n  queue_size: 1048577\n", "it must be in [0, 1048576]"},
        {"loss:\n  projection_layers: 17\n", "it must be in [1, 16]"},
        {"loss:\n  projection_activation: swish\n",
         "it must be one of relu, gelu, tanh or none"},
        {"sigreg:\n  num_points: 1\n", "sigreg.num_points is 1; it must be in [2, 256]"},
        {"sigreg:\n  num_points: 257\n", "it must be in [2, 256]"},
        {"optimizer:\n  name: sgd\n", "t.yaml:2: optimizer.name is sgd; it must be one of adam or "
                                      "adamw"},
        {"optimizer:\n  lr: -1e-5\n", "optimizer.lr is -1e-5; it must be in [0, inf)"},
        {"optimizer:\n  lr: .nan\n", "optimizer.lr is .nan; it must be in [0, inf)"},
        {"optimizer:\n  lr: fast\n", "optimizer.lr is fast; it must be a number in [0, inf)"},
        {"optimizer:\n  lr: \"5e-5\"\n", "it must be a number in [0, inf)"},
        {"optimizer:\n  betas: [0.9]\n", "it must be a list of two numbers in [0, 1)"},
        {"optimizer:\n  betas: [0.9, 1]\n", "optimizer.betas is 1; it must be in [0, 1)"},
        {"training:\n  epochs: 0\n", "t.yaml:2: training.epochs is 0; it must be in [1, 1000000]"},
        {"training:\n  epochs: abc\n", "it must be an integer in [1, 1000000]"},
        {"training:\n  epochs: 2.5\n", "it must be an integer in [1, 1000000]"},
        {"training:\n  epochs: \"30\"\n", "training.epochs is \"30\"; it must be an integer"},
        {"training:\n  epochs: 99999999999999999999\n", "it must be in [1, 1000000]"},
        {"training:\n  batch_size: 0\n", "it must be in [1, 1048576]"},
        {"training:\n  grad_accum_steps: 1025\n", "it must be in [1, 1024]"},
        {"training:\n  device: tpu\n", "it must be one of cpu or cuda"},
        {"training:\n  grad_clip:\n    norm_type: 1.0\n",
         "t.yaml:3: training.grad_clip.norm_type is 1.0; it must be 2 (the L2 norm"},
        {"training:\n  grad_clip: 0.5\n",
         "t.yaml:2: training.grad_clip is 0.5; it must be a mapping of keys"},
        {"training:\n  lr_scheduler: {name: step}\n",
         "it must be one of cosine, linear or constant"},
        {"training:\n  lr_scheduler: {min_lr_scale: 2}\n", "it must be in [0, 1]"},
        {"training:\n  lr_scheduler: {warmup_steps: -1}\n",
         "it must be in [0, 9223372036854775807]"},
        {"training:\n  early_stopping: {patience: -1}\n", "it must be in [0, 1000000]"},
        {"training:\n  early_stopping: {mode: median}\n", "it must be one of min or max"},
        {"data:\n  shuffle: maybe\n", "data.shuffle is maybe; it must be true or false"},
        {"data:\n  context_window: 65\n", "it must be in [1, 64]"},
        {"data:\n  validation:\n    split: 1\n",
         "t.yaml:3: data.validation.split is 1; it must be in [0, 1)"},
        {"data: 5\n", "t.yaml:1: data is 5; it must be a mapping of keys"},
        {"seed: -1\n", "seed is -1; it must be an integer in [0, 18446744073709551615]"},
        {"seed: 18446744073709551616\n", "it must be in [0, 18446744073709551615]"},
        {"tokenizer:\n  background: 10\n", "it must be in [0, 9]"},
        {"tokenizer:\n  background: []\n", "it must be a color in [0, 9] or a non-empty list"},
        {"tokenizer:\n  connectivity: 6\n", "it must be one of 4 or 8"},
        {"tokenizer:\n  max_color_features: 11\n", "it must be in [0, 10]"},
        {"invariance:\n  symmetry_modes: [diagonal]\n",
         "invariance.symmetry_modes is diagonal; it must be \"horizontal\" or \"vertical\""},
        {"invariance:\n  translation_max_delta: 1.5\n", "it must be in [0, 1]"},
        {"augmentations:\n  mask_ratio: 1.1\n", "it must be in [0, 1]"},
        {"augmentations:\n  random_crop_radius: 257\n", "it must be in [0, 256]"},
        {"diagnostics:\n  embedding_metrics:\n    max_samples: 1\n",
         "t.yaml:3: diagnostics.embedding_metrics.max_samples is 1; it must be in [2, 16777216]"},
        {"synthetic:\n  max_side: 5\n",
         "synthetic.max_side is 5; it must be in [synthetic.min_side, 256] = [6, 256]"},
        {"synthetic:\n  min_colors: 8\n", "synthetic.max_colors is 6; it must be in"},
        {"dataset_manifest: a.jsonl\ndata:\n  arc_path: tasks\n",
         "t.yaml:3: dataset_manifest and data.arc_path are both set"},
        {"seed: 1\ndata: {}\nseed: 2\n", "t.yaml:3: key seed appears twice (first at line 1)"},
        {"training:\n  epochs: 3\n  epochs: 4\n", "key training.epochs appears twice"},
        {"logging:\n  run_name: [a]\n", "it must be a string or null"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        parse_fails(ctx, cases[i].text, VQJ_ERR_INVALID_ARGUMENT, cases[i].want);
    vqj_context_destroy(ctx);
}

static void test_malformed_yaml(void **state)
{
    (void)state;
    vqj_context *ctx = log_context();
    parse_fails(ctx, "data:\n  context_window: [3\n", VQJ_ERR_PARSE, "t.yaml:3:1: ");
    parse_fails(ctx, "data:\n  context_window: 3\n bad: 1\n", VQJ_ERR_PARSE, "t.yaml:3:");
    parse_fails(ctx, "training: {epochs: 3\n", VQJ_ERR_PARSE, "t.yaml:");
    parse_fails(ctx, "a: *nothing\n", VQJ_ERR_PARSE, "t.yaml:1:");
    parse_fails(ctx, "- data\n- training\n", VQJ_ERR_PARSE,
                "t.yaml:1: the file is a list; it must be a mapping of sections");
    parse_fails(ctx, "seed: \xc3\x28\n", VQJ_ERR_PARSE, "t.yaml: byte 7: invalid trailing UTF-8");
    /* A syntax error in a second document is still an error. */
    parse_fails(ctx, "seed: 1\n---\nseed: [\n", VQJ_ERR_PARSE, "t.yaml:");

    /* The file itself: a missing one, a malformed one. */
    vqj_config *cfg = NULL;
    assert_status(ctx, vqj_config_load(ctx, "/nonexistent/x.yaml", &cfg), VQJ_ERR_IO);
    assert_non_null(strstr(vqj_last_error(), "cannot open /nonexistent/x.yaml"));
    assert_null(cfg);
    char path[] = "/tmp/vqj_test_config_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("# comment\ntraining:\n  epochs: 3\n  lr_scheduler: {name: cosine\n", f);
    fclose(f);
    assert_status(ctx, vqj_config_load(ctx, path, &cfg), VQJ_ERR_PARSE);
    char want[64];
    snprintf(want, sizeof want, "%s:5:1: ", path);
    if (!strstr(vqj_last_error(), want))
        fail_msg("'%s' lacks '%s'", vqj_last_error(), want);
    unlink(path);
    vqj_context_destroy(ctx);
}

/* Unknown keys and sections warn and are skipped; empty input and an empty
 * section are the defaults; a second document is named in a warning. */
static void test_unknown_keys_warn(void **state)
{
    (void)state;
    vqj_context *ctx = log_context();
    vqj_config *cfg = parse_ok(ctx, "wandb:\n  project: x\n  entity: y\n"
                                    "training:\n  epochs: 4\n  lerning_rate: 1\n"
                                    "data: {}\nsigreg:\n"
                                    "pre_tokenized: null\n");
    assert_int_equal(num_messages, 3);
    assert_string_equal(messages[0], "t.yaml:1: key wandb is unknown and is ignored");
    assert_string_equal(messages[1],
                        "t.yaml:6: key training.lerning_rate is unknown and is ignored");
    assert_string_equal(messages[2],
                        "t.yaml:9: key pre_tokenized is not implemented and is ignored");
    vqj_run_params rp = {.size = sizeof rp};
    assert_ok(ctx, vqj_config_run(cfg, &rp));
    assert_int_equal(rp.epochs, 4);
    vqj_config_destroy(cfg);

    num_messages = 0;
    cfg = parse_ok(ctx, "");
    assert_int_equal(num_messages, 0);
    vqj_config_destroy(cfg);
    cfg = parse_ok(ctx, "# only a comment\n");
    vqj_config_destroy(cfg);
    cfg = NULL;
    assert_ok(ctx, vqj_config_parse(ctx, NULL, 0, NULL, &cfg));
    vqj_config_destroy(cfg);

    num_messages = 0;
    cfg = parse_ok(ctx, "seed: 1\n---\nseed: 2\n");
    assert_int_equal(num_messages, 1);
    assert_non_null(strstr(messages[0], "t.yaml:3: only the first YAML document is read"));
    assert_ok(ctx, vqj_config_run(cfg, &rp));
    assert_int_equal(rp.seed, 1);
    vqj_config_destroy(cfg);
    vqj_context_destroy(ctx);
}

/* model.projection_* and loss.projection_* describe one head: loss wins,
 * with a warning when they differ; model alone is used. */
static void test_projection_twins(void **state)
{
    (void)state;
    vqj_context *ctx = log_context();
    vqj_config *cfg = parse_ok(ctx, "model:\n  projection_dim: 128\n  projection_layers: 2\n"
                                    "loss:\n  projection_dim: 64\n  projection_layers: 2\n");
    assert_int_equal(num_messages, 1);
    assert_string_equal(messages[0], "t.yaml:2: model.projection_dim is 128 but "
                                     "loss.projection_dim is 64 (line 5); loss.projection_dim "
                                     "is used");
    vqj_predictor_params pp;
    vqj_predictor_params_default(&pp);
    assert_ok(ctx, vqj_config_predictor_params(cfg, &pp));
    assert_int_equal(pp.projection_dim, 64);
    vqj_loss_params lp;
    vqj_loss_params_default(&lp);
    assert_ok(ctx, vqj_config_loss_params(cfg, &lp));
    assert_int_equal(lp.projection_dim, 64);
    /* Written back, the two agree. */
    char *text = write_yaml(ctx, cfg);
    assert_non_null(strstr(text, "model:\n  projection_dim: 64\n"));
    free(text);
    vqj_config_destroy(cfg);

    num_messages = 0;
    cfg = parse_ok(ctx, "model:\n  projection_layers: 4\n");
    assert_int_equal(num_messages, 0);
    vqj_predictor_params_default(&pp);
    assert_ok(ctx, vqj_config_predictor_params(cfg, &pp));
    assert_int_equal(pp.projection_layers, 4);
    vqj_config_destroy(cfg);
    vqj_context_destroy(ctx);
}

static void test_api_errors(void **state)
{
    (void)state;
    vqj_context *ctx = log_context();
    vqj_config *cfg = NULL;
    assert_status(ctx, vqj_config_default(ctx, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqj_config_default(NULL, &cfg), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_config_parse(ctx, NULL, 3, "x", &cfg), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_config_load(ctx, NULL, &cfg), VQJ_ERR_INVALID_ARGUMENT);
    assert_null(cfg);
    assert_ok(ctx, vqj_config_default(ctx, &cfg));
    vqj_tokenizer_params tp;
    vqj_tokenizer_params_default(&tp);
    tp.size = 8;
    assert_status(ctx, vqj_config_tokenizer_params(cfg, &tp), VQJ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vqj_last_error(), "out->size is 8"));
    vqj_run_params rp = {.size = 0};
    assert_status(ctx, vqj_config_run(cfg, &rp), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_config_run(cfg, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_int_equal(vqj_config_encoder_params(NULL, NULL), VQJ_ERR_INVALID_ARGUMENT);
    assert_status(ctx, vqj_config_write_yaml(cfg, NULL), VQJ_ERR_INVALID_ARGUMENT);
    /* A newer caller's larger struct keeps its own tail. */
    struct {
        vqj_run_params r;
        int extra;
    } big;
    memset(&big, 0, sizeof big);
    big.r.size = sizeof big;
    big.extra = 77;
    assert_ok(ctx, vqj_config_run(cfg, &big.r));
    assert_int_equal(big.r.size, sizeof big);
    assert_int_equal(big.extra, 77);
    assert_int_equal(big.r.epochs, 30);
    vqj_config_destroy(cfg);
    vqj_config_destroy(NULL);
    vqj_context_destroy(ctx);
}

/* ------------------------------------------- ranges agree with modules */

/* Create every module from the config (and run the cheap checks of the
 * others) - what a program driving training does with it. */
static void create_all(vqj_context *ctx, const vqj_config *cfg, const char *what)
{
    vqj_tokenizer_params tkp;
    vqj_encoder_params ep;
    vqj_codebook_params cp;
    vqj_predictor_params pp;
    vqj_loss_params lp;
    vqj_optimizer_params op;
    vqj_trainer_params tp;
    vqj_dataset_params dp;
    vqj_augment_params ap;
    vqj_synthetic_params sp;
    vqj_run_params rp = {.size = sizeof rp};
    vqj_tokenizer_params_default(&tkp);
    vqj_encoder_params_default(&ep);
    vqj_codebook_params_default(&cp);
    vqj_predictor_params_default(&pp);
    vqj_loss_params_default(&lp);
    vqj_optimizer_params_default(&op);
    vqj_trainer_params_default(&tp);
    vqj_dataset_params_default(&dp);
    vqj_augment_params_default(&ap);
    vqj_synthetic_params_default(&sp);
    assert_ok(ctx, vqj_config_tokenizer_params(cfg, &tkp));
    assert_ok(ctx, vqj_config_encoder_params(cfg, &ep));
    assert_ok(ctx, vqj_config_codebook_params(cfg, &cp));
    assert_ok(ctx, vqj_config_predictor_params(cfg, &pp));
    assert_ok(ctx, vqj_config_loss_params(cfg, &lp));
    assert_ok(ctx, vqj_config_optimizer_params(cfg, &op));
    assert_ok(ctx, vqj_config_trainer_params(cfg, &tp));
    assert_ok(ctx, vqj_config_dataset_params(cfg, &dp));
    assert_ok(ctx, vqj_config_augment_params(cfg, &ap));
    assert_ok(ctx, vqj_config_synthetic_params(cfg, &sp));
    assert_ok(ctx, vqj_config_run(cfg, &rp));

    vqj_tokens *tokens = NULL;
    vqj_trainer *tr = NULL;
    vqj_status st;
#define CREATE(call)                                                                           \
    if ((st = (call)) != VQJ_OK)                                                               \
        fail_msg("%s: %s failed: %s", what, #call, vqj_last_error());
    CREATE(vqj_tokens_create(ctx, &tkp, &tokens));
    /* Every module and the trainer over them, made from these params. */
    CREATE(vqj_trainer_create_from_config(ctx, cfg, &tr));
    vqj_dataset_params resolved;
    CREATE(vqji_dataset_params_resolve(ctx, &dp, &resolved));
    if (sp.num_examples <= 10) {
        vqj_dataset *ds = NULL;
        CREATE(vqj_dataset_synthetic(ctx, &dp, &sp, &ds));
        vqj_dataset_destroy(ds);
    }
    const uint8_t cell = 3;
    uint8_t out = 0;
    const vqj_grid g = {.height = 1, .width = 1, .cells = &cell};
    CREATE(vqj_augment_grid(ctx, &ap, 1, &g, &out));
    vqj_early_stopping es;
    CREATE(vqj_early_stopping_init(&es, rp.early_stopping_patience, rp.early_stopping_min_delta,
                                   rp.early_stopping_mode));
    vqj_metrics_window *win = NULL;
    CREATE(vqj_metrics_window_create(ctx, pp.projection_dim, rp.diagnostics_max_samples,
                                     cp.enabled ? cp.num_embeddings : 0, &win));
#undef CREATE
    vqj_metrics_window_destroy(win);
    vqj_trainer_destroy(tr);
    vqj_tokens_destroy(tokens);
}

/* The accepted ends of every range (and every enum value): what the config
 * lets through, the modules must accept. The table in config.c is the one
 * place those ranges are written; this keeps it honest. */
static void test_boundaries_accepted_by_modules(void **state)
{
    (void)state;
    /* The ranges are the question here, not the memory a run at the
     * largest sizes would need (the modules allocate for a batch lazily):
     * the memory check of vqj_trainer_create_from_config() is off. */
    assert_int_equal(setenv("VQJEPA_MEMORY_LIMIT", "0", 1), 0);
    static const char *const cases[][6] = {
        {"tokenizer.max_objects: 1"},
        {"tokenizer.max_objects: 4096"},
        {"tokenizer.max_color_features: 0"},
        {"tokenizer.max_color_features: 10"},
        {"tokenizer.connectivity: 8"},
        {"tokenizer.background: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"},
        {"tokenizer.background: 9"},
        {"object_encoder.hidden_dim: 1", "object_encoder.relational_heads: 1"},
        {"object_encoder.relational_heads: 8"},
        {"object_encoder.relational_layers: 0"},
        {"object_encoder.relational_layers: 64"},
        {"object_encoder.relational_dropout: 0.9999999"},
        {"object_encoder.relational: false"},
        {"object_encoder.num_embeddings: 1"},
        {"object_encoder.num_embeddings: 65536", "object_encoder.hidden_dim: 1",
         "object_encoder.relational_heads: 1"},
        {"object_encoder.commitment_cost: 0"},
        {"object_encoder.ema_decay: 0"},
        {"object_encoder.ema_decay: 0.9999999"},
        {"object_encoder.vq_refresh_interval: 1"},
        {"object_encoder.vq_refresh_interval: 2147483647"},
        {"object_encoder.vq_refresh_usage_threshold: 0"},
        {"object_encoder.vq_refresh_usage_threshold: 1"},
        {"object_encoder.vq_enabled: false"},
        {"object_encoder.vq_kmeans_init: false"},
        {"loss.projection_dim: 1"},
        {"loss.projection_layers: 1"},
        {"loss.projection_layers: 16"},
        {"model.projection_layers: 16"},
        {"loss.projection_activation: none"},
        {"loss.projection_activation: tanh"},
        {"loss.projection_activation: gelu"},
        {"model.aggregator: last"},
        {"model.aggregator: attention"},
        {"model.aggregator: gru"},
        {"data.context_window: 1"},
        {"data.context_window: 64"},
        {"data.target_offset: 4096"},
        {"data.validation.split: 0"},
        {"data.validation.split: 0.9999999"},
        {"data.max_examples_per_task: 0"},
        {"data.max_examples_per_task: 2147483647"},
        {"loss.queue_size: 0"},
        {"loss.queue_size: 1048576", "loss.projection_dim: 1"},
        {"sigreg.num_slices: 1"},
        {"sigreg.num_slices: 65536", "loss.projection_dim: 1"},
        {"sigreg.num_points: 2"},
        {"sigreg.num_points: 256"},
        {"loss.temperature: 0.1", "loss.temperature_min: 0.1", "loss.temperature_max: 0.1"},
        {"loss.temperature: 1e-30", "loss.temperature_min: 1e-30"},
        {"loss.learnable_temperature: false"},
        {"sigreg.weight: 0", "invariance.color_weight: 0", "invariance.translation_weight: 0",
         "invariance.symmetry_weight: 0", "relational_loss.weight: 0"},
        {"relational_loss.context_self_weight: 0", "loss.infonce_weight: 0"},
        {"optimizer.name: adamw"},
        {"optimizer.lr: 0", "optimizer.weight_decay: 0"},
        {"optimizer.betas: [0, 0.9999999]"},
        {"optimizer.eps: 1e-30"},
        {"training.grad_clip.max_norm: 0"},
        {"training.lr_scheduler.min_lr_scale: 0"},
        {"training.lr_scheduler.min_lr_scale: 1"},
        {"training.lr_scheduler.warmup_steps: 0", "training.lr_scheduler.total_steps: 0"},
        {"training.lr_scheduler.warmup_steps: 9223372036854775807",
         "training.lr_scheduler.total_steps: 9223372036854775807"},
        {"training.lr_scheduler.name: constant"},
        {"training.lr_scheduler.name: linear"},
        {"training.grad_accum_steps: 1"},
        {"training.grad_accum_steps: 1024"},
        {"loss.target_ema_decay: 0"},
        {"loss.target_ema_decay: 1"},
        {"loss.use_target_encoder: false"},
        {"invariance.translation_max_delta: 0"},
        {"invariance.translation_max_delta: 1"},
        {"invariance.symmetry_modes: []"},
        {"invariance.symmetry_modes: [vertical]"},
        {"invariance.symmetry_modes: horizontal"},
        {"augmentations.mask_ratio: 0"},
        {"augmentations.mask_ratio: 1"},
        {"augmentations.random_crop_radius: 0"},
        {"augmentations.random_crop_radius: 256"},
        {"augmentations.gaussian_noise_std: 0"},
        {"augmentations.min_grid_size_for_crop: 0"},
        {"augmentations.min_grid_size_for_crop: 2147483647"},
        {"synthetic.min_side: 4", "synthetic.max_side: 4", "synthetic.min_colors: 10",
         "synthetic.max_colors: 10", "synthetic.max_primitives: 16"},
        {"synthetic.min_side: 256", "synthetic.max_side: 256", "synthetic.min_colors: 2",
         "synthetic.max_colors: 2", "synthetic.max_primitives: 1"},
        {"training.early_stopping.patience: 0", "training.early_stopping.min_delta: 0",
         "training.early_stopping.mode: max"},
        {"diagnostics.embedding_metrics.max_samples: 2"},
        {"training.device: cpu"},
    };
    vqj_context *ctx = log_context();
    char text[4096];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *over[7] = {0};
        for (int j = 0; j < 6 && cases[i][j]; j++)
            over[j] = cases[i][j];
        yaml_from(small, over, text, sizeof text);
        num_messages = 0;
        vqj_config *cfg = NULL;
        if (vqj_config_parse(ctx, text, strlen(text), "t.yaml", &cfg) != VQJ_OK)
            fail_msg("case %zu (%s) was refused: %s\n%s", i, cases[i][0],
                     vqj_last_error(), text);
        assert_int_equal(num_messages, 0);
        create_all(ctx, cfg, cases[i][0]);
        vqj_config_destroy(cfg);
    }
    /* The defaults and the reference files too. */
    vqj_config *cfg = NULL;
    assert_ok(ctx, vqj_config_default(ctx, &cfg));
    create_all(ctx, cfg, "defaults");
    vqj_config_destroy(cfg);
    vqj_context_destroy(ctx);
    assert_int_equal(unsetenv("VQJEPA_MEMORY_LIMIT"), 0);
}

/* ------------------------------------------------------------ the docs */

static void test_docs_name_every_key(void **state)
{
    (void)state;
    FILE *f = fopen("docs/config.md", "rb");
    if (!f)
        fail_msg("docs/config.md is missing (run from the repository root)");
    static char doc[1 << 17];
    const size_t n = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[n] = '\0';
    char want[128];
    for (size_t i = 0; i < vqji_config_num_keys(); i++) {
        snprintf(want, sizeof want, "`%s`", vqji_config_key(i));
        if (!strstr(doc, want))
            fail_msg("docs/config.md does not name %s", want);
    }
    for (size_t i = 0; i < vqji_config_num_ignored(); i++) {
        snprintf(want, sizeof want, "`%s", vqji_config_ignored(i));
        if (!strstr(doc, want))
            fail_msg("docs/config.md does not name the ignored %s", want);
    }
    assert_null(vqji_config_key(vqji_config_num_keys()));
    assert_null(vqji_config_ignored(vqji_config_num_ignored()));
}

/* Every key of the reference files is either read or on the ignored list,
 * and the writer writes every key it reads (no extension in a reference
 * file). */
static void test_key_lines(void **state)
{
    (void)state;
    vqj_context *ctx = log_context();
    vqj_config *cfg = parse_ok(ctx, "# x\ntraining:\n  grad_clip:\n    max_norm: 1.0\n");
    assert_int_equal(vqji_config_key_line(cfg, "training.grad_clip.max_norm"), 4);
    assert_int_equal(vqji_config_key_line(cfg, "training.epochs"), 0);
    assert_int_equal(vqji_config_key_line(cfg, "no.such"), 0);
    vqj_config_destroy(cfg);
    if (load_reference(ctx, "jepa_vq_gentle.yaml", &cfg)) {
        for (size_t i = 0; i < vqji_config_num_keys(); i++) {
            const int line = vqji_config_key_line(cfg, vqji_config_key(i));
            if (vqji_config_key_is_extension(i))
                assert_int_equal(line, 0);
            else if (!line)
                fail_msg("jepa_vq_gentle.yaml does not set %s", vqji_config_key(i));
        }
        vqj_config_destroy(cfg);
    }
    vqj_context_destroy(ctx);
}

/* The quantizer keys (docs/config.md): parsed into the codebook's params,
 * FSQ's K reported as the product of its levels, written back and parsed
 * again to the same params; bad lists get the key's range. */
static void test_quantizer_keys(void **state)
{
    (void)state;
    vqj_context *ctx = test_context();
    const char *text = "object_encoder:\n"
                       "  quantizer: fsq\n"
                       "  fsq_levels: [7, 5, 3]\n"
                       "  code_dim: 0\n"
                       "  dead_code_threshold: 0.5\n"
                       "  gradient_estimator: rotation\n";
    vqj_config *cfg = parse_ok(ctx, text);
    vqj_codebook_params p;
    vqj_codebook_params_default(&p);
    assert_ok(ctx, vqj_config_codebook_params(cfg, &p));
    assert_int_equal(p.quantizer, VQJ_QUANTIZER_FSQ);
    assert_int_equal(p.num_embeddings, 7 * 5 * 3);
    assert_int_equal(p.fsq_levels[0], 7);
    assert_int_equal(p.fsq_levels[2], 3);
    assert_int_equal(p.fsq_levels[3], 0);
    assert_float_equal(p.dead_code_threshold, 0.5f, 0.0f);
    assert_int_equal(p.gradient_estimator, VQJ_GRADIENT_ROTATION);
    char *yaml = write_yaml(ctx, cfg);
    assert_non_null(strstr(yaml, "fsq_levels: [7, 5, 3]"));
    vqj_config *again = parse_ok(ctx, yaml);
    vqj_codebook_params p2;
    vqj_codebook_params_default(&p2);
    assert_ok(ctx, vqj_config_codebook_params(again, &p2));
    assert_memory_equal(&p, &p2, sizeof p);
    free(yaml);
    vqj_config_destroy(again);
    vqj_config_destroy(cfg);
    cfg = parse_ok(ctx, "object_encoder:\n  quantizer: simvq\n  code_dim: 32\n");
    assert_ok(ctx, vqj_config_codebook_params(cfg, &p));
    assert_int_equal(p.quantizer, VQJ_QUANTIZER_SIMVQ);
    assert_int_equal(p.code_dim, 32);
    assert_int_equal(p.num_embeddings, 768);
    vqj_config_destroy(cfg);
    cfg = parse_ok(ctx, "object_encoder:\n  quantizer: residual\n  num_quantizers: 3\n"
                        "  dead_code_max_per_step: 5\n");
    assert_ok(ctx, vqj_config_codebook_params(cfg, &p));
    assert_int_equal(p.quantizer, VQJ_QUANTIZER_RESIDUAL);
    assert_int_equal(p.num_quantizers, 3);
    assert_int_equal(p.dead_code_max_per_step, 5);
    assert_int_equal(p.num_embeddings, 768); /* at each level */
    vqj_config_destroy(cfg);
    parse_fails(ctx, "object_encoder:\n  num_quantizers: 17\n", VQJ_ERR_INVALID_ARGUMENT,
                "object_encoder.num_quantizers");
    parse_fails(ctx, "object_encoder:\n  dead_code_max_per_step: -1\n",
                VQJ_ERR_INVALID_ARGUMENT, "object_encoder.dead_code_max_per_step");
    parse_fails(ctx, "object_encoder:\n  fsq_levels: [8, 1]\n", VQJ_ERR_INVALID_ARGUMENT,
                "[2, 256]");
    parse_fails(ctx, "object_encoder:\n  fsq_levels: 8\n", VQJ_ERR_INVALID_ARGUMENT,
                "a list of 1 to 8");
    parse_fails(ctx, "object_encoder:\n  quantizer: vq\n", VQJ_ERR_INVALID_ARGUMENT,
                "object_encoder.quantizer");
    vqj_context_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_are_design_section_6),
        cmocka_unit_test(test_defaults_are_the_modules_defaults),
        cmocka_unit_test(test_reference_files_warn_exactly),
        cmocka_unit_test(test_reference_files_values),
        cmocka_unit_test(test_gentle_file_is_the_default),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_written_floats_have_a_point),
        cmocka_unit_test(test_invalid_values),
        cmocka_unit_test(test_malformed_yaml),
        cmocka_unit_test(test_unknown_keys_warn),
        cmocka_unit_test(test_projection_twins),
        cmocka_unit_test(test_api_errors),
        cmocka_unit_test(test_boundaries_accepted_by_modules),
        cmocka_unit_test(test_docs_name_every_key),
        cmocka_unit_test(test_key_lines),
        cmocka_unit_test(test_quantizer_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
