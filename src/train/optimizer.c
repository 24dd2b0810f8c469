/* Adam/AdamW with global-norm clipping and a warmup + decay schedule, and the
 * EMA of a target network (docs/optimizer.md). Device memory is touched only
 * through the op table, so a GPU backend runs this file unchanged. */
#include "core/params.h"
#include "device/tensor.h"
#include "device/device.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Added to the norm before dividing, as torch.nn.utils.clip_grad_norm_. */
#define VQJI_CLIP_EPS 1e-6
#define VQJI_PI 3.14159265358979323846

struct vqj_optimizer {
    vqj_context *ctx;
    vqj_optimizer_params params;
    vqj_weights **groups; /* borrowed */
    size_t num_groups;
    size_t *state_index;  /* per group: index of "adam.m.<g>" in state ("adam.v.<g>" follows),
                             SIZE_MAX for a group without trainable floats */
    vqj_weights state;    /* the moments, one device buffer */
    int64_t steps;        /* applied steps */
};

void vqj_optimizer_params_default(vqj_optimizer_params *p)
{
    if (!p)
        return;
    memset(p, 0, sizeof *p);
    p->size = sizeof *p;
    p->kind = VQJ_OPT_ADAM;
    p->lr = 5e-5f;
    p->beta1 = 0.9f;
    p->beta2 = 0.999f;
    p->eps = 1e-8f;
    p->weight_decay = 1e-6f;
    p->max_grad_norm = 0.5f;
    p->schedule = VQJ_LR_COSINE;
    p->warmup_steps = 1000;
    p->total_steps = 1500;
    p->min_lr_scale = 0.1f;
}

static vqj_status bad_field(const vqj_context *ctx, const char *field, double value,
                            const char *range)
{
    return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                     "vqj_optimizer_params.%s is %g; it must be %s", field, value, range);
}

static vqj_status validate_params(const vqj_context *ctx, const vqj_optimizer_params *p)
{
    if (p->kind != VQJ_OPT_ADAM && p->kind != VQJ_OPT_ADAMW)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_optimizer_params.kind is %d; it must be VQJ_OPT_ADAM (0) or "
                         "VQJ_OPT_ADAMW (1)",
                         (int)p->kind);
    /* Written as negated "good" tests so that NaN fails every one of them. */
    if (!(isfinite(p->lr) && p->lr >= 0.0f))
        return bad_field(ctx, "lr", p->lr, "finite and >= 0");
    if (!(p->beta1 >= 0.0f && p->beta1 < 1.0f))
        return bad_field(ctx, "beta1", p->beta1, "in [0, 1)");
    if (!(p->beta2 >= 0.0f && p->beta2 < 1.0f))
        return bad_field(ctx, "beta2", p->beta2, "in [0, 1)");
    /* eps = 0 would divide 0 by 0 for a parameter whose gradient was always 0. */
    if (!(isfinite(p->eps) && p->eps > 0.0f))
        return bad_field(ctx, "eps", p->eps, "finite and > 0");
    if (!(isfinite(p->weight_decay) && p->weight_decay >= 0.0f))
        return bad_field(ctx, "weight_decay", p->weight_decay, "finite and >= 0");
    if (!(isfinite(p->max_grad_norm) && p->max_grad_norm >= 0.0f))
        return bad_field(ctx, "max_grad_norm", p->max_grad_norm,
                         "finite and >= 0 (0 disables clipping)");
    if (p->schedule != VQJ_LR_CONSTANT && p->schedule != VQJ_LR_COSINE &&
        p->schedule != VQJ_LR_LINEAR)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_optimizer_params.schedule is %d; it must be VQJ_LR_CONSTANT (0), "
                         "VQJ_LR_COSINE (1) or VQJ_LR_LINEAR (2)",
                         (int)p->schedule);
    if (p->warmup_steps < 0)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_optimizer_params.warmup_steps is %lld; it must be >= 0",
                         (long long)p->warmup_steps);
    if (p->total_steps < 0)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_optimizer_params.total_steps is %lld; it must be >= 0",
                         (long long)p->total_steps);
    if (!(p->min_lr_scale >= 0.0f && p->min_lr_scale <= 1.0f))
        return bad_field(ctx, "min_lr_scale", p->min_lr_scale, "in [0, 1]");
    return VQJ_OK;
}

/* The schedule's factor for the step that follows `step` applied steps, in
 * double like torch's LambdaLR; the original's warmup (s + 1) / W and floor
 * max(f, decay) (docs/optimizer.md gives the formulas). */
static double lr_scale(const vqj_optimizer_params *p, int64_t step)
{
    if (step < p->warmup_steps)
        return (double)(step + 1) / (double)p->warmup_steps;
    if (p->schedule == VQJ_LR_CONSTANT)
        return 1.0;
    double progress = 1.0; /* total <= warmup: the floor right after the warmup */
    if (p->total_steps > p->warmup_steps) {
        progress = (double)(step - p->warmup_steps) /
                   (double)(p->total_steps - p->warmup_steps);
        if (progress > 1.0)
            progress = 1.0;
    }
    double decay = p->schedule == VQJ_LR_COSINE ? 0.5 * (1.0 + cos(VQJI_PI * progress))
                                                : 1.0 - progress;
    return decay > p->min_lr_scale ? decay : (double)p->min_lr_scale;
}

