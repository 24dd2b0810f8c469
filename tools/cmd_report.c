/* `vqjepa report RUN_DIR [-o FILE.html]`: one self-contained HTML page with
 * SVG plots of a run (no scripts, no outside files), so it opens anywhere. */
#include "cli.h"
#include "runlog.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct series {
    const char *label;
    const char *color;
    double *x, *y;
    size_t n;
} series;

/* (x, y) pairs of the records that have both numbers. */
static series collect(const json_t *records, const char *xpath, const char *ypath,
                      const char *label, const char *color)
{
    size_t cap = json_array_size(records);
    series s = {label, color, malloc((cap + 1) * sizeof(double)),
                malloc((cap + 1) * sizeof(double)), 0};
    size_t i;
    const json_t *rec;
    json_array_foreach(records, i, rec)
    {
        double x = runlog_number(rec, xpath), y = runlog_number(rec, ypath);
        if (isfinite(x) && isfinite(y)) {
            s.x[s.n] = x;
            s.y[s.n] = y;
            s.n++;
        }
    }
    return s;
}

static void series_free(series *s)
{
    free(s->x);
    free(s->y);
}

typedef struct hline {
    double y;
    const char *label;
    const char *color;
} hline;

static void escape(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else
            fputc(*s, f);
    }
}

/* A line plot: axes with 5 ticks each, one polyline per series, dashed
 * threshold lines, a legend. An empty plot says that there is no data. */
static void plot(FILE *f, const char *id, const char *title, const char *xlabel, series *s,
                 size_t ns, const hline *h, size_t nh, int percent)
{
    const double W = 640, H = 300, L = 84, R = 16, TOP = 28, BOT = 44;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    size_t points = 0;
    for (size_t k = 0; k < ns; k++)
        for (size_t i = 0; i < s[k].n; i++) {
            x0 = fmin(x0, s[k].x[i]);
            x1 = fmax(x1, s[k].x[i]);
            y0 = fmin(y0, s[k].y[i]);
            y1 = fmax(y1, s[k].y[i]);
            points++;
        }
    for (size_t k = 0; k < nh && points; k++) {
        y0 = fmin(y0, h[k].y);
        y1 = fmax(y1, h[k].y);
    }
    fprintf(f, "<figure><svg id=\"%s\" class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" "
               "width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" role=\"img\">\n",
            id, W, H, W, H);
    fprintf(f, "<title>");
    escape(f, title);
    fprintf(f, "</title>\n<text x=\"%.0f\" y=\"18\" class=\"t\">", L);
    escape(f, title);
    fprintf(f, "</text>\n");
    if (!points) {
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" class=\"empty\">no data</text></svg></figure>\n",
                W / 2 - 30, H / 2);
        return;
    }
    if (x1 == x0)
        x1 = x0 + 1;
    if (y1 == y0) {
        y0 -= 0.5 * (fabs(y0) + 1e-3);
        y1 += 0.5 * (fabs(y1) + 1e-3);
    }
    double pad = 0.05 * (y1 - y0);
    y0 -= pad;
    y1 += pad;
#define PX(v) (L + ((v) - x0) / (x1 - x0) * (W - L - R))
#define PY(v) (H - BOT - ((v) - y0) / (y1 - y0) * (H - TOP - BOT))
    fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" class=\"frame\"/>\n", L,
            TOP, W - L - R, H - TOP - BOT);
    /* Enough digits that neighbouring ticks differ, however narrow the range. */
    double mag = fmax(fabs(y0), fabs(y1));
    int digits = 3 + (int)fmax(0.0, ceil(log10(mag / (y1 - y0))));
    if (digits > 9)
        digits = 9;
    for (int t = 0; t <= 4; t++) {
        double yv = y0 + (y1 - y0) * t / 4, xv = x0 + (x1 - x0) * t / 4;
        if (percent)
            fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" class=\"yt\">%.1f%%</text>\n", L - 4,
                    PY(yv) + 4, 100 * yv);
        else
            fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" class=\"yt\">%.*g</text>\n", L - 4,
                    PY(yv) + 4, digits, yv);
        fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" class=\"xt\">%.4g</text>\n", PX(xv), H - BOT + 16,
                xv);
    }
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" class=\"xl\">", (L + W - R) / 2, H - 8);
    escape(f, xlabel);
    fprintf(f, "</text>\n");
    for (size_t k = 0; k < nh; k++)
        fprintf(f,
                "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                "class=\"threshold\"/><text x=\"%.0f\" y=\"%.1f\" class=\"hl\" fill=\"%s\">%s</text>\n",
                L, W - R, PY(h[k].y), PY(h[k].y), h[k].color, W - R - 4, PY(h[k].y) - 3,
                h[k].color, h[k].label);
    for (size_t k = 0; k < ns; k++) {
        if (!s[k].n)
            continue;
        fprintf(f, "<polyline class=\"series\" fill=\"none\" stroke=\"%s\" points=\"", s[k].color);
        for (size_t i = 0; i < s[k].n; i++)
            fprintf(f, "%.1f,%.1f ", PX(s[k].x[i]), PY(s[k].y[i]));
        fprintf(f, "\"/>\n");
        if (s[k].n == 1)
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", PX(s[k].x[0]),
                    PY(s[k].y[0]), s[k].color);
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" class=\"lg\" fill=\"%s\">", L + 8 + 150.0 * k,
                TOP + 14, s[k].color);
        escape(f, s[k].label);
        fprintf(f, "</text>\n");
    }
