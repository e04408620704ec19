/*
 * image_pipeline.c -- per-image stages run by a pool of native threads, results in order.
 *
 * A job is one image: a worker thread takes it and runs the pool's stages on it, each reading the
 * image the previous one left (first the ring-buffer slot itself, no copy):
 *   convert   raw gain-switching words -> photons or keV into the job's own buffer (jungfrau_conversion.c)
 *   results   ROI sums, radial profile and spot count of that image into the job's values (image_results.c)
 *   compress  a bitshuffle+LZ4 chunk into the job's output buffer (chunk_compression.c) Jobs are queued by ip_submit, done by whichever thread is free,
 * and handed back by ip_next strictly in submission order, so the writer writes them in order.
 */
#define _GNU_SOURCE
#include "image_pipeline.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chunk_compression.h"

enum { JOB_FREE, JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_TAKEN };

typedef struct job {
    int state;
    const void *src;
    uint64_t nbytes, tag;
    int skip_results;     /* this image goes without the results stage */
    uint8_t *converted;   /* the convert stage's image (NULL without it) */
    uint8_t *out;         /* the compress stage's chunk (NULL without it) */
    double *values;       /* the results stage's values (NULL without it) */
    const uint8_t *result, *image;
    uint64_t size, image_bytes;
    jc_counts counts;
} job;

struct ip_pool {
    pthread_mutex_t lock;
    pthread_cond_t work, finished, freed;
    int n_threads, n_jobs, elem_size, stopping;
    ip_stages stages;
    int image_elem_size;     /* of the image reaching the compress stage */
    uint64_t max_bytes, image_bytes, capacity; /* submitted, after conversion, chunk room */
    job *jobs;
    int *queue, queue_head, queue_count; /* jobs waiting for a thread, in submission order */
    int *order, order_head, order_count; /* jobs not yet taken by ip_next, in submission order */
    pthread_t threads[IP_MAX_THREADS];
    ip_counters counters;
};

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The stages of one job, in a worker thread, without the lock. */
static void run_stages(ip_pool *pool, job *j, cp_scratch *s, ir_scratch *r)
{
    const void *image = j->src;
    uint64_t bytes = j->nbytes;
    memset(&j->counts, 0, sizeof(j->counts));
    if (pool->stages.conversion) {
        jc_convert(pool->stages.conversion, image, j->converted, &j->counts);
        image = j->converted;
        bytes = pool->image_bytes;
    }
    j->image = image;
    j->image_bytes = bytes;
    if (pool->stages.results && !j->skip_results) ir_compute(pool->stages.results, image, j->values, r);
    if (pool->stages.compress) {
        j->size = cp_compress_with(image, bytes, pool->image_elem_size, j->out, pool->capacity, s);
        j->result = j->out;
    } else {
        j->size = bytes;
        j->result = image;
    }
}

static void *worker(void *arg)
{
    ip_pool *pool = arg;
    pthread_setname_np(pthread_self(), "daq-compress"); /* visible in top -H and /proc/<pid>/task */
    cp_scratch s;
    if (cp_scratch_alloc(&s, pool->image_elem_size) != 0) abort();
    ir_scratch *r = pool->stages.results ? ir_scratch_new(pool->stages.results) : NULL;
    if (pool->stages.results && !r) abort();
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
        run_stages(pool, j, &s, r);
        uint64_t busy = thread_cpu_ns() - start;
        pthread_mutex_lock(&pool->lock);
        j->state = JOB_DONE;
        pool->counters.images++;
        pool->counters.bytes_in += j->nbytes;
        pool->counters.bytes_out += j->size;
        pool->counters.busy_ns += busy;
        pthread_cond_broadcast(&pool->finished);
    }
    pthread_mutex_unlock(&pool->lock);
    cp_scratch_free(&s);
    ir_scratch_free(r);
    return NULL;
}

static void pool_free(ip_pool *pool)
{
    if (pool->jobs)
        for (int k = 0; k < pool->n_jobs; k++) {
            free(pool->jobs[k].out);
            free(pool->jobs[k].converted);
            free(pool->jobs[k].values);
        }
    free(pool->jobs);
    free(pool->queue);
    free(pool->order);
    free(pool);
}

/* A buffer on its own pages (NULL if out of memory). */
static void *page_aligned(uint64_t bytes)
{
    void *memory = NULL;
    return posix_memalign(&memory, 4096, (bytes + 4095) / 4096 * 4096) ? NULL : memory;
}

