/*
 * libvqjepa - header-only C++17 wrapper over the C API of vqjepa.h and the
 * experimental stage-level calls of vqjepa_stages.h.
 *
 * Every handle of the C API is a move-only RAII class that destroys it; a
 * failed call throws vqjepa::error carrying the status and the library's
 * message; params structs are the C structs filled by their *_default()
 * function (vqjepa::defaults<T>()). Lifetimes are tied automatically: each
 * object keeps alive what it was made from (a tensor its context, a trainer
 * the encoder, codebook, predictor, loss and optimizer it borrows, a weights
 * view the handle it belongs to), so objects may be destroyed in any order.
 *
 * Threads follow the C rules (docs/api-conventions.md, docs/bindings.md):
 * different objects may be used from different threads at the same time;
 * one object is used by one thread at a time unless its documentation in
 * vqjepa.h says otherwise. Moving from an object leaves it empty; calling a
 * method on an empty object throws vqjepa::error (VQJ_ERR_STATE).
 *
 * Link as for the C API: `c++ -std=c++17 prog.cpp $(pkg-config --cflags --libs vqjepa)`.
 */
#ifndef VQJEPA_HPP
#define VQJEPA_HPP

#include <vqjepa_stages.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

/** The C++ wrapper of libvqjepa. */
namespace vqjepa {

/** A failed library call: the status code and the library's one-line message. */
class error : public std::runtime_error {
public:
    /** An error for `status` with `message` (the library's, or the wrapper's own). */
    error(vqj_status status, const std::string &message)
        : std::runtime_error(message.empty() ? std::string(vqj_status_string(status)) : message),
          status_(status)
    {
    }
    /** The status code the call returned. */
    vqj_status status() const noexcept { return status_; }

private:
    vqj_status status_;
};

namespace detail {
/** Throw vqjepa::error for a failed status, with the calling thread's message. */
inline void check(vqj_status st)
{
    if (st != VQJ_OK)
        throw error(st, vqj_last_error());
}
/** Throw VQJ_ERR_STATE when a moved-from object is used. */
template <class T> inline T *live(const std::shared_ptr<T> &p, const char *what)
{
    if (!p)
        throw error(VQJ_ERR_STATE, std::string("vqjepa: ") + what + " is empty (moved from)");
    return p.get();
}
} // namespace detail

/** The version of the loaded library, "MAJOR.MINOR.PATCH". */
inline std::string version() { return vqj_version(); }

/** Whether this build of the library can compute on `device`. */
inline bool device_compiled(vqj_device_kind device) { return vqj_device_compiled(device) != 0; }

/** @name Params: the C structs, filled by their *_default() function.
 *  @{ */
/** Default-filled params struct: `auto p = vqjepa::defaults<vqj_encoder_params>();`. */
template <class P> P defaults();
/** @cond */
#define VQJEPA_HPP_DEFAULTS(T, fn)                                                             \
    template <> inline T defaults<T>()                                                         \
    {                                                                                          \
        T p;                                                                                   \
        fn(&p);                                                                                \
        return p;                                                                              \
    }
VQJEPA_HPP_DEFAULTS(vqj_context_params, vqj_context_params_default)
VQJEPA_HPP_DEFAULTS(vqj_tokenizer_params, vqj_tokenizer_params_default)
VQJEPA_HPP_DEFAULTS(vqj_codebook_params, vqj_codebook_params_default)
VQJEPA_HPP_DEFAULTS(vqj_optimizer_params, vqj_optimizer_params_default)
VQJEPA_HPP_DEFAULTS(vqj_encoder_params, vqj_encoder_params_default)
VQJEPA_HPP_DEFAULTS(vqj_predictor_params, vqj_predictor_params_default)
VQJEPA_HPP_DEFAULTS(vqj_dataset_params, vqj_dataset_params_default)
VQJEPA_HPP_DEFAULTS(vqj_synthetic_params, vqj_synthetic_params_default)
VQJEPA_HPP_DEFAULTS(vqj_augment_params, vqj_augment_params_default)
VQJEPA_HPP_DEFAULTS(vqj_loss_params, vqj_loss_params_default)
VQJEPA_HPP_DEFAULTS(vqj_trainer_params, vqj_trainer_params_default)
#undef VQJEPA_HPP_DEFAULTS
/** @endcond */
/** @} */

/** A grid that owns its cells (row-major, colors 0..9). Converts to the C
 *  vqj_grid view, which borrows the cells: keep the grid alive while the
 *  view is used. */
class grid {
public:
    grid() = default;
    /** A height x width grid of `fill`. */
    grid(int height, int width, uint8_t fill = 0)
        : height_(height), width_(width),
          cells_(static_cast<size_t>(height > 0 ? height : 0) * static_cast<size_t>(width > 0 ? width : 0), fill)
    {
    }
    /** A grid from its rows; every row must have the same length (else
     *  vqjepa::error VQJ_ERR_INVALID_ARGUMENT). */
    grid(std::initializer_list<std::initializer_list<int>> rows)
    {
        height_ = static_cast<int>(rows.size());
        width_ = rows.size() ? static_cast<int>(rows.begin()->size()) : 0;
        for (const auto &row : rows) {
            if (static_cast<int>(row.size()) != width_)
                throw error(VQJ_ERR_INVALID_ARGUMENT, "vqjepa::grid: rows of different lengths");
            for (int c : row)
                cells_.push_back(static_cast<uint8_t>(c));
        }
    }
    /** A copy of a C grid's cells. */
    explicit grid(const vqj_grid &g)
        : height_(g.height), width_(g.width),
          cells_(g.cells, g.cells + static_cast<size_t>(g.height) * static_cast<size_t>(g.width))
    {
    }
    int height() const noexcept { return height_; }
    int width() const noexcept { return width_; }
    /** Cell (row, col); no bounds check. */
    uint8_t &at(int row, int col) { return cells_[static_cast<size_t>(row) * width_ + col]; }
    uint8_t at(int row, int col) const { return cells_[static_cast<size_t>(row) * width_ + col]; }
    const std::vector<uint8_t> &cells() const noexcept { return cells_; }
    /** The C view (borrows the cells). */
    vqj_grid view() const noexcept { return vqj_grid{height_, width_, cells_.data()}; }
    operator vqj_grid() const noexcept { return view(); }

private:
    int height_ = 0, width_ = 0;
    std::vector<uint8_t> cells_;
};

/** C views of a list of grids (they borrow the grids' cells). */
inline std::vector<vqj_grid> views(const std::vector<grid> &grids)
{
    std::vector<vqj_grid> v;
    v.reserve(grids.size());
    for (const auto &g : grids)
        v.push_back(g.view());
    return v;
}

/** A context: the device, the thread count, the seed. Every other object is
 *  made from one and keeps it alive. */
class context {
public:
    /** A context with these params. Errors: see vqj_context_create(). */
    explicit context(const vqj_context_params &params = defaults<vqj_context_params>())
    {
        vqj_context *raw = nullptr;
        detail::check(vqj_context_create(&params, &raw));
        h_.reset(raw, vqj_context_destroy);
    }
    /** A CPU context with this seed and thread count (0: all cores). */
    static context cpu(uint64_t seed, int num_threads = 0)
    {
        auto p = defaults<vqj_context_params>();
        p.seed = seed;
        p.num_threads = num_threads;
        return context(p);
    }
    context(context &&) noexcept = default;
    context &operator=(context &&) noexcept = default;
    context(const context &) = delete;
    context &operator=(const context &) = delete;

