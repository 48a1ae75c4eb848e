//! Fast conv2d (pointwise 1x1, general KxK, strided) and dense kernels: see `super`.
