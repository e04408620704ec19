/*
 * loopback_ceiling.h -- the machine's ceiling for the benchmarks (not part of the product): a bare
 * sendmmsg -> recvmmsg pair on loopback, same datagram size as a detector; and a bare receiver alone.
 * Keep this file parsable by cffi's cdef (benchmarks/loopback.py strips '#' lines).
 */
#ifndef STD_DAQ_LOOPBACK_CEILING_H
#define STD_DAQ_LOOPBACK_CEILING_H
#include <stdint.h>

typedef struct loopback_result {
    uint64_t packets_sent;
    uint64_t packets_received;
    uint64_t bytes_received;
    double seconds;
} loopback_result;

/* Send n_packets datagrams of packet_size bytes to port on loopback from one thread while another
 * receives them; 0 and out filled, or -1 and a message in err. */
int loopback_ceiling(int port, int packet_size, uint64_t n_packets, int rcvbuf_bytes, loopback_result *out,
                     char *err, int err_len);

typedef struct bare_result {
    uint64_t packets_received;
    uint64_t bytes_received;
    double cpu_seconds; /* of the receiving threads, together */
} bare_result;

/* The kernel's own receive work: one thread per port (at most 64), each taking datagrams of up to
 * packet_size bytes with blocking recvmmsg batches into one buffer and doing nothing with them, until no
 * datagram came for idle_s after the first (or none in start_s); 0 and out filled, or -1 and err. */
int bare_receive(const int *ports, int n_ports, int packet_size, int rcvbuf_bytes, double start_s, double idle_s,
                 bare_result *out, char *err, int err_len);
#endif
