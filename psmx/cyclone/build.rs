//! Builds Cyclone DDS 11.0.1 as shared libraries (with `idlc` and
//! `ddsperf`) from the source the cyclors crate carries, then the C host
//! programs of the plugin's tests (`cyclone_host`) and of its benchmark
//! (`cyclone_pingpong`) against it. The tests find them through
//! `CYCLONE_HOME` and `CYCLONE_HOST`, set at compile time.
use std::path::{Path, PathBuf};
use std::process::Command;

fn cyclone_source() -> PathBuf {
    let home = home::cargo_home().expect("no cargo home");
    let src = home.join("registry").join("src");
    for index in std::fs::read_dir(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display())).flatten() {
        let dir = index.path().join("cyclors-0.4.0").join("cyclonedds");
        if dir.join("CMakeLists.txt").is_file() {
            return dir;
        }
    }
    panic!("cyclors 0.4.0's Cyclone DDS source not found under {} (it is a dependency of this crate: run `cargo fetch`)", src.display());
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let src = cyclone_source();
    let home = cmake::Config::new(&src)
        .profile("Release")
        .define("BUILD_SHARED_LIBS", "ON")
        .define("BUILD_IDLC", "ON")
        .define("BUILD_DDSPERF", "ON")
        .define("BUILD_TESTING", "OFF")
        .define("BUILD_EXAMPLES", "OFF")
        .define("ENABLE_SSL", "NO")
        .define("ENABLE_SECURITY", "NO")
        .define("ENABLE_ICEORYX", "NO")
        .define("ENABLE_LTO", "NO")
        .define("CMAKE_INSTALL_LIBDIR", "lib")
        .out_dir(out.join("cyclone"))
        .build();
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let c = manifest.join("c");
    let gen = out.join("gen");
    std::fs::create_dir_all(&gen).unwrap();
    let lib = home.join("lib");
    let idlc = |idl: &str| run(Command::new(home.join("bin/idlc")).arg("-o").arg(&gen).arg(c.join(idl)).env("LD_LIBRARY_PATH", &lib));
    let compile = |program: &Path, sources: &[PathBuf]| {
        run(cc::Build::new()
            .get_compiler()
            .to_command()
            .args(["-O2", "-Wall", "-Werror", "-o"])
            .arg(program)
            .args(sources)
            .arg(format!("-I{}", home.join("include").display()))
            .arg(format!("-I{}", gen.display()))
            .arg(format!("-L{}", lib.display()))
            .arg(format!("-Wl,-rpath,{}", lib.display()))
            .arg("-lddsc"))
    };
    idlc("types.idl");
    idlc("bench.idl");
    let host = out.join("cyclone_host");
    compile(&host, &[c.join("host.c"), gen.join("types.c")]);
    // The round-trip benchmark of scripts/cyclone-bench.sh.
    compile(&out.join("cyclone_pingpong"), &[c.join("pingpong.c"), gen.join("bench.c")]);
    println!("cargo:rustc-env=CYCLONE_HOME={}", home.display());
    println!("cargo:rustc-env=CYCLONE_HOST={}", host.display());
    for f in ["host.c", "types.idl", "pingpong.c", "bench.idl"] {
        println!("cargo:rerun-if-changed={}", c.join(f).display());
    }
    println!("cargo:rerun-if-changed=build.rs");
}
