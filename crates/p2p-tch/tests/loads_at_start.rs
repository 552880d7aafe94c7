//! `libtorch_cuda.so` is loaded when a binary that links p2p-tch starts, before any call into the crate.
//!
//! One test in its own binary, so that nothing has called into p2p-tch yet
//! when it looks at what the process has mapped.

use std::path::PathBuf;

/// The folder of `libtorch_cpu.so` as mapped in this process.
fn torch_lib_dir(maps: &str) -> Option<PathBuf> {
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .map(PathBuf::from)
        .find(|path| {
            path.file_name()
                .is_some_and(|name| name == "libtorch_cpu.so")
        })
        .and_then(|path| path.parent().map(PathBuf::from))
}

#[test]
fn libtorch_cuda_is_loaded_before_main() {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let dir = torch_lib_dir(&maps).expect("libtorch_cpu.so is mapped (tch links it)");
    let cuda_lib = dir.join("libtorch_cuda.so");
    if !cuda_lib.exists() {
        eprintln!(
            "{} does not exist (CPU-only PyTorch): nothing to load",
            cuda_lib.display()
        );
        return;
    }
    assert!(
        maps.contains("libtorch_cuda.so"),
        "{} exists but was not loaded at start-up: the .init_array hook of p2p-tch did not run",
        cuda_lib.display()
    );
    // Referenced after the check, so that the crate is linked in.
    p2p_tch::init().unwrap();
}
