// peak_avx2.c: the FP32 FMA peak of an AVX2+FMA machine (the AVX2 port of
// ../shared/bench/peak.c): 12 independent _mm256_fmadd_ps chains per
// thread, best of 5. bench/vs-ort measures the same loop in Go assembly;
// this is the C cross-check:
//
//	gcc -O2 -mavx2 -mfma -fopenmp peak_avx2.c -o peak && OMP_NUM_THREADS=2 ./peak
#include <immintrin.h>
#include <stdio.h>
#include <omp.h>

int main(void) {
  double best = 0;
  float total = 0;
  for (int rep = 0; rep < 5; rep++) {
    double t0 = omp_get_wtime();
    long iters = 100000000;
    #pragma omp parallel reduction(+:total)
    {
      __m256 a0 = _mm256_set1_ps(1.0f), a1 = _mm256_set1_ps(1.1f), a2 = _mm256_set1_ps(1.2f), a3 = _mm256_set1_ps(1.3f);
      __m256 a4 = _mm256_set1_ps(1.4f), a5 = _mm256_set1_ps(1.5f), a6 = _mm256_set1_ps(1.6f), a7 = _mm256_set1_ps(1.7f);
      __m256 a8 = _mm256_set1_ps(1.8f), a9 = _mm256_set1_ps(1.9f), a10 = _mm256_set1_ps(2.0f), a11 = _mm256_set1_ps(2.1f);
      __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(0.000001f);
      for (long i = 0; i < iters; i++) {
        a0 = _mm256_fmadd_ps(a0, b, c); a1 = _mm256_fmadd_ps(a1, b, c); a2 = _mm256_fmadd_ps(a2, b, c); a3 = _mm256_fmadd_ps(a3, b, c);
        a4 = _mm256_fmadd_ps(a4, b, c); a5 = _mm256_fmadd_ps(a5, b, c); a6 = _mm256_fmadd_ps(a6, b, c); a7 = _mm256_fmadd_ps(a7, b, c);
        a8 = _mm256_fmadd_ps(a8, b, c); a9 = _mm256_fmadd_ps(a9, b, c); a10 = _mm256_fmadd_ps(a10, b, c); a11 = _mm256_fmadd_ps(a11, b, c);
      }
      __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)), _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
      s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
      float v[8];
      _mm256_storeu_ps(v, s);
      for (int i = 0; i < 8; i++) total += v[i];
    }
    double dt = omp_get_wtime() - t0;
    double fl = (double)iters * 12 * 8 * 2 * omp_get_max_threads();
    if (fl / dt > best) best = fl / dt;
  }
  printf("%.1f GFLOP/s (threads %d) %f\n", best / 1e9, omp_get_max_threads(), total);
  return 0;
}
