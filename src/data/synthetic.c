/* The built-in synthetic generator (DESIGN.md section 1): random grids of a
 * few objects and short programs of grid primitives, assembled into
 * demo/query examples the way ARC tasks are (see vqj_dataset_synthetic()).
 *
 * Example i draws everything from its own RNG stream (seed, i), in a fixed
 * order: colors, palette, program, then the inputs. So examples do not
 * depend on one another, and vqji_synthetic_example_program() can redraw an
 * example's program for the tests. */
#include "data/data.h"
#include "core/params.h"

#include <stdlib.h>
#include <string.h>

#define MAX_EXAMPLES VQJI_HI_SYNTHETIC_NUM_EXAMPLES
/* Largest object extent; shapes are also kept within half the grid. */
#define MAX_SHAPE 6
#define PLACEMENT_TRIES 24

void vqj_synthetic_params_default(vqj_synthetic_params *params)
{
    if (!params)
        return;
    *params = (vqj_synthetic_params){
        .size = sizeof *params,
        .num_examples = 20000,
        .seed = 0,
        .min_side = 6,
        .max_side = 14,
        .min_colors = 4,
        .max_colors = 6,
        .max_primitives = 3,
    };
}

static vqj_status resolve_params(const vqj_context *ctx, const vqj_synthetic_params *in,
                                 vqj_synthetic_params *out)
{
    vqj_synthetic_params p;
    vqj_synthetic_params_default(&p);
    vqj_status st = vqji_params_copy(ctx, &p, sizeof p, in, VQJI_V1_SYNTHETIC_PARAMS,
                                     "vqj_synthetic_params");
    if (st)
        return st;
    if (p.num_examples < 1 || p.num_examples > MAX_EXAMPLES)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_synthetic_params.num_examples is %d; must be 1..%d", p.num_examples,
                         MAX_EXAMPLES);
    /* 4 x 4 is the smallest grid that holds 9 colors and some background. */
    if (p.min_side < VQJI_LO_SYNTHETIC_SIDE || p.min_side > p.max_side ||
        p.max_side > VQJI_HI_SYNTHETIC_SIDE)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_synthetic_params: min_side %d, max_side %d; need %d <= min_side <= "
                         "max_side <= %d",
                         p.min_side, p.max_side, VQJI_LO_SYNTHETIC_SIDE, VQJI_HI_SYNTHETIC_SIDE);
    if (p.min_colors < VQJI_LO_SYNTHETIC_COLORS || p.min_colors > p.max_colors ||
        p.max_colors > VQJI_HI_SYNTHETIC_COLORS)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_synthetic_params: min_colors %d, max_colors %d; need %d <= "
                         "min_colors <= max_colors <= %d (background included)",
                         p.min_colors, p.max_colors, VQJI_LO_SYNTHETIC_COLORS,
                         VQJI_HI_SYNTHETIC_COLORS);
    if (p.max_primitives < 1 || p.max_primitives > VQJI_MAX_PRIMITIVES)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_synthetic_params.max_primitives is %d; must be 1..%d",
                         p.max_primitives, VQJI_MAX_PRIMITIVES);
    *out = p;
    return VQJ_OK;
}

/* ------------------------------------------------------------ primitives */

static void fill_holes(int h, int w, const uint8_t *in, uint8_t color, uint8_t *out,
                       int32_t *queue)
{
    /* Mark the background reachable from the border with 255 (not a color),
     * then what is still 0 is enclosed. */
    const int n = h * w;
    memcpy(out, in, (size_t)n);
    int head = 0, tail = 0;
    for (int i = 0; i < n; i++) {
        const int y = i / w, x = i % w;
        if ((y == 0 || y == h - 1 || x == 0 || x == w - 1) && out[i] == 0) {
            out[i] = 255;
            queue[tail++] = i;
        }
    }
    while (head < tail) {
        const int i = queue[head++], y = i / w, x = i % w;
        const int nb[4] = {y > 0 ? i - w : -1, y < h - 1 ? i + w : -1, x > 0 ? i - 1 : -1,
                           x < w - 1 ? i + 1 : -1};
        for (int k = 0; k < 4; k++)
            if (nb[k] >= 0 && out[nb[k]] == 0) {
                out[nb[k]] = 255;
                queue[tail++] = nb[k];
            }
    }
    for (int i = 0; i < n; i++)
        out[i] = out[i] == 255 ? 0 : out[i] == 0 ? color : out[i];
}

/* Cells of one line (a row or a column) fall toward its start (dir > 0
 * walks from the start), keeping their order. */
