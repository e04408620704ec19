/*
 * chunk_compression.c -- one image as a bitshuffle+LZ4 chunk (HDF5 filter 32008), in the calling thread.
 *
 * Chunk format (what HDF5 filter 32008, bitshuffle with LZ4, reads): the uncompressed size as an
 * 8-byte big-endian integer, the block size in bytes as a 4-byte big-endian integer, then each
 * block of `block` elements (8192 bytes' worth, a multiple of 8 elements) bitshuffled and LZ4
 * compressed, preceded by its compressed size (4 bytes, big-endian); after the full blocks one
 * shorter block of the remaining elements rounded down to a multiple of 8, then the last
 * (fewer than 8) elements copied as they are.
 *
 * Blocks of small values (the upper half of the bytes zero but in a few places) are LZ4-encoded by
 * lz4_runs.c, the others by liblz4.
 */
#include "chunk_compression.h"

#include <lz4.h>
#include <stdlib.h>
#include <string.h>

#include "bitshuffle.h"
#include "lz4_runs.h"

#define TARGET_BLOCK_BYTES 8192
#define MIN_BLOCK_ELEMS 128

static uint64_t block_elems(int elem_size)
{
    uint64_t n = TARGET_BLOCK_BYTES / elem_size;
    n -= n % 8;
    return n < MIN_BLOCK_ELEMS ? MIN_BLOCK_ELEMS : n;
}

/* Are the elements (count a multiple of 8) small values: the upper half of the bytes zero in all but a
 * few 64-byte lines (at most one in 16: a flagged pixel's no-data value, a hot pixel)? Then most bit planes
 * are zero bytes, as in photon-counting images (see lz4_runs.c). */
static int small_values(const uint8_t *in, uint64_t count, int elem_size)
{
    uint64_t mask = elem_size == 2 ? 0xFF00FF00FF00FF00ull
                    : elem_size == 4 ? 0xFFFF0000FFFF0000ull
                    : elem_size == 8 ? 0xFFFFFFFF00000000ull
                                     : 0;
    if (!mask) return 0;
    uint64_t bytes = count * (uint64_t)elem_size, lines = 0, large_lines = 0, word;
    for (uint64_t at = 0; at < bytes; at += 64, lines++) {
        uint64_t any = 0;
        for (uint64_t k = at; k < at + 64 && k < bytes; k += 8) {
            memcpy(&word, in + k, 8);
            any |= word;
        }
        large_lines += (any & mask) != 0;
    }
    return large_lines * 16 <= lines;
}

static void put_be(uint8_t *dst, uint64_t value, int bytes)
{
    for (int k = bytes - 1; k >= 0; k--, value >>= 8) dst[k] = (uint8_t)value;
}

uint64_t cp_bound(uint64_t nbytes, int elem_size)
{
    uint64_t block_bytes = block_elems(elem_size) * elem_size;
    uint64_t n_blocks = nbytes / block_bytes + 1;
    return 12 + n_blocks * (4 + (uint64_t)LZ4_compressBound((int)block_bytes)) + 8 * (uint64_t)elem_size;
}

uint64_t cp_compress_with(const void *src, uint64_t nbytes, int elem_size, uint8_t *dst, uint64_t capacity,
                          cp_scratch *s)
{
    if (capacity < cp_bound(nbytes, elem_size)) return 0;
    const uint8_t *in = src;
    uint64_t n = nbytes / elem_size, block = block_elems(elem_size);
    put_be(dst, nbytes, 8);
    put_be(dst + 8, block * elem_size, 4);
    uint64_t at = 12, done = 0;
    while (done + 8 <= n) {
        uint64_t count = n - done >= block ? block : (n - done) - (n - done) % 8;
        int bytes = (int)(count * elem_size);
        const uint8_t *block_in = in + done * elem_size;
        bitshuffle(block_in, s->shuffled, s->tmp, count, elem_size);
        int size = small_values(block_in, count, elem_size)
                       ? lz4_encode_runs(s->shuffled, bytes, dst + at + 4)
                       : LZ4_compress_default((const char *)s->shuffled, (char *)dst + at + 4, bytes,
                                              LZ4_compressBound(bytes));
        if (size <= 0) return 0;
        put_be(dst + at, (uint64_t)size, 4);
        at += 4 + (uint64_t)size;
        done += count;
    }
    uint64_t rest = nbytes - done * elem_size; /* fewer than 8 elements (and any odd bytes) as they are */
    memcpy(dst + at, in + done * elem_size, rest);
    return at + rest;
}

int cp_scratch_alloc(cp_scratch *s, int elem_size)
{
    uint64_t bytes = block_elems(elem_size) * elem_size;
    s->shuffled = malloc(bytes);
    s->tmp = malloc(bytes);
    return s->shuffled && s->tmp ? 0 : -1;
}

void cp_scratch_free(cp_scratch *s)
{
    free(s->shuffled);
    free(s->tmp);
}

uint64_t cp_compress(const void *src, uint64_t nbytes, int elem_size, uint8_t *dst, uint64_t dst_capacity)
{
    cp_scratch s;
    uint64_t size = 0;
    if (cp_scratch_alloc(&s, elem_size) == 0) size = cp_compress_with(src, nbytes, elem_size, dst, dst_capacity, &s);
    cp_scratch_free(&s);
    return size;
}
