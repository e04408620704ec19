/*
 * ring_buffer.c -- image slots in one pre-faulted shared mapping, between the module
 * receive threads (which write pixels straight into a slot) and the writer (which reads a
 * completed slot in place, as a numpy array, and releases it).
 *
 * A slot is FREE -> ASSEMBLING (modules open/close their part of one frame number)
 * -> READY (queued for the writer) -> READING (writer holds it) -> FREE.
 * An image is complete when every module delivered the frame or gave up on it: it moved
 * on to a newer frame, or it stayed silent while the others moved on, or the image waited
 * longer than stale_timeout while none of its missing modules has packets queued.
 * Modules that gave up are filled with the missing value.
 * The lock is taken once per module frame transition, never per packet.
 */
#include "receiver_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

enum slot_state { SLOT_FREE, SLOT_ASSEMBLING, SLOT_READY, SLOT_READING };

typedef struct slot_meta {
    int state;
    uint64_t frame;
    uint32_t open_mask;       /* modules writing pixels into the slot right now */
    uint32_t done_mask;       /* modules finished with this frame */
    uint32_t n_missing;
    uint64_t detector_timestamp;
    double opened_unix;
    double opened_monotonic;
} slot_meta;

struct ring_buffer {
    pthread_mutex_t lock;
    pthread_cond_t ready_cond;
    int n_slots;
    size_t image_bytes;
    uint8_t *data;
    size_t mapped_bytes;
    slot_meta *slots;
    int *ready_fifo;
    int ready_head, ready_count;
    int n_modules;
    int packets_per_frame;
    double idle_timeout_s, stale_timeout_s;
    uint64_t progress[MAX_MODULES];          /* newest frame each module opened */
    int has_progress[MAX_MODULES];
    volatile double last_packet[MAX_MODULES]; /* monotonic time of each module's last packet */
    uint64_t max_progress;
    int has_max_progress;
    uint64_t max_completed;
    int has_completed;
    uint64_t images_complete, images_incomplete;
    fill_module_fn fill;
    pending_fn pending;
    void *fill_ctx;
};

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

