//! A bounds-checked front to the `gemm` crate's f32 matrix product (the crate burn's Flex
//! backend uses too), so the convolution code above it needs no `unsafe`.

/// A read-only strided view of a matrix inside a slice: row-major, or its transpose.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// A writable strided view of a matrix inside a slice.
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// Panics unless a row-major `rows × cols` view, rows `row_stride` apart, fits in `len`
/// elements.
fn check_fits(len: usize, rows: usize, cols: usize, row_stride: usize) {
    let extent = if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * row_stride + cols
    };
    assert!(
        extent <= len,
        "matrix view {rows}x{cols} (row stride {row_stride}) outside a slice of {len}"
    );
}

impl<'a> MatRef<'a> {
    /// Row-major `rows × cols`, rows `row_stride` apart.
    ///
    /// # Panics
    /// If the view reaches past the end of `data`.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        check_fits(data.len(), rows, cols, row_stride);
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }
}

impl<'a> MatMut<'a> {
    /// Row-major `rows × cols`, rows `row_stride` apart.
    ///
    /// # Panics
    /// If the view reaches past the end of `data`, or if rows overlap (`row_stride < cols`).
    pub fn rows(data: &'a mut [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        assert!(
            rows <= 1 || row_stride >= cols,
            "rows of a writable view overlap"
        );
        check_fits(data.len(), rows, cols, row_stride);
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }
}

/// `dst = lhs · rhs` (or `dst += lhs · rhs` when `accumulate`), on the calling thread: the
/// convolution runs many independent products in parallel instead.
///
/// # Panics
/// If the shapes disagree.
pub fn matmul(dst: MatMut<'_>, accumulate: bool, lhs: MatRef<'_>, rhs: MatRef<'_>) {
    assert_eq!(lhs.cols, rhs.rows, "inner dimensions differ");
    assert_eq!(
        (dst.rows, dst.cols),
        (lhs.rows, rhs.cols),
        "output shape differs"
    );
    if dst.rows == 0 || dst.cols == 0 {
        return;
    }
    let stride = |s: usize| isize::try_from(s).expect("stride fits isize");
    // SAFETY: the constructors checked that every element each view addresses lies inside
    // its slice; `dst` is borrowed mutably (so nothing else reads or writes it) and its rows
    // don't overlap, and `lhs`/`rhs` are shared borrows that cannot alias it. The shapes were
    // checked above, so gemm touches exactly the views' elements. With `accumulate` false it
    // never reads `dst` (read_dst = false), so its prior contents don't matter.
    unsafe {
        gemm::gemm(
            dst.rows,
            dst.cols,
            lhs.cols,
            dst.data.as_mut_ptr(),
            stride(dst.col_stride),
            stride(dst.row_stride),
            accumulate,
            lhs.data.as_ptr(),
            stride(lhs.col_stride),
            stride(lhs.row_stride),
            rhs.data.as_ptr(),
            stride(rhs.col_stride),
            stride(rhs.row_stride),
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(
        m: usize,
        n: usize,
        k: usize,
        a: impl Fn(usize, usize) -> f32,
        b: impl Fn(usize, usize) -> f32,
    ) -> Vec<f32> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| a(i, p) * b(p, j)).sum();
            }
        }
        out
    }

    #[test]
    fn strided_and_transposed_views_multiply_like_the_definition() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 3.0).collect();
        // b stored transposed: b[p][j] = bt[j][p], with a padded row stride of 4.
        let bt: Vec<f32> = (0..n * 4).map(|i| (i % 5) as f32 - 2.0).collect();
        let expected = naive(m, n, k, |i, p| a[i * k + p], |p, j| bt[j * 4 + p]);
        // Output rows 9 apart inside a bigger buffer; the gaps must stay untouched.
        let mut out = vec![f32::NAN; m * 9];
        matmul(
            MatMut::rows(&mut out, m, n, 9),
            false,
            MatRef::rows(&a, m, k, k),
            MatRef::rows(&bt, n, k, 4).t(),
        );
        for i in 0..m {
            assert_eq!(&out[i * 9..i * 9 + n], &expected[i * n..(i + 1) * n]);
            assert!(out[i * 9 + n..i * 9 + 9].iter().all(|v| v.is_nan()));
        }
        // Accumulating adds the product once more.
        matmul(
            MatMut::rows(&mut out, m, n, 9),
            true,
            MatRef::rows(&a, m, k, k),
            MatRef::rows(&bt, n, k, 4).t(),
        );
        for i in 0..m {
            for j in 0..n {
                assert_eq!(out[i * 9 + j], 2.0 * expected[i * n + j]);
            }
        }
    }

    #[test]
    #[should_panic(expected = "outside a slice")]
    fn a_view_past_the_end_is_refused() {
        let data = vec![0.0; 10];
        let _ = MatRef::rows(&data, 3, 4, 4);
    }
}
