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
 *  - a sequence is confirmed once CONFIRM_PACKETS different packets agreed with it; the frames
 *    of a sequence never confirmed are abandoned, never written (one stray packet makes no image);
 *  - in a running sequence, the open frame and the next one are the stream; a frame up to
 *    LATE_WINDOW behind the newest is late (dropped; counted as going backwards when the module
 *    never had that frame);
 *  - any other frame number is held aside (a bounded window, held_packets.c) with the packets
 *    that agree with it: a frame further ahead (up to JUMP_LIMIT: frames in between were lost)
 *    until CONFIRM_PACKETS different packets agree, a restart of the numbering without a pause
 *    until one of its frames is complete. Then the module switches to it, replaying what was
 *    held; a packet of the running stream first drops what was held (counted foreign), so a
 *    packet repeated or spoofed far ahead or behind changes nothing.
 *
 * A module frame closes when all its packets arrived, when a packet of a newer frame
 * arrives (the rest count as lost), or when the module was silent for idle_timeout.
 *
 * One copy: while a frame is open in a ring slot, each receive asks for the packets that should come
 * next (after the last one accepted, skipping those already there), each with iovecs that point where
 * its payload belongs in the slot, its header going to a side buffer (plan_batch). A datagram that is
 * what was expected is then only counted: the kernel's copy was the only one. At the first datagram
 * that is not (lost, reordered, late, foreign, a new frame), the rest of the batch is gathered out of
 * the slot into the batch's buffer before anything else is written there, and handled as before,
 * with a copy. Spots of the slot that received an unexpected payload belong to packets not received
 * yet: they are overwritten when those arrive, or filled as missing when the frame closes. Payloads
 * that need decoding (4 and 12 bit) or mirroring are always received whole and copied into place.
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
static void abandon_frame(module_rx *mod);

/* The open frame is over: closed (written) if its sequence was confirmed, else abandoned. */
static void end_frame(module_rx *mod)
{
    if (mod->confirmed) close_frame(mod);
    else abandon_frame(mod);
}

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
    mod->next_packet = 0;
    memset(mod->packet_seen, 0, sizeof(mod->packet_seen));
    mod->recent[mod->n_recent++ % RECENT_FRAMES] = info->frame;
    mod->slot = ring_open_frame(mod->ring, mod->index, mod->epoch, info->frame, info->timestamp);
    if (mod->slot == RING_FULL) mod->counters.module_frames_dropped++;
}

static void drop_candidate(module_rx *mod)
{
    mod->counters.packets_foreign += mod->held.n;
    mod->held.n = 0;
}

/* Is `frame` the stream: the open frame, the next one, or one behind (late)? */
static int in_stream(const module_rx *mod, uint64_t frame)
{
    uint64_t newest = newest_frame(mod);
    if (frame > newest) return frame - newest == 1;
    return newest - frame < LATE_WINDOW;
}

