/*
 * receiver.c -- lifecycle of the receive path: check a config, open the sockets, map the
 * ring buffer, run one frame-assembly thread per module, sum their counters, stop.
 */
#include "receiver_internal.h"

#include <arpa/inet.h>
#include <sched.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct rx_receiver {
    rx_config cfg;
    det_format fmt;
    ring_buffer *ring;
    module_rx modules[MAX_MODULES];
    int n_modules;            /* modules whose threads run (set once, before rx_start returns) */
    int stop;                 /* atomic */
    int realtime;             /* the receive threads got SCHED_FIFO */
    /* callers of rx_next_image, rx_release and rx_get_counters in progress: rx_stop waits for them */
    pthread_mutex_t api_lock;
    pthread_cond_t api_idle;
    int api_users;
    int closing;              /* rx_stop began: new calls return at once */
};

/* A call of the API begins; 0 if the receiver is stopping (then the call does nothing). */
static int api_enter(rx_receiver *rx)
{
    pthread_mutex_lock(&rx->api_lock);
    int open = !rx->closing;
    if (open) rx->api_users++;
    pthread_mutex_unlock(&rx->api_lock);
    return open;
}

static void api_leave(rx_receiver *rx)
{
    pthread_mutex_lock(&rx->api_lock);
    if (--rx->api_users == 0) pthread_cond_broadcast(&rx->api_idle);
    pthread_mutex_unlock(&rx->api_lock);
}

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
    const char *why_streams;
    int n_streams;
    if (det_check_streams(cfg->detector_kind, cfg->n_modules, &why_streams, &n_streams) != 0) {
        snprintf(err, err_len, "%s: n_modules must be %d", why_streams, n_streams);
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
        int first_row, row_step, first_col;
        if (det_stream_placement(cfg->detector_kind, m, cfg->image_width, cfg->image_height, &first_row, &row_step,
                                 &first_col)) {
            geometry_init_stream(&geoms[m], fmt, first_row, row_step, first_col, cfg->image_width);
        } else if (geometry_init(&geoms[m], fmt, &cfg->module_positions[4 * m], cfg->image_width,
                                 cfg->image_height, why, sizeof(why)) != 0) {
            snprintf(err, err_len, "module %d: %s", m, why);
            rc = -1;
            break;
        }
        if (mark_coverage(&geoms[m], fmt, coverage) != 0) {
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
    rx_receiver *rx = ctx; /* sockets are open from before the first thread to after the last */
    return socket_rx_pending(rx->modules[module].fd);
}

static void free_modules(rx_receiver *rx, int n)
{
    for (int m = 0; m < n; m++) {
        if (rx->modules[m].fd >= 0) close(rx->modules[m].fd);
        module_rx_free(&rx->modules[m]);
    }
}

/* Open every module's socket and buffers before any thread runs: no thread ever sees a module
 * that is not set up yet. */
static int setup_modules(rx_receiver *rx, const module_geometry *geoms, double idle_s, char *err, int err_len)
{
    const rx_config *cfg = &rx->cfg;
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
        mod->source.s_addr = htonl(INADDR_ANY);
        const char *source = cfg->detector_addresses[m];
        if (source[0] && inet_pton(AF_INET, source, &mod->source) != 1) {
            snprintf(err, err_len, "detector address '%.16s' of module %d is not an IPv4 address", source, m);
            free_modules(rx, m);
            return -1;
        }
        mod->fd = socket_rx_open(cfg->bind_address, cfg->start_udp_port + m, cfg->rcvbuf_bytes, poll_ms, err,
                                 err_len);
        if (mod->fd < 0) {
            free_modules(rx, m);
            return -1;
        }
        if (module_rx_init(mod) != 0) {
            snprintf(err, err_len, "out of memory for module %d", m);
            free_modules(rx, m + 1);
            return -1;
        }
    }
    return 0;
}

static void tune_thread(rx_receiver *rx, int m)
{
    pthread_t thread = rx->modules[m].thread;
    char name[16];
    snprintf(name, sizeof(name), "daq-rx-%d", m); /* visible in top -H and /proc/<pid>/task */
    pthread_setname_np(thread, name);
    if (rx->cfg.pin_threads) {
        long n_cpus = sysconf(_SC_NPROCESSORS_ONLN);
        cpu_set_t cpus;
        CPU_ZERO(&cpus);
        CPU_SET((m + 1) % (n_cpus > 0 ? n_cpus : 1), &cpus);
        pthread_setaffinity_np(thread, sizeof(cpus), &cpus); /* best effort */
    }
    if (rx->cfg.realtime_priority > 0) {
        struct sched_param param = {.sched_priority = rx->cfg.realtime_priority};
        if (pthread_setschedparam(thread, SCHED_FIFO, &param) != 0) rx->realtime = 0;
    }
}