static void fall_line(const uint8_t *in, uint8_t *out, int start, int step, int len)
{
    int k = 0;
    for (int i = 0; i < len; i++) {
        const uint8_t c = in[start + i * step];
        if (c)
            out[start + (k++) * step] = c;
    }
    for (; k < len; k++)
        out[start + k * step] = 0;
}

void vqji_prim_apply(const vqji_prim *p, int h, int w, const uint8_t *in, int *out_h, int *out_w,
                     uint8_t *out, int32_t *scratch)
{
    const int n = h * w;
    *out_h = h;
    *out_w = w;
    switch (p->kind) {
    case VQJI_PRIM_MIRROR_H:
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                out[y * w + x] = in[y * w + (w - 1 - x)];
        return;
    case VQJI_PRIM_MIRROR_V:
        for (int y = 0; y < h; y++)
            memcpy(out + y * w, in + (h - 1 - y) * w, (size_t)w);
        return;
    case VQJI_PRIM_ROTATE: {
        const int q = ((p->a % 4) + 4) % 4;
        if (q == 0) {
            memcpy(out, in, (size_t)n);
        } else if (q == 2) {
            for (int i = 0; i < n; i++)
                out[i] = in[n - 1 - i];
        } else {
            *out_h = w;
            *out_w = h;
            /* Clockwise: out[r][c] = in[h-1-c][r]; counter: in[c][w-1-r]. */
            for (int r = 0; r < w; r++)
                for (int c = 0; c < h; c++)
                    out[r * h + c] = q == 1 ? in[(h - 1 - c) * w + r] : in[c * w + (w - 1 - r)];
        }
        return;
    }
    case VQJI_PRIM_TRANSLATE:
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                const int sy = y - p->a, sx = x - p->b;
                out[y * w + x] = sy >= 0 && sy < h && sx >= 0 && sx < w ? in[sy * w + sx] : 0;
            }
        return;
    case VQJI_PRIM_RECOLOR:
        for (int i = 0; i < n; i++)
            out[i] = in[i] == p->a ? (uint8_t)p->b : in[i];
        return;
    case VQJI_PRIM_SWAP:
        for (int i = 0; i < n; i++)
            out[i] = in[i] == p->a ? (uint8_t)p->b : in[i] == p->b ? (uint8_t)p->a : in[i];
        return;
    case VQJI_PRIM_FILL:
        fill_holes(h, w, in, (uint8_t)p->a, out, scratch);
        return;
    case VQJI_PRIM_GRAVITY:
        if (p->a == 0 || p->a == 1) /* down, up: columns */
            for (int x = 0; x < w; x++)
                if (p->a == 0)
                    fall_line(in, out, (h - 1) * w + x, -w, h);
                else
                    fall_line(in, out, x, w, h);
        else /* left, right: rows */
            for (int y = 0; y < h; y++)
                if (p->a == 2)
                    fall_line(in, out, y * w, 1, w);
                else
                    fall_line(in, out, y * w + w - 1, -1, w);
        return;
    case VQJI_PRIM_COUNT:
        break;
    }
    memcpy(out, in, (size_t)n);
}

/* ---------------------------------------------------------- the drawing */

static int draw_int(vqji_rng *rng, int lo, int hi) /* uniform in [lo, hi] */
{
    return lo + (int)vqji_rng_below(rng, (uint64_t)(hi - lo + 1));
}

/* Colors, the foreground palette (k-1 colors of 1..9, all distinct) and the
 * program; the palette the program's later steps see follows its recolors,
 * so every step has something to act on. */
