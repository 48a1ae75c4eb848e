//! Fast depthwise conv2d kernels: see `super`.
