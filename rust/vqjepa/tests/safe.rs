//! Tests of the safe wrapper against the installed library
//! (tests/rust_test.sh installs it into a temporary prefix).
use std::path::PathBuf;
use vqjepa::*;

fn readme_grid() -> Grid {
    Grid::from_rows(&[[2u8, 2, 0, 0], [2, 2, 0, 1], [0, 0, 0, 0]]).unwrap()
}

fn some_grids(n: usize, seed: usize) -> Vec<Grid> {
    (0..n)
        .map(|i| {
            let mut g = Grid::new(6 + (i + seed) % 3, 7, 0);
            for r in 0..g.height() {
                for c in 0..7 {
                    if (r * 3 + c * 5 + i + seed) % 7 < 2 {
                        g.set(r, c, (1 + (r + c + i) % 4) as u8);
                    }
                }
            }
            g
        })
        .collect()
}

fn small_config() -> TrainerConfig {
    let mut c = TrainerConfig::with_sizes(32, 16, 16);
    c.encoder.relational_layers = 1;
    c.encoder.relational_heads = 4;
    c.codebook.refresh_interval = 3;
    c.loss.queue_size = 32;
    c.loss.sigreg_num_slices = 16;
    c.optimizer.lr = 1e-3;
    c.optimizer.warmup_steps = 1;
    c.optimizer.total_steps = 20;
    c
}

fn train(tr: &mut Trainer<'_>, steps: usize, seed: usize) -> Vec<Metrics> {
    (0..steps).map(|s| tr.step(&some_grids(12, seed + s), &some_grids(4, seed + s + 100)).unwrap()).collect()
}

fn tmp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vqjepa-rs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn version_matches_the_sys_constants() {
    let v = format!("{}.{}.{}", sys::VQJ_VERSION_MAJOR, sys::VQJ_VERSION_MINOR, sys::VQJ_VERSION_PATCH);
    assert_eq!(version(), v);
    assert!(device_compiled(Device::Cpu));
}

#[test]
fn thread_safety_markers() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Context>();
    send_sync::<Model<'static>>();
    send_sync::<Dataset<'static>>();
    send_sync::<Config<'static>>();
    send::<Encoder<'static>>();
    send::<Trainer<'static>>();
    send::<Tokens<'static>>();
    // Encoder, Trainer, Tokens... are not Sync: a `&Encoder` cannot cross
    // threads (checked by the compiler wherever one tries).
}

#[test]
fn tokenize_the_readme_grid() {
    let ctx = Context::cpu(1, 1).unwrap();
    let mut tokens = Tokens::new(&ctx, &TokenizerParams::defaults()).unwrap();
    tokens.tokenize(&[readme_grid()]).unwrap();
    assert_eq!(tokens.num_grids(), 1);
    assert_eq!(tokens.num_objects(), 2);
    assert_eq!(tokens.feature_dim(), 23);
    let f = tokens.features();
    assert!((f[0] - 4.0 / 12.0).abs() < 1e-6);
    assert_eq!(f[6], 2.0);
    assert!((f[23] - 1.0 / 12.0).abs() < 1e-6);
    assert_eq!(tokens.offsets(), &[0, 2]);
    assert_eq!(tokens.adjacency(0).unwrap(), &[0, 0, 0, 0]);
    assert!(tokens.adjacency(1).is_none());
}

#[test]
fn errors_carry_the_library_message() {
    let ctx = Context::cpu(1, 1).unwrap();
    let mut tokens = Tokens::new(&ctx, &TokenizerParams::defaults()).unwrap();
    tokens.tokenize(&[Grid::from_rows(&[[1u8]]).unwrap()]).unwrap();
    let bad = Grid::from_rows(&[[1u8, 2], [3, 11]]).unwrap();
    let e = tokens.tokenize(&[bad]).unwrap_err();
    assert_eq!(e.status(), Status::InvalidArgument);
    assert!(e.message().contains("11"), "{e}");
    assert_eq!(tokens.num_objects(), 1); // unchanged

    let mut p = ContextParams::defaults();
    p.num_threads = -1;
    let e = Context::new(&p).err().unwrap();
    assert!(e.to_string().contains("num_threads"), "{e}");
    assert_eq!(e.status().name(), "invalid argument");

    let mut ep = EncoderParams::defaults();
    ep.hidden_dim = 30;
    let e = Encoder::new(&ctx, &ep).err().unwrap();
    assert_eq!(e.status(), Status::InvalidArgument);
    assert!(!e.message().is_empty());

    assert!(Grid::from_rows(&[vec![1u8, 2], vec![3]]).is_err());
    let e = ArcTask::parse(&ctx, "{\"train\": [", "broken").err().unwrap();
    assert_eq!(e.status(), Status::Parse);
    assert!(e.message().contains("broken"));
    let e = ArcTask::load(&ctx, "/no/such/task.json").err().unwrap();
    assert_eq!(e.status(), Status::Io);
}