ip_pool *ip_create(int n_threads, int n_jobs, uint64_t max_bytes, int elem_size, const ip_stages *stages, char *err,
                   int err_len)
{
    if (n_threads < 1 || n_threads > IP_MAX_THREADS || n_jobs < n_threads || (elem_size != 1 && elem_size != 2 &&
                                                                              elem_size != 4 && elem_size != 8)) {
        snprintf(err, err_len, "compression threads must be 1 to %d (element size 1, 2, 4 or 8 bytes)",
                 IP_MAX_THREADS);
        return NULL;
    }
    const jc_tables *conversion = stages ? stages->conversion : NULL;
    if (conversion && (elem_size != 2 || max_bytes != jc_pixels(conversion) * 2)) {
        snprintf(err, err_len, "a converting pool takes uint16 images of %llu pixels",
                 (unsigned long long)jc_pixels(conversion));
        return NULL;
    }
    const ir_tables *results = stages ? stages->results : NULL;
    uint64_t image_pixels = conversion ? jc_pixels(conversion) : max_bytes / (uint64_t)elem_size;
    if (results && results->height * results->width != image_pixels) {
        snprintf(err, err_len, "the results tables are for images of %llu pixels, not %llu",
                 (unsigned long long)(results->height * results->width), (unsigned long long)image_pixels);
        return NULL;
    }
    ip_pool *pool = calloc(1, sizeof(*pool));
    if (!pool) goto oom;
    pool->n_threads = 0;
    pool->n_jobs = n_jobs;
    pool->elem_size = elem_size;
    pool->stages = stages ? *stages : (ip_stages){NULL, 1, NULL};
    pool->max_bytes = max_bytes;
    pool->image_elem_size = conversion ? jc_output_size(conversion) : elem_size;
    pool->image_bytes = conversion ? jc_pixels(conversion) * (uint64_t)pool->image_elem_size : max_bytes;
    pool->capacity = cp_bound(pool->image_bytes, pool->image_elem_size);
    pool->jobs = calloc(n_jobs, sizeof(job));
    pool->queue = calloc(n_jobs, sizeof(int));
    pool->order = calloc(n_jobs, sizeof(int));
    if (!pool->jobs || !pool->queue || !pool->order) goto oom;
    /* page-aligned: the writer hands chunks and converted images to the disk with O_DIRECT, from here */
    for (int k = 0; k < n_jobs; k++) {
        if (pool->stages.compress && !(pool->jobs[k].out = page_aligned(pool->capacity))) goto oom;
        if (conversion && !(pool->jobs[k].converted = page_aligned(pool->image_bytes))) goto oom;
        if (pool->stages.results &&
            !(pool->jobs[k].values = calloc(ir_n_values(pool->stages.results), sizeof(double))))
            goto oom;
    }
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->work, NULL);
    pthread_cond_init(&pool->finished, NULL);
    pthread_cond_init(&pool->freed, NULL);
    for (; pool->n_threads < n_threads; pool->n_threads++) {
        int rc = pthread_create(&pool->threads[pool->n_threads], NULL, worker, pool);
        if (rc != 0) {
            snprintf(err, err_len, "cannot start a pipeline thread: %s", strerror(rc));
            ip_destroy(pool, NULL);
            return NULL;
        }
    }
    return pool;
oom:
    snprintf(err, err_len, "out of memory for %d image buffers", n_jobs);
    if (pool) pool_free(pool);
    return NULL;
}

int ip_submit(ip_pool *pool, const void *src, uint64_t nbytes, uint64_t tag, int skip_results)
{
    if (nbytes > pool->max_bytes || ((pool->stages.conversion || pool->stages.results) && nbytes != pool->max_bytes))
        return -1;
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
    j->skip_results = skip_results;
    j->size = 0;
    pool->queue[(pool->queue_head + pool->queue_count++) % pool->n_jobs] = k;
    pool->order[(pool->order_head + pool->order_count++) % pool->n_jobs] = k;
    pthread_cond_signal(&pool->work);
    pthread_mutex_unlock(&pool->lock);
    return k;
}

int ip_next(ip_pool *pool, int timeout_ms, ip_result *out)
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
            out->data = j->result;
            out->size = j->size;
            out->counts = j->counts;
            out->image = j->image;
            out->image_bytes = j->image_bytes;
            out->results = j->skip_results ? NULL : j->values;
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

int ip_pending(ip_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    int n = pool->order_count;
    pthread_mutex_unlock(&pool->lock);
    return n;
}

void ip_done(ip_pool *pool, int job_index)
{
    if (job_index < 0 || job_index >= pool->n_jobs) return;
    pthread_mutex_lock(&pool->lock);
    if (pool->jobs[job_index].state == JOB_TAKEN) {
        pool->jobs[job_index].state = JOB_FREE;
        pthread_cond_signal(&pool->freed);
    }
    pthread_mutex_unlock(&pool->lock);
}

void ip_get_counters(ip_pool *pool, ip_counters *out)
{
    pthread_mutex_lock(&pool->lock);
    *out = pool->counters;
    pthread_mutex_unlock(&pool->lock);
}

void ip_destroy(ip_pool *pool, ip_counters *final)
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
