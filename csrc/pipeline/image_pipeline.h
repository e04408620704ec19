/*
 * image_pipeline.h -- per-image work in a pool of native threads, between the ring buffer and the file:
 * each image runs through the stages the pool was made with (convert, then compress), and the results
 * come back in submission order. The writer's surface towards Python (cffi: daq_server.pipeline._pipeline);
 * knows nothing of HDF5.
 * Keep this file parsable by cffi's cdef (the build script strips '#' lines).
 */
#ifndef STD_DAQ_IMAGE_PIPELINE_H
#define STD_DAQ_IMAGE_PIPELINE_H
#include <stdint.h>

#include "image_results.h"
#include "jungfrau_conversion.h"

#define IP_MAX_THREADS 64

typedef struct ip_pool ip_pool;

/* The stages every image goes through, in this order (convert, results, compress); each reads what the previous one left. */
typedef struct ip_stages {
    const jc_tables *conversion; /* raw gain-switching words -> photons or keV (NULL: none) */
    int compress;                /* bitshuffle+LZ4 chunk of the image (0: none) */
    const ir_tables *results;    /* ROI sums, radial profile, spot count of the (converted) image (NULL: none) */
} ip_stages;

typedef struct ip_result {
    int job;              /* give it back with ip_done once the result is written */
    uint64_t tag;         /* what the caller submitted with the image */
    const uint8_t *data;  /* the chunk, or (no compression) the converted image */
    uint64_t size;        /* its bytes; 0 if it could not be compressed */
    const uint8_t *image; /* the image before compression: the converted one, or the submitted one */
    uint64_t image_bytes;
    jc_counts counts;     /* of the conversion (zeros without one) */
    const double *results; /* ir_n_values doubles of the results stage (NULL without it, or skipped) */
} ip_result;

typedef struct ip_counters {
    uint64_t images;
    uint64_t bytes_in;    /* of the submitted images */
    uint64_t bytes_out;   /* of the results */
    uint64_t busy_ns;     /* CPU time the pool's threads spent on the stages */
} ip_counters;

/* A pool of n_threads running `stages` on images of at most max_bytes of elem_size-byte pixels (a
 * converting pool takes uint16 images of exactly the conversion's pixels), n_jobs of them in flight.
 * The conversion and results tables must outlive the pool. */
ip_pool *ip_create(int n_threads, int n_jobs, uint64_t max_bytes, int elem_size, const ip_stages *stages, char *err,
                   int err_len);

/* Queue an image (it must stay valid until its result is taken); waits while all jobs are busy.
 * skip_results: this image goes without the results stage (its result's `results` is NULL).
 * Returns the job, or -1 if the image does not fit the pool. */
int ip_submit(ip_pool *pool, const void *src, uint64_t nbytes, uint64_t tag, int skip_results);

/* The oldest submitted job, once done (results come in submission order):
 * 1 and *out filled, 0 if it is not done within timeout_ms or nothing is pending. */
int ip_next(ip_pool *pool, int timeout_ms, ip_result *out);

/* Jobs submitted whose results were not taken yet. */
int ip_pending(ip_pool *pool);

/* The result of `job` was written: the job is free again. */
void ip_done(ip_pool *pool, int job);

void ip_get_counters(ip_pool *pool, ip_counters *out);

/* Stop the threads (after the queued jobs), copy the final counters to *final (if not NULL),
 * and free everything. */
void ip_destroy(ip_pool *pool, ip_counters *final);
#endif