#[test]
fn tensors_and_weights() {
    let ctx = Context::cpu(1, 1).unwrap();
    let t = Tensor::new(&ctx, 2, 3).unwrap();
    assert_eq!(t.read().unwrap(), vec![0.0; 6]);
    t.write(&[1., 2., 3., 4., 5., 6.]).unwrap();
    assert_eq!(t.read().unwrap()[5], 6.0);
    assert_eq!(t.write(&[1.0]).unwrap_err().status(), Status::InvalidArgument);

    let mut ep = EncoderParams::defaults();
    ep.hidden_dim = 16;
    ep.relational_layers = 1;
    ep.relational_heads = 2;
    let enc = Encoder::new(&ctx, &ep).unwrap();
    let w = enc.weights();
    let infos = w.infos().unwrap();
    assert_eq!(infos[0].name, "feature_mlp.fc1.weight");
    assert_eq!(infos[0].shape, vec![16, 23]);
    let mut v = w.read("feature_mlp.fc1.weight").unwrap();
    v[0] = 0.5;
    w.write("feature_mlp.fc1.weight", &v).unwrap();
    assert_eq!(w.read("feature_mlp.fc1.weight").unwrap()[0], 0.5);
    v[1] = f32::NAN;
    assert_eq!(w.write("feature_mlp.fc1.weight", &v).unwrap_err().status(), Status::Numeric);
    assert!(w.read("nope").is_err());
}

