/*
 * sim_datagrams.h -- how the simulator's datagrams leave: a batch per sendmmsg, plain, or as UDP
 * segmentation offload messages (Linux UDP_SEGMENT): the kernel cuts one message into datagrams of one
 * size, so a batch costs a few passes through the network stack instead of one per datagram. The receiver
 * sees the same datagrams either way.
 */
#ifndef STD_DAQ_SIM_DATAGRAMS_H
#define STD_DAQ_SIM_DATAGRAMS_H
#include <stddef.h>
#include <sys/socket.h>

/* Send msgs[0..n) (each a datagram of one or two iovecs) through fd, a connected UDP socket, until every
 * one went out (loopback may refuse for a moment; a datagram nobody listens for is dropped, as UDP does).
 * With *segmented set, the datagrams (all segment_size bytes long but a batch's last, which may be shorter)
 * go as segmented messages; a kernel that refuses segmentation clears *segmented and gets them plain, now
 * and later. 0, or -1 with errno on an error. */
int sim_send_datagrams(int fd, struct mmsghdr *msgs, int n, size_t segment_size, int *segmented);
#endif