static double lr_at(const vqj_optimizer *opt, int64_t step)
{
    return (double)opt->params.lr * lr_scale(&opt->params, step);
}

void vqj_optimizer_destroy(vqj_optimizer *opt)
{
    if (!opt)
        return;
    vqji_weights_release(&opt->state);
    free(opt->state_index);
    free(opt->groups);
    free(opt);
}

vqj_status vqj_optimizer_create(vqj_context *ctx, const vqj_optimizer_params *params,
                                vqj_weights *const *groups, size_t num_groups,
                                vqj_optimizer **out)
{
    if (!ctx || !params || !out || (num_groups && !groups))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT, "vqj_optimizer_create: NULL argument");
    vqji_clear_error(ctx);
    vqj_optimizer_params p;
    vqj_optimizer_params_default(&p);
    vqj_status st = vqji_params_copy(ctx, &p, sizeof p, params, VQJI_V1_OPTIMIZER_PARAMS,
                                     "vqj_optimizer_params");
    if (st)
        return st;
    st = validate_params(ctx, &p);
    if (st)
        return st;
    if (num_groups == 0)
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_optimizer_create: num_groups is 0; give at least one weights view");
    for (size_t g = 0; g < num_groups; g++) {
        if (!groups[g])
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "vqj_optimizer_create: groups[%zu] is NULL", g);
        if (!vqji_same_context(groups[g]->ctx, ctx))
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "vqj_optimizer_create: groups[%zu] was made from another context",
                             g);
        /* A view given twice would be updated twice per step. */
        for (size_t h = 0; h < g; h++)
            if (groups[h] == groups[g])
                return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                                 "vqj_optimizer_create: groups[%zu] and groups[%zu] are the "
                                 "same weights view",
                                 h, g);
    }

    vqj_optimizer *opt;
    st = vqji_calloc(ctx, 1, sizeof *opt, "an optimizer", (void **)&opt);
    if (st)
        return st;
    opt->ctx = ctx;
    opt->params = p;
    opt->num_groups = num_groups;
    vqji_weights_init(&opt->state, ctx);
    st = vqji_calloc(ctx, num_groups, sizeof *opt->groups, "the optimizer's groups",
                     (void **)&opt->groups);
    if (!st)
        st = vqji_calloc(ctx, num_groups, sizeof *opt->state_index, "the optimizer's groups",
                         (void **)&opt->state_index);
    for (size_t g = 0; g < num_groups && !st; g++) {
        opt->groups[g] = groups[g];
        opt->state_index[g] = SIZE_MAX;
        size_t n = groups[g]->num_params;
        if (n == 0)
            continue;
        char name[VQJI_WEIGHT_NAME_MAX];
        snprintf(name, sizeof name, "adam.m.%zu", g);
        st = vqji_weights_add(&opt->state, name, (int64_t)n, 1, 0, &opt->state_index[g]);
        if (!st) {
            snprintf(name, sizeof name, "adam.v.%zu", g);
            st = vqji_weights_add(&opt->state, name, (int64_t)n, 1, 0, NULL);
        }
    }
    if (!st)
        st = vqji_weights_finalize(&opt->state); /* zero moments, as torch's first step */
    if (st) {
        vqj_optimizer_destroy(opt);
        return st;
    }
    *out = opt;
    return VQJ_OK;
}

vqj_status vqj_optimizer_step(vqj_optimizer *opt, float grad_scale, vqj_step_info *info)
{
    if (!opt)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "vqj_optimizer_step: opt is NULL");
    vqj_context *ctx = opt->ctx;
    vqji_clear_error(ctx);
    if (!(isfinite(grad_scale) && grad_scale > 0.0f))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_optimizer_step: grad_scale is %g; it must be finite and > 0",
                         (double)grad_scale);
    if (info && info->size < sizeof(vqj_step_info))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_optimizer_step: info->size is %zu, smaller than any published "
                         "vqj_step_info (%zu); set it to sizeof(vqj_step_info)",
                         info->size, sizeof(vqj_step_info));
    vqji_device *dev = ctx->device;
    const vqj_optimizer_params *p = &opt->params;

    /* The global norm first: nothing may change before we know the step is
     * finite. The per-group sums stay in double until the square root. */
    double sumsq = 0.0;
    for (size_t g = 0; g < opt->num_groups; g++) {
        const vqj_weights *w = opt->groups[g];
        if (w->num_params)
            sumsq += dev->ops->sum_squares(dev, w->num_params, w->grad);
    }
    vqj_status st = dev->ops->sync(dev);
    if (st)
        return st;
    double norm = sqrt(sumsq) * (double)grad_scale;
    double lr = lr_at(opt, opt->steps);
    vqj_step_info res = {.size = sizeof res,
                         .applied = 0,
                         .grad_norm = (float)norm,
                         .lr = (float)lr,
                         .step = opt->steps};
    if (isfinite(norm)) {
        double coef = grad_scale;
        if (p->max_grad_norm > 0.0f) {
            double clip = (double)p->max_grad_norm / (norm + VQJI_CLIP_EPS);
            if (clip < 1.0)
                coef *= clip;
        }
        double t = (double)(opt->steps + 1);
        double bc1 = 1.0 - pow((double)p->beta1, t);
        double bc2 = 1.0 - pow((double)p->beta2, t);
        bool decoupled = p->kind == VQJ_OPT_ADAMW;
        for (size_t g = 0; g < opt->num_groups; g++) {
            vqj_weights *w = opt->groups[g];
            if (!w->num_params)
                continue;
            float *m = vqji_weights_data(&opt->state, opt->state_index[g]);
            float *v = vqji_weights_data(&opt->state, opt->state_index[g] + 1);
            dev->ops->adam_update(dev, w->num_params, w->data, w->grad, m, v, lr, p->beta1,
                                  p->beta2, p->eps, p->weight_decay, decoupled, bc1, bc2,
                                  (float)coef);
        }
        st = dev->ops->sync(dev);
        if (st)
            return st;
        opt->steps++;
        res.applied = 1;
        res.step = opt->steps;
    }
    if (info) {
        size_t caller_size = info->size;
        *info = res;
        info->size = caller_size;
    }
    return VQJ_OK;
}

