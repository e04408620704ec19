/*
 * sim_sender.c -- a simulated detector: every module's packet stream, sent with sendmmsg.
 *
 * Pixel content is deterministic: pixel p (row-major in the module) of module m in frame f
 * is (p + 37 m + 101 f) masked to the bit depth, so a test can check every written pixel.
 * Faults are injected from a seeded generator: random or burst loss, reordering within a
 * window, duplicates, foreign datagrams, a module that goes silent, frame numbers that
 * restart at 1 (a detector reset).
 *
 * Realistic content (sim_content.c) repeats SIM_CONTENT_VARIANTS frames per module, so its wire payloads
 * are encoded once per (module, variant) and sent in place: each datagram is two iovecs, the header
 * written for this frame and the kept payload. The sender's CPU then goes to sending, as a detector's
 * does. The ramp and jungfrau-pedestal (fresh noise every frame) are encoded per packet. With `gso` a
 * module's packets of a frame leave as a few UDP segmentation offload messages (sim_datagrams.c).
 */
#define _GNU_SOURCE
#include "sim_sender.h"
#include "sim_content.h"
#include "sim_datagrams.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint32_t value_of(uint64_t frame, int module, uint64_t pixel, int bit_depth)
{
    uint64_t v = pixel + 37u * (uint64_t)module + 101u * frame;
    return bit_depth == 32 ? (uint32_t)v : (uint32_t)(v & ((1u << bit_depth) - 1));
}

void sim_module_pixels(uint64_t frame, int module, int bit_depth, uint64_t n_pixels, void *out)
{
    for (uint64_t p = 0; p < n_pixels; p++) {
        uint32_t v = value_of(frame, module, p, bit_depth);
        if (bit_depth <= 8) ((uint8_t *)out)[p] = (uint8_t)v;
        else if (bit_depth <= 16) ((uint16_t *)out)[p] = (uint16_t)v;
        else ((uint32_t *)out)[p] = v;
    }
}

static sim_content_spec content_spec(const sim_config *cfg)
{
    return (sim_content_spec){cfg->content, cfg->seed, cfg->flux, cfg->noise, cfg->photon_energy_kev, cfg->broken_switch};
}

/* Payload of one packet in the detector's wire format (codec in detector_formats.h); any padding
 * after the pixels is 0. */
static void fill_payload(uint8_t *dst, const det_format *fmt, const sim_config *cfg, uint64_t frame, int module,
                         int packet, uint32_t *values)
{
    int pixels = packet_rows(fmt, packet) * fmt->module_width;
    uint64_t first = (uint64_t)packet * fmt->rows_per_packet * fmt->module_width;
    if (cfg->content != SIM_CONTENT_RAMP) { /* realistic content, see sim_content.c */
        sim_content_spec spec = content_spec(cfg);
        sim_content_values(&spec, frame, module, fmt->bit_depth, fmt->module_width, fmt->module_height, first, pixels,
                           values);
    } else
        for (int k = 0; k < pixels; k++) values[k] = value_of(frame, module, first + k, fmt->bit_depth);
    det_encode_run(fmt, values, dst, pixels);
    size_t pixel_bytes = (size_t)pixels * fmt->bit_depth / 8;
    memset(dst + pixel_bytes, 0, packet_payload_size(fmt, packet) - pixel_bytes);
}

static uint64_t rng_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

