//! Matrix products for the neural policies, on the SIMD kernels of the `matrixmultiply` crate.
//!
//! The crate is used single-threaded (its "threading" feature is off): a product's summation order
//! then depends only on the shapes, never on the thread count. Callers parallelise over fixed
//! chunks of their own and combine the chunks in a fixed order.
//!
//! Matrices are row-major slices; a `Mat` may be viewed transposed without copying.

/// A read-only matrix view: `rows × cols` with element (i, j) at data[i·row_stride + j·col_stride].
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    data: &'a [f64],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `rows × cols` matrix over the first rows·cols entries of `data`.
    pub fn new(data: &'a [f64], rows: usize, cols: usize) -> Mat<'a> {
        assert!(data.len() >= rows * cols, "matrix of {rows} × {cols} over {} entries", data.len());
        Mat { data, rows, cols, row_stride: cols, col_stride: 1 }
    }
    /// A `rows × cols` matrix whose rows start `row_stride` entries apart (a block of columns of a
    /// wider row-major matrix).
    pub fn strided(data: &'a [f64], rows: usize, cols: usize, row_stride: usize) -> Mat<'a> {
        assert!(rows == 0 || (rows - 1) * row_stride + cols <= data.len(), "strided matrix of {rows} × {cols} over {} entries", data.len());
        Mat { data, rows, cols, row_stride, col_stride: 1 }
    }
    /// The transpose, without copying.
    pub fn t(self) -> Mat<'a> {
        Mat { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }
}

/// C = α·A·B + β·C, C row-major m × n (β = 0 ignores C's previous contents, NaN included).
pub fn gemm(alpha: f64, a: Mat, b: Mat, beta: f64, c: &mut [f64]) {
    gemm_strided(alpha, a, b, beta, c, b.cols);
}

/// `gemm` into an m × n block of a wider row-major matrix whose rows are `c_row_stride` apart.
pub fn gemm_strided(alpha: f64, a: Mat, b: Mat, beta: f64, c: &mut [f64], c_row_stride: usize) {
    assert_eq!(a.cols, b.rows, "inner dimensions differ");
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(n <= c_row_stride && (m == 0 || (m - 1) * c_row_stride + n <= c.len()), "output of {m} × {n} over {} entries", c.len());
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts above and in Mat::new keep every index the kernel touches inside the
    // slices (max index of A = (m−1)·rs + (k−1)·cs < len, likewise B and C).
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.row_stride as isize,
            a.col_stride as isize,
            b.data.as_ptr(),
            b.row_stride as isize,
            b.col_stride as isize,
            beta,
            c.as_mut_ptr(),
            c_row_stride as isize,
            1,
        );
    }
}

/// Floating-point operations of one m × k by k × n product (a multiply and an add per term).
pub fn flops(m: usize, k: usize, n: usize) -> f64 {
    2.0 * m as f64 * k as f64 * n as f64
}

/// The f64 GEMM rate of this machine in FLOP/s: `repeats` products of two `size × size` matrices
/// on every thread of the current rayon pool at once (each thread its own matrices).
pub fn measure_rate(size: usize, repeats: usize) -> f64 {
    use rayon::prelude::*;
    let threads = rayon::current_num_threads();
    let a: Vec<f64> = (0..size * size).map(|i| ((i * 7919 % 1000) as f64 - 500.0) / 1000.0).collect();
    let start = std::time::Instant::now();
    let sink: f64 = (0..threads)
        .into_par_iter()
        .map(|_| {
            let mut c = vec![0.0; size * size];
            for _ in 0..repeats {
                gemm(1.0, Mat::new(&a, size, size), Mat::new(&a, size, size), 0.0, &mut c);
            }
            c[0]
        })
        .sum();
    let seconds = start.elapsed().as_secs_f64();
    std::hint::black_box(sink);
    threads as f64 * repeats as f64 * flops(size, size, size) / seconds
}
