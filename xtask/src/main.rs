//! Project tasks: `cargo xtask test | gpu-test | bench`.

fn main() {}
