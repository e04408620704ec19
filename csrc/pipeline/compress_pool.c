/*
 * compress_pool.c -- bitshuffle+LZ4 chunks made by a pool of native threads, results in order.
 *
 * Chunk format (what HDF5 filter 32008, bitshuffle with LZ4, reads): the uncompressed size as an
 * 8-byte big-endian integer, the block size in bytes as a 4-byte big-endian integer, then each
 * block of `block` elements (8192 bytes' worth, a multiple of 8 elements) bitshuffled and LZ4
 * compressed, preceded by its compressed size (4 bytes, big-endian); after the full blocks one
 * shorter block of the remaining elements rounded down to a multiple of 8, then the last
 * (fewer than 8) elements copied as they are.
 *
 * Blocks of small values (the upper half of every element's bytes zero) are LZ4-encoded by
 * lz4_runs.c, the others by liblz4.
 *
 * The pool: jobs are queued by cp_submit, compressed by whichever thread is free, and handed
 * back by cp_next strictly in submission order, so the writer writes chunks in order.
 */
#define _GNU_SOURCE
#include "compress_pool.h"

#include <errno.h>
#include <lz4.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* Do the elements (count a multiple of 8) leave the upper half of their bytes zero? Then at least half
 * the bit planes are zero bytes: small values, as photon-counting images hold (see lz4_runs.c). */
static int small_values(const uint8_t *in, uint64_t count, int elem_size)
{
    uint64_t mask = elem_size == 2 ? 0xFF00FF00FF00FF00ull
                    : elem_size == 4 ? 0xFFFF0000FFFF0000ull
                    : elem_size == 8 ? 0xFFFFFFFF00000000ull
                                     : 0;
    if (!mask) return 0;
    uint64_t any = 0, word;
    for (uint64_t at = 0; at < count * (uint64_t)elem_size; at += 8) {
        memcpy(&word, in + at, 8);
        any |= word;
    }
    return (any & mask) == 0;
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

typedef struct scratch {
    uint8_t *shuffled, *tmp;
} scratch;

static uint64_t compress_with(const void *src, uint64_t nbytes, int elem_size, uint8_t *dst, uint64_t capacity,
                              scratch *s)
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

static int scratch_alloc(scratch *s, int elem_size)
{
    uint64_t bytes = block_elems(elem_size) * elem_size;
    s->shuffled = malloc(bytes);
    s->tmp = malloc(bytes);
    return s->shuffled && s->tmp ? 0 : -1;
}

static void scratch_free(scratch *s)
{
    free(s->shuffled);
    free(s->tmp);
}

uint64_t cp_compress(const void *src, uint64_t nbytes, int elem_size, uint8_t *dst, uint64_t dst_capacity)
{
    scratch s;
    uint64_t size = 0;
    if (scratch_alloc(&s, elem_size) == 0) size = compress_with(src, nbytes, elem_size, dst, dst_capacity, &s);
    scratch_free(&s);
    return size;
}

enum { JOB_FREE, JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_TAKEN };

typedef struct job {
    int state;
    const void *src;
    uint64_t nbytes, tag, size;
    uint8_t *out;
} job;

struct cp_pool {
    pthread_mutex_t lock;
    pthread_cond_t work, finished, freed;
    int n_threads, n_jobs, elem_size, stopping;
    uint64_t capacity, max_bytes;
    job *jobs;
    int *queue, queue_head, queue_count; /* jobs waiting for a thread, in submission order */
    int *order, order_head, order_count; /* jobs not yet taken by cp_next, in submission order */
    pthread_t threads[CP_MAX_THREADS];
    cp_counters counters;
};

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *worker(void *arg)
{
    cp_pool *pool = arg;
    pthread_setname_np(pthread_self(), "daq-compress"); /* visible in top -H and /proc/<pid>/task */
    scratch s;
    if (scratch_alloc(&s, pool->elem_size) != 0) abort();
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (pool->queue_count == 0 && !pool->stopping) pthread_cond_wait(&pool->work, &pool->lock);
        if (pool->queue_count == 0) break; /* stopping, and nothing left to do */
        job *j = &pool->jobs[pool->queue[pool->queue_head]];
        pool->queue_head = (pool->queue_head + 1) % pool->n_jobs;
        pool->queue_count--;
        j->state = JOB_RUNNING;
        pthread_mutex_unlock(&pool->lock);
        uint64_t start = thread_cpu_ns();
        j->size = compress_with(j->src, j->nbytes, pool->elem_size, j->out, pool->capacity, &s);
        uint64_t busy = thread_cpu_ns() - start;
        pthread_mutex_lock(&pool->lock);
        j->state = JOB_DONE;
        pool->counters.chunks++;
        pool->counters.bytes_in += j->nbytes;
        pool->counters.bytes_out += j->size;
        pool->counters.busy_ns += busy;
        pthread_cond_broadcast(&pool->finished);
    }
    pthread_mutex_unlock(&pool->lock);
    scratch_free(&s);
    return NULL;
}

