//! Turns the one CUDA version feature (cudarc's names: `cuda-12080`, ...) into
//! `cuda_at_least_*` cfgs for the code whose bindings differ between versions,
//! and refuses a build with several versions on, which cudarc cannot build.

/// Every CUDA version cudarc 0.19 has bindings for, oldest first.
const VERSIONS: &[u32] = &[
    11040, 11050, 11060, 11070, 11080, 12000, 12010, 12020, 12030, 12040, 12050, 12060, 12080,
    12090, 13000, 13010, 13020, 13030, 13040,
];

/// The versions where a binding the backend uses changes (see `src/cuda/ffi`):
/// 12.8 adds `cuMemcpyBatchAsync`; 13.0 renames it and `cuEventElapsedTime`
/// to `_v2` and drops `cuDeviceGetUuid`; 13.2 makes `CUmemLocation::id` a union.
const THRESHOLDS: &[u32] = &[12080, 13000, 13020];

fn main() {
    for threshold in THRESHOLDS {
        println!("cargo::rustc-check-cfg=cfg(cuda_at_least_{threshold})");
    }
    let chosen: Vec<u32> = VERSIONS
        .iter()
        .copied()
        .filter(|version| std::env::var_os(format!("CARGO_FEATURE_CUDA_{version}")).is_some())
        .collect();
    if chosen.len() > 1 {
        let names: Vec<String> = chosen.iter().map(|v| format!("cuda-{v}")).collect();
        panic!(
            "p2p-core: CUDA version features {} are all on, and cudarc builds against one. \
             The default is cuda-12080: a crate on another version depends on p2p-core (and \
             p2p-move) with `default-features = false, features = [\"cuda-XXXXX\"]`.",
            names.join(", ")
        );
    }
    if let Some(&version) = chosen.first() {
        for &threshold in THRESHOLDS.iter().filter(|&&t| version >= t) {
            println!("cargo::rustc-cfg=cuda_at_least_{threshold}");
        }
    }
}
