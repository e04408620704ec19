/*
 * receiver_internal.h -- what the receive stages share among themselves (not exposed to Python).
 */
#ifndef STD_DAQ_RECEIVER_INTERNAL_H
#define STD_DAQ_RECEIVER_INTERNAL_H

#define _GNU_SOURCE
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "detector_formats.h"
#include "receiver.h"

/* Frame-number rules of a running stream (frame_assembly.c, image_completion.c; docs/receiver.rst):
 * the open frame and the next one are the stream; a frame up to LATE_WINDOW behind the newest is
 * late; a frame further ahead (up to JUMP_LIMIT: frames in between were lost) is held until
 * CONFIRM_PACKETS different packets agree on it; anything else (a restart without a pause) is held
 * until one of its frames is complete. A sequence is confirmed by CONFIRM_PACKETS different packets;
 * an unconfirmed one writes nothing. After RESTART_IDLE_S without packets, the next packet starts a
 * new (unconfirmed) sequence at once. RECENT_FRAMES frames a module opened are remembered, to tell a
 * late packet from a frame number that went backwards. */
#define LATE_WINDOW 100
#define JUMP_LIMIT 10000
#define CONFIRM_PACKETS 4
#define RESTART_IDLE_S 0.1
#define RECENT_FRAMES 16
#define RX_BATCH 64

double now_monotonic(void);
double now_unix(void);

/* ---- socket_rx.c: UDP socket -> batch of datagrams ---------------------------------- */
/* A batch's messages each receive a datagram either whole, into the batch's own buffer, or placed:
 * its header into a side buffer, its payload by iovecs straight into the image (ring slot) where the
 * packet it is expected to be belongs, anything longer into a little slack. So the kernel's copy is
 * the only copy of a placed payload. */
#define RX_SLACK 64
typedef struct rx_batch {
    struct mmsghdr msgs[RX_BATCH];
    struct sockaddr_in sources[RX_BATCH]; /* who sent each datagram */
    struct iovec *iov;        /* RX_BATCH * max_iov */
    int max_iov;              /* iovecs one message may use */
    uint8_t *buffer;          /* RX_BATCH * slot_size bytes: whole datagrams */
    uint8_t *headers;         /* RX_BATCH * header_size bytes: headers of placed datagrams */
    uint8_t slack[RX_BATCH][RX_SLACK];
    int placed[RX_BATCH];     /* packet number message i was placed for, or -1 (received whole) */
    int slot_size;            /* expected packet size + slack, to see oversized datagrams */
    int header_size;
    /* pacing (socket_rx_pace): the recent packet rate and what the socket buffer holds */
    double rate_since;        /* start of the current rate window (monotonic s) */
    int rate_count;           /* packets received in it */
    double packets_per_s;     /* rate of the last complete window */
    int buffer_packets;       /* packets the socket's receive buffer holds (0: not asked yet) */
} rx_batch;

int socket_rx_open(const char *address, int port, int rcvbuf_bytes, int poll_ms, char *err, int err_len);
int rx_batch_init(rx_batch *batch, int packet_size, int header_size, int max_payload_iov);
void rx_batch_free(rx_batch *batch);
/* Message i receives a whole datagram into the batch's buffer. */
void rx_batch_whole(rx_batch *batch, int i);
/* Message i receives packet `packet`: header aside, payload into the n given places, then slack. */
void rx_batch_place(rx_batch *batch, int i, int packet, const struct iovec *payload, int n);
/* The first header_size bytes message i received. */
const uint8_t *rx_batch_header(const rx_batch *batch, int i);
/* Message i's datagram of `length` bytes in one piece (a placed one is gathered into the buffer and
 * counts as whole from then on). */
