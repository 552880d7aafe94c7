//! Tests of `p2p bench` on simulated machines, in process.
