/*
 * frame_assembly.c -- one thread per module: datagrams -> module frames in a ring slot.
 *
 * A module frame closes when all its packets arrived, when a packet of a newer frame
 * arrives (the rest count as lost), or when the module was silent for idle_timeout.
 * Foreign packets (wrong size, header version, packet number) and duplicates are dropped
 * and counted; packets of an already closed frame are late and dropped.
 */
#include "receiver_internal.h"

#include <unistd.h>

static int packet_seen(const module_rx *mod, int packet)
{
    return (mod->packet_seen[packet / 64] >> (packet % 64)) & 1;
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
            mod->counters.packets_lost += missing;
        } else {
            mod->counters.module_frames_complete++;
        }
        ring_close_frame(mod->ring, mod->index, mod->slot, missing);
    }
    mod->has_frame = 0;
    mod->has_closed = 1;
    mod->last_closed_frame = mod->frame;
}

static void open_frame(module_rx *mod, const packet_info *info)
{
    if (mod->has_closed && info->frame + RESTART_WINDOW < mod->last_closed_frame)
        mod->counters.frame_restarts++;
    mod->has_frame = 1;
    mod->frame = info->frame;
    mod->n_packets = 0;
    memset(mod->packet_seen, 0, sizeof(mod->packet_seen));
    mod->slot = ring_open_frame(mod->ring, mod->index, info->frame, info->timestamp);
    if (mod->slot == RING_FULL) mod->counters.module_frames_dropped++;
}

/* Is this frame number behind what the module already did (and not a restart)? */
static int is_late(const module_rx *mod, uint64_t frame)
{
    uint64_t newest = mod->has_frame ? mod->frame : mod->last_closed_frame;
    if (!mod->has_frame && !mod->has_closed) return 0;
    if (mod->has_frame && frame == mod->frame) return 0;
    if (!mod->has_frame && frame > newest) return 0;
    return frame <= newest && newest - frame < RESTART_WINDOW;
}

static void handle_packet(module_rx *mod, const uint8_t *packet, unsigned int length)
{
    const det_format *fmt = mod->fmt;
    packet_info info;
    if (parse_packet(fmt, packet, length, &info) != 0) {
        mod->counters.packets_foreign++;
        return;
    }
    if (is_late(mod, info.frame)) {
        mod->counters.packets_late++;
        return;
    }
    if (!mod->has_frame || info.frame != mod->frame) {
        close_frame(mod);
        open_frame(mod, &info);
        if (mod->slot == RING_LATE) {  /* the image went to the writer without us */
            mod->counters.packets_late++;
            mod->has_frame = 0;
            return;
        }
    }
    int p = info.packet;
    if (packet_seen(mod, p)) {
        mod->counters.packets_duplicate++;
        return;
    }
    mod->packet_seen[p / 64] |= 1ull << (p % 64);
    mod->n_packets++;
    mod->counters.packets_received++;
    mod->counters.bytes_received += length;
    if (mod->slot >= 0)
        place_packet(&mod->geom, fmt, ring_slot_data(mod->ring, mod->slot), p,
                     packet + fmt->header_size);
    if (mod->n_packets == fmt->packets_per_frame) close_frame(mod);
}

void *module_rx_main(void *arg)
{
    module_rx *mod = arg;
    while (!*mod->stop) {
        int n = socket_rx_receive(mod->fd, &mod->batch);
        double now = now_monotonic();
        if (n > 0) {
            mod->last_packet_time = now;
            ring_module_alive(mod->ring, mod->index);
            for (int i = 0; i < n; i++) {
                struct msghdr *hdr = &mod->batch.msgs[i].msg_hdr;
                unsigned int length = mod->batch.msgs[i].msg_len;
                if (hdr->msg_flags & MSG_TRUNC) length = 0; /* oversized: foreign */
                handle_packet(mod, hdr->msg_iov->iov_base, length);
            }
        } else if (mod->has_frame && now - mod->last_packet_time > mod->idle_timeout_s) {
            close_frame(mod);
        } else if (n < 0) {
            usleep(1000); /* socket error: do not spin */
        }
    }
    close_frame(mod);
    return NULL;
}