const uint8_t *rx_batch_datagram(rx_batch *batch, int i, unsigned int length);
/* Receive up to n datagrams into messages 0 .. n-1; returns the count, 0 on poll timeout, -1 on error. */
int socket_rx_receive(int fd, rx_batch *batch, int n);
/* Bytes waiting in the socket's receive queue. */
int socket_rx_pending(int fd);
/* After a batch of n datagrams out of `asked`: a short batch means the queue was nearly empty, so
 * wait until about half a batch has arrived at the recent rate (at most PACE_MAX_US, and never longer
 * than a quarter of the socket buffer takes to fill). Fewer, fuller recvmmsg calls: less CPU per
 * packet for the receiver and fewer wake-ups charged to whoever sends. */
#define PACE_MAX_US 1000
void socket_rx_pace(int fd, rx_batch *batch, int n, int asked, double now);

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
/* A stream the detector places itself: stream row r is image row first_row + row_step * r, from
 * image column first_col (det_stream_placement in detector_formats.h). */
void geometry_init_stream(module_geometry *geom, const det_format *fmt, int first_row, int row_step, int first_col,
                          int image_width);
/* Copy one packet's rows into the image; payload NULL fills them with the missing value. */
void place_packet(const module_geometry *geom, const det_format *fmt, uint8_t *image,
                  int packet_number, const uint8_t *payload);
/* Where a packet's payload goes in the image when it can go there as it is: the byte ranges of the
 * image (offsets from the image's start, in payload order, neighbours merged); their count, or -1 if
 * the payload must be decoded or mirrored (or needs more than max ranges). */
int packet_spans(const module_geometry *geom, const det_format *fmt, int packet_number, size_t *offsets,
                 size_t *lengths, int max);
/* Fill every pixel of a module with the missing value. */
void fill_module(const module_geometry *geom, const det_format *fmt, uint8_t *image);
/* Mark a module's pixels in coverage (one byte per image pixel); -1 if one was marked already. */
int mark_coverage(const module_geometry *geom, const det_format *fmt, uint8_t *coverage);

/* ---- ring_buffer.c: image slots shared between receive threads and the writer -------- */
typedef struct ring_buffer ring_buffer;
typedef void (*fill_module_fn)(void *ctx, uint8_t *image, int module);
typedef int (*pending_fn)(void *ctx, int module); /* bytes queued in a module's socket */

/* ring_buffer.c: the slot pool */
ring_buffer *ring_create(const char *shm_name, int n_slots, size_t image_bytes, int n_modules,
                         int packets_per_frame, double idle_timeout_s, double stale_timeout_s,
                         fill_module_fn fill, pending_fn pending, void *fill_ctx, char *err, int err_len);
void ring_destroy(ring_buffer *ring);
uint8_t *ring_slot_data(ring_buffer *ring, int slot);
size_t ring_slot_bytes(const ring_buffer *ring); /* from one slot's start to the next */
void ring_release(ring_buffer *ring, int slot);
/* The receiver stops: wake whoever waits for an image, and let nobody wait again. */
void ring_close_waiters(ring_buffer *ring);
/* images_complete, images_incomplete, images_dropped and frame_restarts into out */
void ring_counters(ring_buffer *ring, rx_counters *out);

/* image_completion.c: when an image is complete */
#define RING_LATE (-2)
#define RING_FULL (-1)
/* A module starts a new frame-number sequence (restart: the numbering started again or jumped);
 * returns the epoch its frames belong to. */
uint32_t ring_start_sequence(ring_buffer *ring, int module, int restart);
/* A module starts a frame: slot index, RING_FULL or RING_LATE. */
int ring_open_frame(ring_buffer *ring, int module, uint32_t epoch, uint64_t frame, uint64_t detector_timestamp);
/* A module is done with a frame (missing = its lost packets). */
void ring_close_frame(ring_buffer *ring, int module, int slot, uint32_t missing);
/* A module takes back a frame that was not the detector's (a sequence never confirmed). */
void ring_abandon_frame(ring_buffer *ring, int module, int slot);
/* A module saw a packet (keeps its silence timer fresh, cheap, no lock). */
void ring_module_alive(ring_buffer *ring, int module);
/* A module's thread holds received packets it has not placed yet (1), or none (0). */
void ring_module_busy(ring_buffer *ring, int module, int busy);
/* The writer waits up to timeout_ms for the next complete image (images whose modules went silent
 * are completed meanwhile); 1 if out is filled, 0 if none. */