rx_receiver *rx_start(const rx_config *cfg, char *err, int err_len)
{
    rx_receiver *rx = calloc(1, sizeof(*rx));
    module_geometry *geoms = calloc(MAX_MODULES, sizeof(module_geometry));
    if (!rx || !geoms) {
        snprintf(err, err_len, "out of memory");
        free(rx);
        free(geoms);
        return NULL;
    }
    rx->cfg = *cfg;
    if (check_config(cfg, &rx->fmt, geoms, err, err_len) != 0) goto fail;
    size_t image_bytes = (size_t)cfg->image_width * cfg->image_height * rx->fmt.image_bytes_per_pixel;
    int n_slots = cfg->n_slots > 0 ? cfg->n_slots : 16;
    double idle_s = (cfg->idle_timeout_ms > 0 ? cfg->idle_timeout_ms : 50) / 1000.0;
    double stale_s = (cfg->stale_timeout_ms > 0 ? cfg->stale_timeout_ms : 500) / 1000.0;
    rx->ring = ring_create(cfg->shm_name, n_slots, image_bytes, cfg->n_modules, rx->fmt.packets_per_frame,
                           idle_s, stale_s, fill_missing_module, module_pending, rx, err, err_len);
    if (!rx->ring) goto fail;
    if (setup_modules(rx, geoms, idle_s, err, err_len) != 0) goto fail;
    rx->realtime = cfg->realtime_priority > 0;
    for (int m = 0; m < cfg->n_modules; m++) {
        if (pthread_create(&rx->modules[m].thread, NULL, module_rx_main, &rx->modules[m]) != 0) {
            snprintf(err, err_len, "cannot start the receive thread of module %d", m);
            __atomic_store_n(&rx->stop, 1, __ATOMIC_RELEASE);
            for (int k = 0; k < m; k++) pthread_join(rx->modules[k].thread, NULL);
            free_modules(rx, cfg->n_modules);
            goto fail;
        }
        tune_thread(rx, m);
    }
    rx->n_modules = cfg->n_modules;
    pthread_mutex_init(&rx->api_lock, NULL);
    pthread_cond_init(&rx->api_idle, NULL);
    free(geoms);
    return rx;
fail:
    ring_destroy(rx->ring);
    free(geoms);
    free(rx);
    return NULL;
}

void rx_stop(rx_receiver *rx)
{
    if (!rx) return;
    /* calls in progress in other threads (a writer waiting for an image) end first: none begins now,
     * a waiting one is woken, and nothing is freed before the last has returned */
    pthread_mutex_lock(&rx->api_lock);
    rx->closing = 1;
    pthread_mutex_unlock(&rx->api_lock);
    ring_close_waiters(rx->ring);
    __atomic_store_n(&rx->stop, 1, __ATOMIC_RELEASE);
    for (int m = 0; m < rx->n_modules; m++) pthread_join(rx->modules[m].thread, NULL);
    pthread_mutex_lock(&rx->api_lock);
    while (rx->api_users > 0) pthread_cond_wait(&rx->api_idle, &rx->api_lock);
    pthread_mutex_unlock(&rx->api_lock);
    free_modules(rx, rx->n_modules); /* sockets close only after every thread has ended */
    ring_destroy(rx->ring);
    pthread_mutex_destroy(&rx->api_lock);
    pthread_cond_destroy(&rx->api_idle);
    free(rx);
}

int rx_realtime(rx_receiver *rx)
{
    return rx->realtime;
}

int rx_socket_buffer_bytes(rx_receiver *rx)
{
    int bytes = 0;
    socklen_t size = sizeof(bytes);
    if (getsockopt(rx->modules[0].fd, SOL_SOCKET, SO_RCVBUF, &bytes, &size) != 0) return 0;
    return bytes / 2; /* the kernel reports twice the payload it buffers (bookkeeping overhead) */
}

uint64_t rx_slot_bytes(rx_receiver *rx)
{
    return ring_slot_bytes(rx->ring);
}

int rx_next_image(rx_receiver *rx, int timeout_ms, rx_image *out)
{
    if (!api_enter(rx)) return 0;
    int got = completion_wait_image(rx->ring, timeout_ms, out);
    api_leave(rx);
    return got;
}

void rx_release(rx_receiver *rx, int slot)
{
    if (!api_enter(rx)) return;
    ring_release(rx->ring, slot);
    api_leave(rx);
}

void rx_get_counters(rx_receiver *rx, rx_counters *out)
{
    memset(out, 0, sizeof(*out));
    if (!api_enter(rx)) return;
    for (int m = 0; m < rx->n_modules; m++) {
        rx_counters c;
        module_rx_counters(&rx->modules[m], &c);
        out->packets_received += c.packets_received;
        out->packets_placed += c.packets_placed;
        out->bytes_received += c.bytes_received;
        out->packets_foreign += c.packets_foreign;
        out->packets_duplicate += c.packets_duplicate;
        out->packets_late += c.packets_late;
        out->frames_backwards += c.frames_backwards;
        out->module_frames_complete += c.module_frames_complete;
        out->module_frames_incomplete += c.module_frames_incomplete;
        out->module_frames_dropped += c.module_frames_dropped;
    }
    ring_counters(rx->ring, out);
    api_leave(rx);
}
