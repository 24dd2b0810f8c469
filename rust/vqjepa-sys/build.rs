//! Finds libvqjepa through the `pkg-config` program (no crates):
//! `pkg-config --libs --cflags vqjepa`, honouring PKG_CONFIG_PATH and the
//! PKG_CONFIG variable (another pkg-config binary). Set VQJEPA_STATIC=1 to
//! link libvqjepa.a (with `pkg-config --static`), or VQJEPA_LIB_DIR to a
//! folder holding libvqjepa.so to skip pkg-config.
use std::env;
use std::process::Command;

fn main() {
    for var in ["PKG_CONFIG_PATH", "PKG_CONFIG_LIBDIR", "PKG_CONFIG", "VQJEPA_STATIC", "VQJEPA_LIB_DIR"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=build.rs");

    if let Ok(dir) = env::var("VQJEPA_LIB_DIR") {
        println!("cargo:rustc-link-search=native={dir}");
        println!("cargo:rustc-link-lib=dylib=vqjepa");
        println!("cargo:libdir={dir}");
        return;
    }

    let statically = env::var("VQJEPA_STATIC").map(|v| v == "1").unwrap_or(false);
    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_string());
    let mut cmd = Command::new(&pkg_config);
    cmd.args(["--libs", "--cflags"]);
    if statically {
        cmd.arg("--static");
    }
    cmd.arg("vqjepa");
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!(
            "vqjepa-sys: cannot run `{pkg_config}` ({e}); install pkg-config, or set VQJEPA_LIB_DIR \
             to the folder holding libvqjepa.so"
        ),
    };
    if !out.status.success() {
        panic!(
            "vqjepa-sys: `{pkg_config} --libs --cflags vqjepa` failed: {}\n\
             Install libvqjepa (`make install PREFIX=...`) and point PKG_CONFIG_PATH at \
             PREFIX/lib/pkgconfig.",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let flags = String::from_utf8_lossy(&out.stdout).into_owned();
    for flag in flags.split_whitespace() {
        if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
            println!("cargo:libdir={dir}");
        } else if let Some(lib) = flag.strip_prefix("-l") {
            if lib == "vqjepa" && statically {
                println!("cargo:rustc-link-lib=static=vqjepa");
            } else {
                println!("cargo:rustc-link-lib={lib}");
            }
        } else if let Some(dir) = flag.strip_prefix("-I") {
            println!("cargo:include={dir}");
        }
    }
}
