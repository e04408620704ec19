/*
 * loopback_ceiling.h -- the machine's ceiling for the benchmarks (not part of the product): a bare
 * sendmmsg -> recvmmsg pair on loopback, same datagram size as a detector.
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
#endif