    /** @cond */
    static context from_shared(std::shared_ptr<vqj_context> h)
    {
        context c(nullptr);
        c.h_ = std::move(h);
        return c;
    }
    /** @endcond */
    vqj_context *get() const { return detail::live(h_, "context"); }
    const std::shared_ptr<vqj_context> &shared() const { detail::live(h_, "context"); return h_; }
    vqj_device_kind device() const { return vqj_context_device(get()); }
    int num_threads() const { return vqj_context_num_threads(get()); }
    uint64_t seed() const { return vqj_context_seed(get()); }

private:
    explicit context(std::nullptr_t) {}
    std::shared_ptr<vqj_context> h_;
};

namespace detail {
/** Wrap a new handle so that it keeps `owner` (its context, or what it
 *  borrows) alive until it is destroyed. */
template <class T, class Owner>
std::shared_ptr<T> own(T *raw, void (*destroy)(T *), Owner owner)
{
    return std::shared_ptr<T>(raw, [destroy, owner](T *p) { destroy(p); });
}
} // namespace detail

/** A borrowed view of a handle's named tensors (vqj_weights): it keeps that
 *  handle alive. Copyable; copies view the same tensors. */
class weights {
public:
    weights() = default;
    weights(vqj_weights *w, std::shared_ptr<void> owner) : w_(w), owner_(std::move(owner)) {}

    vqj_weights *get() const
    {
        if (!w_)
            throw error(VQJ_ERR_STATE, "vqjepa: weights view is empty");
        return w_;
    }
    size_t num_tensors() const { return vqj_weights_num_tensors(get()); }
    size_t num_params() const { return vqj_weights_num_params(get()); }
    /** Describe tensor `index`; `name` points into the view. */
    vqj_weight_info info(size_t index) const
    {
        vqj_weight_info i{};
        detail::check(vqj_weights_info(get(), index, &i));
        return i;
    }
    /** The names of every tensor, in order. */
    std::vector<std::string> names() const
    {
        std::vector<std::string> n;
        for (size_t i = 0, k = num_tensors(); i < k; i++)
            n.emplace_back(info(i).name);
        return n;
    }
    /** The number of floats of tensor `name` (error for an unknown name). */
    size_t count(const std::string &name) const
    {
        for (size_t i = 0, k = num_tensors(); i < k; i++) {
            vqj_weight_info wi = info(i);
            if (name == wi.name)
                return wi.count;
        }
        throw error(VQJ_ERR_INVALID_ARGUMENT, "vqjepa::weights: no tensor named '" + name + "'");
    }
    /** A copy of tensor `name`. */
    std::vector<float> read(const std::string &name) const
    {
        std::vector<float> v(count(name));
        detail::check(vqj_weights_read(get(), name.c_str(), v.data(), v.size()));
        return v;
    }
    /** Overwrite tensor `name`; `values` must hold its count. */
    void write(const std::string &name, const std::vector<float> &values)
    {
        detail::check(vqj_weights_write(get(), name.c_str(), values.data(), values.size()));
    }
    /** The accumulated gradient of trainable tensor `name`. */
    std::vector<float> read_grad(const std::string &name) const
    {
        std::vector<float> v(count(name));
        detail::check(vqj_weights_read_grad(get(), name.c_str(), v.data(), v.size()));
        return v;
    }
    void zero_grad() { vqj_weights_zero_grad(get()); }
    /** target = decay * target + (1 - decay) * this (trainable tensors). */
    void ema_into(weights &target, float decay) const
    {
        detail::check(vqj_weights_ema(target.get(), get(), decay));
    }

private:
    vqj_weights *w_ = nullptr;
    std::shared_ptr<void> owner_;
};

/** A rows x cols float32 matrix in the context's device memory. */
class tensor {
public:
    /** A zero-filled rows x cols tensor. */
    tensor(const context &ctx, int rows = 0, int cols = 1)
    {
        vqj_tensor *raw = nullptr;
        detail::check(vqj_tensor_create(ctx.get(), rows, cols, &raw));
        h_ = detail::own(raw, vqj_tensor_destroy, ctx.shared());
    }
    tensor(tensor &&) noexcept = default;
    tensor &operator=(tensor &&) noexcept = default;
    tensor(const tensor &) = delete;
    tensor &operator=(const tensor &) = delete;

    vqj_tensor *get() const { return detail::live(h_, "tensor"); }
    int rows() const { return vqj_tensor_rows(get()); }
    int cols() const { return vqj_tensor_cols(get()); }
    void reshape(int rows, int cols) { detail::check(vqj_tensor_reshape(get(), rows, cols)); }
    /** A host copy of the rows*cols values, row-major. */
    std::vector<float> read() const
    {
        std::vector<float> v(static_cast<size_t>(rows()) * static_cast<size_t>(cols()));
        detail::check(vqj_tensor_read(get(), v.data(), v.size()));
        return v;
    }
    /** Overwrite from host memory; `values` must hold rows*cols floats. */
    void write(const std::vector<float> &values)
    {
        detail::check(vqj_tensor_write(get(), values.data(), values.size()));
    }

private:
    std::shared_ptr<vqj_tensor> h_;
};

/** A read-only view of a tensor owned by another object (a trainer's
 *  projections): it keeps that object alive. */
class tensor_view {
public:
    tensor_view(const vqj_tensor *t, std::shared_ptr<void> owner) : t_(t), owner_(std::move(owner)) {}
    int rows() const { return vqj_tensor_rows(t_); }
    int cols() const { return vqj_tensor_cols(t_); }
    std::vector<float> read() const
    {
        std::vector<float> v(static_cast<size_t>(rows()) * static_cast<size_t>(cols()));
        detail::check(vqj_tensor_read(t_, v.data(), v.size()));
        return v;
    }
    const vqj_tensor *get() const { return t_; }

private:
    const vqj_tensor *t_;
    std::shared_ptr<void> owner_;
};

/** A batch of tokenized grids (packed object features, offsets, adjacency). */
class tokens {
public:
    /** An empty batch for these tokenizer params. */
    explicit tokens(const context &ctx,
                    const vqj_tokenizer_params &params = defaults<vqj_tokenizer_params>())
        : ctx_(ctx.shared())
    {
        vqj_tokens *raw = nullptr;
        detail::check(vqj_tokens_create(ctx.get(), &params, &raw));
        h_ = detail::own(raw, vqj_tokens_destroy, ctx.shared());
    }
    tokens(tokens &&) noexcept = default;
    tokens &operator=(tokens &&) noexcept = default;
    tokens(const tokens &) = delete;
    tokens &operator=(const tokens &) = delete;

