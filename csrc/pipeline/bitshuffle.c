/*
 * bitshuffle.c -- the bit transpose of the bitshuffle format (the layout HDF5 filter 32008 reads):
 * first the bytes of the elements are grouped by byte position, then each group is split into
 * its 8 bit planes. With SSE2 (every x86-64) a plane row of 16 bytes is one movemask; where the
 * processor has AVX2 (checked at run time), 16-bit elements take one pass, 32 a step.
 */
#include "bitshuffle.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
#endif

/* The 8 bit planes of 8 bytes: bit j of byte k goes to bit k of plane j. */
static void planes_of_8(const uint8_t *bytes, uint8_t *out, uint64_t row_bytes)
{
    uint64_t x;
    memcpy(&x, bytes, 8);
    /* transpose the 8x8 bit matrix (rows = bytes) in three swap steps */
    uint64_t t;
    t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAull;
    x = x ^ t ^ (t << 7);
    t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCull;
    x = x ^ t ^ (t << 14);
    t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ull;
    x = x ^ t ^ (t << 28);
    for (int j = 0; j < 8; j++) out[j * row_bytes] = (uint8_t)(x >> (8 * j));
}

static void bit_planes(const uint8_t *bytes, uint8_t *out, uint64_t n)
{
    uint64_t row_bytes = n / 8, i = 0;
#ifdef __SSE2__
    for (; i + 16 <= n; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(bytes + i));
        for (int j = 7; j >= 0; j--) {
            uint16_t bits = (uint16_t)_mm_movemask_epi8(x); /* bit j of each byte, lowest byte in bit 0 */
            memcpy(out + j * row_bytes + i / 8, &bits, 2);
            x = _mm_add_epi8(x, x);
        }
    }
#endif
    for (; i < n; i += 8) planes_of_8(bytes + i, out + i / 8, row_bytes);
}

#ifdef HAVE_AVX2_PATH
/* 16-bit elements from element i on (a multiple of 8) to n, 8 at a time: the tail of the vector loop. */
static void tail_16bit(const uint8_t *in, uint8_t *out, uint64_t n, uint64_t i)
{
    for (; i < n; i += 8)
        for (int k = 0; k < 2; k++) {
            uint8_t group[8];
            for (int e = 0; e < 8; e++) group[e] = in[2 * (i + e) + k];
            planes_of_8(group, out + k * n + i / 8, n / 8);
        }
}

/* 16-bit elements in one pass, 32 a step: split them into their low and high bytes (the 128-bit
 * halves of a pack put back in order by a permute), then a plane row of 32 is one movemask. Without
 * AVX2 the bytes are split first and bit_planes does the rest, about a fifth slower. */
__attribute__((target("avx2"))) static void bitshuffle_16bit_avx2(const uint8_t *in, uint8_t *out, uint64_t n)
{
    uint64_t row_bytes = n / 8, i = 0;
    const __m256i low_mask = _mm256_set1_epi16(0x00FF);
    for (; i + 32 <= n; i += 32) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(in + 2 * i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(in + 2 * i + 32));
        __m256i low = _mm256_packus_epi16(_mm256_and_si256(a, low_mask), _mm256_and_si256(b, low_mask));
        __m256i high = _mm256_packus_epi16(_mm256_srli_epi16(a, 8), _mm256_srli_epi16(b, 8));
        __m256i bytes[2] = {_mm256_permute4x64_epi64(low, 0xD8), _mm256_permute4x64_epi64(high, 0xD8)};
        for (int k = 0; k < 2; k++) {
            __m256i x = bytes[k];
            uint8_t *plane = out + k * n + i / 8;
            for (int j = 7; j >= 0; j--) {
                uint32_t bits = (uint32_t)_mm256_movemask_epi8(x);
                memcpy(plane + j * row_bytes, &bits, 4);
                x = _mm256_add_epi8(x, x);
            }
        }
    }
    tail_16bit(in, out, n, i);
}

/* The processor check, cached: several compressing threads may ask at once (atomic, any of them may
 * fill it; they all find the same answer). */
static int have_avx2(void)
{
    static int known = -1;
    int value = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (value < 0) {
        value = __builtin_cpu_supports("avx2") ? 1 : 0;
        __atomic_store_n(&known, value, __ATOMIC_RELAXED);
    }
    return value;
}
#endif

void bitshuffle(const uint8_t *in, uint8_t *out, uint8_t *tmp, uint64_t n, int elem_size)
{
#ifdef HAVE_AVX2_PATH
    if (elem_size == 2 && have_avx2()) {
        bitshuffle_16bit_avx2(in, out, n);
        return;
    }
#endif
    if (elem_size == 1) {
        bit_planes(in, out, n);
        return;
    }
    if (elem_size == 2) {
        for (uint64_t i = 0; i < n; i++) {
            tmp[i] = in[2 * i];
            tmp[n + i] = in[2 * i + 1];
        }
    } else if (elem_size == 4) {
        for (uint64_t i = 0; i < n; i++) {
            tmp[i] = in[4 * i];
            tmp[n + i] = in[4 * i + 1];
            tmp[2 * n + i] = in[4 * i + 2];
            tmp[3 * n + i] = in[4 * i + 3];
        }
    } else {
        for (uint64_t i = 0; i < n; i++)
            for (int b = 0; b < elem_size; b++) tmp[b * n + i] = in[i * elem_size + b];
    }
    for (int b = 0; b < elem_size; b++) bit_planes(tmp + b * n, out + b * n, n);
}
