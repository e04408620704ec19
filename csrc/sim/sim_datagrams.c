/*
 * sim_datagrams.c -- the simulator's datagrams out, plain or as UDP_SEGMENT messages (see the header).
 *
 * Segmented: up to MAX_SEGMENTS datagrams and at most MAX_MESSAGE bytes go into one message; its iovecs are the
 * datagrams' own, one after the other, and a control message gives the segment size. A kernel without
 * UDP segmentation (before Linux 4.18) refuses the first message with EINVAL, ENOPROTOOPT or EIO; then
 * nothing was sent and the caller sends the batch the plain way.
 */
#define _GNU_SOURCE
#include "sim_datagrams.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#define MAX_SEGMENTS 64     /* datagrams per message (the kernel's UDP_MAX_SEGMENTS is 64 or more) */
#define MAX_MESSAGE 65000   /* bytes per message: within one IPv4 datagram's 65,507 */
#define MAX_MESSAGES 64     /* messages per sendmmsg */
#define MAX_IOVECS (2 * MAX_SEGMENTS)

typedef struct segmented {
    struct iovec iov[MAX_IOVECS];
    union {
        char bytes[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } control;
} segmented;

static size_t datagram_length(const struct msghdr *m)
{
    size_t length = 0;
    for (size_t k = 0; k < m->msg_iovlen; k++) length += m->msg_iov[k].iov_len;
    return length;
}

/* The datagrams from msgs[first] on (at most n) into one message; returns how many it took. */
static int fill_message(struct mmsghdr *out, segmented *s, struct mmsghdr *msgs, int n, size_t segment_size)
{
    int taken = 0, iovecs = 0;
    size_t bytes = 0;
    while (taken < n && taken < MAX_SEGMENTS) {
        const struct msghdr *m = &msgs[taken].msg_hdr;
        size_t length = datagram_length(m);
        if (bytes + length > MAX_MESSAGE || iovecs + (int)m->msg_iovlen > MAX_IOVECS) break;
        memcpy(s->iov + iovecs, m->msg_iov, m->msg_iovlen * sizeof(struct iovec));
        iovecs += (int)m->msg_iovlen;
        bytes += length;
        taken++;
        if (length != segment_size) break; /* a shorter datagram ends a message */
    }
    memset(out, 0, sizeof(*out));
    out->msg_hdr.msg_iov = s->iov;
    out->msg_hdr.msg_iovlen = (size_t)iovecs;
    if (taken > 1) {
        out->msg_hdr.msg_control = s->control.bytes;
        out->msg_hdr.msg_controllen = sizeof(s->control.bytes);
        struct cmsghdr *c = CMSG_FIRSTHDR(&out->msg_hdr);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t size = (uint16_t)segment_size;
        memcpy(CMSG_DATA(c), &size, sizeof(size));
    }
    return taken;
}

/* sendmmsg until every message went out; the number sent before an error (n: all), errno set then. */
static int send_all(int fd, struct mmsghdr *msgs, int n)
{
    int sent = 0;
    while (sent < n) {
        int rc = sendmmsg(fd, msgs + sent, (unsigned)(n - sent), 0);
        if (rc < 0) {
            if (errno == EINTR || errno == ENOBUFS || errno == EAGAIN) continue;
            if (errno == ECONNREFUSED) { /* nobody listens yet: UDP drops it */
                sent++;
                continue;
            }
            return sent;
        }
        sent += rc;
    }
    return n;
}

/* As segmented messages: 0 when sent, 1 when the kernel refuses segmentation (nothing sent), -1 on another
 * error. */
static int send_segmented(int fd, struct mmsghdr *msgs, int n, size_t segment_size)
{
    static __thread segmented parts[MAX_MESSAGES];
    struct mmsghdr out[MAX_MESSAGES];
    for (int done = 0; done < n;) {
        int n_out = 0, at = done;
        while (at < n && n_out < MAX_MESSAGES) {
            at += fill_message(&out[n_out], &parts[n_out], msgs + at, n - at, segment_size);
            n_out++;
        }
        int sent = send_all(fd, out, n_out);
        if (sent < n_out) {
            int refused = errno == EINVAL || errno == ENOPROTOOPT || errno == EIO;
            return done == 0 && sent == 0 && refused ? 1 : -1;
        }
        done = at;
    }
    return 0;
}

int sim_send_datagrams(int fd, struct mmsghdr *msgs, int n, size_t segment_size, int *segmented)
{
    if (*segmented) {
        int outcome = send_segmented(fd, msgs, n, segment_size);
        if (outcome != 1) return outcome == 0 ? 0 : -1;
        *segmented = 0; /* the kernel cannot segment: plain datagrams from now on */
    }
    return send_all(fd, msgs, n) == n ? 0 : -1;
}