/* A late packet of a frame this module never had: the frame numbers went backwards. */
static void count_backwards(module_rx *mod, uint64_t frame)
{
    int known = mod->n_recent > RECENT_FRAMES ? RECENT_FRAMES : mod->n_recent;
    for (int k = 0; k < known; k++)
        if (mod->recent[k] == frame) return;
    if (mod->has_backwards && mod->last_backwards == frame) return;
    mod->has_backwards = 1;
    mod->last_backwards = frame;
    mod->counters.frames_backwards++;
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

/* A packet of the running sequence: place it in its frame (placed: the kernel put its payload there). */
static void accept_packet(module_rx *mod, const uint8_t *packet, unsigned int length, const packet_info *info,
                          int placed)
{
    const det_format *fmt = mod->fmt;
    int late = mod->has_frame ? info->frame < mod->frame : mod->has_closed && info->frame <= mod->last_closed_frame;
    if (late) {
        mod->counters.packets_late++;
        count_backwards(mod, info->frame);
        return;
    }
    if (!mod->has_frame || info->frame != mod->frame) {
        end_frame(mod);
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
    if (++mod->n_agreeing >= CONFIRM_PACKETS) mod->confirmed = 1; /* different packets only */
    mod->n_packets++;
    mod->next_packet = p + 1;
    mod->counters.packets_received++;
    mod->counters.bytes_received += length;
    if (mod->slot >= 0 && placed) mod->counters.packets_placed++;
    else if (mod->slot >= 0)
        place_packet(&mod->geom, fmt, ring_slot_data(mod->ring, mod->slot), p, packet + fmt->header_size);
    if (mod->n_packets == fmt->packets_per_frame) close_frame(mod);
}

/* A packet that is not the stream: hold it with those that agree with it, and switch to them once
 * they prove to be the detector's (see the rules at the top). */
static void consider_candidate(module_rx *mod, const uint8_t *packet, unsigned int length, const packet_info *info)
{
    held_packets *held = &mod->held;
    if (held->n && !agrees_with(held->newest, info->frame))
        drop_candidate(mod); /* another stray frame number: what was held was no sequence */
    if (held_contains(held, info)) { /* the same packet again: no more proof than once */
        mod->counters.packets_foreign++;
        return;
    }
    mod->counters.packets_foreign += held_add(held, packet, length, info);
    int ahead = goes_on(mod, held->first), restart = mod->confirmed && !ahead;
    if (restart ? held_frame_packets(held, info->frame) < mod->fmt->packets_per_frame : held->n < CONFIRM_PACKETS)
        return;
    if (!ahead) start_sequence(mod, held->first); /* frames ahead: the same sequence going on */
    int n = held->n;
    held->n = 0;
    for (int k = 0; k < n; k++) {
        unsigned int kept_length;
        const uint8_t *kept = held_packet(held, k, &kept_length);
        accept_packet(mod, kept, kept_length, &held->info[k], 0);
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
    } else if (!in_stream(mod, info.frame)) {
        consider_candidate(mod, packet, length, &info);
        return 0;
    }
    drop_candidate(mod);
    accept_packet(mod, packet, length, &info, 0);
    return 0;
}

/* A datagram the kernel put where it belongs (as_placed): the rules of handle_packet, which for a
 * packet of the open frame come down to accepting it, without the copy. */
static void handle_placed(module_rx *mod, const packet_info *info, unsigned int length)
{
    drop_candidate(mod); /* a packet of the open frame goes on from it: never a new sequence */
    accept_packet(mod, NULL, length, info, 1);
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

/* Where each packet's payload goes in the image, if every one can go there as it is. */
static int find_spans(module_rx *mod)
{
    const det_format *fmt = mod->fmt;
    int ppf = fmt->packets_per_frame;
    mod->in_place = 0;
    mod->max_spans = fmt->rows_per_packet * mod->geom.n_segments;
    mod->n_spans = calloc(ppf, sizeof(int));
    mod->span_offset = calloc((size_t)ppf * mod->max_spans, sizeof(size_t));
    mod->span_length = calloc((size_t)ppf * mod->max_spans, sizeof(size_t));
    if (!mod->n_spans || !mod->span_offset || !mod->span_length) return -1;
    for (int p = 0; p < ppf; p++) {
        size_t at = (size_t)p * mod->max_spans;
        mod->n_spans[p] = packet_spans(&mod->geom, fmt, p, mod->span_offset + at, mod->span_length + at,
                                       mod->max_spans);
        if (mod->n_spans[p] < 0) return 0; /* decoded or mirrored: received whole */
    }
    mod->in_place = 1;
    return 0;
}

int module_rx_init(module_rx *mod)
{
    if (held_init(&mod->held, mod->fmt->packets_per_frame + CONFIRM_PACKETS, mod->fmt->packet_size) != 0 ||
        find_spans(mod) != 0 ||
        rx_batch_init(&mod->batch, mod->fmt->packet_size, mod->fmt->header_size,
                      mod->in_place ? mod->max_spans : 0) != 0) {
        module_rx_free(mod);
        return -1;
    }
    pthread_mutex_init(&mod->published_lock, NULL);
    mod->has_lock = 1;
    return 0;
}

void module_rx_free(module_rx *mod)
{
    rx_batch_free(&mod->batch);
    held_free(&mod->held);
    free(mod->n_spans);
    free(mod->span_offset);
    free(mod->span_length);
    mod->n_spans = NULL;
    mod->span_offset = mod->span_length = NULL;
    if (mod->has_lock) pthread_mutex_destroy(&mod->published_lock);
    mod->has_lock = 0;
}

/* Set up the next receive: the packets expected next, placed in the open frame's slot, then one
 * datagram whole (often the next frame's first packet). With nothing to place: one datagram, which
 * may open a frame, or after such a try a whole batch (junk, dropped frames, no slot). */
static int plan_batch(module_rx *mod)
{
    rx_batch *batch = &mod->batch;
    int k = 0;
    if (mod->in_place && mod->has_frame && mod->slot >= 0) {
        uint8_t *image = ring_slot_data(mod->ring, mod->slot);
        struct iovec payload[mod->max_spans];
        for (int p = mod->next_packet; p < mod->fmt->packets_per_frame && k < RX_BATCH - 1; p++) {
            if (packet_seen(mod, p)) continue;
            size_t at = (size_t)p * mod->max_spans;
            for (int s = 0; s < mod->n_spans[p]; s++)
                payload[s] = (struct iovec){image + mod->span_offset[at + s], mod->span_length[at + s]};
            rx_batch_place(batch, k++, p, payload, mod->n_spans[p]);
        }
    }
    int asked;
    if (k > 0) {
        asked = k + 1;
        mod->probing = 0;
    } else {
        asked = mod->in_place && !mod->probing ? 1 : RX_BATCH;
        mod->probing = asked == 1;
    }
    for (int i = k; i < asked; i++) rx_batch_whole(batch, i);
    return asked;
}

/* A placed datagram that is the packet it was placed for, in the frame still open: nothing to copy. */
static int as_placed(const module_rx *mod, const packet_info *info, int placed)
{
    return mod->has_frame && mod->slot >= 0 && info->frame == mod->frame && info->packet == placed &&
           !packet_seen(mod, placed);
}

/* Datagram i of the batch is not what it was placed for: before anything is written into the slot,
 * gather it and every later placed one out of the slot into the batch's buffer (they go the way of
 * whole datagrams from here). */
static void gather_rest(module_rx *mod, int i, int n)
{
    for (int j = i; j < n; j++)
        if (mod->batch.placed[j] >= 0) rx_batch_datagram(&mod->batch, j, mod->batch.msgs[j].msg_len);
}

void *module_rx_main(void *arg)
{
    module_rx *mod = arg;
    rx_batch *batch = &mod->batch;
    while (!__atomic_load_n(mod->stop, __ATOMIC_ACQUIRE)) {
        int asked = plan_batch(mod);
        int n = socket_rx_receive(mod->fd, batch, asked);
        if (n > 0) ring_module_busy(mod->ring, mod->index, 1);
        double now = now_monotonic();
        if (n < 0) usleep(1000); /* socket error: do not spin */
        /* only the detector's own packets count as signs of life (foreign traffic does not) */
        int after_silence = now - mod->last_packet_time >= RESTART_IDLE_S, alive = 0;
        for (int i = 0; i < n; i++) {
            struct msghdr *hdr = &batch->msgs[i].msg_hdr;
            unsigned int length = batch->msgs[i].msg_len;
            if (hdr->msg_flags & MSG_TRUNC) length = 0; /* oversized: foreign */
            int from = from_detector(mod, &batch->sources[i]);
            if (batch->placed[i] >= 0) {
                packet_info info;
                if (from && parse_packet(mod->fmt, rx_batch_header(batch, i), length, &info) == 0 &&
                    as_placed(mod, &info, batch->placed[i])) {
                    handle_placed(mod, &info, length);
                    alive = 1;
                    continue;
                }
                gather_rest(mod, i, n);
            }
            if (!from) {
                mod->counters.packets_foreign++;
                continue;
            }
            if (handle_packet(mod, rx_batch_datagram(batch, i, length), length, after_silence && !alive) == 0)
                alive = 1;
        }
        if (alive) {
            mod->last_packet_time = now;
            ring_module_alive(mod->ring, mod->index);
        } else if (mod->has_frame && now - mod->last_packet_time > mod->idle_timeout_s) {
            end_frame(mod);
        }
        if (n > 0) ring_module_busy(mod->ring, mod->index, 0);
        publish_counters(mod);
        socket_rx_pace(mod->fd, batch, n, asked, now);
    }
    end_frame(mod);
    publish_counters(mod);
    return NULL;
}

void module_rx_counters(module_rx *mod, rx_counters *out)
{
    pthread_mutex_lock(&mod->published_lock);
    *out = mod->published;
    pthread_mutex_unlock(&mod->published_lock);
}