static double rng_uniform(uint64_t *state)
{
    return (rng_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

static int open_sender(const char *host, const char *source, int port, char *err, int err_len)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) {
        snprintf(err, err_len, "cannot create a UDP socket: %s", strerror(errno));
        return -1;
    }
    if (source[0]) { /* send from the detector's address (on loopback any 127.x.y.z is ours) */
        struct sockaddr_in from = {0};
        from.sin_family = AF_INET;
        errno = 0;
        if (inet_pton(AF_INET, source, &from.sin_addr) != 1 ||
            bind(fd, (struct sockaddr *)&from, sizeof(from)) != 0) {
            snprintf(err, err_len, "cannot send from '%s': %s", source,
                     errno ? strerror(errno) : "not an IPv4 address");
            close(fd);
            return -1;
        }
    }
    int sndbuf = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        snprintf(err, err_len, "'%s' is not an IPv4 address", host);
        close(fd);
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        snprintf(err, err_len, "cannot address %s:%d: %s", host, port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void sleep_until(double t)
{
    struct timespec ts = {.tv_sec = (time_t)t, .tv_nsec = (long)((t - (time_t)t) * 1e9)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static double monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define PAYLOAD_CACHE_MAX_BYTES (512ull << 20) /* 16 variants of up to 32 Jungfrau modules */

/* Encoded payloads of realistic content, per module and variant, filled when first sent. */
typedef struct payload_cache {
    uint8_t *bytes;  /* n_modules x SIM_CONTENT_VARIANTS x packets_per_frame x payload_size */
    uint8_t *filled; /* n_modules x SIM_CONTENT_VARIANTS */
} payload_cache;

static int payload_cache_open(payload_cache *cache, const det_format *fmt, const sim_config *cfg)
{
    size_t frame_bytes = (size_t)fmt->packets_per_frame * fmt->payload_size;
    size_t total = (size_t)cfg->n_modules * SIM_CONTENT_VARIANTS * frame_bytes;
    cache->bytes = NULL;
    cache->filled = NULL;
    sim_content_spec spec = content_spec(cfg);
    if (cfg->content == SIM_CONTENT_RAMP || !sim_content_banked(&spec) || cfg->static_pixels ||
        total > PAYLOAD_CACHE_MAX_BYTES)
        return 0;
    cache->bytes = calloc(total, 1);
    cache->filled = calloc((size_t)cfg->n_modules * SIM_CONTENT_VARIANTS, 1);
    if (!cache->bytes || !cache->filled) {
        free(cache->bytes);
        free(cache->filled);
        cache->bytes = NULL;
        return -1;
    }
    return 0;
}

/* The payloads of every packet of a module frame, encoded the first time its variant is sent. */
static const uint8_t *payload_cache_frame(payload_cache *cache, const det_format *fmt, const sim_config *cfg,
                                          uint64_t frame, int module, uint32_t *values)
{
    sim_content_spec spec = content_spec(cfg);
    int variant = sim_content_variant(&spec, frame, module);
    size_t slot = (size_t)module * SIM_CONTENT_VARIANTS + variant;
    uint8_t *payloads = cache->bytes + slot * fmt->packets_per_frame * fmt->payload_size;
    if (!cache->filled[slot]) {
        for (int p = 0; p < fmt->packets_per_frame; p++)
            fill_payload(payloads + (size_t)p * fmt->payload_size, fmt, cfg, frame, module, p, values);
        cache->filled[slot] = 1;
    }
    return payloads;
}

/* The counters are read by other threads while sim_run sends (sim_read_counters): atomic updates. */
static void count(uint64_t *counter, uint64_t n)
{
    __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

void sim_stop(int *stop)
{
    __atomic_store_n(stop, 1, __ATOMIC_RELEASE);
}

void sim_read_counters(const sim_counters *counters, sim_counters *out)
{
    out->frames_sent = __atomic_load_n(&counters->frames_sent, __ATOMIC_RELAXED);
    out->packets_sent = __atomic_load_n(&counters->packets_sent, __ATOMIC_RELAXED);
    out->bytes_sent = __atomic_load_n(&counters->bytes_sent, __ATOMIC_RELAXED);
    out->packets_not_sent = __atomic_load_n(&counters->packets_not_sent, __ATOMIC_RELAXED);
    out->foreign_sent = __atomic_load_n(&counters->foreign_sent, __ATOMIC_RELAXED);
}

int sim_run(const sim_config *cfg, int *stop, sim_counters *counters, char *err, int err_len)
{
    det_format fmt;
    uint64_t *fields[] = {&counters->frames_sent, &counters->packets_sent, &counters->bytes_sent,
                          &counters->packets_not_sent, &counters->foreign_sent};
    for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); k++) __atomic_store_n(fields[k], 0, __ATOMIC_RELAXED);
    if (det_format_lookup(cfg->detector_kind, cfg->bit_depth, cfg->image_width, cfg->image_height, &fmt) != 0) {
        snprintf(err, err_len, "this detector type cannot send %d bit images of %d x %d", cfg->bit_depth,
                 cfg->image_width, cfg->image_height);
        return -1;
    }
    if (cfg->n_modules < 1 || cfg->n_modules > MAX_MODULES) {
        snprintf(err, err_len, "n_modules must be 1 to %d", MAX_MODULES);
        return -1;
    }
    int ppf = fmt.packets_per_frame;
    int max_msgs = 3 * ppf; /* room for duplicates and foreign datagrams */
    uint8_t junk[100];      /* a foreign datagram: no detector sends 100 bytes */
    memset(junk, 0xA5, sizeof(junk));
    int burst_left[MAX_MODULES] = {0};
    int fds[MAX_MODULES];
    /* one frame of packets; with static pixels one per module, kept from the first frame */
    uint8_t *buffer = malloc((size_t)ppf * fmt.packet_size * (cfg->static_pixels ? cfg->n_modules : 1));
    struct mmsghdr *msgs = calloc(max_msgs, sizeof(struct mmsghdr));
    struct iovec *iov = calloc(2 * (size_t)max_msgs, sizeof(struct iovec)); /* header + payload each */
    int *order = calloc(ppf, sizeof(int));
    uint32_t *values = calloc((size_t)fmt.rows_per_packet * fmt.module_width, sizeof(uint32_t)); /* one packet's */
    payload_cache cache;
    if (!buffer || !msgs || !iov || !order || !values || payload_cache_open(&cache, &fmt, cfg) != 0) {
        snprintf(err, err_len, "out of memory");
        free(buffer); free(msgs); free(iov); free(order); free(values);
        return -1;
    }
    int n_open = 0, rc = 0;
    for (; n_open < cfg->n_modules; n_open++) {
        const char *host = cfg->module_hosts[n_open][0] ? cfg->module_hosts[n_open] : cfg->host;
        fds[n_open] = open_sender(host, cfg->source, cfg->start_udp_port + n_open, err, err_len);
        if (fds[n_open] < 0) { rc = -1; break; }
    }
    uint64_t rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)cfg->seed + 1) * 0x2545F4914F6CDD1Dull;
    int gso = cfg->gso && cfg->loss == 0 && cfg->duplicate == 0 && cfg->foreign == 0;
    double start = monotonic();
    for (uint64_t i = 0; rc == 0 && !__atomic_load_n(stop, __ATOMIC_ACQUIRE) && (cfg->n_frames == 0 || i < cfg->n_frames);
         i++) {
        uint64_t frame = (cfg->restart_after && i >= cfg->restart_after) ? 1 + (i - cfg->restart_after)
                                                                           : cfg->first_frame + i;
        if (cfg->rate_hz > 0) sleep_until(start + i / cfg->rate_hz);
        uint64_t timestamp = (uint64_t)((monotonic() - start) * 1e7); /* 10 MHz clock */
        for (int m = 0; m < cfg->n_modules && rc == 0; m++) {
            if (m == cfg->silent_module && i >= cfg->silent_after) {
                count(&counters->packets_not_sent, ppf);
                continue;
            }
            uint8_t *module_buffer = buffer + (cfg->static_pixels ? (size_t)m * ppf * fmt.packet_size : 0);
            const uint8_t *payloads = cache.bytes ? payload_cache_frame(&cache, &fmt, cfg, frame, m, values) : NULL;
            for (int p = 0; p < ppf; p++) {
                uint8_t *packet = module_buffer + (size_t)p * fmt.packet_size;
                det_write_header(&fmt, packet, frame, m, p, timestamp);
                if (!payloads && (!cfg->static_pixels || i == 0))
                    fill_payload(packet + fmt.header_size, &fmt, cfg, frame, m, p, values);
                order[p] = p;
            }
            if (cfg->reorder > 1) {
                for (int p = 0; p < ppf; p++) {
                    int window_end = p - p % cfg->reorder + cfg->reorder;
                    if (window_end > ppf) window_end = ppf;
                    int q = p + (int)(rng_next(&rng) % (uint64_t)(window_end - p));
                    int t = order[p]; order[p] = order[q]; order[q] = t;
                }
            }
            int n = 0;
            uint64_t bytes = 0;
            for (int k = 0; k < ppf; k++) {
                if (burst_left[m] == 0 && cfg->loss > 0 && rng_uniform(&rng) < cfg->loss)
                    burst_left[m] = cfg->loss_burst > 1 ? cfg->loss_burst : 1;
                if (burst_left[m] > 0) {
                    burst_left[m]--;
                    count(&counters->packets_not_sent, 1);
                    continue;
                }
                if (cfg->foreign > 0 && rng_uniform(&rng) < cfg->foreign) {
                    iov[2 * n] = (struct iovec){junk, sizeof(junk)};
                    msgs[n].msg_hdr.msg_iov = &iov[2 * n];
                    msgs[n].msg_hdr.msg_iovlen = 1;
                    bytes += sizeof(junk);
                    n++;
                    count(&counters->foreign_sent, 1);
                }
                int copies = (cfg->duplicate > 0 && rng_uniform(&rng) < cfg->duplicate) ? 2 : 1;
                for (int c = 0; c < copies; c++) {
                    int p = order[k];
                    size_t length = p == ppf - 1 ? fmt.last_packet_size : fmt.packet_size;
                    uint8_t *packet = module_buffer + (size_t)p * fmt.packet_size;
                    struct iovec *v = &iov[2 * n];
                    if (payloads) { /* this frame's header, the kept payload */
                        v[0] = (struct iovec){packet, fmt.header_size};
                        v[1] = (struct iovec){(void *)(payloads + (size_t)p * fmt.payload_size),
                                              length - fmt.header_size};
                    } else {
                        v[0] = (struct iovec){packet, length};
                    }
                    msgs[n].msg_hdr.msg_iov = v;
                    msgs[n].msg_hdr.msg_iovlen = payloads ? 2 : 1;
                    bytes += length;
                    n++;
                }
            }
            if (sim_send_datagrams(fds[m], msgs, n, fmt.packet_size, &gso) != 0) {
                snprintf(err, err_len, "sending to port %d failed: %s", cfg->start_udp_port + m,
                         strerror(errno));
                rc = -1;
            }
            count(&counters->packets_sent, n);
            count(&counters->bytes_sent, bytes);
        }
        if (rc == 0) count(&counters->frames_sent, 1);
    }
    for (int m = 0; m < n_open; m++) close(fds[m]);
    free(buffer); free(msgs); free(iov); free(order); free(values); free(cache.bytes); free(cache.filled);
    return rc;
}