    vqj_tokens *get() const { return detail::live(h_, "tokens"); }
    /** Tokenize `grids`, replacing the contents (unchanged on error). */
    void tokenize(const vqj_grid *grids, size_t n)
    {
        detail::check(vqj_tokenize(ctx_.get(), get(), grids, n));
    }
    void tokenize(const std::vector<vqj_grid> &grids) { tokenize(grids.data(), grids.size()); }
    void tokenize(const std::vector<grid> &grids) { tokenize(views(grids)); }

    size_t num_grids() const { return vqj_tokens_num_grids(get()); }
    size_t num_objects() const { return vqj_tokens_num_objects(get()); }
    int feature_dim() const { return vqj_tokens_feature_dim(get()); }
    /** num_grids + 1 offsets into the object rows (a copy). */
    std::vector<int32_t> offsets() const
    {
        const int32_t *o = vqj_tokens_offsets(get());
        return std::vector<int32_t>(o, o + num_grids() + 1);
    }
    /** The num_objects x feature_dim features, row-major (a copy). */
    std::vector<float> features() const
    {
        const float *f = vqj_tokens_features(get());
        size_t n = num_objects() * static_cast<size_t>(feature_dim());
        return n ? std::vector<float>(f, f + n) : std::vector<float>();
    }
    /** The n x n adjacency bytes of grid `g` (a copy). */
    std::vector<uint8_t> adjacency(size_t g) const
    {
        const uint8_t *a = vqj_tokens_adjacency(get(), g);
        if (!a && g >= num_grids())
            throw error(VQJ_ERR_INVALID_ARGUMENT, "vqjepa::tokens::adjacency: grid out of range");
        std::vector<int32_t> o = offsets();
        size_t n = static_cast<size_t>(o[g + 1] - o[g]);
        return a ? std::vector<uint8_t>(a, a + n * n) : std::vector<uint8_t>();
    }

private:
    std::shared_ptr<vqj_context> ctx_;
    std::shared_ptr<vqj_tokens> h_;
};

/** A parsed ARC task. */
class arc_task {
public:
    /** Load the task file at `path`. */
    arc_task(const context &ctx, const std::string &path)
    {
        vqj_arc_task *raw = nullptr;
        detail::check(vqj_arc_task_load(ctx.get(), path.c_str(), &raw));
        h_ = detail::own(raw, vqj_arc_task_destroy, ctx.shared());
    }
    /** Parse a task from JSON text; `name` prefixes error messages. */
    static arc_task parse(const context &ctx, const std::string &json, const std::string &name = "")
    {
        vqj_arc_task *raw = nullptr;
        detail::check(vqj_arc_task_parse(ctx.get(), json.data(), json.size(), name.c_str(), &raw));
        return arc_task(detail::own(raw, vqj_arc_task_destroy, ctx.shared()));
    }
    arc_task(arc_task &&) noexcept = default;
    arc_task &operator=(arc_task &&) noexcept = default;

    vqj_arc_task *get() const { return detail::live(h_, "arc_task"); }
    std::string name() const { return vqj_arc_task_name(get()); }
    size_t num_pairs(vqj_arc_split split) const { return vqj_arc_task_num_pairs(get(), split); }
    /** The input grid of pair i (borrowed from the task; nullptr out of range). */
    const vqj_grid *input(vqj_arc_split split, size_t i) const { return vqj_arc_task_input(get(), split, i); }
    /** The output grid of pair i (nullptr out of range or absent). */
    const vqj_grid *output(vqj_arc_split split, size_t i) const { return vqj_arc_task_output(get(), split, i); }

private:
    explicit arc_task(std::shared_ptr<vqj_arc_task> h) : h_(std::move(h)) {}
    std::shared_ptr<vqj_arc_task> h_;
};

/** The encoder (feature MLP + relational layers). */
class encoder {
public:
    explicit encoder(const context &ctx, const vqj_encoder_params &params = defaults<vqj_encoder_params>())
        : params_(params)
    {
        vqj_encoder *raw = nullptr;
        detail::check(vqj_encoder_create(ctx.get(), &params, &raw));
        h_ = detail::own(raw, vqj_encoder_destroy, ctx.shared());
    }
    encoder(encoder &&) noexcept = default;
    encoder &operator=(encoder &&) noexcept = default;

    /** @cond */
    static encoder from_shared(std::shared_ptr<vqj_encoder> h, const vqj_encoder_params &p)
    {
        encoder e(nullptr);
        e.h_ = std::move(h);
        e.params_ = p;
        return e;
    }
    /** @endcond */
    vqj_encoder *get() const { return detail::live(h_, "encoder"); }
    /** The params it was made with. */
    const vqj_encoder_params &params() const noexcept { return params_; }
    const std::shared_ptr<vqj_encoder> &shared() const { detail::live(h_, "encoder"); return h_; }
    weights weights_view() const { return weights(vqj_encoder_weights(get()), h_); }
    /** Encode every token into `out` (reshaped to N x D). */
    void forward(const tokens &t, bool training, tensor &out)
    {
        detail::check(vqj_encoder_forward(get(), t.get(), training ? 1 : 0, out.get()));
    }
    /** Accumulate the gradients of the last forward; dfeatures may be null. */
    void backward(const tensor &dout, tensor *dfeatures = nullptr)
    {
        detail::check(vqj_encoder_backward(get(), dout.get(), dfeatures ? dfeatures->get() : nullptr));
    }

private:
    explicit encoder(std::nullptr_t) : params_() {}
    vqj_encoder_params params_;
    std::shared_ptr<vqj_encoder> h_;
};

/** The vector-quantization codebook. */
class codebook {
public:
    explicit codebook(const context &ctx, const vqj_codebook_params &params = defaults<vqj_codebook_params>())
    {
        vqj_codebook *raw = nullptr;
        detail::check(vqj_codebook_create(ctx.get(), &params, &raw));
        h_ = detail::own(raw, vqj_codebook_destroy, ctx.shared());
    }
    codebook(codebook &&) noexcept = default;
    codebook &operator=(codebook &&) noexcept = default;

