/*
 * receiver_race.c -- the receiver under ThreadSanitizer: a simulated 2-module Jungfrau sends over
 * loopback (restarting its frame numbers, with loss, duplicates and foreign datagrams) while one
 * thread takes images and another reads the counters all the time. Built and run by
 * tests/test_thread_safety.py with -fsanitize=thread; any data race is reported by TSan.
 *
 * usage: receiver_race PORT
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "receiver.h"
#include "sim_sender.h"

static int done;

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
    sim.n_frames = 300;
    sim.rate_hz = 200;
    sim.loss = 0.01;
    sim.duplicate = 0.01;
    sim.foreign = 0.01;
    sim.restart_after = 150;
    sim.seed = 3;
    sim.silent_module = -1; /* every module sends */
    int stop = 0;
    sim_counters sent;
    if (sim_run(&sim, &stop, &sent, err, sizeof(err)) != 0) fprintf(stderr, "sim_run: %s\n", err);

    __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    pthread_join(reader, NULL);
    pthread_join(taker, NULL);
    rx_counters c;
    rx_get_counters(rx, &c);
    rx_stop(rx);
    printf("sent %llu packets; received %llu, foreign %llu, restarts %llu, images %llu + %llu incomplete\n",
           (unsigned long long)sent.packets_sent, (unsigned long long)c.packets_received,
           (unsigned long long)c.packets_foreign, (unsigned long long)c.frame_restarts,
           (unsigned long long)c.images_complete, (unsigned long long)c.images_incomplete);
    return c.packets_received > 0 ? 0 : 1;
}
