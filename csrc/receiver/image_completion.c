/*
 * image_completion.c -- when is an image complete? The rules beside the slot pool.
 *
 * Frame numbers come in sequences: a detector counts up, and starts a new sequence when it is
 * reset, restarted or given a new next frame number (frame_assembly.c decides when a module
 * starts one). Every sequence that restarts the numbering opens a new epoch: the first module
 * to restart opens it, the others join it when they restart too. Comparisons between frame
 * numbers ("moved past", "already written") are only made within one epoch, so a new
 * acquisition that counts from 1 again is never taken for late frames of the last one.
 *
 * An image is complete when every module delivered the frame or gave up on it: it moved on
 * to a newer frame of the same epoch, or it stayed silent while the others moved on, or the
 * image waited longer than stale_timeout while none of its missing modules has packets
 * queued. Modules that gave up are filled with the missing value.
 * The lock is taken once per module frame transition, never per packet.
 */
#include "ring_buffer.h"

#include <errno.h>
#include <time.h>

static int64_t now_ns(void)
{
    return (int64_t)(now_monotonic() * 1e9);
}

void ring_module_alive(ring_buffer *ring, int module)
{
    __atomic_store_n(&ring->progress[module].last_packet_ns, now_ns(), __ATOMIC_RELAXED);
}

void ring_module_busy(ring_buffer *ring, int module, int busy)
{
    __atomic_store_n(&ring->progress[module].in_batch, busy, __ATOMIC_RELEASE);
}

/* Could module m still deliver? Packets in its socket, or received and not yet placed. */
static int has_packets(ring_buffer *ring, int m)
{
    return __atomic_load_n(&ring->progress[m].in_batch, __ATOMIC_ACQUIRE) || ring->pending(ring->fill_ctx, m);
}

static double seconds_since_packet(ring_buffer *ring, int module, double now)
{
    return now - __atomic_load_n(&ring->progress[module].last_packet_ns, __ATOMIC_RELAXED) * 1e-9;
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
    if (meta->n_missing == 0) ring->images_complete++;
    else ring->images_incomplete++;
    ring->packets_lost += meta->n_missing;
    if (!ring->has_completed || meta->epoch > ring->completed_epoch ||
        (meta->epoch == ring->completed_epoch && meta->frame > ring->max_completed)) {
        ring->max_completed = meta->frame;
        ring->completed_epoch = meta->epoch;
        ring->has_completed = 1;
    }
    ring_queue_ready(ring, slot);
}

/* Is `frame` of `epoch` behind `newest` of `newest_epoch` (by less than LATE_WINDOW)? */
static int behind(uint64_t frame, uint32_t epoch, uint64_t newest, uint32_t newest_epoch)
{
    if (epoch != newest_epoch) return epoch < newest_epoch;
    return newest > frame && newest - frame < LATE_WINDOW;
}

/* Was this frame handed to the writer already (or does it belong to an older epoch)? */
static int already_completed(const ring_buffer *ring, uint64_t frame, uint32_t epoch)
{
    if (epoch == ring->completed_epoch && frame == ring->max_completed) return 1;
    return behind(frame, epoch, ring->max_completed, ring->completed_epoch);
}

/* Has module m delivered this slot's frame or given up on it? */
static int module_finished_with(ring_buffer *ring, const slot_meta *meta, int m, double now)
{
    if (meta->done_mask & (1u << m)) return 1;
    const module_progress *p = &ring->progress[m];
    if (p->has_frame && p->epoch == meta->epoch && behind(meta->frame, meta->epoch, p->frame, p->epoch))
        return 1;
    /* silent while the others moved past this frame: a module that stopped sending. Its
     * socket must be empty and its thread idle: one the scheduler kept waiting is not silent. */
    if (ring->has_max_progress &&
        behind(meta->frame, meta->epoch, ring->max_progress, ring->max_progress_epoch) &&
        seconds_since_packet(ring, m, now) > ring->idle_timeout_s && !has_packets(ring, m))
        return 1;
    return 0;
}