    /** @cond */
    static codebook from_shared(std::shared_ptr<vqj_codebook> h)
    {
        codebook c(nullptr);
        c.h_ = std::move(h);
        return c;
    }
    /** @endcond */
    vqj_codebook *get() const { return detail::live(h_, "codebook"); }
    const std::shared_ptr<vqj_codebook> &shared() const { detail::live(h_, "codebook"); return h_; }
    weights weights_view() const { return weights(vqj_codebook_weights(get()), h_); }
    /** Quantize z into q; `codes` (resized to N) receives the indices when not null. */
    vqj_codebook_stats forward(const tensor &z, bool training, tensor &q, std::vector<int32_t> *codes = nullptr)
    {
        vqj_codebook_stats s{};
        s.size = sizeof s;
        if (codes)
            codes->assign(static_cast<size_t>(z.rows()), 0);
        detail::check(vqj_codebook_forward(get(), z.get(), training ? 1 : 0, q.get(),
                                           codes ? codes->data() : nullptr, &s));
        return s;
    }
    void backward(const tensor &dq, tensor &dz) { detail::check(vqj_codebook_backward(get(), dq.get(), dz.get())); }
    /** Per-code EMA usage (K values). */
    std::vector<float> ema_usage() const
    {
        std::vector<float> u(weights_view().count("codebook.ema_count"));
        detail::check(vqj_codebook_ema_usage(get(), u.data(), u.size()));
        return u;
    }

private:
    explicit codebook(std::nullptr_t) {}
    std::shared_ptr<vqj_codebook> h_;
};

/** Grid pooling, context aggregation and the projection head. */
class predictor {
public:
    explicit predictor(const context &ctx, const vqj_predictor_params &params = defaults<vqj_predictor_params>())
        : params_(params)
    {
        vqj_predictor *raw = nullptr;
        detail::check(vqj_predictor_create(ctx.get(), &params, &raw));
        h_ = detail::own(raw, vqj_predictor_destroy, ctx.shared());
    }
    predictor(predictor &&) noexcept = default;
    predictor &operator=(predictor &&) noexcept = default;

    /** @cond */
    static predictor from_shared(std::shared_ptr<vqj_predictor> h, const vqj_predictor_params &p)
    {
        predictor e(nullptr);
        e.h_ = std::move(h);
        e.params_ = p;
        return e;
    }
    /** @endcond */
    vqj_predictor *get() const { return detail::live(h_, "predictor"); }
    /** The params it was made with. */
    const vqj_predictor_params &params() const noexcept { return params_; }
    const std::shared_ptr<vqj_predictor> &shared() const { detail::live(h_, "predictor"); return h_; }
    weights weights_view() const { return weights(vqj_predictor_weights(get()), h_); }
    void forward_context(const tokens &t, const tensor &token_vectors, tensor &out)
    {
        detail::check(vqj_predictor_forward_context(get(), t.get(), token_vectors.get(), out.get()));
    }
    void forward_grids(const tokens &t, const tensor &token_vectors, tensor &out)
    {
        detail::check(vqj_predictor_forward_grids(get(), t.get(), token_vectors.get(), out.get()));
    }
    void backward_context(const tensor &d_out, tensor &d_token_vectors)
    {
        detail::check(vqj_predictor_backward_context(get(), d_out.get(), d_token_vectors.get()));
    }
    void backward_grids(const tensor &d_out, tensor &d_token_vectors)
    {
        detail::check(vqj_predictor_backward_grids(get(), d_out.get(), d_token_vectors.get()));
    }

private:
    explicit predictor(std::nullptr_t) : params_() {}
    vqj_predictor_params params_;
    std::shared_ptr<vqj_predictor> h_;
};

/** Every loss term but the commitment (InfoNCE + queue, relational, SIGReg, invariance). */
class loss {
public:
    explicit loss(const context &ctx, const vqj_loss_params &params = defaults<vqj_loss_params>())
    {
        vqj_loss *raw = nullptr;
        detail::check(vqj_loss_create(ctx.get(), &params, &raw));
        h_ = detail::own(raw, vqj_loss_destroy, ctx.shared());
    }
    loss(loss &&) noexcept = default;
    loss &operator=(loss &&) noexcept = default;

    vqj_loss *get() const { return detail::live(h_, "loss"); }
    const std::shared_ptr<vqj_loss> &shared() const { detail::live(h_, "loss"); return h_; }
    weights weights_view() const { return weights(vqj_loss_weights(get()), h_); }
    void reset() { vqj_loss_reset(get()); }
    vqj_loss_values values() const
    {
        vqj_loss_values v{};
        v.size = sizeof v;
        detail::check(vqj_loss_get_values(get(), &v));
        return v;
    }
    float temperature() const
    {
        float tau = 0;
        detail::check(vqj_loss_temperature(get(), &tau));
        return tau;
    }
    int queue_fill() const
    {
        int fill = 0;
        detail::check(vqj_loss_queue_fill(get(), &fill));
        return fill;
    }
    float infonce(const tensor &c, const tensor &t, tensor *dc = nullptr)
    {
        float v = 0;
        detail::check(vqj_loss_infonce(get(), c.get(), t.get(), dc ? dc->get() : nullptr, &v));
        return v;
    }
    void queue_push(const tensor &t) { detail::check(vqj_loss_queue_push(get(), t.get())); }
    float sigreg(const tensor &c, uint64_t step, tensor *dc = nullptr)
    {
        float v = 0;
        detail::check(vqj_loss_sigreg(get(), c.get(), step, dc ? dc->get() : nullptr, &v));
        return v;
    }
    void add_commitment(float value) { detail::check(vqj_loss_add_commitment(get(), value)); }

private:
    std::shared_ptr<vqj_loss> h_;
};

/** Adam or AdamW over several weights views (kept alive by the optimizer). */
class optimizer {
public:
    optimizer(const context &ctx, const std::vector<weights> &groups,
              const vqj_optimizer_params &params = defaults<vqj_optimizer_params>())
    {
        std::vector<vqj_weights *> raw_groups;
        for (const auto &g : groups)
            raw_groups.push_back(g.get());
        vqj_optimizer *raw = nullptr;
        detail::check(vqj_optimizer_create(ctx.get(), &params, raw_groups.data(), raw_groups.size(), &raw));
        auto keep = std::make_pair(ctx.shared(), groups);
        h_ = detail::own(raw, vqj_optimizer_destroy, keep);
    }
    optimizer(optimizer &&) noexcept = default;
    optimizer &operator=(optimizer &&) noexcept = default;

