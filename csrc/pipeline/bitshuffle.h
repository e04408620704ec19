/*
 * bitshuffle.h -- the bit transpose of the bitshuffle format (internal to chunk_compression.c).
 */
#ifndef STD_DAQ_BITSHUFFLE_H
#define STD_DAQ_BITSHUFFLE_H
#include <stdint.h>

/* Bitshuffle n elements (n a multiple of 8) of elem_size bytes from `in` to `out`, using `tmp`
 * (n * elem_size bytes) as scratch. out holds elem_size * 8 bit planes of n / 8 bytes: plane
 * (b * 8 + j) has bit j of byte b of every element, element i in bit i % 8 of byte i / 8. */
void bitshuffle(const uint8_t *in, uint8_t *out, uint8_t *tmp, uint64_t n, int elem_size);
#endif
