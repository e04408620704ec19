/*
 * socket_rx.c -- where packets enter: one UDP socket per module, read in recvmmsg batches, each
 * datagram either whole into the batch's buffer or placed by iovecs where its payload belongs.
 */
#include "receiver_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/time.h>
#include <unistd.h>

int socket_rx_open(const char *address, int port, int rcvbuf_bytes, int poll_ms, char *err, int err_len)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) {
        snprintf(err, err_len, "cannot create a UDP socket: %s", strerror(errno));
        return -1;
    }
    /* No SO_REUSEADDR / SO_REUSEPORT: a port belongs to one receiver, and a second one that
     * tries to bind it is refused instead of silently taking the detector's packets. */
    /* SO_RCVBUFFORCE passes net.core.rmem_max when we may (root); else take what we get. */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf_bytes, sizeof(rcvbuf_bytes)) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf_bytes, sizeof(rcvbuf_bytes));
    struct timeval tv = {.tv_sec = poll_ms / 1000, .tv_usec = (poll_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, address, &addr.sin_addr) != 1) {
        snprintf(err, err_len, "'%s' is not an IPv4 address", address);
        close(fd);
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        if (errno == EADDRINUSE)
            snprintf(err, err_len, "UDP port %d is already in use on %s (another receiver owns it)", port, address);
        else
            snprintf(err, err_len, "cannot bind UDP %s:%d: %s", address, port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int rx_batch_init(rx_batch *batch, int packet_size, int header_size, int max_payload_iov)
{
    memset(batch, 0, sizeof(*batch));
    batch->slot_size = packet_size + RX_SLACK;
    batch->header_size = header_size;
    batch->max_iov = max_payload_iov + 2;
    batch->buffer = malloc((size_t)RX_BATCH * batch->slot_size);
    batch->headers = malloc((size_t)RX_BATCH * header_size);
    batch->iov = calloc((size_t)RX_BATCH * batch->max_iov, sizeof(struct iovec));
    if (!batch->buffer || !batch->headers || !batch->iov) {
        rx_batch_free(batch);
        return -1;
    }
    for (int i = 0; i < RX_BATCH; i++) {
        batch->msgs[i].msg_hdr.msg_name = &batch->sources[i];
        rx_batch_whole(batch, i);
    }
    return 0;
}

void rx_batch_free(rx_batch *batch)
{
    free(batch->buffer);
    free(batch->headers);
    free(batch->iov);
    batch->buffer = batch->headers = NULL;
    batch->iov = NULL;
}

void rx_batch_whole(rx_batch *batch, int i)
{
    struct iovec *v = batch->iov + (size_t)i * batch->max_iov;
    v[0] = (struct iovec){batch->buffer + (size_t)i * batch->slot_size, (size_t)batch->slot_size};
    batch->msgs[i].msg_hdr.msg_iov = v;
    batch->msgs[i].msg_hdr.msg_iovlen = 1;
    batch->placed[i] = -1;
}

void rx_batch_place(rx_batch *batch, int i, int packet, const struct iovec *payload, int n)
{
    struct iovec *v = batch->iov + (size_t)i * batch->max_iov;
    v[0] = (struct iovec){batch->headers + (size_t)i * batch->header_size, (size_t)batch->header_size};
    memcpy(v + 1, payload, (size_t)n * sizeof(*v));
    v[n + 1] = (struct iovec){batch->slack[i], RX_SLACK};
    batch->msgs[i].msg_hdr.msg_iov = v;
    batch->msgs[i].msg_hdr.msg_iovlen = n + 2;
    batch->placed[i] = packet;
}

const uint8_t *rx_batch_header(const rx_batch *batch, int i)
{
    if (batch->placed[i] < 0) return batch->buffer + (size_t)i * batch->slot_size;
    return batch->headers + (size_t)i * batch->header_size;
}

const uint8_t *rx_batch_datagram(rx_batch *batch, int i, unsigned int length)
{
    uint8_t *whole = batch->buffer + (size_t)i * batch->slot_size;
    if (batch->placed[i] < 0) return whole;
    const struct msghdr *hdr = &batch->msgs[i].msg_hdr;
    size_t at = 0;
    for (size_t k = 0; k < hdr->msg_iovlen && at < length; k++) {
        size_t n = hdr->msg_iov[k].iov_len < length - at ? hdr->msg_iov[k].iov_len : length - at;
        memcpy(whole + at, hdr->msg_iov[k].iov_base, n);
        at += n;
    }
    batch->placed[i] = -1; /* whole from now on: gathered once, before anything else writes there */
    return whole;
}

int socket_rx_receive(int fd, rx_batch *batch, int n)
{
    /* MSG_WAITFORONE: block (up to SO_RCVTIMEO) for the first datagram, then take what is queued. */
    for (int i = 0; i < n; i++) batch->msgs[i].msg_hdr.msg_namelen = sizeof(batch->sources[i]);
    int got = recvmmsg(fd, batch->msgs, n, MSG_WAITFORONE, NULL);
    if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
        return -1;
    }
    return got;
}

int socket_rx_pending(int fd)
{
    int bytes = 0;
    if (ioctl(fd, FIONREAD, &bytes) != 0) return 0;
    return bytes;
}

void socket_rx_pace(int fd, rx_batch *batch, int n, int asked, double now)
{
    if (n <= 0) return;
    if (batch->rate_since == 0) batch->rate_since = now;
    batch->rate_count += n;
    if (now - batch->rate_since >= 0.01) { /* a new rate every 10 ms */
        batch->packets_per_s = batch->rate_count / (now - batch->rate_since);
        batch->rate_since = now;
        batch->rate_count = 0;
    }
    if (n >= (asked + 1) / 2 || batch->packets_per_s <= 0) return;
    if (batch->buffer_packets == 0) {
        int bytes = 0;
        socklen_t size = sizeof(bytes);
        getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, &size);
        /* the kernel counts about twice the payload per datagram (its bookkeeping) */
        batch->buffer_packets = bytes / (2 * batch->slot_size) > 1 ? bytes / (2 * batch->slot_size) : 1;
    }
    double wait_s = (asked / 2) / batch->packets_per_s;
    double buffer_s = (batch->buffer_packets / 4) / batch->packets_per_s;
    if (wait_s > buffer_s) wait_s = buffer_s;
    if (wait_s > PACE_MAX_US * 1e-6) wait_s = PACE_MAX_US * 1e-6;
    if (wait_s >= 20e-6) usleep((useconds_t)(wait_s * 1e6));
}
