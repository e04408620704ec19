/*
 * frame_assembly.c -- one thread per module: datagrams -> module frames in a ring slot.
 *
 * Only datagrams from the module's detector address (when the config names one) that parse
 * as this detector's packets count; the rest are foreign: dropped and counted.
 *
 * Frame numbers form sequences (the rules are documented in docs/receiver.rst):
 *  - the first packet starts a sequence; after RESTART_IDLE_S without packets, a packet
 *    that does not simply go on from the newest frame starts a new sequence at once (a
 *    detector reset, restart or a new next frame number between acquisitions);
 *  - in a running sequence, a frame up to LATE_WINDOW behind the newest is late (dropped),
 *    one up to JUMP_LIMIT ahead is the stream going on (the frames between were lost);
 *  - any other frame number is a candidate sequence: its packets are kept aside, and only
 *    when CONFIRM_PACKETS of them arrive in a row does the module switch to it (replaying
 *    them). A single corrupt or spoofed frame number is counted foreign and changes nothing.
 *    A frame of a sequence that was never confirmed is abandoned, never written.
 *
 * A module frame closes when all its packets arrived, when a packet of a newer frame
 * arrives (the rest count as lost), or when the module was silent for idle_timeout.
 */
#include "receiver_internal.h"

#include <stdlib.h>
#include <unistd.h>

static int packet_seen(const module_rx *mod, int packet)
{
    return (mod->packet_seen[packet / 64] >> (packet % 64)) & 1;
}

/* The newest frame number of the running sequence. */
static uint64_t newest_frame(const module_rx *mod)
{
    return mod->has_frame ? mod->frame : mod->last_closed_frame;
}

/* Does `frame` belong to a sequence whose newest frame is `newest`? */
static int agrees_with(uint64_t newest, uint64_t frame)
{
    if (frame >= newest) return frame - newest <= JUMP_LIMIT;
    return newest - frame < LATE_WINDOW;
}

static void close_frame(module_rx *mod)
{
    if (!mod->has_frame) return;
    int ppf = mod->fmt->packets_per_frame;
    if (mod->slot >= 0) {
        uint32_t missing = (uint32_t)(ppf - mod->n_packets);
        if (missing) {
            uint8_t *image = ring_slot_data(mod->ring, mod->slot);
            for (int p = 0; p < ppf; p++)
                if (!packet_seen(mod, p)) place_packet(&mod->geom, mod->fmt, image, p, NULL);
            mod->counters.module_frames_incomplete++;
        } else {
            mod->counters.module_frames_complete++;
        }
        ring_close_frame(mod->ring, mod->index, mod->slot, missing);
    }
    mod->has_frame = 0;
    mod->has_closed = 1;
    mod->last_closed_frame = mod->frame;
}

/* The open frame belongs to a sequence that was never confirmed: give it back unwritten. */
static void abandon_frame(module_rx *mod)
{
    if (!mod->has_frame) return;
    if (mod->slot >= 0) ring_abandon_frame(mod->ring, mod->index, mod->slot);
    mod->counters.packets_received -= mod->n_packets;
    mod->counters.packets_foreign += mod->n_packets;
    mod->has_frame = 0;
}

static void open_frame(module_rx *mod, const packet_info *info)
{
    mod->has_frame = 1;
    mod->frame = info->frame;
    mod->n_packets = 0;
    memset(mod->packet_seen, 0, sizeof(mod->packet_seen));
    mod->slot = ring_open_frame(mod->ring, mod->index, mod->epoch, info->frame, info->timestamp);
    if (mod->slot == RING_FULL) mod->counters.module_frames_dropped++;
}

static void drop_candidate(module_rx *mod)
{
    mod->counters.packets_foreign += mod->n_candidate;
    mod->n_candidate = 0;
}

/* Does `frame` simply go on from where the running sequence is (same frame, or ahead)? */
static int goes_on(const module_rx *mod, uint64_t frame)
{
    if (mod->has_frame && frame == mod->frame) return 1;
    return frame > newest_frame(mod) && frame - newest_frame(mod) <= JUMP_LIMIT;
}

static void start_sequence(module_rx *mod, uint64_t first_frame)
{
    int restart = mod->has_sequence && !goes_on(mod, first_frame); /* numbering started again or jumped */
    if (mod->has_frame) {
        if (mod->confirmed) close_frame(mod);
        else abandon_frame(mod);
    }
    mod->epoch = ring_start_sequence(mod->ring, mod->index, restart);
    mod->has_sequence = 1;
    mod->confirmed = 0;
    mod->n_agreeing = 0;
    mod->has_closed = 0;
}

/* A packet of the running sequence: place it in its frame. */
static void accept_packet(module_rx *mod, const uint8_t *packet, unsigned int length, const packet_info *info)
{
    const det_format *fmt = mod->fmt;
    if (++mod->n_agreeing >= CONFIRM_PACKETS) mod->confirmed = 1;
    int late = mod->has_frame ? info->frame < mod->frame : mod->has_closed && info->frame <= mod->last_closed_frame;
    if (late) {
        mod->counters.packets_late++;
        return;
    }
    if (!mod->has_frame || info->frame != mod->frame) {
        close_frame(mod);
        open_frame(mod, info);
        if (mod->slot == RING_LATE) { /* the image went to the writer without us */
            mod->counters.packets_late++;
            mod->has_frame = 0;
            return;
        }
    }
    int p = info->packet;
    if (packet_seen(mod, p)) {
        mod->counters.packets_duplicate++;
        return;
    }
    mod->packet_seen[p / 64] |= 1ull << (p % 64);
    mod->n_packets++;
    mod->counters.packets_received++;
    mod->counters.bytes_received += length;
    if (mod->slot >= 0)
        place_packet(&mod->geom, fmt, ring_slot_data(mod->ring, mod->slot), p, packet + fmt->header_size);
    if (mod->n_packets == fmt->packets_per_frame) close_frame(mod);
}