    vqj_optimizer *get() const { return detail::live(h_, "optimizer"); }
    const std::shared_ptr<vqj_optimizer> &shared() const { detail::live(h_, "optimizer"); return h_; }
    vqj_step_info step(float grad_scale = 1.0f)
    {
        vqj_step_info i{};
        i.size = sizeof i;
        detail::check(vqj_optimizer_step(get(), grad_scale, &i));
        return i;
    }
    void zero_grad() { detail::check(vqj_optimizer_zero_grad(get())); }
    float lr() const { return vqj_optimizer_lr(get()); }
    int64_t steps() const { return vqj_optimizer_steps(get()); }
    void set_steps(int64_t steps) { detail::check(vqj_optimizer_set_steps(get(), steps)); }
    /** The Adam moments ("adam.m.<g>", "adam.v.<g>"). */
    weights state() const { return weights(vqj_optimizer_state(get()), h_); }

private:
    std::shared_ptr<vqj_optimizer> h_;
};

/** Thread-safe inference for agents (vqj_model): a grid becomes one code
 *  per object and an embedding, T context grids a predicted target
 *  embedding. Every const method may run from any number of threads at once
 *  on one model. It keeps the parts it reads alive; while a call runs, do
 *  not train or write those parts (the C API's rule). */
class model {
public:
    /** The codes and embedding of one grid. */
    struct encoded {
        std::vector<int32_t> codes;  /**< one per object, largest first */
        std::vector<float> embedding; /**< P floats, unit length */
    };

    /** Every level's codes of one grid (vqj_model_encode_grid_levels()). */
    struct level_codes {
        std::vector<int64_t> index;  /**< one mixed-radix index per object (-1: no fit) */
        std::vector<int32_t> levels; /**< objects x num_quantizers() codes, row-major */
    };

    /** A model over trained parts; target_encoder / target_predictor (may
     *  be null: the online ones) compute grid embeddings. */
    model(const context &ctx, const encoder &enc, const codebook &cb, const predictor &pred,
          const encoder *target_encoder = nullptr, const predictor *target_predictor = nullptr,
          const vqj_tokenizer_params &tokenizer = defaults<vqj_tokenizer_params>())
    {
        vqj_model *raw = nullptr;
        detail::check(vqj_model_create(ctx.get(), &tokenizer, enc.get(), cb.get(), pred.get(),
                                       target_encoder ? target_encoder->get() : nullptr,
                                       target_predictor ? target_predictor->get() : nullptr, &raw));
        struct borrowed {
            std::shared_ptr<vqj_context> c;
            std::shared_ptr<vqj_encoder> e, te;
            std::shared_ptr<vqj_codebook> b;
            std::shared_ptr<vqj_predictor> p, tp;
        };
        h_ = detail::own(raw, vqj_model_destroy,
                         borrowed{ctx.shared(), enc.shared(),
                                  target_encoder ? target_encoder->shared() : nullptr, cb.shared(),
                                  pred.shared(), target_predictor ? target_predictor->shared() : nullptr});
        embedding_dim_ = vqj_model_embedding_dim(raw);
        max_objects_ = vqj_model_max_objects(raw);
        context_window_ = vqj_model_context_window(raw);
        num_codes_ = vqj_model_num_codes(raw);
    }
    /** A model read whole from a trainer checkpoint (vqj_model_load): the
     *  configuration stored in the file gives the sizes, the file the
     *  weights; the model owns its parts. */
    static model load(const context &ctx, const std::string &path)
    {
        vqj_model *raw = nullptr;
        detail::check(vqj_model_load(ctx.get(), path.c_str(), &raw));
        return model(raw, ctx.shared());
    }
    /** A model over the handles of a trainer (vqj_model_from_trainer); it
     *  keeps `owner` (the trainer) alive. */
    template <class Owner> static model from_trainer(vqj_trainer *trainer, Owner owner)
    {
        vqj_model *raw = nullptr;
        detail::check(vqj_model_from_trainer(trainer, &raw));
        return model(raw, std::move(owner));
    }
    model(model &&) noexcept = default;
    model &operator=(model &&) noexcept = default;

    const vqj_model *get() const { return detail::live(h_, "model"); }
    int embedding_dim() const noexcept { return embedding_dim_; }
    int max_objects() const noexcept { return max_objects_; }
    int context_window() const noexcept { return context_window_; }
    int num_codes() const noexcept { return num_codes_; }
    /** L, the levels of residual codes (1 for other quantizers). */
    int num_quantizers() const noexcept { return vqj_model_num_quantizers(get()); }

    /** Every level's codes of one grid. */
    level_codes encode_levels(const vqj_grid &g) const
    {
        const size_t m = static_cast<size_t>(max_objects_);
        const size_t l = static_cast<size_t>(num_quantizers());
        level_codes c{std::vector<int64_t>(m), std::vector<int32_t>(m * l)};
        size_t n = 0;
        detail::check(vqj_model_encode_grid_levels(get(), &g, c.index.data(), c.levels.data(), &n));
        c.index.resize(n);
        c.levels.resize(n * l);
        return c;
    }
    level_codes encode_levels(const grid &g) const { return encode_levels(g.view()); }

    /** Codes and embedding of one grid. */
    encoded encode(const vqj_grid &g) const
    {
        encoded e{std::vector<int32_t>(static_cast<size_t>(max_objects_)),
                  std::vector<float>(static_cast<size_t>(embedding_dim_))};
        size_t n = 0;
        detail::check(vqj_model_encode_grid(get(), &g, e.codes.data(), &n, e.embedding.data()));
        e.codes.resize(n);
        return e;
    }
    encoded encode(const grid &g) const { return encode(g.view()); }

    /** Several grids in one pass. */
    std::vector<encoded> encode(const std::vector<vqj_grid> &grids) const
    {
        const size_t m = static_cast<size_t>(max_objects_), d = static_cast<size_t>(embedding_dim_);
        std::vector<int32_t> codes(grids.size() * m);
        std::vector<size_t> counts(grids.size());
        std::vector<float> emb(grids.size() * d);
        detail::check(vqj_model_encode_grids(get(), grids.data(), grids.size(), codes.data(),
                                             counts.data(), emb.data()));
        std::vector<encoded> out;
        for (size_t g = 0; g < grids.size(); g++)
            out.push_back(encoded{std::vector<int32_t>(codes.begin() + static_cast<std::ptrdiff_t>(g * m),
                                                       codes.begin() + static_cast<std::ptrdiff_t>(g * m + counts[g])),
                                  std::vector<float>(emb.begin() + static_cast<std::ptrdiff_t>(g * d),
                                                     emb.begin() + static_cast<std::ptrdiff_t>((g + 1) * d))});
        return out;
    }
    std::vector<encoded> encode(const std::vector<grid> &grids) const { return encode(views(grids)); }

    /** The predicted target embedding of T context grids, oldest first. */
    std::vector<float> predict(const std::vector<vqj_grid> &context) const
    {
        std::vector<float> e(static_cast<size_t>(embedding_dim_));
        detail::check(vqj_model_predict(get(), context.data(), context.size(), e.data()));
        return e;
    }
    std::vector<float> predict(const std::vector<grid> &context) const { return predict(views(context)); }