vqj_status vqj_optimizer_zero_grad(vqj_optimizer *opt)
{
    if (!opt)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "vqj_optimizer_zero_grad: opt is NULL");
    vqji_clear_error(opt->ctx);
    for (size_t g = 0; g < opt->num_groups; g++)
        if (opt->groups[g]->num_params)
            vqji_weights_zero_grad(opt->groups[g]);
    return opt->ctx->device->ops->sync(opt->ctx->device);
}

float vqj_optimizer_lr(const vqj_optimizer *opt)
{
    return opt ? (float)lr_at(opt, opt->steps) : 0.0f;
}

int64_t vqj_optimizer_steps(const vqj_optimizer *opt) { return opt ? opt->steps : 0; }

vqj_status vqj_optimizer_set_steps(vqj_optimizer *opt, int64_t steps)
{
    if (!opt)
        return vqji_fail(NULL, VQJ_ERR_INVALID_ARGUMENT, "vqj_optimizer_set_steps: opt is NULL");
    vqji_clear_error(opt->ctx);
    if (steps < 0)
        return vqji_fail(opt->ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_optimizer_set_steps: steps is %lld; it must be >= 0",
                         (long long)steps);
    opt->steps = steps;
    return VQJ_OK;
}

vqj_weights *vqj_optimizer_state(vqj_optimizer *opt) { return opt ? &opt->state : NULL; }

/* ---- target-network EMA ---- */

/* Next trainable item at or after *i; false when none is left. */
static bool next_trainable(const vqj_weights *w, size_t *i)
{
    while (*i < w->count && !w->items[*i].trainable)
        (*i)++;
    return *i < w->count;
}

vqj_status vqj_weights_ema(vqj_weights *target, const vqj_weights *online, float decay)
{
    if (!target || !online)
        return vqji_fail(target ? target->ctx : online ? online->ctx : NULL,
                         VQJ_ERR_INVALID_ARGUMENT, "vqj_weights_ema: NULL argument");
    vqj_context *ctx = target->ctx;
    vqji_clear_error(ctx);
    if (!(decay >= 0.0f && decay <= 1.0f))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_weights_ema: decay is %g; it must be in [0, 1]", (double)decay);
    if (!vqji_same_context(online->ctx, ctx))
        return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                         "vqj_weights_ema: target and online were made from different contexts");
    /* Trainable tensors are laid out first in add order, so equal names and
     * shapes in equal order mean equal offsets: one blend covers them all. */
    size_t i = 0, j = 0, k = 0;
    for (;; i++, j++, k++) {
        bool has_t = next_trainable(target, &i), has_o = next_trainable(online, &j);
        if (!has_t && !has_o)
            break;
        if (has_t != has_o)
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "vqj_weights_ema: trainable tensor %zu is \"%s\" in %s but %s has "
                             "only %zu trainable tensors",
                             k, has_t ? target->items[i].name : online->items[j].name,
                             has_t ? "target" : "online", has_t ? "online" : "target", k);
        const vqji_weight *a = &target->items[i], *b = &online->items[j];
        if (strcmp(a->name, b->name) != 0)
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "vqj_weights_ema: trainable tensor %zu is \"%s\" in target but "
                             "\"%s\" in online",
                             k, a->name, b->name);
        if (a->shape[0] != b->shape[0] || a->shape[1] != b->shape[1])
            return vqji_fail(ctx, VQJ_ERR_INVALID_ARGUMENT,
                             "vqj_weights_ema: \"%s\" is %lld x %lld in target but %lld x %lld "
                             "in online",
                             a->name, (long long)a->shape[0], (long long)a->shape[1],
                             (long long)b->shape[0], (long long)b->shape[1]);
    }
    vqji_device *dev = ctx->device;
    if (target->num_params)
        dev->ops->ema_blend(dev, target->num_params, decay, online->data, target->data);
    return dev->ops->sync(dev);
}
