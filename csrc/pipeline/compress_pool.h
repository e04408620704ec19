/*
 * compress_pool.h -- bitshuffle+LZ4 chunks (HDF5 filter 32008) made by a pool of native threads.
 * The writer's surface towards Python (cffi: daq_server.pipeline._pipeline); knows nothing of HDF5.
 * Keep this file parsable by cffi's cdef (the build script strips '#' lines).
 */
#ifndef STD_DAQ_COMPRESS_POOL_H
#define STD_DAQ_COMPRESS_POOL_H
#include <stdint.h>

#define CP_MAX_THREADS 64

typedef struct cp_pool cp_pool;

typedef struct cp_result {
    int job;              /* give it back with cp_done once the chunk is written */
    uint64_t tag;         /* what the caller submitted with the image */
    const uint8_t *data;  /* the compressed chunk */
    uint64_t size;        /* its bytes; 0 if it could not be compressed */
} cp_result;

typedef struct cp_counters {
    uint64_t chunks;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t busy_ns;     /* CPU time the pool's threads spent compressing */
} cp_counters;

/* Bytes a chunk of `nbytes` may need at most. */
uint64_t cp_bound(uint64_t nbytes, int elem_size);

/* One chunk in this thread: the compressed size, or 0 if dst_capacity is below cp_bound. */
uint64_t cp_compress(const void *src, uint64_t nbytes, int elem_size, uint8_t *dst, uint64_t dst_capacity);

/* A pool of n_threads compressing images of at most max_bytes, n_jobs of them in flight. */
cp_pool *cp_create(int n_threads, int n_jobs, uint64_t max_bytes, int elem_size, char *err, int err_len);

/* Queue an image (it must stay valid until its result is taken); waits while all jobs are busy.
 * Returns the job, or -1 if the image is larger than max_bytes. */
int cp_submit(cp_pool *pool, const void *src, uint64_t nbytes, uint64_t tag);

/* The oldest submitted job, once compressed (results come in submission order):
 * 1 and *out filled, 0 if it is not done within timeout_ms or nothing is pending. */
int cp_next(cp_pool *pool, int timeout_ms, cp_result *out);

/* Jobs submitted whose results were not taken yet. */
int cp_pending(cp_pool *pool);

/* The result of `job` was written: the job is free again. */
void cp_done(cp_pool *pool, int job);

void cp_get_counters(cp_pool *pool, cp_counters *out);

/* Stop the threads (after the queued jobs), copy the final counters to *final (if not NULL),
 * and free everything. */
void cp_destroy(cp_pool *pool, cp_counters *final);
#endif