    /** Predictions of context.size() / T examples, batch * P floats. */
    std::vector<float> predict_batch(const std::vector<vqj_grid> &context) const
    {
        size_t t = context_window_ > 0 ? static_cast<size_t>(context_window_) : 1;
        if (context.size() % t)
            throw error(VQJ_ERR_INVALID_ARGUMENT, "vqjepa::model::predict_batch: the grid count is not a multiple of T");
        std::vector<float> e(context.size() / t * static_cast<size_t>(embedding_dim_));
        detail::check(vqj_model_predict_batch(get(), context.data(), context.size() / t, e.data()));
        return e;
    }

private:
    template <class Owner> model(vqj_model *raw, Owner owner)
    {
        h_ = detail::own(raw, vqj_model_destroy, std::move(owner));
        embedding_dim_ = vqj_model_embedding_dim(raw);
        max_objects_ = vqj_model_max_objects(raw);
        context_window_ = vqj_model_context_window(raw);
        num_codes_ = vqj_model_num_codes(raw);
    }
    std::shared_ptr<vqj_model> h_;
    int embedding_dim_ = 0, max_objects_ = 0, context_window_ = 0, num_codes_ = 0;
};

/** || a/|a| - b/|b| ||^2 = 2 - 2 cos(a, b), in [0, 4]. */
inline float latent_distance(const std::vector<float> &a, const std::vector<float> &b)
{
    if (a.size() != b.size())
        throw error(VQJ_ERR_INVALID_ARGUMENT, "vqjepa::latent_distance: vectors of different lengths");
    float d = 0;
    detail::check(vqj_latent_distance(a.data(), b.data(), static_cast<int>(a.size()), &d));
    return d;
}

/** A whole training step over an encoder, codebook, predictor, loss and
 *  optimizer (all kept alive by the trainer). */
class trainer {
public:
    trainer(const context &ctx, encoder &enc, codebook &cb, predictor &pred, loss &l, optimizer &opt,
            const vqj_trainer_params &params = defaults<vqj_trainer_params>(),
            const vqj_tokenizer_params &tokenizer = defaults<vqj_tokenizer_params>())
    {
        vqj_trainer *raw = nullptr;
        detail::check(vqj_trainer_create(ctx.get(), &params, &tokenizer, enc.get(), cb.get(), pred.get(),
                                         l.get(), opt.get(), &raw));
        struct borrowed {
            std::shared_ptr<vqj_context> c;
            std::shared_ptr<vqj_encoder> e;
            std::shared_ptr<vqj_codebook> b;
            std::shared_ptr<vqj_predictor> p;
            std::shared_ptr<vqj_loss> l;
            std::shared_ptr<vqj_optimizer> o;
        };
        h_ = detail::own(raw, vqj_trainer_destroy,
                         borrowed{ctx.shared(), enc.shared(), cb.shared(), pred.shared(), l.shared(), opt.shared()});
        ctx_ = ctx.shared();
        window_ = pred.params().context_window;
    }
    /** Every part from a configuration in one call
     *  (vqj_trainer_create_from_config; config::make_trainer()): sizes from
     *  `cfg`, initial weights, dropout masks and views from its seed. The C
     *  trainer owns its parts. */
    static trainer from_config(const context &ctx, const vqj_config *cfg)
    {
        vqj_trainer *raw = nullptr;
        detail::check(vqj_trainer_create_from_config(ctx.get(), cfg, &raw));
        trainer t;
        t.h_ = detail::own(raw, vqj_trainer_destroy, ctx.shared());
        t.ctx_ = ctx.shared();
        vqj_predictor_params pp = defaults<vqj_predictor_params>();
        detail::check(vqj_config_predictor_params(cfg, &pp));
        t.window_ = pp.context_window;
        return t;
    }
    trainer(trainer &&) noexcept = default;
    trainer &operator=(trainer &&) noexcept = default;

    vqj_trainer *get() const { return detail::live(h_, "trainer"); }
    /** Throws unless `context` holds T grids per target: the library reads
     *  batch*T of them, so a shorter vector would be read past its end. */
    void check_batch(const std::vector<vqj_grid> &context, const std::vector<vqj_grid> &targets) const
    {
        const size_t t = window_ > 0 ? static_cast<size_t>(window_) : 1;
        if (targets.empty() || context.size() != targets.size() * t)
            throw error(VQJ_ERR_INVALID_ARGUMENT,
                        "vqjepa::trainer: " + std::to_string(context.size()) + " context grids for " +
                            std::to_string(targets.size()) + " targets; expected " +
                            std::to_string(targets.size() * t));
    }
    /** One micro-batch: `context` holds batch*T grids, `targets` batch grids. */
    vqj_train_metrics step(const std::vector<vqj_grid> &context, const std::vector<vqj_grid> &targets)
    {
        check_batch(context, targets);
        vqj_train_metrics m = new_metrics();
        detail::check(vqj_trainer_step(get(), context.data(), targets.data(), static_cast<int>(targets.size()), &m));
        return m;
    }
    vqj_train_metrics step(const std::vector<grid> &context, const std::vector<grid> &targets)
    {
        return step(views(context), views(targets));
    }
    /** One micro-batch from ready tokens. */
    vqj_train_metrics step(const tokens &context, const tokens &targets)
    {
        vqj_train_metrics m = new_metrics();
        detail::check(vqj_trainer_step_tokens(get(), context.get(), targets.get(), &m));
        return m;
    }
    /** The losses of a batch without training. */
    vqj_train_metrics evaluate(const std::vector<vqj_grid> &context, const std::vector<vqj_grid> &targets)
    {
        check_batch(context, targets);
        vqj_train_metrics m = new_metrics();
        detail::check(vqj_trainer_evaluate(get(), context.data(), targets.data(), static_cast<int>(targets.size()), &m));
        return m;
    }
    vqj_train_metrics evaluate(const std::vector<grid> &context, const std::vector<grid> &targets)
    {
        return evaluate(views(context), views(targets));
    }
    /** The target network's weights (empty views without a target encoder). */
    weights target_encoder_weights() const { return weights(vqj_trainer_target_encoder_weights(get()), h_); }
    weights target_predictor_weights() const { return weights(vqj_trainer_target_predictor_weights(get()), h_); }
    tensor_view context_projections() const { return tensor_view(vqj_trainer_context_projections(get()), h_); }
    tensor_view target_projections() const { return tensor_view(vqj_trainer_target_projections(get()), h_); }
    /** (micro_step, dropout_step). */
    std::pair<int64_t, uint64_t> counters() const
    {
        int64_t micro = 0;
        uint64_t dropout = 0;
        detail::check(vqj_trainer_get_counters(get(), &micro, &dropout));
        return {micro, dropout};
    }
    void set_counters(int64_t micro_step, uint64_t dropout_step)
    {
        detail::check(vqj_trainer_set_counters(get(), micro_step, dropout_step));
    }
    /** The codes of the context tokens of the last training step. */
    std::vector<int32_t> codes() const
    {
        size_t n = 0;
        const int32_t *c = vqj_trainer_codes(get(), &n);
        return c ? std::vector<int32_t>(c, c + n) : std::vector<int32_t>();
    }
    /** Save everything a resumed run needs (right after an optimizer step);
     *  `config_yaml` (may be empty) and `metadata` go to "__metadata__". */
    void save(const std::string &path, const std::string &config_yaml = "",
              const std::vector<std::pair<std::string, std::string>> &metadata = {}) const
    {
        std::vector<const char *> meta;
        for (const auto &kv : metadata) {
            meta.push_back(kv.first.c_str());
            meta.push_back(kv.second.c_str());
        }
        meta.push_back(nullptr);
        detail::check(vqj_trainer_save_with_metadata(get(), path.c_str(),
                                                     config_yaml.empty() ? nullptr : config_yaml.c_str(),
                                                     metadata.empty() ? nullptr : meta.data()));
    }
    /** Restore the trainer and its parts from a save() file. */
    void load(const std::string &path) { detail::check(vqj_trainer_load(get(), path.c_str())); }

