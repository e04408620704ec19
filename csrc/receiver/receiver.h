/*
 * receiver.h -- the receiver's whole surface towards Python (cffi).
 *
 * Receive path, one file per stage:
 *   socket_rx.c       UDP socket per module, recvmmsg batches
 *   frame_assembly.c  one thread per module: packets -> module frame, lost packets
 *   image_assembly.c  module pixels placed into the image by module_positions
 *   image_completion.c  when an image is complete: frame-number sequences, late, stale, silent
 *   ring_buffer.c     shared-memory image slots handed to the writer (Python)
 *   receiver.c        lifecycle: start/stop, counters
 *
 * The receiver knows nothing of HTTP, Redis or HDF5.
 * Keep this file parsable by cffi's cdef (the build script strips '#' lines).
 */
#ifndef STD_DAQ_RECEIVER_H
#define STD_DAQ_RECEIVER_H
#include <stdint.h>
#include "detector_formats.h"

typedef struct rx_config {
    int detector_kind;          /* DET_KIND_* */
    int bit_depth;
    int n_modules;
    int start_udp_port;         /* module i listens on start_udp_port + i */
    char bind_address[64];      /* IPv4 address to bind, e.g. "0.0.0.0" */
    int image_width;
    int image_height;
    int32_t module_positions[128]; /* 4 per module: start_x, start_y, end_x, end_y (inclusive) */
    int n_slots;                /* images in the ring buffer */
    int idle_timeout_ms;        /* a module silent this long closes its open frame */
    int stale_timeout_ms;       /* an image nobody writes to any more is released after this */
    int rcvbuf_bytes;           /* SO_RCVBUF asked for each socket */
    int pin_threads;            /* pin module i's thread to CPU (i + 1) mod n_cpus (CPU 0: the writer) */
    int realtime_priority;      /* > 0: SCHED_FIFO at this priority for the receive threads, if allowed */
    char detector_addresses[32][16]; /* IPv4 source of module i's packets; "" accepts any source */
    char shm_name[64];          /* "/name": the ring buffer is this POSIX shared memory object (writer
                                 * processes map it by name); "": anonymous memory of this process */
} rx_config;

/* Counters, owned by the stage that sees the event. */
typedef struct rx_counters {
    uint64_t packets_received;      /* valid packets placed in a frame */
    uint64_t bytes_received;        /* bytes of those packets */
    uint64_t packets_placed;        /* of those, payloads the kernel put in place: no copy of ours */
    uint64_t packets_foreign;       /* wrong source / size / version / packet / frame number: dropped */
    uint64_t packets_duplicate;     /* same packet twice in one frame: dropped */
    uint64_t packets_late;          /* packet of an already closed frame: dropped */
    uint64_t packets_lost;          /* packets missing from the images handed to the writer */
    uint64_t module_frames_complete;
    uint64_t module_frames_incomplete;
    uint64_t module_frames_dropped; /* no free ring slot: frame not received */
    uint64_t frame_restarts;        /* the detector started its frame numbers again (or jumped) */
    uint64_t frames_backwards;      /* module frames whose number went backwards in the stream: dropped */
    uint64_t images_complete;       /* images handed to the writer, all packets present */
    uint64_t images_incomplete;     /* images handed to the writer with lost packets */
    uint64_t images_dropped;        /* images not received: no free ring slot (the writer fell behind) */
} rx_counters;

/* One assembled image, valid until rx_release(slot). */
typedef struct rx_image {
    int slot;
    uint64_t frame_number;
    uint32_t n_missing_packets;
    uint64_t detector_timestamp;    /* header timestamp of the first packet */
    double receive_time;            /* unix time the first packet arrived */
    uint8_t *data;                  /* image_height * image_width * bytes_per_pixel */
    uint64_t data_bytes;
} rx_image;

/* Image slots start on page boundaries: each takes its image's bytes rounded up to this, so a slot can
 * go to the disk with O_DIRECT as it is. */
#define RX_SLOT_ALIGN 4096

typedef struct rx_receiver rx_receiver;

/* Start receiving; returns NULL and writes a message to err on failure. */
rx_receiver *rx_start(const rx_config *cfg, char *err, int err_len);
/* Stop all threads, close sockets, unmap the ring buffer. Calls of rx_next_image, rx_release and
 * rx_get_counters in other threads may be in progress: a waiting rx_next_image returns 0 at once,
 * and nothing is freed before every such call has returned (a call made after rx_stop returned is
 * the caller's error; images still held are unmapped with the ring). */
void rx_stop(rx_receiver *rx);
/* Wait up to timeout_ms for the next assembled image; 1 if out is filled, 0 if none (or stopping). */
int rx_next_image(rx_receiver *rx, int timeout_ms, rx_image *out);
/* Give an image slot back to the receiver. */
void rx_release(rx_receiver *rx, int slot);
void rx_get_counters(rx_receiver *rx, rx_counters *out);
/* 1 if the receive threads run with real-time priority, 0 if not (not asked, or not allowed). */
int rx_realtime(rx_receiver *rx);
/* The receive buffer each socket got from the kernel, in bytes (it may grant less than asked). */
int rx_socket_buffer_bytes(rx_receiver *rx);
/* Bytes from one image slot's start to the next (the image's bytes rounded up to RX_SLOT_ALIGN). */
uint64_t rx_slot_bytes(rx_receiver *rx);
/* Check a geometry without starting anything; 0 if valid, else -1 and a message. */
int rx_check_config(const rx_config *cfg, char *err, int err_len);

#endif