static void draw_program(vqji_rng *rng, const vqj_synthetic_params *sp, uint8_t *palette,
                         int *num_palette, vqji_program *prog)
{
    const int k = draw_int(rng, sp->min_colors, sp->max_colors);
    uint8_t all[9];
    for (int i = 0; i < 9; i++)
        all[i] = (uint8_t)(i + 1);
    for (int i = 0; i < k - 1; i++) { /* partial Fisher-Yates */
        const int j = draw_int(rng, i, 8);
        const uint8_t t = all[i];
        all[i] = all[j];
        all[j] = t;
    }
    memcpy(palette, all, (size_t)(k - 1));
    *num_palette = k - 1;

    uint8_t cur[9];
    int ncur = k - 1;
    memcpy(cur, palette, (size_t)ncur);
    prog->length = draw_int(rng, 1, sp->max_primitives);
    int prev = -1;
    for (int s = 0; s < prog->length; s++) {
        int kind;
        do
            kind = (int)vqji_rng_below(rng, VQJI_PRIM_COUNT);
        while (kind == prev || (kind == VQJI_PRIM_SWAP && ncur < 2));
        prev = kind;
        vqji_prim *p = &prog->prims[s];
        p->kind = (vqji_prim_kind)kind;
        p->a = p->b = 0;
        switch (p->kind) {
        case VQJI_PRIM_ROTATE: p->a = draw_int(rng, 1, 3); break;
        case VQJI_PRIM_TRANSLATE:
            do {
                p->a = draw_int(rng, -2, 2);
                p->b = draw_int(rng, -2, 2);
            } while (p->a == 0 && p->b == 0);
            break;
        case VQJI_PRIM_RECOLOR: {
            const int i = draw_int(rng, 0, ncur - 1);
            p->a = cur[i];
            do
                p->b = draw_int(rng, 1, 9);
            while (p->b == p->a);
            /* a becomes b: drop a, add b unless it is already there. */
            cur[i] = (uint8_t)p->b;
            for (int j = 0; j < ncur; j++)
                if (j != i && cur[j] == p->b) {
                    cur[i] = cur[--ncur];
                    break;
                }
            break;
        }
        case VQJI_PRIM_SWAP: {
            const int i = draw_int(rng, 0, ncur - 1);
            int j = draw_int(rng, 0, ncur - 2);
            if (j >= i)
                j++;
            p->a = cur[i];
            p->b = cur[j];
            break;
        }
        case VQJI_PRIM_FILL: p->a = cur[draw_int(rng, 0, ncur - 1)]; break;
        case VQJI_PRIM_GRAVITY: p->a = draw_int(rng, 0, 3); break;
        default: break;
        }
    }
}

void vqji_synthetic_example_program(const vqj_synthetic_params *params, uint64_t index,
                                    vqji_program *out)
{
    vqji_rng rng;
    vqji_rng_seed(&rng, params->seed, index);
    uint8_t palette[9];
    int np;
    draw_program(&rng, params, palette, &np, out);
}

typedef struct shape {
    int h, w;
    uint8_t on[MAX_SHAPE][MAX_SHAPE];
    int cells;
} shape;

/* A rectangle, hollow rectangle, line, L-shape or blob, at most `ext` a side. */
static void draw_shape(vqji_rng *rng, int ext, shape *s)
{
    memset(s, 0, sizeof *s);
    const int kind = draw_int(rng, 0, 4);
    if (kind == 0 || (kind == 1 && ext < 3)) { /* filled rectangle */
        s->h = draw_int(rng, 1, ext);
        s->w = draw_int(rng, 1, ext);
        for (int y = 0; y < s->h; y++)
            for (int x = 0; x < s->w; x++)
                s->on[y][x] = 1;
    } else if (kind == 1) { /* hollow rectangle: its hole is what the fill fills */
        s->h = draw_int(rng, 3, ext);
        s->w = draw_int(rng, 3, ext);
        for (int y = 0; y < s->h; y++)
            for (int x = 0; x < s->w; x++)
                s->on[y][x] = y == 0 || y == s->h - 1 || x == 0 || x == s->w - 1;
    } else if (kind == 2) { /* line */
        const int len = draw_int(rng, ext >= 2 ? 2 : 1, ext);
        const int vertical = draw_int(rng, 0, 1);
        s->h = vertical ? len : 1;
        s->w = vertical ? 1 : len;
        for (int i = 0; i < len; i++)
            s->on[vertical ? i : 0][vertical ? 0 : i] = 1;
    } else if (kind == 3) { /* L: a vertical and a horizontal arm sharing a corner */
        s->h = draw_int(rng, ext >= 2 ? 2 : 1, ext);
        s->w = draw_int(rng, ext >= 2 ? 2 : 1, ext);
        const int col = draw_int(rng, 0, 1) ? s->w - 1 : 0;
        const int row = draw_int(rng, 0, 1) ? s->h - 1 : 0;
        for (int y = 0; y < s->h; y++)
            s->on[y][col] = 1;
        for (int x = 0; x < s->w; x++)
            s->on[row][x] = 1;
    } else { /* blob: grow from one cell by random 4-neighbours */
        const int most = ext * ext < 7 ? ext * ext : 7;
        const int target = most < 3 ? most : draw_int(rng, 3, most);
        int ys[MAX_SHAPE * MAX_SHAPE], xs[MAX_SHAPE * MAX_SHAPE], n = 1;
        ys[0] = ext / 2;
        xs[0] = ext / 2;
        s->on[ys[0]][xs[0]] = 1;
        for (int tries = 0; n < target && tries < 64; tries++) {
            const int i = draw_int(rng, 0, n - 1), d = draw_int(rng, 0, 3);
            const int y = ys[i] + (d == 0) - (d == 1), x = xs[i] + (d == 2) - (d == 3);
            if (y < 0 || y >= ext || x < 0 || x >= ext || s->on[y][x])
                continue;
            s->on[y][x] = 1;
            ys[n] = y;
            xs[n++] = x;
        }
        /* Crop to the bounding box. */
        int y0 = ext, y1 = 0, x0 = ext, x1 = 0;
        for (int i = 0; i < n; i++) {
            y0 = ys[i] < y0 ? ys[i] : y0;
            y1 = ys[i] > y1 ? ys[i] : y1;
            x0 = xs[i] < x0 ? xs[i] : x0;
            x1 = xs[i] > x1 ? xs[i] : x1;
        }
        memset(s->on, 0, sizeof s->on);
        for (int i = 0; i < n; i++)
            s->on[ys[i] - y0][xs[i] - x0] = 1;
        s->h = y1 - y0 + 1;
        s->w = x1 - x0 + 1;
    }
    for (int y = 0; y < s->h; y++)
        for (int x = 0; x < s->w; x++)
            s->cells += s->on[y][x];
}

