/*
 * receiver_internal.h -- what the receive stages share among themselves (not exposed to Python).
 */
#ifndef STD_DAQ_RECEIVER_INTERNAL_H
#define STD_DAQ_RECEIVER_INTERNAL_H

#define _GNU_SOURCE
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "detector_formats.h"
#include "receiver.h"

/* Frame numbers further back than this are a detector restart, not a late packet. */
#define RESTART_WINDOW 1000
#define RX_BATCH 64

double now_monotonic(void);
double now_unix(void);

/* ---- socket_rx.c: UDP socket -> batch of datagrams ---------------------------------- */
typedef struct rx_batch {
    struct mmsghdr msgs[RX_BATCH];
    struct iovec iov[RX_BATCH];
    uint8_t *buffer;          /* RX_BATCH * slot_size bytes */
    int slot_size;            /* expected packet size + slack, to see oversized datagrams */
} rx_batch;

int socket_rx_open(const char *address, int port, int rcvbuf_bytes, int poll_ms, char *err, int err_len);
int rx_batch_init(rx_batch *batch, int packet_size);
void rx_batch_free(rx_batch *batch);
/* Receive up to RX_BATCH datagrams; returns the count, 0 on poll timeout, -1 on error. */
int socket_rx_receive(int fd, rx_batch *batch);
/* Bytes waiting in the socket's receive queue. */
int socket_rx_pending(int fd);

/* ---- image_assembly.c: module pixels -> image position ------------------------------ */
typedef struct module_geometry {
    int32_t row_y[MAX_MODULE_ROWS];    /* image row of each module row */
    int32_t segment_x[8];              /* image column of each chip segment's first pixel */
    int n_segments;                    /* chips across the module */
    int segment_width;                 /* pixels per chip segment */
    int dir_x;                         /* +1, or -1 when mirrored horizontally */
    int image_width;
    int bytes_per_pixel;               /* in the image */
} module_geometry;

int geometry_init(module_geometry *geom, const det_format *fmt, const int32_t position[4],
                  int image_width, int image_height, char *err, int err_len);
/* GigaFrost: stream placement follows from quadrant and link, not from module_positions. */
int geometry_init_gigafrost(module_geometry *geom, const det_format *fmt, int module, int image_width,
                            int image_height);
/* Copy one packet's rows into the image; payload NULL fills them with the missing value. */
void place_packet(const module_geometry *geom, const det_format *fmt, uint8_t *image,
                  int packet_number, const uint8_t *payload);
/* Fill every pixel of a module with the missing value. */
void fill_module(const module_geometry *geom, const det_format *fmt, uint8_t *image);
/* Mark a module's pixels in coverage (one byte per image pixel); -1 if one was marked already. */
int mark_coverage(const module_geometry *geom, const det_format *fmt, uint8_t *coverage);

/* ---- ring_buffer.c: image slots shared between receive threads and the writer -------- */
typedef struct ring_buffer ring_buffer;
typedef void (*fill_module_fn)(void *ctx, uint8_t *image, int module);
typedef int (*pending_fn)(void *ctx, int module); /* bytes queued in a module's socket */

ring_buffer *ring_create(int n_slots, size_t image_bytes, int n_modules, int packets_per_frame,
                         double idle_timeout_s, double stale_timeout_s,
                         fill_module_fn fill, pending_fn pending, void *fill_ctx, char *err, int err_len);
void ring_destroy(ring_buffer *ring);
uint8_t *ring_slot_data(ring_buffer *ring, int slot);
#define RING_LATE (-2)
#define RING_FULL (-1)
/* A module starts a frame: slot index, RING_FULL or RING_LATE. */
int ring_open_frame(ring_buffer *ring, int module, uint64_t frame, uint64_t detector_timestamp);
/* A module is done with a frame (missing = its lost packets). */
void ring_close_frame(ring_buffer *ring, int module, int slot, uint32_t missing);
/* A module saw a packet (keeps its silence timer fresh, cheap, no lock). */
void ring_module_alive(ring_buffer *ring, int module);
int ring_wait_ready(ring_buffer *ring, int timeout_ms, rx_image *out);
void ring_release(ring_buffer *ring, int slot);
void ring_counters(ring_buffer *ring, uint64_t *images_complete, uint64_t *images_incomplete);

/* ---- frame_assembly.c: one thread per module ----------------------------------------- */
typedef struct module_rx {
    int index;
    int fd;
    const det_format *fmt;
    module_geometry geom;
    ring_buffer *ring;
    volatile int *stop;
    double idle_timeout_s;
    rx_batch batch;
    /* the frame being assembled */
    int has_frame;
    uint64_t frame;
    int slot;                 /* ring slot, or RING_FULL while the frame is dropped */
    int n_packets;
    double last_packet_time;
    uint64_t packet_seen[MAX_PACKETS_PER_FRAME / 64];
    int has_closed;
    uint64_t last_closed_frame;
    rx_counters counters;     /* this module's share, summed by receiver.c */
    pthread_t thread;
} module_rx;

void *module_rx_main(void *arg);

#endif