int completion_wait_image(ring_buffer *ring, int timeout_ms, rx_image *out);

/* ---- held_packets.c: packets kept aside until they prove to be the stream ----------------- */
typedef struct held_packets {
    int capacity;             /* packets held at most (a frame's and a few more) */
    int packet_size;
    int n;                    /* held now, oldest first */
    uint8_t *bytes;           /* capacity * packet_size */
    unsigned int *length;
    packet_info *info;        /* their frame and packet numbers */
    uint64_t first, newest;   /* lowest and highest frame held */
} held_packets;

int held_init(held_packets *held, int capacity, int packet_size);
void held_free(held_packets *held);
/* Is this packet (frame and packet number) held already? */
int held_contains(const held_packets *held, const packet_info *info);
/* Hold a packet; when the window is full the oldest leaves it first: 1 if one left, else 0. */
int held_add(held_packets *held, const uint8_t *packet, unsigned int length, const packet_info *info);
/* Different packets of one frame held. */
int held_frame_packets(const held_packets *held, uint64_t frame);
/* The k-th packet held (oldest first). */
const uint8_t *held_packet(const held_packets *held, int k, unsigned int *length);

/* ---- frame_assembly.c: one thread per module ----------------------------------------- */
typedef struct module_rx {
    int index;
    int fd;
    const det_format *fmt;
    module_geometry geom;
    ring_buffer *ring;
    const int *stop;          /* read with an atomic load */
    double idle_timeout_s;
    struct in_addr source;    /* the detector's address for this module; INADDR_ANY: any source */
    rx_batch batch;
    /* the frame-number sequence being received */
    int has_sequence;
    int confirmed;            /* CONFIRM_PACKETS different packets agreed with it: its frames are written */
    int n_agreeing;
    uint32_t epoch;
    /* frames ahead of the stream or of a different sequence, not yet confirmed: held to replay */
    held_packets held;
    uint64_t recent[RECENT_FRAMES]; /* the last frames opened (a ring), to tell late from backwards */
    int n_recent;
    int has_backwards;
    uint64_t last_backwards;  /* the last frame counted in frames_backwards */
    /* the frame being assembled */
    int has_frame;
    uint64_t frame;
    int slot;                 /* ring slot, or RING_FULL while the frame is dropped */
    int n_packets;
    double last_packet_time;
    uint64_t packet_seen[MAX_PACKETS_PER_FRAME / 64];
    int next_packet;          /* the packet after the last one accepted into the frame */
    /* payloads placed by the kernel (see socket_rx.c): each packet's image byte ranges */
    int in_place;             /* the format and geometry allow it */
    int max_spans;            /* ranges one packet may need */
    int *n_spans;             /* per packet */
    size_t *span_offset;      /* packets_per_frame * max_spans: from the image's start */
    size_t *span_length;
    int probing;              /* the last batch asked for one datagram only, to open a frame */
    int has_closed;
    uint64_t last_closed_frame;
    rx_counters counters;     /* this module's share, owned by its thread */
    pthread_mutex_t published_lock;
    int has_lock;             /* published_lock is initialised */
    rx_counters published;    /* a copy for readers, refreshed once per received batch */
    pthread_t thread;
} module_rx;

int module_rx_init(module_rx *mod);   /* buffers (fmt and geom set); -1: out of memory */
void module_rx_free(module_rx *mod);
void *module_rx_main(void *arg);
/* The module's counters as of its last received batch (a consistent copy). */
void module_rx_counters(module_rx *mod, rx_counters *out);

#endif