/* Whether cell (y, x) is free and, with `apart`, has no non-background
 * 4-neighbour (so objects stay separate components). */
static int free_cell(const uint8_t *g, int h, int w, int y, int x, int apart)
{
    if (g[y * w + x])
        return 0;
    if (!apart)
        return 1;
    return !(y > 0 && g[(y - 1) * w + x]) && !(y < h - 1 && g[(y + 1) * w + x]) &&
           !(x > 0 && g[y * w + x - 1]) && !(x < w - 1 && g[y * w + x + 1]);
}

static int try_place(vqji_rng *rng, uint8_t *g, int h, int w, const shape *s, uint8_t color)
{
    if (s->h > h || s->w > w)
        return 0;
    for (int t = 0; t < PLACEMENT_TRIES; t++) {
        const int oy = draw_int(rng, 0, h - s->h), ox = draw_int(rng, 0, w - s->w);
        int ok = 1;
        for (int y = 0; y < s->h && ok; y++)
            for (int x = 0; x < s->w && ok; x++)
                if (s->on[y][x] && !free_cell(g, h, w, oy + y, ox + x, 1))
                    ok = 0;
        if (!ok)
            continue;
        for (int y = 0; y < s->h; y++)
            for (int x = 0; x < s->w; x++)
                if (s->on[y][x])
                    g[(oy + y) * w + ox + x] = color;
        return 1;
    }
    return 0;
}

/* One free cell, preferably apart from the others, scanning from a random
 * start; the budget guarantees there is one. */
static void place_cell(vqji_rng *rng, uint8_t *g, int h, int w, uint8_t color)
{
    const int n = h * w, start = draw_int(rng, 0, n - 1);
    for (int apart = 1; apart >= 0; apart--)
        for (int k = 0; k < n; k++) {
            const int i = (start + k) % n;
            if (free_cell(g, h, w, i / w, i % w, apart)) {
                g[i] = color;
                return;
            }
        }
}

/* An input grid: every palette color in at least one object, then up to two
 * more objects while the objects cover under 40% of the grid. */
static void draw_input(vqji_rng *rng, const vqj_synthetic_params *sp, const uint8_t *palette,
                       int np, int *out_h, int *out_w, uint8_t *g)
{
    const int h = draw_int(rng, sp->min_side, sp->max_side);
    const int w = draw_int(rng, sp->min_side, sp->max_side);
    memset(g, 0, (size_t)h * (size_t)w);
    int ext = (h < w ? h : w) / 2;
    ext = ext > MAX_SHAPE ? MAX_SHAPE : ext < 1 ? 1 : ext;
    /* Shapes share the budget; the one-cell fallbacks of required colors
     * come on top and still leave background (np <= 9, h*w >= 16). */
    const int budget = h * w * 2 / 5;
    const int total = np + draw_int(rng, 0, 2);
    int filled = 0;
    for (int i = 0; i < total; i++) {
        const int required = i < np;
        const uint8_t color = required ? palette[i] : palette[draw_int(rng, 0, np - 1)];
        shape s;
        draw_shape(rng, ext, &s);
        if (filled + s.cells <= budget && try_place(rng, g, h, w, &s, color)) {
            filled += s.cells;
        } else if (required) {
            place_cell(rng, g, h, w, color);
        } else {
            break;
        }
    }
    *out_h = h;
    *out_w = w;
}

