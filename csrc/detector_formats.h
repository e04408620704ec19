/*
 * detector_formats.h -- the one place that describes detector packet streams.
 *
 * Shared by the receiver (csrc/socket_rx.c ... csrc/ring_buffer.c) and the
 * simulator sender (csrc/sim_sender.c); nothing else is shared between them.
 * Facts come from ../shared/spec/packets.md (slsDetectorPackage header v2).
 * All integers on the wire are little-endian.
 */
#ifndef STD_DAQ_DETECTOR_FORMATS_H
#define STD_DAQ_DETECTOR_FORMATS_H

#include <stdint.h>
#include <string.h>

#define DET_KIND_JUNGFRAU 0
#define DET_KIND_EIGER 1

#define SLS_HEADER_SIZE 48
#define SLS_HEADER_VERSION 2
#define MAX_MODULES 32
#define MAX_PACKETS_PER_FRAME 256
#define CHIP_PIXELS 256

/* slsDetectorPackage "sls_detector_header" version 2, 48 bytes. */
#pragma pack(push, 1)
typedef struct sls_header {
    uint64_t frame_number;
    uint32_t exp_length;
    uint32_t packet_number;
    uint64_t det_spec1;
    uint64_t timestamp;
    uint16_t module_id;
    uint16_t row;
    uint16_t column;
    uint16_t det_spec2;
    uint32_t det_spec3;
    uint16_t det_spec4;
    uint8_t detector_type;
    uint8_t version;
} sls_header;
#pragma pack(pop)

/* What differs between detector types; the stages stay detector-agnostic. */
typedef struct det_format {
    int kind;
    int bit_depth;            /* bits per pixel on the wire */
    int packet_size;          /* header + payload, bytes */
    int payload_size;         /* pixel bytes per packet */
    int packets_per_frame;    /* per module */
    int module_width;         /* pixels */
    int module_height;        /* pixels */
    int rows_per_packet;      /* module rows carried by one packet */
    int image_bytes_per_pixel;/* in the assembled image: 4 bit is unpacked to uint8 */
    int sls_detector_type;    /* value of the header's detector type byte */
} det_format;

/* Fill `out` for (kind, bit_depth); returns 0 on success, -1 if unsupported. */
static inline int det_format_lookup(int kind, int bit_depth, det_format *out)
{
    memset(out, 0, sizeof(*out));
    out->kind = kind;
    out->bit_depth = bit_depth;
    if (kind == DET_KIND_JUNGFRAU) {
        if (bit_depth != 16) return -1;
        out->payload_size = 8192;
        out->module_width = 1024;
        out->module_height = 512;
        out->sls_detector_type = 3;
    } else if (kind == DET_KIND_EIGER) {
        if (bit_depth != 4 && bit_depth != 8 && bit_depth != 16 && bit_depth != 32) return -1;
        out->payload_size = 4096;
        out->module_width = 512;
        out->module_height = 256;
        out->sls_detector_type = 1;
    } else {
        return -1;
    }
    out->packet_size = SLS_HEADER_SIZE + out->payload_size;
    long module_bytes = (long)out->module_width * out->module_height * bit_depth / 8;
    out->packets_per_frame = (int)(module_bytes / out->payload_size);
    out->rows_per_packet = out->module_height / out->packets_per_frame;
    out->image_bytes_per_pixel = bit_depth <= 8 ? 1 : bit_depth / 8;
    return 0;
}

#endif