    /** A thread-safe inference model over this trainer's handles
     *  (vqj_model_from_trainer): its online encoder, codebook and predictor
     *  and its target network for grid embeddings, read at every call (the
     *  model keeps the trainer alive). Do not step the trainer while the
     *  model runs a call. */
    model make_model() const { return model::from_trainer(get(), h_); }

private:
    static vqj_train_metrics new_metrics()
    {
        vqj_train_metrics m{};
        m.size = sizeof m;
        return m;
    }
    trainer() = default;
    std::shared_ptr<vqj_trainer> h_;
    std::shared_ptr<vqj_context> ctx_;
    int window_ = 1; // T: context grids per target
};

/** A list of examples (T context grids and a target), read-only once built. */
class dataset {
public:
    /** From ARC task files (a file or a folder). */
    static dataset from_arc(const context &ctx, const std::string &path,
                            const vqj_dataset_params &params = defaults<vqj_dataset_params>())
    {
        vqj_dataset *raw = nullptr;
        detail::check(vqj_dataset_from_arc(ctx.get(), &params, path.c_str(), &raw));
        return dataset(ctx, raw);
    }
    /** From a JSONL manifest. */
    static dataset from_jsonl(const context &ctx, const std::string &path,
                              const vqj_dataset_params &params = defaults<vqj_dataset_params>())
    {
        vqj_dataset *raw = nullptr;
        detail::check(vqj_dataset_from_jsonl(ctx.get(), &params, path.c_str(), &raw));
        return dataset(ctx, raw);
    }
    /** From the seeded synthetic generator. */
    static dataset synthetic(const context &ctx,
                             const vqj_synthetic_params &synthetic = defaults<vqj_synthetic_params>(),
                             const vqj_dataset_params &params = defaults<vqj_dataset_params>())
    {
        vqj_dataset *raw = nullptr;
        detail::check(vqj_dataset_synthetic(ctx.get(), &params, &synthetic, &raw));
        return dataset(ctx, raw);
    }
    dataset(dataset &&) noexcept = default;
    dataset &operator=(dataset &&) noexcept = default;

    vqj_dataset *get() const { return detail::live(h_, "dataset"); }
    size_t size() const { return vqj_dataset_num_examples(get()); }
    int context_window() const { return vqj_dataset_context_window(get()); }
    /** Example i: T context grids and the target (borrowed from the dataset). */
    std::pair<const vqj_grid *, const vqj_grid *> example(size_t i) const
    {
        const vqj_grid *c = nullptr, *t = nullptr;
        detail::check(vqj_dataset_example(get(), i, &c, &t));
        return {c, t};
    }
    size_t num_skipped() const { return vqj_dataset_num_skipped(get()); }
    /** (train, validation) copies. */
    std::pair<dataset, dataset> split(float validation_split, uint64_t seed) const
    {
        vqj_dataset *tr = nullptr, *va = nullptr;
        detail::check(vqj_dataset_split(get(), validation_split, seed, &tr, &va));
        return {dataset(ctx_, tr), dataset(ctx_, va)};
    }
    /** The visiting order of an epoch. */
    std::vector<size_t> shuffle(uint64_t seed, int64_t epoch) const
    {
        std::vector<size_t> order(size());
        detail::check(vqj_dataset_shuffle(get(), seed, epoch, order.data()));
        return order;
    }

private:
    dataset(const context &ctx, vqj_dataset *raw) : dataset(ctx.shared(), raw) {}
    dataset(std::shared_ptr<vqj_context> ctx, vqj_dataset *raw)
        : ctx_(ctx), h_(detail::own(raw, vqj_dataset_destroy, ctx))
    {
    }
    std::shared_ptr<vqj_context> ctx_;
    std::shared_ptr<vqj_dataset> h_;
};

/** @name Checkpoints (safetensors files; see vqj_checkpoint_save())
 *  @{ */
/** Views to store or load, each under a name prefix ("encoder." ...). */
using checkpoint_entries = std::vector<std::pair<std::string, weights>>;

/** @cond */
namespace detail {
inline std::vector<vqj_checkpoint_entry> entries(const checkpoint_entries &views)
{
    std::vector<vqj_checkpoint_entry> e;
    for (const auto &v : views)
        e.push_back(vqj_checkpoint_entry{v.first.empty() ? nullptr : v.first.c_str(), v.second.get()});
    return e;
}
} // namespace detail
/** @endcond */

/** Write the tensors of the views to `path` (atomically) with `metadata`. */
inline void save_checkpoint(const context &ctx, const std::string &path, const checkpoint_entries &views,
                            const std::vector<std::pair<std::string, std::string>> &metadata = {})
{
    std::vector<const char *> meta;
    for (const auto &kv : metadata) {
        meta.push_back(kv.first.c_str());
        meta.push_back(kv.second.c_str());
    }
    meta.push_back(nullptr);
    auto e = detail::entries(views);
    detail::check(vqj_checkpoint_save(ctx.get(), path.c_str(), e.data(), e.size(),
                                      metadata.empty() ? nullptr : meta.data()));
}

/** Read `path` into the views (all checked before any is written). */
inline void load_checkpoint(const context &ctx, const std::string &path, const checkpoint_entries &views,
                            bool allow_extra = false)
{
    auto e = detail::entries(views);
    detail::check(vqj_checkpoint_load(ctx.get(), path.c_str(), e.data(), e.size(),
                                      allow_extra ? VQJ_CHECKPOINT_ALLOW_EXTRA : 0u));
}

/** Check a checkpoint's header, layout, checksum and values. */
inline void verify_checkpoint(const context &ctx, const std::string &path)
{
    detail::check(vqj_checkpoint_verify(ctx.get(), path.c_str()));
}

/** The "__metadata__" value of `key`. */
inline std::string checkpoint_metadata(const context &ctx, const std::string &path, const std::string &key)
{
    size_t len = 0;
    detail::check(vqj_checkpoint_read_metadata(ctx.get(), path.c_str(), key.c_str(), nullptr, 0, &len));
    std::string s(len + 1, '\0');
    detail::check(vqj_checkpoint_read_metadata(ctx.get(), path.c_str(), key.c_str(), &s[0], s.size(), &len));
    s.resize(len);
    return s;
}
/** @} */

/** Metrics of the rows of x (n x d, row-major). */
inline vqj_embedding_metrics embedding_metrics(const context &ctx, const std::vector<float> &x, int d)
{
    vqj_embedding_metrics m{};
    m.size = sizeof m;
    if (d <= 0 || x.size() % static_cast<size_t>(d))
        throw error(VQJ_ERR_INVALID_ARGUMENT, "vqjepa::embedding_metrics: x is not n x d");
    detail::check(vqj_embedding_metrics_compute(ctx.get(), x.data(), static_cast<int>(x.size() / static_cast<size_t>(d)), d, &m));
    return m;
}

/** The sample window of one diagnostics interval (vqj_metrics_window):
 *  the last max_samples context and target projections and the codes used
 *  since the last reset. One thread at a time. */
class metrics_window {
public:
    metrics_window(const context &ctx, int dim, int max_samples, int num_codes)
    {
        vqj_metrics_window *raw = nullptr;
        detail::check(vqj_metrics_window_create(ctx.get(), dim, max_samples, num_codes, &raw));
        h_ = detail::own(raw, vqj_metrics_window_destroy, ctx.shared());
        dim_ = dim;
    }
    metrics_window(metrics_window &&) noexcept = default;
    metrics_window &operator=(metrics_window &&) noexcept = default;

