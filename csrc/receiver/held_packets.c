/*
 * held_packets.c -- packets a module keeps aside, unplaced, until it knows whether they are the
 * detector's stream: frames ahead of the stream, or of a new sequence (frame_assembly.c decides).
 * A bounded window: when it is full the oldest packet leaves it (the caller counts it foreign).
 */
#include "receiver_internal.h"

#include <stdlib.h>

int held_init(held_packets *held, int capacity, int packet_size)
{
    memset(held, 0, sizeof(*held));
    held->capacity = capacity;
    held->packet_size = packet_size;
    held->bytes = malloc((size_t)capacity * packet_size);
    held->length = calloc(capacity, sizeof(*held->length));
    held->info = calloc(capacity, sizeof(*held->info));
    if (!held->bytes || !held->length || !held->info) {
        held_free(held);
        return -1;
    }
    return 0;
}

void held_free(held_packets *held)
{
    free(held->bytes);
    free(held->length);
    free(held->info);
    held->bytes = NULL;
    held->length = NULL;
    held->info = NULL;
    held->n = 0;
}

int held_contains(const held_packets *held, const packet_info *info)
{
    for (int k = 0; k < held->n; k++)
        if (held->info[k].frame == info->frame && held->info[k].packet == info->packet) return 1;
    return 0;
}

int held_add(held_packets *held, const uint8_t *packet, unsigned int length, const packet_info *info)
{
    int dropped = 0;
    if (held->n == held->capacity) { /* the oldest leaves the window */
        memmove(held->bytes, held->bytes + held->packet_size, (size_t)(held->n - 1) * held->packet_size);
        memmove(held->length, held->length + 1, (size_t)(held->n - 1) * sizeof(*held->length));
        memmove(held->info, held->info + 1, (size_t)(held->n - 1) * sizeof(*held->info));
        held->n--;
        dropped = 1;
    }
    memcpy(held->bytes + (size_t)held->n * held->packet_size, packet, length);
    held->length[held->n] = length;
    held->info[held->n] = *info;
    held->n++;
    held->first = held->newest = held->info[0].frame;
    for (int k = 1; k < held->n; k++) {
        if (held->info[k].frame < held->first) held->first = held->info[k].frame;
        if (held->info[k].frame > held->newest) held->newest = held->info[k].frame;
    }
    return dropped;
}

int held_frame_packets(const held_packets *held, uint64_t frame)
{
    int n = 0;
    for (int k = 0; k < held->n; k++) n += held->info[k].frame == frame;
    return n; /* distinct: a packet already held is never added again */
}

const uint8_t *held_packet(const held_packets *held, int k, unsigned int *length)
{
    *length = held->length[k];
    return held->bytes + (size_t)k * held->packet_size;
}
