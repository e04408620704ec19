/*
 * loopback_ceiling.c -- the machine's own limit, for benchmarks: the barest sendmmsg ->
 * recvmmsg pair on loopback (one sender, one receiver thread, no processing at all), with
 * the same datagram size as a detector. Our receiver is compared against this figure. And a bare
 * receiver alone (bare_receive), for another sender: the CPU the kernel's receive path takes per byte.
 * Compiled by benchmarks/loopback.py on first use; not part of the product.
 */
#define _GNU_SOURCE
#include "loopback_ceiling.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

typedef struct sink {
    int fd;
    int packet_size;
    int done; /* atomic: set by the sender's thread */
    uint64_t packets, bytes;
    double first, last;
} sink;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A batch of BATCH datagrams of up to packet_size bytes, each into its part of one buffer (returned). */
static uint8_t *batch_open(struct mmsghdr *msgs, struct iovec *iov, int packet_size)
{
    uint8_t *buffer = malloc((size_t)BATCH * packet_size);
    memset(msgs, 0, BATCH * sizeof(*msgs));
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = buffer + (size_t)i * packet_size;
        iov[i].iov_len = packet_size;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    return buffer;
}

static void *sink_main(void *arg)
{
    sink *s = arg;
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    uint8_t *buffer = batch_open(msgs, iov, s->packet_size);
    while (!__atomic_load_n(&s->done, __ATOMIC_ACQUIRE)) {
        int n = recvmmsg(s->fd, msgs, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0) continue;
        double t = now_s();
        if (s->packets == 0) s->first = t;
        s->last = t;
        s->packets += n;
        for (int i = 0; i < n; i++) s->bytes += msgs[i].msg_len;
    }
    free(buffer);
    return NULL;
}

int loopback_ceiling(int port, int packet_size, uint64_t n_packets, int rcvbuf_bytes,
                     loopback_result *out, char *err, int err_len)
{
    memset(out, 0, sizeof(*out));
    sink s = {.packet_size = packet_size};
    s.fd = socket(AF_INET, SOCK_DGRAM, 0);
    int tx = socket(AF_INET, SOCK_DGRAM, 0);
    if (setsockopt(s.fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf_bytes, sizeof(rcvbuf_bytes)) != 0)
        setsockopt(s.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf_bytes, sizeof(rcvbuf_bytes));
    struct timeval tv = {.tv_sec = 0, .tv_usec = 20000};
    setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s.fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        connect(tx, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        snprintf(err, err_len, "cannot use UDP port %d: %s", port, strerror(errno));
        close(s.fd);
        close(tx);
        return -1;
    }
    pthread_t thread;
    pthread_create(&thread, NULL, sink_main, &s);
    uint8_t *payload = calloc(1, packet_size);
    struct mmsghdr msgs[BATCH];
    struct iovec iov = {.iov_base = payload, .iov_len = packet_size};
    memset(msgs, 0, sizeof(msgs));
    for (int i = 0; i < BATCH; i++) {
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    double start = now_s();
    uint64_t sent = 0;
    while (sent < n_packets) {
        int want = n_packets - sent < BATCH ? (int)(n_packets - sent) : BATCH;
        int n = sendmmsg(tx, msgs, want, 0);
        if (n > 0) sent += n;
    }
    double send_end = now_s();
    usleep(100000); /* let the sink drain */
    __atomic_store_n(&s.done, 1, __ATOMIC_RELEASE);
    pthread_join(thread, NULL);
    out->packets_sent = sent;
    out->packets_received = s.packets;
    out->bytes_received = s.bytes;
    out->seconds = (s.packets > 1 && s.last > start) ? s.last - start : send_end - start;
    close(s.fd);
    close(tx);
    free(payload);
    return 0;
}

typedef struct bare_port {
    int fd, packet_size;
    double start_s, idle_s;
    uint64_t packets, bytes;
    double cpu;
} bare_port;

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *bare_main(void *arg)
{
    bare_port *p = arg;
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    uint8_t *buffer = batch_open(msgs, iov, p->packet_size);
    double cpu0 = thread_cpu_s(), begin = now_s(), last = 0;
    for (;;) {
        int n = recvmmsg(p->fd, msgs, BATCH, MSG_WAITFORONE, NULL);
        double t = now_s();
        if (n > 0) {
            last = t;
            p->packets += n;
            for (int i = 0; i < n; i++) p->bytes += msgs[i].msg_len;
        } else if (last ? t - last > p->idle_s : t - begin > p->start_s)
            break;
    }
    p->cpu = thread_cpu_s() - cpu0;
    free(buffer);
    return NULL;
}

int bare_receive(const int *ports, int n_ports, int packet_size, int rcvbuf_bytes, double start_s, double idle_s,
                 bare_result *out, char *err, int err_len)
{
    memset(out, 0, sizeof(*out));
    if (n_ports < 1 || n_ports > 64) {
        snprintf(err, err_len, "1 to 64 ports, not %d", n_ports);
        return -1;
    }
    bare_port p[64];
    pthread_t threads[64];
    int opened = 0, rc = 0;
    for (; opened < n_ports; opened++) {
        p[opened] = (bare_port){.packet_size = packet_size, .start_s = start_s, .idle_s = idle_s};
        int fd = p[opened].fd = socket(AF_INET, SOCK_DGRAM, 0);
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf_bytes, sizeof(rcvbuf_bytes)) != 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf_bytes, sizeof(rcvbuf_bytes));
        struct timeval tv = {.tv_sec = 0, .tv_usec = 20000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        struct sockaddr_in addr = {0};
        addr.sin_family = AF_INET;
        addr.sin_port = htons((uint16_t)ports[opened]);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
            snprintf(err, err_len, "cannot use UDP port %d: %s", ports[opened], strerror(errno));
            close(fd);
            rc = -1;
            break;
        }
    }
    int started = 0;
    if (rc == 0)
        for (; started < n_ports; started++) pthread_create(&threads[started], NULL, bare_main, &p[started]);
    for (int k = 0; k < started; k++) {
        pthread_join(threads[k], NULL);
        out->packets_received += p[k].packets;
        out->bytes_received += p[k].bytes;
        out->cpu_seconds += p[k].cpu;
    }
    for (int k = 0; k < opened; k++) close(p[k].fd);
    return rc;
}