    vqj_metrics_window *get() const { return detail::live(h_, "metrics_window"); }
    /** Append rows of context and target projections (rows x dim each). */
    void add_projections(const std::vector<float> &context, const std::vector<float> &target)
    {
        if (context.size() != target.size() || dim_ <= 0 || context.size() % static_cast<size_t>(dim_))
            throw error(VQJ_ERR_INVALID_ARGUMENT, "vqjepa::metrics_window::add_projections: not two rows x dim matrices");
        detail::check(vqj_metrics_window_add_projections(get(), context.data(), target.data(),
                                                         static_cast<int>(context.size() / static_cast<size_t>(dim_))));
    }
    void add_codes(const std::vector<int32_t> &codes)
    {
        detail::check(vqj_metrics_window_add_codes(get(), codes.data(), codes.size()));
    }
    vqj_window_metrics compute() const
    {
        vqj_window_metrics m{};
        m.size = sizeof m;
        detail::check(vqj_metrics_window_compute(get(), &m));
        return m;
    }
    int rows() const { return vqj_metrics_window_rows(get()); }
    void reset() { vqj_metrics_window_reset(get()); }

private:
    std::shared_ptr<vqj_metrics_window> h_;
    int dim_ = 0;
};

/** A run configuration (vqj_config): the defaults, or YAML over them.
 *  Any number of threads may read one; set() needs it to themselves. */
class config {
public:
    /** The built-in defaults. */
    explicit config(const context &ctx)
    {
        vqj_config *raw = nullptr;
        detail::check(vqj_config_default(ctx.get(), &raw));
        h_ = detail::own(raw, vqj_config_destroy, ctx.shared());
    }
    /** A YAML file over the defaults. */
    static config load(const context &ctx, const std::string &path)
    {
        vqj_config *raw = nullptr;
        detail::check(vqj_config_load(ctx.get(), path.c_str(), &raw));
        return config(detail::own(raw, vqj_config_destroy, ctx.shared()));
    }
    /** YAML text over the defaults; `name` stands for the path in messages. */
    static config parse(const context &ctx, const std::string &yaml, const std::string &name = "<config>")
    {
        vqj_config *raw = nullptr;
        detail::check(vqj_config_parse(ctx.get(), yaml.data(), yaml.size(), name.c_str(), &raw));
        return config(detail::own(raw, vqj_config_destroy, ctx.shared()));
    }
    config(config &&) noexcept = default;
    config &operator=(config &&) noexcept = default;

    const vqj_config *get() const { return detail::live(h_, "config"); }
    /** A module's params: `cfg.params<vqj_encoder_params>()`. */
    template <class P> P params() const;
    /** The run-level settings (strings owned by the config). */
    vqj_run_params run() const
    {
        vqj_run_params r{};
        r.size = sizeof r;
        detail::check(vqj_config_run(get(), &r));
        return r;
    }
    /** Set one key as a file would (vqj_config_set): set("seed", "7"). */
    void set(const std::string &key, const std::string &value)
    {
        detail::check(vqj_config_set(detail::live(h_, "config"), key.c_str(), value.c_str()));
    }
    /** A trainer with every part made from this configuration. */
    trainer make_trainer(const context &ctx) const { return trainer::from_config(ctx, get()); }
    /** The resolved configuration as YAML. */
    std::string yaml() const
    {
        char *text = nullptr;
        detail::check(vqj_config_write_yaml(get(), &text));
        std::string s(text);
        std::free(text);
        return s;
    }

private:
    explicit config(std::shared_ptr<vqj_config> h) : h_(std::move(h)) {}
    std::shared_ptr<vqj_config> h_;
};

/** @cond */
#define VQJEPA_HPP_CONFIG(T, fn)                                                               \
    template <> inline T config::params<T>() const                                             \
    {                                                                                          \
        T p = defaults<T>();                                                                   \
        detail::check(fn(get(), &p));                                                          \
        return p;                                                                              \
    }
VQJEPA_HPP_CONFIG(vqj_tokenizer_params, vqj_config_tokenizer_params)
VQJEPA_HPP_CONFIG(vqj_encoder_params, vqj_config_encoder_params)
VQJEPA_HPP_CONFIG(vqj_codebook_params, vqj_config_codebook_params)
VQJEPA_HPP_CONFIG(vqj_predictor_params, vqj_config_predictor_params)
VQJEPA_HPP_CONFIG(vqj_loss_params, vqj_config_loss_params)
VQJEPA_HPP_CONFIG(vqj_optimizer_params, vqj_config_optimizer_params)
VQJEPA_HPP_CONFIG(vqj_trainer_params, vqj_config_trainer_params)
VQJEPA_HPP_CONFIG(vqj_dataset_params, vqj_config_dataset_params)
VQJEPA_HPP_CONFIG(vqj_augment_params, vqj_config_augment_params)
VQJEPA_HPP_CONFIG(vqj_synthetic_params, vqj_config_synthetic_params)
#undef VQJEPA_HPP_CONFIG
/** @endcond */

} // namespace vqjepa

#endif /* VQJEPA_HPP */
