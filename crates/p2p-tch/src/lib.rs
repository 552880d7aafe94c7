//! Safe moves of `tch` tensors between devices (built in the p2p-tch issue).