static void run_program(const vqji_program *prog, int h, int w, const uint8_t *in, int *out_h,
                        int *out_w, uint8_t *out, uint8_t *tmp, int32_t *scratch)
{
    /* Ping-pong so that the last step lands in `out`. */
    const size_t n = (size_t)h * (size_t)w;
    uint8_t *bufs[2] = {out, tmp};
    int cur = prog->length % 2 == 0 ? 0 : 1; /* the buffer holding the current grid */
    memcpy(bufs[cur], in, n);
    for (int s = 0; s < prog->length; s++) {
        vqji_prim_apply(&prog->prims[s], h, w, bufs[cur], &h, &w, bufs[1 - cur], scratch);
        cur = 1 - cur;
    }
    *out_h = h;
    *out_w = w;
}

vqj_status vqj_dataset_synthetic(vqj_context *ctx, const vqj_dataset_params *params,
                                 const vqj_synthetic_params *synthetic, vqj_dataset **out)
{
    if (!ctx || !params || !synthetic || !out)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_dataset_synthetic: NULL argument");
    vqji_clear_error(ctx);
    vqj_dataset_params p;
    vqj_synthetic_params sp;
    vqj_status st = vqji_dataset_params_resolve(ctx, params, &p);
    if (!st)
        st = resolve_params(ctx, synthetic, &sp);
    if (st)
        return st;

    const int T = p.context_window;
    const int inputs = T / 2 + 1; /* the query and ceil((T-1)/2) demos */
    const size_t side2 = (size_t)sp.max_side * (size_t)sp.max_side;
    uint8_t *in = NULL, *outs = NULL, *tmp = NULL;
    int32_t *scratch = NULL;
    vqj_dataset *ds = NULL;
    st = vqji_malloc(ctx, 2 * (size_t)inputs * side2 + side2, "synthetic grids", (void **)&in);
    if (!st)
        st = vqji_malloc(ctx, side2 * sizeof *scratch, "synthetic scratch", (void **)&scratch);
    if (!st)
        st = vqji_dataset_new(ctx, &p, &ds);
    if (st)
        goto done;
    outs = in + (size_t)inputs * side2;
    tmp = outs + (size_t)inputs * side2;

    int ih[VQJI_MAX_CONTEXT_WINDOW / 2 + 1], iw[VQJI_MAX_CONTEXT_WINDOW / 2 + 1];
    int oh[VQJI_MAX_CONTEXT_WINDOW / 2 + 1], ow[VQJI_MAX_CONTEXT_WINDOW / 2 + 1];
    uint32_t idx[VQJI_MAX_CONTEXT_WINDOW + 1];
    for (int e = 0; e < sp.num_examples && !st; e++) {
        vqji_rng rng;
        vqji_rng_seed(&rng, sp.seed, (uint64_t)e);
        uint8_t palette[9];
        int np;
        vqji_program prog;
        draw_program(&rng, &sp, palette, &np, &prog);
        /* Input 0 is the query, inputs 1.. the demos, newest first. */
        for (int i = 0; i < inputs; i++) {
            uint8_t *x = in + (size_t)i * side2, *y = outs + (size_t)i * side2;
            draw_input(&rng, &sp, palette, np, &ih[i], &iw[i], x);
            run_program(&prog, ih[i], iw[i], x, &oh[i], &ow[i], y, tmp, scratch);
        }
        /* The last T of [..., x2, P(x2), x1, P(x1), y], then P(y). */
        int s = T - 1;
        st = vqji_dataset_add_grid(ds, ih[0], iw[0], in, &idx[s--]);
        for (int d = 1; s >= 0 && !st; d++) {
            st = vqji_dataset_add_grid(ds, oh[d], ow[d], outs + (size_t)d * side2, &idx[s--]);
            if (s >= 0 && !st)
                st = vqji_dataset_add_grid(ds, ih[d], iw[d], in + (size_t)d * side2, &idx[s--]);
        }
        if (!st)
            st = vqji_dataset_add_grid(ds, oh[0], ow[0], outs, &idx[T]);
        if (!st)
            st = vqji_dataset_add_example(ds, idx, (uint32_t)e);
    }
    if (!st)
        st = vqji_dataset_finish(ds);
done:
    free(in);
    free(scratch);
    if (st) {
        vqj_dataset_destroy(ds);
        return st;
    }
    *out = ds;
    return VQJ_OK;
}