#[test]
fn trainer_steps_and_checkpoints() {
    let ctx = Context::cpu(7, 1).unwrap();
    let mut a = Trainer::new(&ctx, &small_config()).unwrap();
    let before = a.encoder().weights().read("feature_mlp.fc1.weight").unwrap();
    let ms = train(&mut a, 4, 0);
    for (i, m) in ms.iter().enumerate() {
        assert_eq!(m.skipped, 0);
        assert_eq!(m.batch, 4);
        assert_eq!(m.optimizer_step, (i % 2) as i32);
        assert!(m.loss.is_finite());
    }
    assert_eq!(a.optimizer_steps(), 2);
    assert_ne!(before, a.encoder().weights().read("feature_mlp.fc1.weight").unwrap());
    assert_eq!(a.context_projections().unwrap().len(), 4 * 16);
    assert_eq!(a.codes().len(), ms[3].context_tokens as usize);
    assert_eq!(a.loss().queue_fill().unwrap(), 16); // 2 optimizer steps x 2 micro-batches x 4
    assert_eq!(a.counters().unwrap().0, 4);
    let e = a.step(&some_grids(5, 0), &some_grids(4, 0)).unwrap_err();
    assert_eq!(e.status(), Status::InvalidArgument);

    // save, load into a fresh trainer, continue identically
    let path = tmp_path("trainer.safetensors");
    a.save(&path, Some("seed: 7\n"), &[("epoch", "3")]).unwrap();
    verify_checkpoint(&ctx, &path).unwrap();
    assert_eq!(checkpoint_metadata(&ctx, &path, "epoch").unwrap(), "3");
    assert_eq!(checkpoint_metadata(&ctx, &path, "config").unwrap(), "seed: 7\n");
    let mut b = Trainer::new(&ctx, &small_config()).unwrap();
    b.load(&path).unwrap();
    for name in a.encoder().weights().names().unwrap() {
        assert_eq!(a.encoder().weights().read(&name).unwrap(), b.encoder().weights().read(&name).unwrap());
    }
    let la: Vec<f32> = train(&mut a, 2, 50).iter().map(|m| m.loss).collect();
    let lb: Vec<f32> = train(&mut b, 2, 50).iter().map(|m| m.loss).collect();
    assert_eq!(la, lb);

    // a half-finished accumulation cycle cannot be saved
    train(&mut a, 1, 9);
    assert_eq!(a.save(tmp_path("pending.safetensors"), None, &[]).unwrap_err().status(), Status::State);

    // generic checkpoints of views
    let g = tmp_path("views.safetensors");
    save_checkpoint(&ctx, &g, &[("encoder.", b.encoder().weights()), ("", b.codebook().weights())], &[("k", "v")])
        .unwrap();
    let c = Trainer::new(&ctx, &small_config()).unwrap();
    assert_eq!(
        load_checkpoint(&ctx, &g, &[("encoder.", c.encoder().weights())], false).unwrap_err().status(),
        Status::InvalidArgument
    );
    load_checkpoint(&ctx, &g, &[("encoder.", c.encoder().weights())], true).unwrap();
    assert_eq!(
        c.encoder().weights().read("feature_mlp.fc2.bias").unwrap(),
        b.encoder().weights().read("feature_mlp.fc2.bias").unwrap()
    );
    let mut bytes = std::fs::read(&g).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x40;
    std::fs::write(&g, bytes).unwrap();
    let e = verify_checkpoint(&ctx, &g).unwrap_err();
    assert_eq!(e.status(), Status::Parse);
    assert!(e.message().contains(g.to_str().unwrap()), "{e}");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn model_from_threads() {
    let ctx = Context::cpu(7, 1).unwrap();
    let mut tr = Trainer::new(&ctx, &small_config()).unwrap();
    train(&mut tr, 2, 0);
    let model = tr.model().unwrap();
    assert_eq!(
        (model.embedding_dim(), model.context_window(), model.num_codes(), model.max_objects()),
        (16, 3, 16, 16)
    );
    let enc = model.encode(&readme_grid()).unwrap();
    assert_eq!(enc.codes.len(), 2);
    assert!(enc.codes.iter().all(|&c| (0..16).contains(&c)));
    let norm: f32 = enc.embedding.iter().map(|x| x * x).sum();
    assert!((norm - 1.0).abs() < 1e-4);
    let e = model.encode(&Grid::from_rows(&[[1u8, 12]]).unwrap()).unwrap_err();
    assert!(e.message().contains("12"), "{e}");

    let p = model.predict(&some_grids(3, 4)).unwrap();
    assert_eq!(latent_distance(&p, &p).unwrap(), 0.0);
    assert!((latent_distance(&[1.0, 0.0], &[0.0, 1.0]).unwrap() - 2.0).abs() < 1e-6);
    assert_eq!(latent_distance(&[f32::INFINITY, 0.0], &[1.0, 0.0]).unwrap_err().status(), Status::Numeric);
    assert_eq!(model.predict(&some_grids(2, 4)).unwrap_err().status(), Status::InvalidArgument);
    assert_eq!(model.predict_batch(&some_grids(6, 4)).unwrap().len(), 2);
    assert_eq!(model.encode_batch(&some_grids(5, 1)).unwrap().len(), 5);

    // one model, four threads: the same results as alone
    let grids = some_grids(6, 8);
    let want: Vec<Encoded> = grids.iter().map(|g| model.encode(g).unwrap()).collect();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for (g, w) in grids.iter().zip(&want) {
                    assert_eq!(&model.encode(g).unwrap(), w);
                }
            });
        }
    });
    drop(model);
    train(&mut tr, 2, 3); // the trainer is usable again once the model is gone
}

#[test]
fn datasets_and_config() {
    let ctx = Context::cpu(3, 1).unwrap();
    let mut sp = SyntheticParams::defaults();
    sp.num_examples = 12;
    let ds = Dataset::synthetic(&ctx, &sp, &DatasetParams::defaults()).unwrap();
    assert_eq!(ds.len(), 12);
    let (context, target) = ds.example(0).unwrap();
    assert_eq!(context.len(), 3);
    assert!(target.height() >= 1);
    assert_eq!(ds.example(12).unwrap_err().status(), Status::InvalidArgument);
    let (tr, va) = ds.split(0.25, 1).unwrap();
    assert_eq!(tr.len() + va.len(), 12);
    let mut order = ds.shuffle(1, 0).unwrap();
    order.sort();
    assert_eq!(order, (0..12).collect::<Vec<_>>());
    // a dataset is read from several threads at once
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| assert_eq!(ds.example(5).unwrap().0.len(), 3));
        }
    });

    let cfg = Config::parse(&ctx, "object_encoder:\n  hidden_dim: 64\n", "test.yaml").unwrap();
    let tc = cfg.trainer_config().unwrap();
    assert_eq!(tc.encoder.hidden_dim, 64);
    assert_eq!(tc.codebook.dim, 64);
    assert!(cfg.to_yaml().unwrap().contains("hidden_dim: 64"));
    let e = Config::parse(&ctx, "training:\n  epochs: 0\n", "bad.yaml").err().unwrap();
    assert!(e.message().contains("bad.yaml"), "{e}");

    let mut trainer = Trainer::new(&ctx, &small_config()).unwrap();
    let w = MetricsWindow::new(&ctx, 16, 32, 16).unwrap();
    for s in 0..4 {
        trainer.step(&some_grids(12, s), &some_grids(4, s + 1)).unwrap();
        w.add_projections(&trainer.context_projections().unwrap(), &trainer.target_projections().unwrap()).unwrap();
        w.add_codes(&trainer.codes()).unwrap();
    }
    assert_eq!(w.rows(), 16);
    let r = w.compute().unwrap();
    assert_eq!((r.context.samples, r.num_codes), (16, 16));
    assert!(r.active_codes > 0);
    assert_eq!(w.add_codes(&[99]).unwrap_err().status(), Status::InvalidArgument);
    w.reset();
    assert_eq!(w.rows(), 0);

    let x: Vec<f32> = (0..80).map(|i| ((i * 7) % 5) as f32).collect();
    let m = embedding_metrics(&ctx, &x, 4).unwrap();
    assert_eq!(m.samples, 20);
}

