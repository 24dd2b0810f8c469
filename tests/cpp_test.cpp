// Tests of include/vqjepa.hpp, the header-only C++17 wrapper: RAII handles,
// errors as vqjepa::error with the library's message, params through the C
// default functions, lifetimes that do not depend on destruction order.
// Built by `make bin/cpp_test` with -Wall -Wextra -Werror; run by `make check`.
#include <vqjepa.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>
#include <functional>
#include <string>
#include <thread>
#include <vector>

static int passed = 0, failed = 0;

#define EXPECT(cond)                                                                          \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            std::fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);          \
            throw std::runtime_error("expectation failed");                                   \
        }                                                                                     \
    } while (0)

static void run(const char *name, const std::function<void()> &fn)
{
    try {
        fn();
        passed++;
        std::printf("ok   %s\n", name);
    } catch (const std::exception &e) {
        failed++;
        std::printf("FAIL %s: %s\n", name, e.what());
    }
}

// The small configuration of examples/train_stages.c.
struct small_model {
    vqjepa::context ctx;
    vqjepa::encoder enc;
    vqjepa::codebook cb;
    vqjepa::predictor pred;
    vqjepa::loss loss;
    vqjepa::optimizer opt;

    static vqj_encoder_params ep()
    {
        auto p = vqjepa::defaults<vqj_encoder_params>();
        p.hidden_dim = 32;
        p.relational_layers = 1;
        p.relational_heads = 4;
        return p;
    }
    static vqj_codebook_params bp()
    {
        auto p = vqjepa::defaults<vqj_codebook_params>();
        p.num_embeddings = 16;
        p.dim = 32;
        return p;
    }
    static vqj_predictor_params pp()
    {
        auto p = vqjepa::defaults<vqj_predictor_params>();
        p.hidden_dim = 32;
        p.projection_dim = 16;
        return p;
    }
    static vqj_loss_params lp()
    {
        auto p = vqjepa::defaults<vqj_loss_params>();
        p.projection_dim = 16;
        p.queue_size = 32;
        p.sigreg_num_slices = 16;
        return p;
    }
    static vqj_optimizer_params op()
    {
        auto p = vqjepa::defaults<vqj_optimizer_params>();
        p.lr = 1e-3f;
        p.warmup_steps = 1;
        p.total_steps = 10;
        return p;
    }
    small_model()
        : ctx(vqjepa::context::cpu(7, 1)), enc(ctx, ep()), cb(ctx, bp()), pred(ctx, pp()),
          loss(ctx, lp()),
          opt(ctx, {enc.weights_view(), cb.weights_view(), pred.weights_view(), loss.weights_view()}, op())
    {
    }
};

static std::vector<vqjepa::grid> some_grids(int n, int seed)
{
    std::vector<vqjepa::grid> g;
    for (int i = 0; i < n; i++) {
        vqjepa::grid x(6 + (i + seed) % 3, 7);
        for (int r = 0; r < x.height(); r++)
            for (int c = 0; c < x.width(); c++)
                if ((r * 3 + c * 5 + i + seed) % 7 < 2)
                    x.at(r, c) = static_cast<uint8_t>(1 + (r + c + i) % 4);
        g.push_back(std::move(x));
    }
    return g;
}