#undef PX
#undef PY
    fprintf(f, "</svg></figure>\n");
}

/* The run's closing evaluation (RUN/eval.json, docs/evaluation.md) as a
 * table beside its baselines; nothing when the run has none. */
static void eval_section(FILE *f, const char *run_dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/eval.json", run_dir);
    json_t *e = json_load_file(path, 0, NULL);
    if (!json_is_object(e)) {
        json_decref(e);
        return;
    }
    static const struct {
        const char *name, *prefix;
    } rows[] = {{"model", "retrieval"},
                {"init (untrained)", "baseline_init"},
                {"features", "baseline_features"},
                {"analogy", "baseline_analogy"}};
    static const char *const cols[] = {"top1", "top5", "hard_top1", "hard_top5"};
    fprintf(f, "<h2>Evaluation on the validation split</h2>\n<p>%.0f pairs, %.0f candidate "
               "outputs (chance %.2f%%); codes: usage %.1f%%, perplexity %.1f "
               "(docs/evaluation.md).</p>\n<table border=\"1\" cellpadding=\"4\">"
               "<tr><th>ranking</th><th>top-1</th><th>top-5</th><th>hard top-1</th>"
               "<th>hard top-5</th></tr>\n",
            json_number_value(json_object_get(e, "pairs")),
            json_number_value(json_object_get(e, "candidates")),
            100 * json_number_value(json_object_get(e, "retrieval_chance")),
            100 * json_number_value(json_object_get(e, "code_usage")),
            json_number_value(json_object_get(e, "code_perplexity")));
    for (size_t r = 0; r < sizeof rows / sizeof *rows; r++) {
        fprintf(f, "<tr><td>%s</td>", rows[r].name);
        for (size_t c = 0; c < sizeof cols / sizeof *cols; c++) {
            char key[64];
            snprintf(key, sizeof key, "%s_%s", rows[r].prefix, cols[c]);
            const json_t *v = json_object_get(e, key);
            if (json_is_number(v))
                fprintf(f, "<td>%.1f%%</td>", 100 * json_number_value(v));
            else
                fprintf(f, "<td>n/a</td>");
        }
        fprintf(f, "</tr>\n");
    }
    fprintf(f, "</table>\n");
    json_decref(e);
}

