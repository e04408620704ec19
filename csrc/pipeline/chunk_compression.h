/*
 * chunk_compression.h -- bitshuffle+LZ4 chunks (HDF5 filter 32008) of one image (chunk_compression.c).
 * Keep this file parsable by cffi's cdef (the build script strips '#' lines).
 */
#ifndef STD_DAQ_CHUNK_COMPRESSION_H
#define STD_DAQ_CHUNK_COMPRESSION_H
#include <stdint.h>

/* Bytes a chunk of `nbytes` may need at most. */
uint64_t cp_bound(uint64_t nbytes, int elem_size);

/* One chunk in this thread: the compressed size, or 0 if dst_capacity is below cp_bound. */
uint64_t cp_compress(const void *src, uint64_t nbytes, int elem_size, uint8_t *dst, uint64_t dst_capacity);

/* A thread's working memory for cp_compress_with (a pool thread keeps its own). */
typedef struct cp_scratch {
    uint8_t *shuffled, *tmp;
} cp_scratch;

int cp_scratch_alloc(cp_scratch *s, int elem_size);
void cp_scratch_free(cp_scratch *s);

/* cp_compress with the caller's scratch memory. */
uint64_t cp_compress_with(const void *src, uint64_t nbytes, int elem_size, uint8_t *dst, uint64_t capacity,
                          cp_scratch *s);
#endif
