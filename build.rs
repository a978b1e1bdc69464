//! Links libtorch so the binary runs without LD_LIBRARY_PATH and sees CUDA when present.
//!
//! torch-sys locates libtorch (LIBTORCH, set to `.venv/libtorch` by `.cargo/config.toml`) and passes
//! its lib dir to us as DEP_TCH_LIBTORCH_LIB. We add two things it does not:
//! an rpath to that dir, and `--no-as-needed -ltorch_cuda`, because no symbol of libtorch_cuda is
//! referenced directly and the linker would drop it, leaving `Cuda::is_available()` false.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let lib = match std::env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(l) => l,
        Err(_) => fail("torch-sys did not report a libtorch lib directory"),
    };
    let lib = Path::new(&lib);
    if !lib.join("libtorch_cpu.so").exists() && !lib.join("libtorch_cpu.dylib").exists() {
        fail(&format!("no libtorch_cpu in {}", lib.display()));
    }
    // The wheel has torch/version.py, a libtorch zip has build-version; check whichever exists.
    let root = lib.parent().unwrap_or(lib);
    let version = std::fs::read_to_string(root.join("build-version"))
        .ok()
        .or_else(|| {
            let py = std::fs::read_to_string(root.join("version.py")).ok()?;
            let line = py.lines().find(|l| l.starts_with("__version__"))?;
            Some(line.split('\'').nth(1)?.to_string())
        });
    if let Some(v) = version {
        let v = v.trim().split('+').next().unwrap_or("").to_string();
        if v != "2.13.0" {
            fail(&format!(
                "libtorch at {} is version {v}, tch 0.26 needs 2.13.0",
                root.display()
            ));
        }
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    let cuda = lib.join("libtorch_cuda.so").exists();
    if cuda {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-lc10_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
    c10d_shim(root, cuda);
}

/// The CUDA and NCCL headers ProcessGroupNCCL.hpp includes, from the wheel's nvidia-* packages
/// (with nvidia-cuda-crt and nvidia-cuda-cccl, which `make setup` adds), if all are there.
fn nccl_includes(torch: &Path) -> Option<Vec<std::path::PathBuf>> {
    let nvidia = torch.canonicalize().ok()?.parent()?.join("nvidia");
    let cu = std::fs::read_dir(&nvidia)
        .ok()?
        .flatten()
        .map(|e| e.path().join("include"))
        .find(|p| p.join("cuda_runtime.h").exists())?;
    let nccl = nvidia.join("nccl/include");
    let all = [
        cu.join("crt/host_config.h"),
        cu.join("nv/target"),
        nccl.join("nccl.h"),
    ];
    all.iter().all(|p| p.exists()).then(|| vec![cu, nccl])
}

/// Compiles src/train/dist/c10d.cpp (torch.distributed's engine for `tch`) against the wheel's
/// headers and Gloo's (`make setup` puts them in .cache/gloo; GLOO_INCLUDE overrides).
fn c10d_shim(torch: &Path, cuda: bool) {
    let src = "src/train/dist/c10d.cpp";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=GLOO_INCLUDE");
    let gloo = std::env::var("GLOO_INCLUDE").unwrap_or_else(|_| {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it");
        format!("{dir}/.cache/gloo/usr/include")
    });
    if !Path::new(&gloo).join("gloo/context.h").exists() {
        fail(&format!(
            "no Gloo headers in {gloo} (the c10d shim needs them; `make setup` runs scripts/gloo.sh)"
        ));
    }
    let include = torch.join("include");
    let mut build = cc::Build::new();
    match (cuda, nccl_includes(torch)) {
        (true, Some(dirs)) => {
            build.includes(dirs).define("USE_C10D_NCCL", None).define("QS_NCCL", None);
        }
        (true, None) => println!(
            "cargo:warning=libtorch has CUDA but the CUDA/NCCL headers are missing (run `make setup`): building without NCCL"
        ),
        (false, _) => {}
    }
    build
        .cpp(true)
        .std("c++20")
        .file(src)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include(&gloo)
        .define("USE_C10D_GLOO", None)
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .flag_if_supported("-Wno-unused-parameter")
        .warnings(false)
        .compile("qwen3_sft_c10d");
}

fn fail(why: &str) -> ! {
    eprintln!(
        "\nerror: {why}.\n  Run `make setup` (creates .venv with torch==2.13.0), or point LIBTORCH at a \
         libtorch 2.13.0 directory.\n"
    );
    std::process::exit(1);
}
