/*
 * ring_buffer.c -- the slot pool: image slots in one pre-faulted shared mapping, between the
 * module receive threads (which write pixels straight into a slot) and the writer (which reads
 * a completed slot in place, as a numpy array, and releases it).
 *
 * With a name, the mapping is a POSIX shared memory object (/dev/shm/<name>, mode 0600) that
 * writer processes map read-only by that name; it is unlinked when the ring is destroyed.
 *
 * A slot is FREE -> ASSEMBLING (modules open/close their part of one frame number)
 * -> READY (queued for the writer) -> READING (writer holds it) -> FREE.
 * When an ASSEMBLING slot is complete is decided by image_completion.c, which uses the primitives
 * here (this file calls nothing of it).
 */
#include "ring_buffer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

double now_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

double now_unix(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The slot memory: a named shared memory object when shm_name is given, else anonymous. */
static uint8_t *map_slots(ring_buffer *ring, const char *shm_name, char *err, int err_len)
{
    /* MAP_POPULATE pre-faults the pages: no page faults on the receive path. The mapping
     * starts zeroed, which is the documented value of gap pixels. */
    if (!shm_name || !shm_name[0])
        return mmap(NULL, ring->mapped_bytes, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    int fd = shm_open(shm_name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        snprintf(err, err_len, "cannot create the shared memory %s: %s", shm_name, strerror(errno));
        return MAP_FAILED;
    }
    snprintf(ring->shm_name, sizeof(ring->shm_name), "%s", shm_name);
    /* fallocate, not ftruncate: every page is reserved now, so a /dev/shm too small for the ring
     * fails here (ENOSPC) instead of killing the receiver with SIGBUS on a later write */
    uint8_t *data = MAP_FAILED;
    int failed = posix_fallocate(fd, 0, (off_t)ring->mapped_bytes);
    if (failed == 0)
        data = mmap(NULL, ring->mapped_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    else
        errno = failed;
    if (data == MAP_FAILED) {
        snprintf(err, err_len, "cannot map a ring buffer of %zu bytes in the shared memory %s: %s", ring->mapped_bytes,
                 shm_name, strerror(errno));
        shm_unlink(shm_name);
        ring->shm_name[0] = 0;
    }
    close(fd);
    return data;
}

ring_buffer *ring_create(const char *shm_name, int n_slots, size_t image_bytes, int n_modules,
                         int packets_per_frame, double idle_timeout_s, double stale_timeout_s,
                         fill_module_fn fill, pending_fn pending, void *fill_ctx, char *err, int err_len)
{
    ring_buffer *ring = calloc(1, sizeof(*ring));
    if (!ring) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    ring->n_slots = n_slots;
    ring->image_bytes = image_bytes;
    ring->slot_bytes = (image_bytes + RX_SLOT_ALIGN - 1) / RX_SLOT_ALIGN * RX_SLOT_ALIGN;
    ring->mapped_bytes = (size_t)n_slots * ring->slot_bytes;
    ring->data = map_slots(ring, shm_name, err, err_len);
    if (ring->data == MAP_FAILED) {
        if (!shm_name || !shm_name[0])
            snprintf(err, err_len, "cannot map a ring buffer of %zu bytes: %s", ring->mapped_bytes,
                     strerror(errno));
        free(ring);
        return NULL;
    }
    ring->slots = calloc(n_slots, sizeof(slot_meta));
    ring->ready_fifo = calloc(n_slots, sizeof(int));
    if (!ring->slots || !ring->ready_fifo) {
        snprintf(err, err_len, "out of memory");
        ring_destroy(ring);
        return NULL;
    }
    ring->n_modules = n_modules;
    ring->packets_per_frame = packets_per_frame;
    ring->idle_timeout_s = idle_timeout_s;
    ring->stale_timeout_s = stale_timeout_s;
    ring->fill = fill;
    ring->pending = pending;
    ring->fill_ctx = fill_ctx;
    int64_t now_ns = (int64_t)(now_monotonic() * 1e9);
    for (int m = 0; m < MAX_MODULES; m++) ring->progress[m].last_packet_ns = now_ns;
    pthread_mutex_init(&ring->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&ring->ready_cond, &attr);
    pthread_condattr_destroy(&attr);
    return ring;
}

void ring_destroy(ring_buffer *ring)
{
    if (!ring) return;
    munmap(ring->data, ring->mapped_bytes);
    if (ring->shm_name[0]) shm_unlink(ring->shm_name);
    free(ring->slots);
    free(ring->ready_fifo);
    pthread_mutex_destroy(&ring->lock);
    pthread_cond_destroy(&ring->ready_cond);
    free(ring);
}

uint8_t *ring_slot_data(ring_buffer *ring, int slot)
{
    return ring->data + (size_t)slot * ring->slot_bytes;
}

size_t ring_slot_bytes(const ring_buffer *ring)
{
    return ring->slot_bytes;
}

int ring_find_assembling(ring_buffer *ring, uint64_t frame, int *free_slot)
{
    *free_slot = -1;
    for (int s = 0; s < ring->n_slots; s++) {
        slot_meta *meta = &ring->slots[s];
        if (meta->state == SLOT_ASSEMBLING && meta->frame == frame) return s;
        if (*free_slot < 0 && meta->state == SLOT_FREE) *free_slot = s;
    }
    return -1;
}

void ring_take_slot(ring_buffer *ring, int slot, uint64_t frame, uint32_t epoch, uint64_t detector_timestamp)
{
    slot_meta *meta = &ring->slots[slot];
    memset(meta, 0, sizeof(*meta));
    meta->state = SLOT_ASSEMBLING;
    meta->frame = frame;
    meta->epoch = epoch;
    meta->detector_timestamp = detector_timestamp;
    meta->opened_unix = now_unix();
    meta->opened_monotonic = now_monotonic();
}

void ring_queue_ready(ring_buffer *ring, int slot)
{
    ring->slots[slot].state = SLOT_READY;
    ring->ready_fifo[(ring->ready_head + ring->ready_count) % ring->n_slots] = slot;
    ring->ready_count++;
    pthread_cond_signal(&ring->ready_cond);
}

void ring_free_slot(ring_buffer *ring, int slot)
{
    ring->slots[slot].state = SLOT_FREE;
}

int ring_pop_ready(ring_buffer *ring, rx_image *out)
{
    if (ring->ready_count == 0) return 0;
    int slot = ring->ready_fifo[ring->ready_head];
    ring->ready_head = (ring->ready_head + 1) % ring->n_slots;
    ring->ready_count--;
    slot_meta *meta = &ring->slots[slot];
    meta->state = SLOT_READING;
    out->slot = slot;
    out->frame_number = meta->frame;
    out->n_missing_packets = meta->n_missing;
    out->detector_timestamp = meta->detector_timestamp;
    out->receive_time = meta->opened_unix;
    out->data = ring_slot_data(ring, slot);
    out->data_bytes = ring->image_bytes;
    return 1;
}

void ring_close_waiters(ring_buffer *ring)
{
    pthread_mutex_lock(&ring->lock);
    ring->closing = 1;
    pthread_cond_broadcast(&ring->ready_cond);
    pthread_mutex_unlock(&ring->lock);
}

void ring_release(ring_buffer *ring, int slot)
{
    if (slot < 0 || slot >= ring->n_slots) return;
    pthread_mutex_lock(&ring->lock);
    if (ring->slots[slot].state == SLOT_READING) ring->slots[slot].state = SLOT_FREE;
    pthread_mutex_unlock(&ring->lock);
}

void ring_counters(ring_buffer *ring, rx_counters *out)
{
    pthread_mutex_lock(&ring->lock);
    out->images_complete = ring->images_complete;
    out->images_incomplete = ring->images_incomplete;
    out->images_dropped = ring->images_dropped;
    out->frame_restarts = ring->frame_restarts;
    out->packets_lost = ring->packets_lost;
    pthread_mutex_unlock(&ring->lock);
}