int main()
{
    run("version matches the header", [] {
        char expect[32];
        std::snprintf(expect, sizeof expect, "%d.%d.%d", VQJ_VERSION_MAJOR, VQJ_VERSION_MINOR, VQJ_VERSION_PATCH);
        EXPECT(vqjepa::version() == expect);
        EXPECT(vqjepa::device_compiled(VQJ_DEVICE_CPU));
    });

    run("params come from the C default functions", [] {
        auto p = vqjepa::defaults<vqj_encoder_params>();
        EXPECT(p.size == sizeof(vqj_encoder_params));
        EXPECT(p.hidden_dim == 384);
        auto c = vqjepa::defaults<vqj_context_params>();
        EXPECT(c.seed == 123);
        auto t = vqjepa::defaults<vqj_trainer_params>();
        EXPECT(t.grad_accum_steps == 2);
    });

    run("context", [] {
        auto ctx = vqjepa::context::cpu(42, 1);
        EXPECT(ctx.seed() == 42);
        EXPECT(ctx.num_threads() == 1);
        EXPECT(ctx.device() == VQJ_DEVICE_CPU);
    });

    run("tokenize the README grid", [] {
        vqjepa::context ctx;
        vqjepa::tokens tok(ctx);
        std::vector<vqjepa::grid> grids{vqjepa::grid{{2, 2, 0, 0}, {2, 2, 0, 1}, {0, 0, 0, 0}}};
        tok.tokenize(grids);
        EXPECT(tok.num_grids() == 1);
        EXPECT(tok.num_objects() == 2);
        EXPECT(tok.feature_dim() == 23);
        auto f = tok.features();
        EXPECT(std::fabs(f[0] - 4.0f / 12.0f) < 1e-6f);
        EXPECT(f[6] == 2.0f);
        EXPECT(std::fabs(f[23] - 1.0f / 12.0f) < 1e-6f);
        EXPECT(tok.offsets() == (std::vector<int32_t>{0, 2}));
        auto adj = tok.adjacency(0);
        EXPECT(adj.size() == 4 && adj[0] == 0);
    });

    run("a bad grid throws vqjepa::error with the library's message", [] {
        vqjepa::context ctx;
        vqjepa::tokens tok(ctx);
        std::vector<vqjepa::grid> good{vqjepa::grid{{1}}};
        tok.tokenize(good);
        std::vector<vqjepa::grid> bad{vqjepa::grid{{1, 2}, {3, 11}}};
        bool threw = false;
        try {
            tok.tokenize(bad);
        } catch (const vqjepa::error &e) {
            threw = true;
            EXPECT(e.status() == VQJ_ERR_INVALID_ARGUMENT);
            std::string msg = e.what();
            EXPECT(msg.find("11") != std::string::npos);
            EXPECT(msg == vqj_last_error());
        }
        EXPECT(threw);
        EXPECT(tok.num_objects() == 1); // unchanged by the failed call
    });

    run("bad params throw with the field named", [] {
        vqjepa::context ctx;
        auto p = vqjepa::defaults<vqj_encoder_params>();
        p.hidden_dim = 30;
        p.relational_heads = 8;
        try {
            vqjepa::encoder e(ctx, p);
            EXPECT(false);
        } catch (const vqjepa::error &e) {
            EXPECT(e.status() == VQJ_ERR_INVALID_ARGUMENT);
            EXPECT(std::string(e.what()).size() > 10);
        }
        auto cp = vqjepa::defaults<vqj_context_params>();
        cp.num_threads = -1;
        try {
            vqjepa::context bad(cp);
            EXPECT(false);
        } catch (const vqjepa::error &e) {
            EXPECT(std::string(e.what()).find("num_threads") != std::string::npos);
        }
    });

    run("tensor read/write", [] {
        vqjepa::context ctx;
        vqjepa::tensor t(ctx, 2, 3);
        EXPECT(t.read() == std::vector<float>(6, 0.0f));
        t.write({1, 2, 3, 4, 5, 6});
        EXPECT(t.read()[5] == 6.0f);
        t.reshape(3, 2);
        EXPECT(t.rows() == 3 && t.cols() == 2);
        try {
            t.write({1, 2});
            EXPECT(false);
        } catch (const vqjepa::error &e) {
            EXPECT(e.status() == VQJ_ERR_INVALID_ARGUMENT);
        }
    });

    run("weights views", [] {
        small_model m;
        auto w = m.enc.weights_view();
        EXPECT(w.num_tensors() > 4);
        auto names = w.names();
        EXPECT(names[0] == "feature_mlp.fc1.weight");
        auto v = w.read(names[0]);
        EXPECT(v.size() == 23u * 32u);
        v[0] = 0.25f;
        w.write(names[0], v);
        EXPECT(w.read(names[0])[0] == 0.25f);
        try {
            w.read("no.such.tensor");
            EXPECT(false);
        } catch (const vqjepa::error &e) {
            EXPECT(e.status() == VQJ_ERR_INVALID_ARGUMENT);
        }
    });

    run("trainer steps on a small model", [] {
        small_model m;
        vqjepa::trainer tr(m.ctx, m.enc, m.cb, m.pred, m.loss, m.opt);
        auto before = m.enc.weights_view().read("feature_mlp.fc1.weight");
        const int batch = 4;
        for (int s = 0; s < 4; s++) {
            auto ctxg = some_grids(batch * 3, s);
            auto tgt = some_grids(batch, s + 100);
            vqj_train_metrics mt = tr.step(ctxg, tgt);
            EXPECT(!mt.skipped);
            EXPECT(std::isfinite(mt.loss));
            EXPECT(mt.batch == batch);
            EXPECT(mt.optimizer_step == (s % 2 == 1));
        }
        EXPECT(m.opt.steps() == 2);
        EXPECT(tr.counters().first == 4);
        auto after = m.enc.weights_view().read("feature_mlp.fc1.weight");
        EXPECT(before != after);
        EXPECT(tr.context_projections().rows() == batch);
        EXPECT(tr.target_projections().cols() == 16);
        EXPECT(tr.target_encoder_weights().num_tensors() == m.enc.weights_view().num_tensors());
        // two optimizer steps, each pushing its cycle's two micro-batches
        EXPECT(m.loss.queue_fill() == 4 * batch);
        auto ev = tr.evaluate(some_grids(batch * 3, 9), some_grids(batch, 10));
        EXPECT(std::isfinite(ev.loss));
        // a context grid count that is not batch * T
        try {
            tr.step(some_grids(5, 0), some_grids(batch, 0));
            EXPECT(false);
        } catch (const vqjepa::error &e) {
            EXPECT(e.status() == VQJ_ERR_INVALID_ARGUMENT);
            EXPECT(std::string(e.what()).find("context grids") != std::string::npos);
        }
        // fewer context grids than batch * T throw before the library reads them
        for (int n : {0, 1, 3 * batch - 1, 3 * batch + 1}) {
            bool threw = false;
            try {
                tr.evaluate(some_grids(n, 0), some_grids(batch, 0));
            } catch (const vqjepa::error &e) {
                threw = e.status() == VQJ_ERR_INVALID_ARGUMENT;
            }
            EXPECT(threw);
        }
    });

    run("objects outlive the wrappers they came from", [] {
        // The trainer keeps its context and borrowed handles alive, so the
        // model may go out of scope first.
        std::unique_ptr<vqjepa::trainer> tr;
        {
            small_model m;
            tr.reset(new vqjepa::trainer(m.ctx, m.enc, m.cb, m.pred, m.loss, m.opt));
        }
        auto mt = tr->step(some_grids(6, 1), some_grids(2, 2));
        EXPECT(!mt.skipped);
        tr.reset();
        // a moved-from handle throws instead of crashing
        vqjepa::context ctx;
        vqjepa::tensor a(ctx, 1, 1);
        vqjepa::tensor b = std::move(a);
        EXPECT(b.rows() == 1);
        try {
            (void)a.rows(); // NOLINT(bugprone-use-after-move)
            EXPECT(false);
        } catch (const vqjepa::error &e) {
            EXPECT(e.status() == VQJ_ERR_STATE);
        }
    });

    run("codebook forward gives codes", [] {
        small_model m;
        vqjepa::tokens tok(m.ctx);
        tok.tokenize(some_grids(3, 4));
        vqjepa::tensor z(m.ctx), q(m.ctx);
        m.enc.forward(tok, false, z);
        std::vector<int32_t> codes;
        auto st = m.cb.forward(z, false, q, &codes);
        EXPECT(codes.size() == tok.num_objects());
        for (int32_t c : codes)
            EXPECT(c >= 0 && c < 16);
        EXPECT(st.active_codes >= 1);
        EXPECT(m.cb.ema_usage().size() == 16);
    });

    run("synthetic dataset, split and shuffle", [] {
        vqjepa::context ctx;
        auto sp = vqjepa::defaults<vqj_synthetic_params>();
        sp.num_examples = 20;
        auto ds = vqjepa::dataset::synthetic(ctx, sp);
        EXPECT(ds.size() == 20);
        EXPECT(ds.context_window() == 3);
        auto ex = ds.example(0);
        EXPECT(ex.first != nullptr && ex.second != nullptr);
        vqjepa::grid copy(ex.first[0]);
        EXPECT(copy.height() >= 6);
        auto parts = ds.split(0.25f, 1);
        EXPECT(parts.first.size() + parts.second.size() == 20);
        auto order = ds.shuffle(1, 0);
        EXPECT(order.size() == 20);
        try {
            ds.example(20);
            EXPECT(false);
        } catch (const vqjepa::error &e) {
            EXPECT(e.status() == VQJ_ERR_INVALID_ARGUMENT);
        }
    });

    run("ARC task parse errors carry the position", [] {
        vqjepa::context ctx;
        auto t = vqjepa::arc_task::parse(ctx, R"({"train":[{"input":[[1,2]],"output":[[3]]}]})", "t");
        EXPECT(t.num_pairs(VQJ_ARC_TRAIN) == 1);
        EXPECT(t.input(VQJ_ARC_TRAIN, 0)->width == 2);
        try {
            vqjepa::arc_task::parse(ctx, "{\"train\": [", "broken");
            EXPECT(false);
        } catch (const vqjepa::error &e) {
            EXPECT(e.status() == VQJ_ERR_PARSE);
            EXPECT(std::string(e.what()).find("broken") != std::string::npos);
        }
    });

    run("errors are per thread", [] {
        vqjepa::context ctx;
        std::string other;
        std::thread th([&] {
            vqjepa::tokens tok(ctx);
            std::vector<vqjepa::grid> bad{vqjepa::grid{{12}}};
            try {
                tok.tokenize(bad);
            } catch (const vqjepa::error &e) {
                other = e.what();
            }
        });
        th.join();
        EXPECT(!other.empty());
        vqjepa::tokens tok(ctx);
        std::vector<vqjepa::grid> good{vqjepa::grid{{1}}};
        tok.tokenize(good);
    });

    run("checkpoints: trainer save/load, views, metadata, a corrupt file", [] {
        const std::string dir = "/tmp/vqjepa_cpp_test_" + std::to_string(::getpid());
        std::string mk = "mkdir -p " + dir;
        EXPECT(std::system(mk.c_str()) == 0);
        small_model a;
        vqjepa::trainer ta(a.ctx, a.enc, a.cb, a.pred, a.loss, a.opt);
        for (int s = 0; s < 2; s++)
            ta.step(some_grids(12, s), some_grids(4, s + 7));
        const std::string path = dir + "/t.safetensors";
        ta.save(path, "seed: 7\n", {{"epoch", "2"}});
        vqjepa::verify_checkpoint(a.ctx, path);
        EXPECT(vqjepa::checkpoint_metadata(a.ctx, path, "epoch") == "2");
        EXPECT(vqjepa::checkpoint_metadata(a.ctx, path, "config") == "seed: 7\n");
        small_model b;
        vqjepa::trainer tb(b.ctx, b.enc, b.cb, b.pred, b.loss, b.opt);
        tb.load(path);
        EXPECT(a.enc.weights_view().read("feature_mlp.fc1.weight") ==
               b.enc.weights_view().read("feature_mlp.fc1.weight"));
        EXPECT(b.opt.steps() == a.opt.steps());
        auto ma = ta.step(some_grids(12, 40), some_grids(4, 41));
        auto mb = tb.step(some_grids(12, 40), some_grids(4, 41));
        EXPECT(ma.loss == mb.loss);
        try {
            ta.save(dir + "/pending.safetensors"); // half an accumulation cycle
            EXPECT(false);
        } catch (const vqjepa::error &e) {
            EXPECT(e.status() == VQJ_ERR_STATE);
        }
        const std::string views = dir + "/views.safetensors";
        vqjepa::save_checkpoint(a.ctx, views, {{"encoder.", a.enc.weights_view()}});
        small_model c;
        vqjepa::load_checkpoint(c.ctx, views, {{"encoder.", c.enc.weights_view()}});
        EXPECT(c.enc.weights_view().read("feature_mlp.fc2.bias") == a.enc.weights_view().read("feature_mlp.fc2.bias"));
        std::FILE *f = std::fopen(views.c_str(), "r+b");
        EXPECT(f != nullptr);
        std::fseek(f, -3, SEEK_END);
        int byte = std::fgetc(f);
        std::fseek(f, -3, SEEK_END);
        std::fputc(byte ^ 0x40, f);
        std::fclose(f);
        try {
            vqjepa::verify_checkpoint(a.ctx, views);
            EXPECT(false);
        } catch (const vqjepa::error &e) {
            EXPECT(e.status() == VQJ_ERR_PARSE);
            EXPECT(std::string(e.what()).find(views) != std::string::npos);
        }
        std::string rm = "rm -rf " + dir;
        EXPECT(std::system(rm.c_str()) == 0);
    });

    run("trainer from a config, model loaded from its checkpoint", [] {
        vqjepa::context ctx(vqjepa::context::cpu(1, 1));
        vqjepa::config cfg = vqjepa::config::parse(
            ctx, "seed: 9\ntokenizer:\n  max_objects: 16\nobject_encoder:\n  hidden_dim: 32\n"
                 "  num_embeddings: 16\n  relational_layers: 1\n  relational_heads: 4\n"
                 "model:\n  projection_dim: 16\ntraining:\n  grad_accum_steps: 1\n"
                 "loss:\n  queue_size: 32\nsigreg:\n  num_slices: 16\n");
        vqjepa::trainer tr = cfg.make_trainer(ctx);
        for (int s = 0; s < 2; s++)
            tr.step(some_grids(12, s), some_grids(4, s + 3));
        const std::string path = "/tmp/vqjepa_cpp_model_" + std::to_string(::getpid()) + ".safetensors";
        tr.save(path); /* the configuration goes with it */
        vqjepa::grid g{{2, 2, 0, 0}, {2, 2, 0, 1}, {0, 0, 0, 0}};
        auto live = tr.make_model().encode(g);
        auto loaded = vqjepa::model::load(ctx, path).encode(g);
        EXPECT(live.codes == loaded.codes && live.embedding == loaded.embedding);
        std::remove(path.c_str());
        try {
            vqjepa::model::load(ctx, path);
            EXPECT(false);
        } catch (const vqjepa::error &e) {
            EXPECT(e.status() == VQJ_ERR_IO);
        }
        cfg.set("seed", "3");
        EXPECT(cfg.run().seed == 3);
    });

    run("inference model: codes, embeddings, predictions from threads", [] {
        small_model m;
        vqjepa::trainer tr(m.ctx, m.enc, m.cb, m.pred, m.loss, m.opt);
        for (int s = 0; s < 2; s++)
            tr.step(some_grids(12, s), some_grids(4, s + 3));
        vqjepa::model model = tr.make_model();
        EXPECT(model.embedding_dim() == 16 && model.context_window() == 3 && model.num_codes() == 16);
        auto e = model.encode(vqjepa::grid{{2, 2, 0, 0}, {2, 2, 0, 1}, {0, 0, 0, 0}});
        EXPECT(e.codes.size() == 2);
        auto lc = model.encode_levels(vqjepa::grid{{2, 2, 0, 0}, {2, 2, 0, 1}, {0, 0, 0, 0}});
        EXPECT(model.num_quantizers() == 1 && lc.index.size() == 2 && lc.levels.size() == 2);
        EXPECT(lc.index[0] == e.codes[0] && lc.levels[1] == e.codes[1]);
        float norm = 0;
        for (float x : e.embedding)
            norm += x * x;
        EXPECT(std::fabs(norm - 1.0f) < 1e-4f);
        auto p = model.predict(some_grids(3, 5));
        EXPECT(vqjepa::latent_distance(p, p) == 0.0f);
        float d = vqjepa::latent_distance(p, e.embedding);
        EXPECT(d >= 0.0f && d <= 4.0f);
        EXPECT(model.predict_batch(vqjepa::views(some_grids(6, 5))).size() == 32);
        EXPECT(model.encode(some_grids(4, 1)).size() == 4);
        try {
            model.encode(vqjepa::grid{{1, 12}});
            EXPECT(false);
        } catch (const vqjepa::error &err) {
            EXPECT(std::string(err.what()).find("12") != std::string::npos);
        }
        auto grids = some_grids(6, 9);
        std::vector<std::vector<float>> want;
        for (const auto &g : grids)
            want.push_back(model.encode(g).embedding);
        std::vector<int> ok(4, 1);
        std::vector<std::thread> threads;
        for (int k = 0; k < 4; k++)
            threads.emplace_back([&, k] {
                for (size_t i = 0; i < grids.size(); i++)
                    if (model.encode(grids[i]).embedding != want[i])
                        ok[static_cast<size_t>(k)] = 0;
            });
        for (auto &t : threads)
            t.join();
        for (int v : ok)
            EXPECT(v == 1);
    });

    run("metrics window and config", [] {
        small_model m;
        vqjepa::trainer tr(m.ctx, m.enc, m.cb, m.pred, m.loss, m.opt);
        vqjepa::metrics_window w(m.ctx, 16, 32, 16);
        for (int s = 0; s < 4; s++) {
            tr.step(some_grids(12, s), some_grids(4, s + 1));
            w.add_projections(tr.context_projections().read(), tr.target_projections().read());
            w.add_codes(tr.codes());
        }
        EXPECT(w.rows() == 16);
        auto r = w.compute();
        EXPECT(r.context.samples == 16 && r.num_codes == 16 && r.active_codes > 0);
        w.reset();
        EXPECT(w.rows() == 0);

        auto cfg = vqjepa::config::parse(m.ctx, "object_encoder:\n  hidden_dim: 32\n  relational_heads: 4\n", "t.yaml");
        EXPECT(cfg.params<vqj_encoder_params>().hidden_dim == 32);
        EXPECT(cfg.params<vqj_codebook_params>().dim == 32);
        EXPECT(cfg.yaml().find("hidden_dim: 32") != std::string::npos);
        EXPECT(cfg.run().epochs >= 1);
        try {
            vqjepa::config::parse(m.ctx, "training:\n  epochs: 0\n", "bad.yaml");
            EXPECT(false);
        } catch (const vqjepa::error &e) {
            EXPECT(std::string(e.what()).find("bad.yaml") != std::string::npos);
        }
    });

    std::printf("cpp_test: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
