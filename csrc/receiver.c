/*
 * receiver.c -- lifecycle of the receive path: check a config, open the sockets, map the
 * ring buffer, run one frame-assembly thread per module, sum their counters, stop.
 */
#include "receiver_internal.h"

#include <sched.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct rx_receiver {
    rx_config cfg;
    det_format fmt;
    ring_buffer *ring;
    module_rx modules[MAX_MODULES];
    int n_started;
    volatile int stop;
};

static int check_config(const rx_config *cfg, det_format *fmt, module_geometry *geoms,
                        char *err, int err_len)
{
    int rc_format = det_format_lookup(cfg->detector_kind, cfg->bit_depth, cfg->image_width,
                                      cfg->image_height, fmt);
    if (rc_format == FORMAT_BAD_BIT_DEPTH) {
        snprintf(err, err_len, "bit_depth %d is not supported by this detector type", cfg->bit_depth);
        return -1;
    }
    if (rc_format != FORMAT_OK) {
        snprintf(err, err_len, "image size %d x %d is not possible for this detector type",
                 cfg->image_width, cfg->image_height);
        return -1;
    }
    if (cfg->detector_kind == DET_KIND_GIGAFROST && cfg->n_modules != GF_N_STREAMS) {
        snprintf(err, err_len, "a GigaFrost sends %d streams (4 quadrants x 2 links): n_modules must be %d",
                 GF_N_STREAMS, GF_N_STREAMS);
        return -1;
    }
    if (cfg->n_modules < 1 || cfg->n_modules > MAX_MODULES) {
        snprintf(err, err_len, "n_modules must be 1 to %d, not %d", MAX_MODULES, cfg->n_modules);
        return -1;
    }
    if (cfg->image_width < 1 || cfg->image_height < 1) {
        snprintf(err, err_len, "image size %d x %d is not positive", cfg->image_width, cfg->image_height);
        return -1;
    }
    uint8_t *coverage = calloc((size_t)cfg->image_width * cfg->image_height, 1);
    if (!coverage) {
        snprintf(err, err_len, "out of memory checking the geometry");
        return -1;
    }
    int rc = 0;
    for (int m = 0; m < cfg->n_modules && rc == 0; m++) {
        char why[200];
        if (cfg->detector_kind == DET_KIND_GIGAFROST) {
            geometry_init_gigafrost(&geoms[m], fmt, m, cfg->image_width, cfg->image_height);
            if (mark_coverage(&geoms[m], fmt, coverage) != 0) {
                snprintf(err, err_len, "module %d overlaps another module", m);
                rc = -1;
            }
        } else if (geometry_init(&geoms[m], fmt, &cfg->module_positions[4 * m], cfg->image_width,
                                 cfg->image_height, why, sizeof(why)) != 0) {
            snprintf(err, err_len, "module %d: %s", m, why);
            rc = -1;
        } else if (mark_coverage(&geoms[m], fmt, coverage) != 0) {
            snprintf(err, err_len, "module %d overlaps another module", m);
            rc = -1;
        }
    }
    free(coverage);
    return rc;
}

int rx_check_config(const rx_config *cfg, char *err, int err_len)
{
    det_format fmt;
    module_geometry *geoms = calloc(MAX_MODULES, sizeof(module_geometry));
    int rc = check_config(cfg, &fmt, geoms, err, err_len);
    free(geoms);
    return rc;
}

static void fill_missing_module(void *ctx, uint8_t *image, int module)
{
    rx_receiver *rx = ctx;
    fill_module(&rx->modules[module].geom, &rx->fmt, image);
}

static int module_pending(void *ctx, int module)
{
    rx_receiver *rx = ctx;
    if (module >= rx->n_started) return 0; /* socket not open yet */
    return socket_rx_pending(rx->modules[module].fd);
}

