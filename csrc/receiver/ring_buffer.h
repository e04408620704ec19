/*
 * ring_buffer.h -- the image slot pool and the state the completion rules keep beside it.
 * Internal to the receive path: ring_buffer.c owns the memory and slot states, image_completion.c
 * (which calls ring_buffer.c, never the other way) decides when an image is complete. Both run under
 * ring->lock.
 */
#ifndef STD_DAQ_RING_BUFFER_H
#define STD_DAQ_RING_BUFFER_H

#include "receiver_internal.h"

enum slot_state { SLOT_FREE, SLOT_ASSEMBLING, SLOT_READY, SLOT_READING };

typedef struct slot_meta {
    int state;
    uint64_t frame;
    uint32_t epoch;           /* frame-number sequence the frame belongs to (see image_completion.c) */
    uint32_t open_mask;       /* modules writing pixels into the slot right now */
    uint32_t done_mask;       /* modules finished with this frame */
    uint32_t n_missing;
    uint64_t detector_timestamp;
    double opened_unix;
    double opened_monotonic;
} slot_meta;

/* Where one module stands: the newest frame it opened, in which sequence, and when it last
 * saw a packet (monotonic nanoseconds, written by its thread, read by others: atomic). */
typedef struct module_progress {
    int has_frame;
    uint64_t frame;
    uint32_t epoch;
    int64_t last_packet_ns;
    int in_batch;             /* its thread holds received packets not yet placed (atomic) */
} module_progress;

struct ring_buffer {
    pthread_mutex_t lock;
    pthread_cond_t ready_cond;
    int closing;              /* the receiver stops: nobody waits for images any more */
    int n_slots;
    size_t image_bytes;
    size_t slot_bytes;        /* image_bytes rounded up to RX_SLOT_ALIGN: every slot starts on a page */
    uint8_t *data;
    size_t mapped_bytes;
    char shm_name[64];        /* the named shared memory object holding data ("" if anonymous) */
    slot_meta *slots;
    int *ready_fifo;
    int ready_head, ready_count;
    int n_modules;
    int packets_per_frame;
    double idle_timeout_s, stale_timeout_s;
    /* completion state (image_completion.c) */
    module_progress progress[MAX_MODULES];
    uint32_t epoch;                  /* newest sequence any module started */
    int has_max_progress;
    uint64_t max_progress;           /* newest frame opened in epoch max_progress_epoch */
    uint32_t max_progress_epoch;
    int has_completed;
    uint64_t max_completed;          /* newest frame handed to the writer in completed_epoch */
    uint32_t completed_epoch;
    int has_dropped;
    uint64_t last_dropped;           /* frame number of the last image dropped for want of a slot */
    uint64_t images_complete, images_incomplete, images_dropped, frame_restarts, packets_lost;
    fill_module_fn fill;
    pending_fn pending;
    void *fill_ctx;
};

/* ring_buffer.c: slot pool primitives, caller holds ring->lock */
int ring_find_assembling(ring_buffer *ring, uint64_t frame, int *free_slot);
void ring_take_slot(ring_buffer *ring, int slot, uint64_t frame, uint32_t epoch, uint64_t detector_timestamp);
void ring_queue_ready(ring_buffer *ring, int slot);
void ring_free_slot(ring_buffer *ring, int slot);
/* Take the oldest READY slot for the writer (-> READING) into out: 1, or 0 if none is ready. */
int ring_pop_ready(ring_buffer *ring, rx_image *out);

/* image_completion.c: complete every slot nobody will deliver to any more; caller holds ring->lock */
void complete_finished_slots(ring_buffer *ring);

#endif
