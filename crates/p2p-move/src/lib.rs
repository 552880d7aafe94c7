//! Plans and carries out tensor moves between CUDA devices.