ring_buffer *ring_create(int n_slots, size_t image_bytes, int n_modules, int packets_per_frame,
                         double idle_timeout_s, double stale_timeout_s,
                         fill_module_fn fill, pending_fn pending, void *fill_ctx, char *err, int err_len)
{
    ring_buffer *ring = calloc(1, sizeof(*ring));
    if (!ring) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    ring->n_slots = n_slots;
    ring->image_bytes = image_bytes;
    ring->mapped_bytes = (size_t)n_slots * image_bytes;
    /* MAP_POPULATE pre-faults the pages: no page faults on the receive path. The mapping
     * starts zeroed, which is the documented value of gap pixels. */
    ring->data = mmap(NULL, ring->mapped_bytes, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (ring->data == MAP_FAILED) {
        snprintf(err, err_len, "cannot map a ring buffer of %zu bytes: %s", ring->mapped_bytes,
                 strerror(errno));
        free(ring);
        return NULL;
    }
    ring->slots = calloc(n_slots, sizeof(slot_meta));
    ring->ready_fifo = calloc(n_slots, sizeof(int));
    ring->n_modules = n_modules;
    ring->packets_per_frame = packets_per_frame;
    ring->idle_timeout_s = idle_timeout_s;
    ring->stale_timeout_s = stale_timeout_s;
    ring->fill = fill;
    ring->pending = pending;
    ring->fill_ctx = fill_ctx;
    double now = now_monotonic();
    for (int m = 0; m < MAX_MODULES; m++) ring->last_packet[m] = now;
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
    free(ring->slots);
    free(ring->ready_fifo);
    pthread_mutex_destroy(&ring->lock);
    pthread_cond_destroy(&ring->ready_cond);
    free(ring);
}

uint8_t *ring_slot_data(ring_buffer *ring, int slot)
{
    return ring->data + (size_t)slot * ring->image_bytes;
}

void ring_module_alive(ring_buffer *ring, int module)
{
    ring->last_packet[module] = now_monotonic();
}

/* Hand a slot to the writer; modules that never delivered are filled as missing. */
static void complete_slot(ring_buffer *ring, int slot)
{
    slot_meta *meta = &ring->slots[slot];
    for (int m = 0; m < ring->n_modules; m++) {
        if (!(meta->done_mask & (1u << m))) {
            ring->fill(ring->fill_ctx, ring_slot_data(ring, slot), m);
            meta->n_missing += ring->packets_per_frame;
        }
    }
    meta->state = SLOT_READY;
    if (meta->n_missing == 0) ring->images_complete++;
    else ring->images_incomplete++;
    if (!ring->has_completed || meta->frame > ring->max_completed) {
        ring->max_completed = meta->frame;
        ring->has_completed = 1;
    }
    ring->ready_fifo[(ring->ready_head + ring->ready_count) % ring->n_slots] = slot;
    ring->ready_count++;
    pthread_cond_signal(&ring->ready_cond);
}

/* Has module m delivered this slot's frame or given up on it? */
static int module_finished_with(ring_buffer *ring, const slot_meta *meta, int m, double now)
{
    if (meta->done_mask & (1u << m)) return 1;
    /* moved past it; a progress far ahead belongs to the numbering before a detector restart */
    if (ring->has_progress[m] && ring->progress[m] > meta->frame &&
        ring->progress[m] - meta->frame < RESTART_WINDOW)
        return 1;
    /* silent while the others moved past this frame: a module that stopped sending. Its
     * socket must be empty too: a receive thread the scheduler kept waiting is not silent. */
    if (ring->has_max_progress && ring->max_progress > meta->frame &&
        now - ring->last_packet[m] > ring->idle_timeout_s && !ring->pending(ring->fill_ctx, m))
        return 1;
    return 0;
}

/* Has the image waited too long? Not while a module it lacks still has packets queued. */
static int is_stale(ring_buffer *ring, const slot_meta *meta, double now)
{
    if (now - meta->opened_monotonic <= ring->stale_timeout_s) return 0;
    for (int m = 0; m < ring->n_modules; m++)
        if (!(meta->done_mask & (1u << m)) && ring->pending(ring->fill_ctx, m)) return 0;
    return 1;
}

/* Complete every assembling slot nobody writes to and nobody will deliver to. */
static void complete_finished_slots(ring_buffer *ring)
{
    double now = now_monotonic();
    for (int s = 0; s < ring->n_slots; s++) {
        slot_meta *meta = &ring->slots[s];
        if (meta->state != SLOT_ASSEMBLING || meta->open_mask) continue;
        int finished = is_stale(ring, meta, now);
        for (int m = 0; !finished && m < ring->n_modules; m++) {
            if (!module_finished_with(ring, meta, m, now)) break;
            if (m == ring->n_modules - 1) finished = 1;
        }
        if (finished) complete_slot(ring, s);
    }
}

int ring_open_frame(ring_buffer *ring, int module, uint64_t frame, uint64_t detector_timestamp)
{
    int result = RING_FULL;
    pthread_mutex_lock(&ring->lock);
    if (ring->has_progress[module] && frame + RESTART_WINDOW < ring->progress[module]) {
        /* the detector restarted its frame numbers: forget what came before */
        ring->has_completed = 0;
        ring->has_max_progress = 0;
    }
    ring->progress[module] = frame;
    ring->has_progress[module] = 1;
    if (!ring->has_max_progress || frame > ring->max_progress) {
        ring->max_progress = frame;
        ring->has_max_progress = 1;
    }
    int free_slot = -1;
    for (int s = 0; s < ring->n_slots; s++) {
        slot_meta *meta = &ring->slots[s];
        if (meta->state == SLOT_ASSEMBLING && meta->frame == frame) {
            result = s;
            break;
        }
        if (free_slot < 0 && meta->state == SLOT_FREE) free_slot = s;
    }
    if (result < 0) {
        if (ring->has_completed && frame <= ring->max_completed &&
            ring->max_completed - frame < RESTART_WINDOW) {
            result = RING_LATE;  /* that image was already handed to the writer */
        } else if (free_slot >= 0) {
            slot_meta *meta = &ring->slots[free_slot];
            memset(meta, 0, sizeof(*meta));
            meta->state = SLOT_ASSEMBLING;
            meta->frame = frame;
            meta->detector_timestamp = detector_timestamp;
            meta->opened_unix = now_unix();
            meta->opened_monotonic = now_monotonic();
            result = free_slot;
        }
    }
    if (result >= 0) ring->slots[result].open_mask |= 1u << module;
    complete_finished_slots(ring);
    pthread_mutex_unlock(&ring->lock);
    return result;
}

void ring_close_frame(ring_buffer *ring, int module, int slot, uint32_t missing)
{
    pthread_mutex_lock(&ring->lock);
    slot_meta *meta = &ring->slots[slot];
    meta->open_mask &= ~(1u << module);
    meta->done_mask |= 1u << module;
    meta->n_missing += missing;
    complete_finished_slots(ring);
    pthread_mutex_unlock(&ring->lock);
}

int ring_wait_ready(ring_buffer *ring, int timeout_ms, rx_image *out)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&ring->lock);
    complete_finished_slots(ring);
    while (ring->ready_count == 0) {
        /* wake at least every 10 ms to release images whose modules went silent */
        struct timespec tick;
        clock_gettime(CLOCK_MONOTONIC, &tick);
        tick.tv_nsec += 10000000L;
        if (tick.tv_nsec >= 1000000000L) {
            tick.tv_sec++;
            tick.tv_nsec -= 1000000000L;
        }
        int last = tick.tv_sec > deadline.tv_sec ||
                   (tick.tv_sec == deadline.tv_sec && tick.tv_nsec >= deadline.tv_nsec);
        int rc = pthread_cond_timedwait(&ring->ready_cond, &ring->lock, last ? &deadline : &tick);
        complete_finished_slots(ring);
        if (rc == ETIMEDOUT && last) break;
    }
    int got = 0;
    if (ring->ready_count > 0) {
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
        got = 1;
    }
    pthread_mutex_unlock(&ring->lock);
    return got;
}

void ring_release(ring_buffer *ring, int slot)
{
    if (slot < 0 || slot >= ring->n_slots) return;
    pthread_mutex_lock(&ring->lock);
    if (ring->slots[slot].state == SLOT_READING) ring->slots[slot].state = SLOT_FREE;
    pthread_mutex_unlock(&ring->lock);
}

void ring_counters(ring_buffer *ring, uint64_t *images_complete, uint64_t *images_incomplete)
{
    pthread_mutex_lock(&ring->lock);
    *images_complete = ring->images_complete;
    *images_incomplete = ring->images_incomplete;
    pthread_mutex_unlock(&ring->lock);
}
