// Half a DARTS separable convolution -- ReLU -> depthwise 3x3 (stride 1, padding 1) -> 1x1
// with bias -- as one hand-vectorised AVX-512 kernel, for `rwe_alternatives.py simd`.
//
// Input and output are bfloat16 channels-last (N, H, W, C) with C <= 16, so that one pixel's
// channels fill one 512-bit vector of float32 (the layout oneDNN uses for thin layers). Each
// input row is rectified and widened to float32 once, into a ring of three zero-padded rows;
// the depthwise sums stay in registers and feed the 1x1 product directly (float32
// accumulation, one rounding to bfloat16 at the end). With pointwise == 0 the kernel stops
// after the depthwise convolution (for timing it alone). Two pixels per step, so that the
// two independent chains of multiply-adds overlap.
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <vector>

extern "C" int relu_dw3_pw(const uint16_t* x, int n_img, int height, int width, int channels,
                           const float* wd, const float* wp, const float* bias, int pointwise,
                           uint16_t* out) {
  if (channels < 1 || channels > 16) return 1;
  const __mmask16 mask = (__mmask16)((1u << channels) - 1);
  const int stride = (width + 3) * 16;  // one padding pixel each side, one of slack
  std::vector<float> ring(3 * stride, 0.0f);
  __m512 k[9], pw[16];
  for (int t = 0; t < 9; ++t) k[t] = _mm512_loadu_ps(wd + t * 16);
  for (int c = 0; c < channels; ++c) pw[c] = _mm512_loadu_ps(wp + c * 16);
  const __m512 b = _mm512_loadu_ps(bias);
  const __m512 zero = _mm512_setzero_ps();

  auto load_row = [&](int n, int r, float* dst) {
    if (r < 0 || r >= height) { std::memset(dst, 0, sizeof(float) * stride); return; }
    _mm512_storeu_ps(dst, zero);
    _mm512_storeu_ps(dst + (width + 1) * 16, zero);
    const uint16_t* src = x + (static_cast<size_t>(n) * height + r) * width * channels;
    for (int w = 0; w < width; ++w) {
      const __m256i v = _mm256_maskz_loadu_epi16(mask, src + static_cast<size_t>(w) * channels);
      const __m512 f = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
      _mm512_storeu_ps(dst + (w + 1) * 16, _mm512_max_ps(f, zero));
    }
  };

  for (int n = 0; n < n_img; ++n) {
    load_row(n, -1, ring.data());
    load_row(n, 0, ring.data() + stride);
    for (int h = 0; h < height; ++h) {
      load_row(n, h + 1, ring.data() + ((h + 2) % 3) * stride);
      const float* r0 = ring.data() + (h % 3) * stride;
      const float* r1 = ring.data() + ((h + 1) % 3) * stride;
      const float* r2 = ring.data() + ((h + 2) % 3) * stride;
      uint16_t* o = out + (static_cast<size_t>(n) * height + h) * width * channels;
      auto depthwise = [&](int q) {  // three partial sums: shorter dependency chains
        __m512 a0 = _mm512_mul_ps(_mm512_loadu_ps(r0 + q), k[0]);
        __m512 a1 = _mm512_mul_ps(_mm512_loadu_ps(r1 + q), k[3]);
        __m512 a2 = _mm512_mul_ps(_mm512_loadu_ps(r2 + q), k[6]);
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(r0 + q + 16), k[1], a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(r1 + q + 16), k[4], a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(r2 + q + 16), k[7], a2);
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(r0 + q + 32), k[2], a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(r1 + q + 32), k[5], a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(r2 + q + 32), k[8], a2);
        return _mm512_add_ps(_mm512_add_ps(a0, a1), a2);
      };
      for (int w = 0; w < width; w += 2) {
        __m512 y0 = depthwise(w * 16), y1 = depthwise(w * 16 + 16);
        if (pointwise) {
          const __m512 d0 = y0, d1 = y1;
          y0 = b;
          y1 = b;
          for (int c = 0; c < channels; ++c) {  // broadcast channel c, times row c of the 1x1
            const __m512i idx = _mm512_set1_epi32(c);
            y0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(idx, d0), pw[c], y0);
            y1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(idx, d1), pw[c], y1);
          }
        }
        _mm256_mask_storeu_epi16(o + static_cast<size_t>(w) * channels, mask,
                                 (__m256i)_mm512_cvtneps_pbh(y0));
        if (w + 1 < width)
          _mm256_mask_storeu_epi16(o + static_cast<size_t>(w + 1) * channels, mask,
                                   (__m256i)_mm512_cvtneps_pbh(y1));
      }
    }
  }
  return 0;
}
