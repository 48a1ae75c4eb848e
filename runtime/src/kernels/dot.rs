//! The inner loop: `sum((x - zx) * w)` over contiguous int8 runs.

/// Dot product of an activation run, offset by its zero point, with a weight run of the same
/// length. Written so that LLVM vectorizes it (widening multiply-adds on x86 and AArch64).
#[inline]
pub fn dot_offset(x: &[i8], w: &[i8], zero_point: i32) -> i32 {
    let zero_point = zero_point as i16;
    x.iter()
        .zip(w)
        .map(|(&x, &w)| (x as i16 - zero_point) as i32 * w as i32)
        .sum()
}

/// The scalar reference.
pub fn dot_offset_reference(x: &[i8], w: &[i8], zero_point: i32) -> i32 {
    assert_eq!(x.len(), w.len());
    let mut acc = 0i32;
    for i in 0..x.len() {
        acc += (x[i] as i32 - zero_point) * w[i] as i32;
    }
    acc
}
