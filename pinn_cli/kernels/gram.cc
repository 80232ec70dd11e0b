// The Gram matrix of a row-major float64 matrix, as an XLA FFI custom call on CPU: A A^T of
// A (n x k), or J^T J of J (k x n) read in place (attribute `rows` 1 or 0).
//
// XLA:CPU has no symmetric rank-k update: its dot forms all n^2 entries. BLAS's dsyrk forms
// one triangle, half the arithmetic. The triangle is cut into bands of columns of equal work,
// one per thread (the band's rectangle above its diagonal block by dgemm, the block by
// dsyrk), each band on a thread of its own with single-threaded BLAS calls, and the lower
// triangle is mirrored from the upper one at the end. The BLAS routines are SciPy's
// (scipy.linalg.cython_blas), handed over once by pinn_gram_init.
//
// Column-major view: row-major A (n x k) is the column-major k x n matrix A^T, so
// A A^T = (A^T)^T (A^T) is dsyrk("U", "T") on it with lda = k; row-major J (k x n) is the
// column-major n x k matrix J^T, so J^T J = (J^T)(J^T)^T is dsyrk("U", "N") with lda = n. The
// symmetric result reads the same in either order.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using dsyrk_fn = void (*)(const char*, const char*, const int*, const int*, const double*,
                          const double*, const int*, const double*, double*, const int*);
using dgemm_fn = void (*)(const char*, const char*, const int*, const int*, const int*,
                          const double*, const double*, const int*, const double*, const int*,
                          const double*, double*, const int*);

dsyrk_fn dsyrk = nullptr;
dgemm_fn dgemm = nullptr;
int threads = 1;

// Below this many multiply-adds a band is not worth a thread of its own.
constexpr double kWorkPerThread = 4.0e6;

// Columns [lo, hi) of the upper triangle of C (column-major, ldc = n). rows: the operand is
// A (n x k, row-major), read as the column-major k x n matrix A^T, and C = A A^T; otherwise it
// is J (k x n, row-major), read as the column-major n x k matrix J^T, and C = J^T J.
void band(const double* x, double* c, int n, int k, int lo, int hi, bool rows) {
  const double one = 1.0, zero = 0.0;
  const int m = hi - lo;
  if (m <= 0) return;
  double* column = c + static_cast<int64_t>(lo) * n;
  if (rows) {
    const double* block = x + static_cast<int64_t>(lo) * k;
    if (lo > 0) dgemm("T", "N", &lo, &m, &k, &one, x, &k, block, &k, &zero, column, &n);
    dsyrk("U", "T", &m, &k, &one, block, &k, &zero, column + lo, &n);
  } else {
    if (lo > 0) dgemm("N", "T", &lo, &m, &k, &one, x, &n, x + lo, &n, &zero, column, &n);
    dsyrk("U", "N", &m, &k, &one, x + lo, &n, &zero, column + lo, &n);
  }
}

// The lower triangle of columns [lo, hi) from the upper one, in tiles for the cache.
void mirror(double* c, int n, int lo, int hi) {
  constexpr int kTile = 64;
  for (int j0 = lo; j0 < hi; j0 += kTile) {
    const int j1 = std::min(j0 + kTile, hi);
    for (int i0 = 0; i0 < j1; i0 += kTile) {
      const int i1 = std::min(i0 + kTile, j1);
      for (int j = j0; j < j1; ++j)
        for (int i = i0; i < std::min(i1, j); ++i)
          c[j + static_cast<int64_t>(i) * n] = c[i + static_cast<int64_t>(j) * n];
    }
  }
}

// rows != 0: A A^T of A (n x k); rows == 0: J^T J of J (k x n), without copying J^T.
ffi::Error Gram(ffi::Buffer<ffi::F64> a, ffi::ResultBuffer<ffi::F64> out, int64_t rows) {
  if (dsyrk == nullptr || dgemm == nullptr)
    return ffi::Error(ffi::ErrorCode::kFailedPrecondition, "pinn_gram: BLAS not set");
  const auto dims = a.dimensions();
  if (dims.size() != 2) return ffi::Error(ffi::ErrorCode::kInvalidArgument, "pinn_gram: 2-D only");
  const int n = static_cast<int>(dims[rows ? 0 : 1]), k = static_cast<int>(dims[rows ? 1 : 0]);
  const double* x = a.typed_data();
  double* c = out->typed_data();
  if (k == 0) {
    std::fill(c, c + static_cast<int64_t>(n) * n, 0.0);
    return ffi::Error::Success();
  }
  const double work = 0.5 * n * static_cast<double>(n) * k;
  const int t = std::max(1, std::min(threads, static_cast<int>(work / kWorkPerThread)));
  // Band b holds columns [edge[b], edge[b + 1]): the triangle's area up to column x grows as
  // x^2, so equal work puts the edges at n sqrt(b / t).
  std::vector<int> edge(t + 1);
  for (int b = 0; b <= t; ++b)
    edge[b] = static_cast<int>(std::lround(n * std::sqrt(static_cast<double>(b) / t)));
  auto part = [&](int b) {
    band(x, c, n, k, edge[b], edge[b + 1], rows != 0);
  };
  std::vector<std::thread> pool;
  for (int b = 1; b < t; ++b) pool.emplace_back(part, b);
  part(0);
  for (auto& th : pool) th.join();
  pool.clear();
  auto flip = [&](int b) { mirror(c, n, edge[b], edge[b + 1]); };
  for (int b = 1; b < t; ++b) pool.emplace_back(flip, b);
  flip(0);
  for (auto& th : pool) th.join();
  return ffi::Error::Success();
}

}  // namespace

extern "C" void pinn_gram_init(void* syrk, void* gemm, int n_threads) {
  dsyrk = reinterpret_cast<dsyrk_fn>(syrk);
  dgemm = reinterpret_cast<dgemm_fn>(gemm);
  threads = std::max(1, n_threads);
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(PinnGram, Gram,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Ret<ffi::Buffer<ffi::F64>>()
                                  .Attr<int64_t>("rows"));