rx_receiver *rx_start(const rx_config *cfg, char *err, int err_len)
{
    rx_receiver *rx = calloc(1, sizeof(*rx));
    if (!rx) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    rx->cfg = *cfg;
    module_geometry *geoms = calloc(MAX_MODULES, sizeof(module_geometry));
    if (check_config(cfg, &rx->fmt, geoms, err, err_len) != 0) {
        free(geoms);
        free(rx);
        return NULL;
    }
    size_t image_bytes = (size_t)cfg->image_width * cfg->image_height * rx->fmt.image_bytes_per_pixel;
    int n_slots = cfg->n_slots > 0 ? cfg->n_slots : 16;
    double idle_s = (cfg->idle_timeout_ms > 0 ? cfg->idle_timeout_ms : 50) / 1000.0;
    double stale_s = (cfg->stale_timeout_ms > 0 ? cfg->stale_timeout_ms : 500) / 1000.0;
    rx->ring = ring_create(n_slots, image_bytes, cfg->n_modules, rx->fmt.packets_per_frame, idle_s,
                           stale_s, fill_missing_module, module_pending, rx, err, err_len);
    if (!rx->ring) {
        free(geoms);
        free(rx);
        return NULL;
    }
    int poll_ms = (int)(idle_s * 1000 / 2);
    if (poll_ms < 1) poll_ms = 1;
    for (int m = 0; m < cfg->n_modules; m++) {
        module_rx *mod = &rx->modules[m];
        mod->index = m;
        mod->fmt = &rx->fmt;
        mod->geom = geoms[m];
        mod->ring = rx->ring;
        mod->stop = &rx->stop;
        mod->idle_timeout_s = idle_s;
        mod->fd = socket_rx_open(cfg->bind_address, cfg->start_udp_port + m, cfg->rcvbuf_bytes,
                                 poll_ms, err, err_len);
        if (mod->fd < 0 || rx_batch_init(&mod->batch, rx->fmt.packet_size) != 0) {
            if (mod->fd >= 0) close(mod->fd);
            rx_stop(rx);
            free(geoms);
            return NULL;
        }
        if (pthread_create(&mod->thread, NULL, module_rx_main, mod) != 0) {
            snprintf(err, err_len, "cannot start the receive thread of module %d", m);
            close(mod->fd);
            rx_batch_free(&mod->batch);
            rx_stop(rx);
            free(geoms);
            return NULL;
        }
        if (cfg->pin_threads) {
            long n_cpus = sysconf(_SC_NPROCESSORS_ONLN);
            cpu_set_t cpus;
            CPU_ZERO(&cpus);
            CPU_SET((m + 1) % (n_cpus > 0 ? n_cpus : 1), &cpus);
            pthread_setaffinity_np(mod->thread, sizeof(cpus), &cpus); /* best effort */
        }
        rx->n_started = m + 1;
    }
    free(geoms);
    return rx;
}

void rx_stop(rx_receiver *rx)
{
    if (!rx) return;
    rx->stop = 1;
    for (int m = 0; m < rx->n_started; m++) {
        pthread_join(rx->modules[m].thread, NULL);
        close(rx->modules[m].fd);
        rx_batch_free(&rx->modules[m].batch);
    }
    ring_destroy(rx->ring);
    free(rx);
}

int rx_next_image(rx_receiver *rx, int timeout_ms, rx_image *out)
{
    return ring_wait_ready(rx->ring, timeout_ms, out);
}

void rx_release(rx_receiver *rx, int slot)
{
    ring_release(rx->ring, slot);
}

void rx_get_counters(rx_receiver *rx, rx_counters *out)
{
    memset(out, 0, sizeof(*out));
    for (int m = 0; m < rx->n_started; m++) {
        const rx_counters *c = &rx->modules[m].counters;
        out->packets_received += c->packets_received;
        out->bytes_received += c->bytes_received;
        out->packets_foreign += c->packets_foreign;
        out->packets_duplicate += c->packets_duplicate;
        out->packets_late += c->packets_late;
        out->packets_lost += c->packets_lost;
        out->module_frames_complete += c->module_frames_complete;
        out->module_frames_incomplete += c->module_frames_incomplete;
        out->module_frames_dropped += c->module_frames_dropped;
        out->frame_restarts += c->frame_restarts;
    }
    ring_counters(rx->ring, &out->images_complete, &out->images_incomplete);
}
