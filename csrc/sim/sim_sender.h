/*
 * sim_sender.h -- the simulated detector's surface towards Python (cffi).
 * Shares only detector_formats.h with the receiver.
 * Keep this file parsable by cffi's cdef (the build script strips '#' lines).
 */
#ifndef STD_DAQ_SIM_SENDER_H
#define STD_DAQ_SIM_SENDER_H
#include <stdint.h>
#include "detector_formats.h"

typedef struct sim_config {
    int detector_kind;        /* DET_KIND_* */
    int bit_depth;
    int n_modules;
    int start_udp_port;       /* module i sends to start_udp_port + i */
    int image_width;          /* assembled image size: some detectors' streams depend on it */
    int image_height;
    char host[64];            /* IPv4 address of the receiver */
    char module_hosts[32][16]; /* per module (32 = MAX_MODULES): its receiver's IPv4 address, "" : host */
    char source[64];          /* IPv4 address to send from ("" : the kernel's choice) */
    uint64_t first_frame;     /* frame number of the first image */
    uint64_t n_frames;        /* 0: until stopped */
    double rate_hz;           /* images per second; 0: as fast as possible */
    double loss;              /* fraction of packets not sent, at random */
    int reorder;              /* shuffle packets within windows of this many (0: in order) */
    double duplicate;         /* fraction of packets sent twice */
    int loss_burst;           /* each loss drops this many consecutive packets (0 or 1: single) */
    double foreign;           /* fraction of packets preceded by a foreign datagram (wrong size) */
    int silent_module;        /* this module stops sending ... (-1: none) */
    uint64_t silent_after;    /* ... after this many frames */
    uint64_t restart_after;   /* frame numbers restart at 1 after this many frames (0: never) */
    int static_pixels;        /* benchmarks: every frame repeats the first frame's pixels (only
                                 headers are rewritten), so the sender's CPU goes to sending */
    int gso;                  /* benchmarks: send each module's packets as UDP segmentation offload messages
                                 (sim_datagrams.h) when no loss, duplicate or foreign datagram is asked */
    uint32_t seed;            /* for loss / reorder / duplicate / foreign choices, and the content */
    int content;              /* SIM_CONTENT_* (sim_content.h): 0 is the ramp formula */
    double flux;              /* photons per pixel per frame of realistic content */
    double noise;             /* Jungfrau contents: noise sigma in gain 0, ADU */
    double photon_energy_kev; /* jungfrau-raw: the energy of one photon */
    double broken_switch;     /* jungfrau-raw: fraction of pixels sending the invalid gain code (sim_content.h) */
} sim_config;

typedef struct sim_counters {
    uint64_t frames_sent;
    uint64_t packets_sent;
    uint64_t bytes_sent;
    uint64_t packets_not_sent;   /* dropped on purpose (loss injection, silent module) */
    uint64_t foreign_sent;       /* foreign datagrams injected */
} sim_counters;

/* Send frames until n_frames are sent or *stop becomes non-zero (sim_stop, from another thread);
 * 0 on success, else -1 and err. The counters are updated while sending: read them with
 * sim_read_counters. */
int sim_run(const sim_config *cfg, int *stop, sim_counters *counters, char *err, int err_len);
/* Ask a running sim_run to stop (an atomic store: safe from any thread). */
void sim_stop(int *stop);
/* A copy of counters that sim_run is updating in another thread (atomic loads). */
void sim_read_counters(const sim_counters *counters, sim_counters *out);

/* The pixels the simulator sends for one module frame, unpacked into the image dtype
 * (uint8 for 4 and 8 bit, uint16 for 12 and 16 bit, uint32), row-major: what a test expects. */
void sim_module_pixels(uint64_t frame, int module, int bit_depth, uint64_t n_pixels, void *out);

#endif
