/*
 * receiver_race.c -- the receiver and the simulator under the sanitizers: a simulated 2-module
 * Jungfrau sends over loopback (restarting its frame numbers, with loss, duplicates and foreign
 * datagrams) while one thread takes images, another reads the receiver's counters and a third reads
 * the simulator's counters and stops it from outside. At the end the receiver is stopped while the
 * image thread waits in rx_next_image. Built and run by tests/test_thread_safety.py with
 * -fsanitize=thread and with -fsanitize=address,undefined; any report fails the test.
 *
 * usage: receiver_race PORT
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "receiver.h"
#include "sim_sender.h"

static int done;
static int last_call;   /* the image thread makes one last, long rx_next_image */
static int in_last_call;

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct sender {
    sim_counters counters;
    int stop;
    uint64_t frames;
} sender;

/* Reads the simulator's counters while it sends, and stops it after `frames` frames. */
static void *stop_sender(void *arg)
{
    sender *s = arg;
    sim_counters seen;
    do {
        sim_read_counters(&s->counters, &seen);
        usleep(1000);
    } while (seen.frames_sent < s->frames);
    sim_stop(&s->stop);
    return NULL;
}

static void *read_counters(void *arg)
{
    rx_receiver *rx = arg;
    rx_counters c;
    while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) rx_get_counters(rx, &c);
    return NULL;
}

static void *take_images(void *arg)
{
    rx_receiver *rx = arg;
    rx_image image;
    long checksum = 0;
    while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
        if (rx_next_image(rx, 20, &image)) {
            checksum += image.data[0];
            rx_release(rx, image.slot);
        }
    }
    while (!__atomic_load_n(&last_call, __ATOMIC_ACQUIRE)) usleep(1000);
    while (rx_next_image(rx, 1000, &image)) rx_release(rx, image.slot); /* the last images (stale ones too) */
    __atomic_store_n(&in_last_call, 1, __ATOMIC_RELEASE);
    if (rx_next_image(rx, 10000, &image)) checksum = -1; /* rx_stop must end this wait with no image */
    return (void *)checksum;
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 50000;
    rx_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.detector_kind = DET_KIND_JUNGFRAU;
    cfg.bit_depth = 16;
    cfg.n_modules = 2;
    cfg.start_udp_port = port;
    strcpy(cfg.bind_address, "127.0.0.1");
    cfg.image_width = 1024;
    cfg.image_height = 1024;
    int32_t positions[8] = {0, 0, 1023, 511, 0, 1023, 1023, 512};
    memcpy(cfg.module_positions, positions, sizeof(positions));
    cfg.n_slots = 8;
    cfg.rcvbuf_bytes = 16 << 20;
    char err[256];
    rx_receiver *rx = rx_start(&cfg, err, sizeof(err));
    if (!rx) {
        fprintf(stderr, "rx_start: %s\n", err);
        return 2;
    }
    pthread_t reader, taker;
    pthread_create(&reader, NULL, read_counters, rx);
    pthread_create(&taker, NULL, take_images, rx);

    sim_config sim;
    memset(&sim, 0, sizeof(sim));
    sim.detector_kind = DET_KIND_JUNGFRAU;
    sim.bit_depth = 16;
    sim.n_modules = 2;
    sim.start_udp_port = port;
    sim.image_width = 1024;
    sim.image_height = 1024;
    strcpy(sim.host, "127.0.0.1");
    sim.first_frame = 1;
    sim.n_frames = 0; /* until stopped from the stopper thread */
    sim.rate_hz = 200;
    sim.loss = 0.01;
    sim.duplicate = 0.01;
    sim.foreign = 0.01;
    sim.restart_after = 150;
    sim.seed = 3;
    sim.silent_module = -1; /* every module sends */
    sender s = {.frames = 300};
    pthread_t stopper;
    pthread_create(&stopper, NULL, stop_sender, &s);
    if (sim_run(&sim, &s.stop, &s.counters, err, sizeof(err)) != 0) fprintf(stderr, "sim_run: %s\n", err);
    pthread_join(stopper, NULL);

    __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    pthread_join(reader, NULL);
    rx_counters c;
    rx_get_counters(rx, &c);
    /* stop the receiver while the image thread waits in rx_next_image */
    __atomic_store_n(&last_call, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&in_last_call, __ATOMIC_ACQUIRE)) usleep(1000);
    usleep(200000);
    double t0 = seconds();
    rx_stop(rx);
    double stop_s = seconds() - t0;
    void *taken;
    pthread_join(taker, &taken);
    printf("sent %llu packets in %llu frames; received %llu, foreign %llu, restarts %llu, images %llu + %llu "
           "incomplete; stopped in %.3f s\n",
           (unsigned long long)s.counters.packets_sent, (unsigned long long)s.counters.frames_sent,
           (unsigned long long)c.packets_received, (unsigned long long)c.packets_foreign,
           (unsigned long long)c.frame_restarts, (unsigned long long)c.images_complete,
           (unsigned long long)c.images_incomplete, stop_s);
    if ((long)taken == -1 || stop_s > 5) return 3; /* a waiting rx_next_image was not ended by rx_stop */
    return c.packets_received > 0 ? 0 : 1;
}