/* A packet that does not agree with the running sequence: keep it as a candidate, and switch
 * to the candidate sequence once CONFIRM_PACKETS packets in a row agree with it. */
static void consider_candidate(module_rx *mod, const uint8_t *packet, unsigned int length, const packet_info *info)
{
    if (mod->n_candidate && !agrees_with(mod->candidate_newest, info->frame)) drop_candidate(mod);
    if (!mod->n_candidate) mod->candidate_first = mod->candidate_newest = info->frame;
    if (info->frame > mod->candidate_newest) mod->candidate_newest = info->frame;
    size_t size = (size_t)mod->fmt->packet_size;
    memcpy(mod->candidate_packets + mod->n_candidate * size, packet, length);
    mod->candidate_length[mod->n_candidate++] = length;
    if (mod->n_candidate < CONFIRM_PACKETS) return;
    start_sequence(mod, mod->candidate_first);
    int n = mod->n_candidate;
    mod->n_candidate = 0;
    for (int k = 0; k < n; k++) {
        const uint8_t *kept = mod->candidate_packets + k * size;
        packet_info kept_info;
        parse_packet(mod->fmt, kept, mod->candidate_length[k], &kept_info);
        accept_packet(mod, kept, mod->candidate_length[k], &kept_info);
    }
}

/* One datagram from the detector's address; 0 if it was a packet of this detector, else -1. */
static int handle_packet(module_rx *mod, const uint8_t *packet, unsigned int length, int after_silence)
{
    packet_info info;
    if (parse_packet(mod->fmt, packet, length, &info) != 0) {
        mod->counters.packets_foreign++;
        return -1;
    }
    if (!mod->has_sequence || (after_silence && !goes_on(mod, info.frame))) {
        drop_candidate(mod);
        start_sequence(mod, info.frame);
    } else if (!agrees_with(newest_frame(mod), info.frame)) {
        consider_candidate(mod, packet, length, &info);
        return 0;
    }
    drop_candidate(mod);
    accept_packet(mod, packet, length, &info);
    return 0;
}

static int from_detector(const module_rx *mod, const struct sockaddr_in *source)
{
    return mod->source.s_addr == htonl(INADDR_ANY) || source->sin_addr.s_addr == mod->source.s_addr;
}

static void publish_counters(module_rx *mod)
{
    pthread_mutex_lock(&mod->published_lock);
    mod->published = mod->counters;
    pthread_mutex_unlock(&mod->published_lock);
}

int module_rx_init(module_rx *mod)
{
    mod->candidate_packets = malloc((size_t)CONFIRM_PACKETS * mod->fmt->packet_size);
    if (!mod->candidate_packets || rx_batch_init(&mod->batch, mod->fmt->packet_size) != 0) {
        free(mod->candidate_packets);
        mod->candidate_packets = NULL;
        return -1;
    }
    pthread_mutex_init(&mod->published_lock, NULL);
    return 0;
}

void module_rx_free(module_rx *mod)
{
    rx_batch_free(&mod->batch);
    free(mod->candidate_packets);
    mod->candidate_packets = NULL;
    pthread_mutex_destroy(&mod->published_lock);
}

void *module_rx_main(void *arg)
{
    module_rx *mod = arg;
    while (!__atomic_load_n(mod->stop, __ATOMIC_ACQUIRE)) {
        int n = socket_rx_receive(mod->fd, &mod->batch);
        if (n > 0) ring_module_busy(mod->ring, mod->index, 1);
        double now = now_monotonic();
        if (n < 0) usleep(1000); /* socket error: do not spin */
        /* only the detector's own packets count as signs of life (foreign traffic does not) */
        int after_silence = now - mod->last_packet_time >= RESTART_IDLE_S, alive = 0;
        for (int i = 0; i < n; i++) {
            struct msghdr *hdr = &mod->batch.msgs[i].msg_hdr;
            unsigned int length = mod->batch.msgs[i].msg_len;
            if (hdr->msg_flags & MSG_TRUNC) length = 0; /* oversized: foreign */
            if (!from_detector(mod, &mod->batch.sources[i])) {
                mod->counters.packets_foreign++;
                continue;
            }
            if (handle_packet(mod, hdr->msg_iov->iov_base, length, after_silence && !alive) == 0) alive = 1;
        }
        if (alive) {
            mod->last_packet_time = now;
            ring_module_alive(mod->ring, mod->index);
        } else if (mod->has_frame && now - mod->last_packet_time > mod->idle_timeout_s) {
            close_frame(mod);
        }
        if (n > 0) ring_module_busy(mod->ring, mod->index, 0);
        publish_counters(mod);
        socket_rx_pace(mod->fd, &mod->batch, n, now);
    }
    close_frame(mod);
    publish_counters(mod);
    return NULL;
}

void module_rx_counters(module_rx *mod, rx_counters *out)
{
    pthread_mutex_lock(&mod->published_lock);
    *out = mod->published;
    pthread_mutex_unlock(&mod->published_lock);
}
