/*
 * lz4_runs.h -- an LZ4 block encoder for bitshuffled images of small values (lz4_runs.c).
 * Keep this file parsable by cffi's cdef (the build script strips '#' lines).
 */
#ifndef STD_DAQ_LZ4_RUNS_H
#define STD_DAQ_LZ4_RUNS_H
#include <stdint.h>

/* Encode n bytes as one LZ4 block into dst (room for LZ4_compressBound(n) bytes); returns its size. */
int lz4_encode_runs(const uint8_t *src, int n, uint8_t *dst);
#endif