/* Has the image waited too long? Not while a module it lacks still has packets queued. */
static int is_stale(ring_buffer *ring, const slot_meta *meta, double now)
{
    if (now - meta->opened_monotonic <= ring->stale_timeout_s) return 0;
    for (int m = 0; m < ring->n_modules; m++)
        if (!(meta->done_mask & (1u << m)) && has_packets(ring, m)) return 0;
    return 1;
}

void complete_finished_slots(ring_buffer *ring)
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

uint32_t ring_start_sequence(ring_buffer *ring, int module, int restart)
{
    pthread_mutex_lock(&ring->lock);
    module_progress *p = &ring->progress[module];
    if (restart) {
        if (p->epoch < ring->epoch) {
            p->epoch = ring->epoch; /* another module restarted first: join its sequence */
        } else {
            p->epoch = ++ring->epoch;
            ring->frame_restarts++;
        }
    }
    p->has_frame = 0;
    uint32_t epoch = p->epoch;
    pthread_mutex_unlock(&ring->lock);
    return epoch;
}

int ring_open_frame(ring_buffer *ring, int module, uint32_t epoch, uint64_t frame, uint64_t detector_timestamp)
{
    int result = RING_FULL;
    pthread_mutex_lock(&ring->lock);
    module_progress *p = &ring->progress[module];
    p->has_frame = 1;
    p->frame = frame;
    p->epoch = epoch;
    if (!ring->has_max_progress || epoch > ring->max_progress_epoch ||
        (epoch == ring->max_progress_epoch && frame > ring->max_progress)) {
        ring->max_progress = frame;
        ring->max_progress_epoch = epoch;
        ring->has_max_progress = 1;
    }
    int free_slot;
    result = ring_find_assembling(ring, frame, &free_slot);
    if (result < 0) {
        if (ring->has_completed && already_completed(ring, frame, epoch)) {
            result = RING_LATE; /* that image was already handed to the writer */
        } else if (free_slot >= 0) {
            ring_take_slot(ring, free_slot, frame, epoch, detector_timestamp);
            result = free_slot;
        } else {
            result = RING_FULL;
            if (!ring->has_dropped || ring->last_dropped != frame) ring->images_dropped++;
            ring->has_dropped = 1;
            ring->last_dropped = frame;
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

void ring_abandon_frame(ring_buffer *ring, int module, int slot)
{
    pthread_mutex_lock(&ring->lock);
    slot_meta *meta = &ring->slots[slot];
    meta->open_mask &= ~(1u << module);
    if (!meta->open_mask && !meta->done_mask) ring_free_slot(ring, slot); /* nobody else wanted it */
    complete_finished_slots(ring);
    pthread_mutex_unlock(&ring->lock);
}

static void add_ms(struct timespec *t, long ms)
{
    t->tv_sec += ms / 1000;
    t->tv_nsec += (ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

int completion_wait_image(ring_buffer *ring, int timeout_ms, rx_image *out)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    add_ms(&deadline, timeout_ms);
    pthread_mutex_lock(&ring->lock);
    complete_finished_slots(ring);
    while (ring->ready_count == 0 && !ring->closing) {
        /* wake at least every 10 ms to release images whose modules went silent */
        struct timespec tick;
        clock_gettime(CLOCK_MONOTONIC, &tick);
        add_ms(&tick, 10);
        int last = tick.tv_sec > deadline.tv_sec ||
                   (tick.tv_sec == deadline.tv_sec && tick.tv_nsec >= deadline.tv_nsec);
        int rc = pthread_cond_timedwait(&ring->ready_cond, &ring->lock, last ? &deadline : &tick);
        complete_finished_slots(ring);
        if (rc == ETIMEDOUT && last) break;
    }
    int got = ring_pop_ready(ring, out);
    pthread_mutex_unlock(&ring->lock);
    return got;
}
