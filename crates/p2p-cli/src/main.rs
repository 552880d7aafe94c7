//! The `p2p` command.

fn main() {}