int report_write(const char *run_dir, const char *out_path)
{
    json_t *loss = runlog_read(run_dir, RUNLOG_LOSS);
    json_t *epoch = runlog_read(run_dir, RUNLOG_EPOCH);
    json_t *emb = runlog_read(run_dir, RUNLOG_EMBEDDING);
    int rc = CLI_FAILED;
    FILE *f = NULL;
    if (!loss || !epoch || !emb)
        goto done;
    if (!json_array_size(loss) && !json_array_size(epoch) && !json_array_size(emb)) {
        fprintf(stderr, "vqjepa report: %s holds no %s, %s or %s\n", run_dir, RUNLOG_LOSS,
                RUNLOG_EPOCH, RUNLOG_EMBEDDING);
        rc = CLI_BAD_INPUT;
        goto done;
    }
    char tmp[4200];
    if (!(f = runlog_create(out_path, tmp, sizeof tmp)))
        goto done;
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>"
               "vqjepa run ");
    escape(f, run_dir);
    fprintf(f, "</title>\n<style>\nbody{font-family:sans-serif;margin:24px;max-width:1360px}"
               "figure{display:inline-block;margin:8px}.frame{fill:none;stroke:#999}"
               ".series{stroke-width:1.6}.threshold{stroke-dasharray:6 4}"
               ".t{font-weight:bold;font-size:14px}.yt{font-size:11px;text-anchor:end}"
               ".xt{font-size:11px;text-anchor:middle}.xl{font-size:12px;text-anchor:middle}"
               ".hl{font-size:11px;text-anchor:end}.lg{font-size:12px}.empty{fill:#999}\n"
               "</style></head><body>\n<h1>vqjepa run ");
    escape(f, run_dir);
    fprintf(f, "</h1>\n<p>%zu logged steps, %zu epochs, %zu diagnostics intervals. Thresholds are "
               "the seed's health checks (DESIGN.md section 6).</p>\n",
            json_array_size(loss), json_array_size(epoch), json_array_size(emb));

    eval_section(f, run_dir);

    series s[2];
    s[0] = collect(loss, "step", "loss.total", "train (per step)", "#1f77b4");
    s[1] = collect(epoch, "step", "val_loss", "validation (per epoch)", "#d62728");
    plot(f, "loss", "Loss", "optimizer step", s, 2, NULL, 0, 0);
    series_free(&s[0]);
    series_free(&s[1]);

    series u[4];
    u[0] = collect(emb, "step", "vq_usage_ratio", "context + target", "#2ca02c");
    u[1] = collect(emb, "step", "vq_usage_context", "context", "#1f77b4");
    u[2] = collect(emb, "step", "vq_usage_target", "target", "#ff7f0e");
    u[3] = collect(emb, "step", "val_vq_usage_ratio", "validation", "#9467bd");
    hline usage_alert = {0.08, "alert 8%", "#d62728"};
    plot(f, "vq_usage", "VQ codebook usage", "optimizer step", u, 4, &usage_alert, 1, 1);
    for (int k = 0; k < 4; k++)
        series_free(&u[k]);

    s[0] = collect(emb, "step", "vq_perplexity", "training window", "#2ca02c");
    s[1] = collect(emb, "step", "val_vq_perplexity", "validation", "#9467bd");
    plot(f, "vq_perplexity", "VQ perplexity (codes in effective use)", "optimizer step", s, 2,
         NULL, 0, 0);
    series_free(&s[0]);
    series_free(&s[1]);

    s[0] = collect(emb, "step", "vq_dead_codes", "training window", "#2ca02c");
    s[1] = collect(emb, "step", "val_vq_dead_codes", "validation", "#9467bd");
    plot(f, "vq_dead_codes", "VQ dead codes (no assignment in the window)", "optimizer step", s,
         2, NULL, 0, 0);
    series_free(&s[0]);
    series_free(&s[1]);

    s[0] = collect(emb, "step", "context.effective_rank", "context", "#1f77b4");
    s[1] = collect(emb, "step", "target.effective_rank", "target", "#ff7f0e");
    hline ranks[] = {{3, "context alert 3", "#d62728"},
                     {5, "context warn 5 / target alert 5", "#e377c2"},
                     {10, "target warn 10", "#bcbd22"}};
    plot(f, "effective_rank", "Effective rank", "optimizer step", s, 2, ranks, 3, 0);
    series_free(&s[0]);
    series_free(&s[1]);

    static const struct {
        const char *id, *title, *path, *color;
    } simple[] = {{"temperature", "Temperature", "temperature", "#9467bd"},
                  {"grad_norm", "Gradient norm (before clipping)", "grad_norm", "#8c564b"},
                  {"lr", "Learning rate", "lr", "#17becf"}};
    for (size_t k = 0; k < sizeof simple / sizeof *simple; k++) {
        s[0] = collect(loss, "step", simple[k].path, simple[k].title, simple[k].color);
        plot(f, simple[k].id, simple[k].title, "optimizer step", s, 1, NULL, 0, 0);
        series_free(&s[0]);
    }
    fprintf(f, "</body></html>\n");
    rc = CLI_OK;
done:
    if (f && runlog_commit(f, tmp, out_path, rc == CLI_OK))
        rc = CLI_FAILED;
    json_decref(loss);
    json_decref(epoch);
    json_decref(emb);
    return rc;
}

int cmd_report(int argc, char **argv)
{
    const char *dir = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0) && i + 1 < argc)
            out = argv[++i];
        else if (strcmp(argv[i], "--help") == 0) {
            printf("usage: vqjepa report RUN_DIR [-o FILE.html]\n"
                   "Writes one self-contained HTML page with SVG plots of a training run\n"
                   "(default RUN_DIR/report.html) and prints its path.\n");
            return CLI_OK;
        } else if (argv[i][0] == '-' || dir) {
            fprintf(stderr, "vqjepa report: unexpected argument '%s'\n", argv[i]);
            return CLI_BAD_INPUT;
        } else
            dir = argv[i];
    }
    if (!dir) {
        fprintf(stderr, "usage: vqjepa report RUN_DIR [-o FILE.html]\n");
        return CLI_BAD_INPUT;
    }
    char def[4096];
    if (!out) {
        snprintf(def, sizeof def, "%s/report.html", dir);
        out = def;
    }
    int rc = report_write(dir, out);
    if (rc == CLI_OK)
        printf("%s\n", out);
    return rc;
}