static void pool_free(cp_pool *pool)
{
    if (pool->jobs)
        for (int k = 0; k < pool->n_jobs; k++) free(pool->jobs[k].out);
    free(pool->jobs);
    free(pool->queue);
    free(pool->order);
    free(pool);
}

cp_pool *cp_create(int n_threads, int n_jobs, uint64_t max_bytes, int elem_size, char *err, int err_len)
{
    if (n_threads < 1 || n_threads > CP_MAX_THREADS || n_jobs < n_threads || (elem_size != 1 && elem_size != 2 &&
                                                                              elem_size != 4 && elem_size != 8)) {
        snprintf(err, err_len, "compression threads must be 1 to %d (element size 1, 2, 4 or 8 bytes)",
                 CP_MAX_THREADS);
        return NULL;
    }
    cp_pool *pool = calloc(1, sizeof(*pool));
    if (!pool) goto oom;
    pool->n_threads = 0;
    pool->n_jobs = n_jobs;
    pool->elem_size = elem_size;
    pool->max_bytes = max_bytes;
    pool->capacity = cp_bound(max_bytes, elem_size);
    pool->jobs = calloc(n_jobs, sizeof(job));
    pool->queue = calloc(n_jobs, sizeof(int));
    pool->order = calloc(n_jobs, sizeof(int));
    if (!pool->jobs || !pool->queue || !pool->order) goto oom;
    for (int k = 0; k < n_jobs; k++)
        if (!(pool->jobs[k].out = malloc(pool->capacity))) goto oom;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->work, NULL);
    pthread_cond_init(&pool->finished, NULL);
    pthread_cond_init(&pool->freed, NULL);
    for (; pool->n_threads < n_threads; pool->n_threads++) {
        int rc = pthread_create(&pool->threads[pool->n_threads], NULL, worker, pool);
        if (rc != 0) {
            snprintf(err, err_len, "cannot start a compression thread: %s", strerror(rc));
            cp_destroy(pool, NULL);
            return NULL;
        }
    }
    return pool;
oom:
    snprintf(err, err_len, "out of memory for %d compression buffers", n_jobs);
    if (pool) pool_free(pool);
    return NULL;
}

int cp_submit(cp_pool *pool, const void *src, uint64_t nbytes, uint64_t tag)
{
    if (nbytes > pool->max_bytes) return -1;
    pthread_mutex_lock(&pool->lock);
    int k;
    for (;;) {
        for (k = 0; k < pool->n_jobs && pool->jobs[k].state != JOB_FREE; k++) {
        }
        if (k < pool->n_jobs) break;
        pthread_cond_wait(&pool->freed, &pool->lock);
    }
    job *j = &pool->jobs[k];
    j->state = JOB_QUEUED;
    j->src = src;
    j->nbytes = nbytes;
    j->tag = tag;
    j->size = 0;
    pool->queue[(pool->queue_head + pool->queue_count++) % pool->n_jobs] = k;
    pool->order[(pool->order_head + pool->order_count++) % pool->n_jobs] = k;
    pthread_cond_signal(&pool->work);
    pthread_mutex_unlock(&pool->lock);
    return k;
}

int cp_next(cp_pool *pool, int timeout_ms, cp_result *out)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    int got = 0;
    pthread_mutex_lock(&pool->lock);
    while (pool->order_count > 0) {
        job *j = &pool->jobs[pool->order[pool->order_head]];
        if (j->state == JOB_DONE) {
            out->job = pool->order[pool->order_head];
            out->tag = j->tag;
            out->data = j->out;
            out->size = j->size;
            j->state = JOB_TAKEN;
            pool->order_head = (pool->order_head + 1) % pool->n_jobs;
            pool->order_count--;
            got = 1;
            break;
        }
        if (timeout_ms <= 0 || pthread_cond_timedwait(&pool->finished, &pool->lock, &deadline) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&pool->lock);
    return got;
}

int cp_pending(cp_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    int n = pool->order_count;
    pthread_mutex_unlock(&pool->lock);
    return n;
}

void cp_done(cp_pool *pool, int job_index)
{
    if (job_index < 0 || job_index >= pool->n_jobs) return;
    pthread_mutex_lock(&pool->lock);
    if (pool->jobs[job_index].state == JOB_TAKEN) {
        pool->jobs[job_index].state = JOB_FREE;
        pthread_cond_signal(&pool->freed);
    }
    pthread_mutex_unlock(&pool->lock);
}

void cp_get_counters(cp_pool *pool, cp_counters *out)
{
    pthread_mutex_lock(&pool->lock);
    *out = pool->counters;
    pthread_mutex_unlock(&pool->lock);
}

void cp_destroy(cp_pool *pool, cp_counters *final)
{
    if (!pool) return;
    pthread_mutex_lock(&pool->lock);
    pool->stopping = 1;
    pthread_cond_broadcast(&pool->work);
    pthread_mutex_unlock(&pool->lock);
    for (int k = 0; k < pool->n_threads; k++) pthread_join(pool->threads[k], NULL);
    if (final) *final = pool->counters;
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->work);
    pthread_cond_destroy(&pool->finished);
    pthread_cond_destroy(&pool->freed);
    pool_free(pool);
}