#[test]
fn log_callback() {
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let mut p = ContextParams::defaults();
    p.log_level = sys::VQJ_LOG_DEBUG;
    let ctx = Context::with_log(&p, move |level, msg| s2.lock().unwrap().push((level, msg.to_string()))).unwrap();
    let _ = Config::parse(&ctx, "training:\n  num_workers: 4\n", "w.yaml").unwrap();
    drop(ctx);
    let seen = seen.lock().unwrap();
    assert!(seen.iter().any(|(l, m)| *l == sys::VQJ_LOG_WARNING && m.contains("num_workers")), "{seen:?}");
}

#[test]
fn trainer_from_config_and_model_load() {
    let ctx = Context::cpu(1, 1).unwrap();
    let other = Context::cpu(2, 1).unwrap();
    let yaml = "seed: 9\ntokenizer:\n  max_objects: 16\nobject_encoder:\n  hidden_dim: 32\n  \
                num_embeddings: 16\n  relational_layers: 1\n  relational_heads: 4\nmodel:\n  \
                projection_dim: 16\ntraining:\n  grad_accum_steps: 1\nloss:\n  queue_size: 32\n\
                sigreg:\n  num_slices: 16\n";
    let mut cfg = Config::parse(&ctx, yaml, "small").unwrap();
    let mut a = Trainer::from_config(&ctx, &cfg).unwrap();
    let b = Trainer::from_config(&other, &cfg).unwrap();
    // the configuration's seed, not the context's
    let name = "feature_mlp.fc1.weight";
    assert_eq!(a.encoder().weights().read(name).unwrap(), b.encoder().weights().read(name).unwrap());
    train(&mut a, 2, 0);
    let dir = std::env::temp_dir().join(format!("vqj_rust_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    a.save(&path, None, &[]).unwrap();
    let live = a.model().unwrap().encode(&readme_grid()).unwrap();
    let loaded = Model::load(&ctx, &path).unwrap();
    assert_eq!(loaded.encode(&readme_grid()).unwrap(), live);
    drop(loaded);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(Model::load(&ctx, dir.join("none.safetensors")).is_err());
    cfg.set("seed", "3").unwrap();
    assert_eq!(cfg.set("training.epochs", "0").unwrap_err().status(), Status::InvalidArgument);
}

#[test]
fn mismatched_batches_are_refused() {
    // A context slice shorter than targets * T must be an error, never a
    // read past its end.
    let ctx = Context::cpu(7, 1).unwrap();
    let mut tr = Trainer::new(&ctx, &small_config()).unwrap();
    let t = small_config().predictor.context_window as usize;
    let targets = some_grids(2, 1);
    for n in [0, 1, t, 2 * t - 1, 2 * t + 1] {
        let e = tr.step(&some_grids(n, 2), &targets).unwrap_err();
        assert_eq!(e.status(), Status::InvalidArgument);
        assert!(e.message().contains("context grids"), "{}", e.message());
        assert!(tr.evaluate(&some_grids(n, 2), &targets).is_err());
    }
    assert!(tr.step(&some_grids(0, 2), &some_grids(0, 1)).is_err());
    tr.step(&some_grids(2 * t, 2), &targets).unwrap(); // still usable
}
