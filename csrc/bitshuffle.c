/*
 * bitshuffle.c -- the bit transpose of the bitshuffle format (the layout HDF5 filter 32008 reads):
 * first the bytes of the elements are grouped by byte position, then each group is split into
 * its 8 bit planes. With SSE2 (every x86-64) a plane row of 16 elements is one movemask.
 */
#include "bitshuffle.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
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

#ifdef __SSE2__
/* 16-bit elements in one pass: split 16 elements into their low and high bytes, then movemask. */
static void bitshuffle_16bit(const uint8_t *in, uint8_t *out, uint64_t n)
{
    uint64_t row_bytes = n / 8, i = 0;
    const __m128i low_mask = _mm_set1_epi16(0x00FF);
    for (; i + 16 <= n; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(in + 2 * i));
        __m128i b = _mm_loadu_si128((const __m128i *)(in + 2 * i + 16));
        __m128i bytes[2] = {_mm_packus_epi16(_mm_and_si128(a, low_mask), _mm_and_si128(b, low_mask)),
                            _mm_packus_epi16(_mm_srli_epi16(a, 8), _mm_srli_epi16(b, 8))};
        for (int k = 0; k < 2; k++) {
            __m128i x = bytes[k];
            uint8_t *plane = out + k * n + i / 8;
            for (int j = 7; j >= 0; j--) {
                uint16_t bits = (uint16_t)_mm_movemask_epi8(x);
                memcpy(plane + j * row_bytes, &bits, 2);
                x = _mm_add_epi8(x, x);
            }
        }
    }
    for (; i < n; i += 8) /* a last group of 8 elements */
        for (int k = 0; k < 2; k++) {
            uint8_t group[8];
            for (int e = 0; e < 8; e++) group[e] = in[2 * (i + e) + k];
            planes_of_8(group, out + k * n + i / 8, row_bytes);
        }
}
#endif

void bitshuffle(const uint8_t *in, uint8_t *out, uint8_t *tmp, uint64_t n, int elem_size)
{
#ifdef __SSE2__
    if (elem_size == 2) {
        bitshuffle_16bit(in, out, n);
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
