/*
 * sim_segments.h -- sending a batch of datagrams as UDP segmentation offload messages (Linux UDP_SEGMENT):
 * the kernel cuts one message into datagrams of one size, so a batch costs a few passes through the
 * network stack instead of one per datagram. The receiver sees the same datagrams.
 */
#ifndef STD_DAQ_SIM_SEGMENTS_H
#define STD_DAQ_SIM_SEGMENTS_H
#include <stddef.h>
#include <sys/socket.h>

/* Send msgs[0..n) (each a datagram of one or two iovecs; all segment_size bytes long but the batch's
 * last, which may be shorter) through fd, a connected UDP socket, as segmented messages. 0 when sent;
 * 1 when the kernel refuses segmentation (nothing sent: send them one by one); -1 on another error. */
int sim_send_segmented(int fd, struct mmsghdr *msgs, int n, size_t segment_size);
#endif
