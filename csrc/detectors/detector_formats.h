/*
 * detector_formats.h -- the one C description of each detector type: its name, packet layout
 * (header, payload, packets per frame), header parsing and writing, the streams it sends and where
 * they go in the image, and the pixel codec (wire <-> image). Every rule that depends on the detector
 * type lives here, in one entry of det_kinds[] per type; the receive stages and the simulator's sender
 * only call the generic functions at the end of this file. Adding a detector type is one entry here
 * (plus its simulated content, csrc/sim/sim_content.c, if it needs its own).
 *
 * Shared by the receiver (csrc/receiver/), the simulator sender (csrc/sim/) and, through the
 * `detectors` Python package, the server, simulator, bsread and benchmark code; nothing else is
 * shared between receiver and simulator.
 * Facts come from ../shared/spec/packets.md (slsDetectorPackage header v2).
 * All integers on the wire are little-endian.
 */
#ifndef STD_DAQ_DETECTOR_FORMATS_H
#define STD_DAQ_DETECTOR_FORMATS_H

#include <stdint.h>
#include <string.h>

#define DET_KIND_JUNGFRAU 0
#define DET_KIND_EIGER 1
#define DET_KIND_GIGAFROST 2
#define N_DET_KINDS 3

#define FORMAT_OK 0
#define FORMAT_BAD_BIT_DEPTH (-1)
#define FORMAT_BAD_IMAGE_SIZE (-2)
#define FORMAT_UNKNOWN_KIND (-3)

#define SLS_HEADER_SIZE 48
#define SLS_HEADER_VERSION 2
#define MAX_MODULES 32
#define MAX_PACKETS_PER_FRAME 1024
#define CHIP_PIXELS 256
#define MAX_MODULE_ROWS 512

#define GF_HEADER_SIZE 32
#define GF_PROTOCOL_ID 0xCB
#define GF_MAX_PAYLOAD 7400
#define GF_N_STREAMS 8

/* Gain-switching pixels (Jungfrau: three dynamic gain stages). A raw pixel word is the gain code
 * in its two most significant bits over a 14-bit ADC value; code 00 is gain 0 (the most sensitive),
 * 01 gain 1, 11 gain 2, and 10 never comes from a working pixel (invalid). Facts of PSI's
 * jungfrau_utils and slsDetectorPackage documentation; see docs/jungfrau.rst. */
#define GAIN_STAGES 3
#define GAIN_CODE_SHIFT 14
#define GAIN_ADC_MASK 0x3FFF
#define GAIN_CODE_INVALID 2

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

/* GigaFrost: 32-byte header; 8 streams = 4 quadrants x 2 links, 12-bit packed pixels. */
typedef struct gf_header {
    uint8_t protocol_id;          /* GF_PROTOCOL_ID */
    uint8_t row_length_blocks;    /* quadrant row length in 12-pixel blocks */
    uint8_t quadrant_rows;
    uint8_t status_flags;         /* bits 6-7 quadrant (SW 0, SE 1, NW 2, NE 3), bit 5 link */
    uint32_t scan_id;
    uint32_t frame_index;
    uint16_t image_status_flags;  /* bit 15: do not store */
    uint16_t packet_starting_row; /* first stream row carried by the packet */
    uint64_t image_timing;
    uint32_t sync_time;
    uint32_t scan_time;
} gf_header;
#pragma pack(pop)

/* What differs between detector types; the stages stay detector-agnostic. */
typedef struct det_format {
    int kind;
    int bit_depth;            /* bits per pixel on the wire (GigaFrost: 12) */
    int header_size;          /* bytes before the pixels */
    int packet_size;          /* header + payload, bytes */
    int payload_size;         /* pixel bytes per packet (may include padding) */
    int packets_per_frame;    /* per module */
    int module_width;         /* pixels */
    int module_height;        /* pixels */
    int rows_per_packet;      /* module rows carried by one packet */
    int last_packet_rows;     /* rows in the last packet of a frame (GigaFrost: may be fewer) */
    int last_packet_size;     /* its size in bytes */
    int image_bytes_per_pixel;/* in the assembled image: 4 bit -> uint8, 12 bit -> uint16 */
    int sls_detector_type;    /* value of the header's detector type byte */
    int gain_stages;          /* gain-switching pixels: GAIN_STAGES (Jungfrau), else 0 */
} det_format;

/* What the receiver needs from one packet's header. */
typedef struct packet_info {
    uint64_t frame;
    int packet;               /* 0 .. packets_per_frame - 1 */
    uint64_t timestamp;
} packet_info;

/* ---- Jungfrau and Eiger: slsDetectorPackage packets, placed by module_positions ------ */

static inline int det_sls_geometry(det_format *out, int bit_depth, int payload_size, int width, int height,
                                   int sls_type)
{
    out->header_size = SLS_HEADER_SIZE;
    out->payload_size = payload_size;
    out->module_width = width;
    out->module_height = height;
    out->sls_detector_type = sls_type;
    out->packet_size = SLS_HEADER_SIZE + payload_size;
    long module_bytes = (long)width * height * bit_depth / 8;
    out->packets_per_frame = (int)(module_bytes / payload_size);
    out->rows_per_packet = height / out->packets_per_frame;
    out->last_packet_rows = out->rows_per_packet;
    out->last_packet_size = out->packet_size;
    out->image_bytes_per_pixel = bit_depth <= 8 ? 1 : bit_depth / 8;
    return FORMAT_OK;
}

static inline int det_jungfrau_geometry(det_format *out, int bit_depth, int image_width, int image_height)
{
    (void)image_width, (void)image_height;
    if (bit_depth != 16) return FORMAT_BAD_BIT_DEPTH;
    out->gain_stages = GAIN_STAGES;
    return det_sls_geometry(out, bit_depth, 8192, 1024, 512, 3);
}

static inline int det_eiger_geometry(det_format *out, int bit_depth, int image_width, int image_height)
{
    (void)image_width, (void)image_height;
    if (bit_depth != 4 && bit_depth != 8 && bit_depth != 16 && bit_depth != 32) return FORMAT_BAD_BIT_DEPTH;
    return det_sls_geometry(out, bit_depth, 4096, 512, 256, 1);
}

static inline int det_sls_parse(const det_format *fmt, const uint8_t *packet, unsigned int length, packet_info *out)
{
    const sls_header *h = (const sls_header *)packet;
    if (length != (unsigned int)fmt->packet_size || h->version != SLS_HEADER_VERSION ||
        h->packet_number >= (uint32_t)fmt->packets_per_frame)
        return -1;
    out->frame = h->frame_number;
    out->packet = (int)h->packet_number;
    out->timestamp = h->timestamp;
    return 0;
}

static inline void det_sls_write_header(const det_format *fmt, uint8_t *packet, uint64_t frame, int module, int p,
                                        uint64_t timestamp)
{
    sls_header *h = (sls_header *)packet;
    memset(h, 0, sizeof(*h));
    h->frame_number = frame;
    h->packet_number = (uint32_t)p;
    h->det_spec1 = frame; /* bunch id */
    h->timestamp = timestamp;
    h->module_id = (uint16_t)module;
    h->row = (uint16_t)module;
    h->detector_type = (uint8_t)fmt->sls_detector_type;
    h->version = SLS_HEADER_VERSION;
}

/* ---- GigaFrost: its own header, 8 streams placed by quadrant and link, 12-bit pixels ---- */

/* Packet geometry for one stream of width x height pixels (facts of the public PSI
 * std_detector_buffer: packets hold whole rows, sized on 64-byte cache lines). */
static inline void gf_packet_geometry(int width, int height, det_format *out)
{
    int blocks = width / 12;
    int cache_line_blocks = (int)((double)GF_MAX_PAYLOAD / (36.0 * blocks) * blocks / 2.0);
    int rows = (int)((double)cache_line_blocks * 48.0 / width);
    if (rows > height) rows = height;
    if (rows < 1) rows = 1;
    int last_rows = height % rows ? height % rows : rows;
    out->rows_per_packet = rows;
    out->last_packet_rows = last_rows;
    out->packets_per_frame = (height + rows - 1) / rows;
    out->payload_size = width * rows * 3 / 2 + ((rows % 2 && width % 48) ? 36 : 0);
    int last_payload = width * last_rows * 3 / 2 + ((last_rows % 2 && width % 48) ? 36 : 0);
    out->packet_size = GF_HEADER_SIZE + out->payload_size;
    out->last_packet_size = GF_HEADER_SIZE + last_payload;
}

/* Each stream is a quarter of a quadrant: it depends on the assembled image size. */
static inline int gf_geometry(det_format *out, int bit_depth, int image_width, int image_height)
{
    if (bit_depth != 16) return FORMAT_BAD_BIT_DEPTH; /* image depth; 12 bit on the wire */
    if (image_width < 24 || image_width % 24 || image_width / 24 > 255 || image_height < 4 || image_height % 4 ||
        image_height / 4 > MAX_MODULE_ROWS)
        return FORMAT_BAD_IMAGE_SIZE;
    out->bit_depth = 12;
    out->header_size = GF_HEADER_SIZE;
    out->module_width = image_width / 2;
    out->module_height = image_height / 4;
    out->image_bytes_per_pixel = 2;
    gf_packet_geometry(out->module_width, out->module_height, out);
    return out->packets_per_frame <= MAX_PACKETS_PER_FRAME ? FORMAT_OK : FORMAT_BAD_IMAGE_SIZE;
}

static inline int gf_parse(const det_format *fmt, const uint8_t *packet, unsigned int length, packet_info *out)
{
    const gf_header *h = (const gf_header *)packet;
    if (length < GF_HEADER_SIZE || h->protocol_id != GF_PROTOCOL_ID) return -1;
    if (h->packet_starting_row % fmt->rows_per_packet) return -1;
    int p = h->packet_starting_row / fmt->rows_per_packet;
    if (p >= fmt->packets_per_frame) return -1;
    int expected = p == fmt->packets_per_frame - 1 ? fmt->last_packet_size : fmt->packet_size;
    if (length != (unsigned int)expected) return -1;
    out->frame = h->frame_index;
    out->packet = p;
    out->timestamp = h->image_timing & 0xFFFFFFFFFFull;
    return 0;
}

static inline void gf_write_header(const det_format *fmt, uint8_t *packet, uint64_t frame, int module, int p,
                                   uint64_t timestamp)
{
    gf_header *h = (gf_header *)packet;
    memset(h, 0, sizeof(*h));
    h->protocol_id = GF_PROTOCOL_ID;
    h->row_length_blocks = (uint8_t)(fmt->module_width / 12);
    h->quadrant_rows = (uint8_t)((fmt->module_height * 2) & 0xfe);
    h->status_flags = (uint8_t)(((module / 2) << 6) | ((module % 2) << 5));
    h->frame_index = (uint32_t)frame;
    h->packet_starting_row = (uint16_t)(p * fmt->rows_per_packet);
    h->image_timing = timestamp & 0xFFFFFFFFFFull;
}

/* Stream m is quadrant m / 2 (SW, SE, NW, NE) and link m % 2; each link carries every other row of
 * its quadrant, rows counted away from the image's horizontal centre line. */
static inline void gf_place_stream(int module, int image_width, int image_height, int *first_row, int *row_step,
                                   int *first_col)
{
    int quadrant = module / 2, link = module % 2;
    int south = quadrant == 0 || quadrant == 1, west = quadrant == 0 || quadrant == 2;
    *first_row = south ? image_height / 2 + link : image_height / 2 - 1 - link;
    *row_step = south ? 2 : -2;
    *first_col = west ? 0 : image_width / 2;
}

/* ---- the table: one entry per detector type (index: DET_KIND_*) ------------------------ */

typedef struct det_kind_rules {
    const char *name;         /* the config's detector_type */
    /* packet geometry for a bit depth and assembled image size: FORMAT_OK or why not */
    int (*geometry)(det_format *out, int bit_depth, int image_width, int image_height);
    /* check a datagram and read its header: 0 if it is a packet of this format, else -1 */
    int (*parse)(const det_format *fmt, const uint8_t *packet, unsigned int length, packet_info *out);
    /* write the header of packet p of a module frame */
    void (*write_header)(const det_format *fmt, uint8_t *packet, uint64_t frame, int module, int p,
                         uint64_t timestamp);
    int n_streams;            /* streams (modules) the detector always sends; 0: as many as configured */
    const char *why_n_streams;
    /* where stream m goes, when the detector fixes it (NULL: module_positions of the config): image row
     * of stream row r is first_row + row_step * r, its first image column first_col */
    void (*place_stream)(int module, int image_width, int image_height, int *first_row, int *row_step,
                         int *first_col);
} det_kind_rules;

static const det_kind_rules det_kinds[N_DET_KINDS] = {
    [DET_KIND_JUNGFRAU] = {"jungfrau", det_jungfrau_geometry, det_sls_parse, det_sls_write_header, 0, "", NULL},
    [DET_KIND_EIGER] = {"eiger", det_eiger_geometry, det_sls_parse, det_sls_write_header, 0, "", NULL},
    [DET_KIND_GIGAFROST] = {"gigafrost", gf_geometry, gf_parse, gf_write_header, GF_N_STREAMS,
                            "a GigaFrost sends 8 streams (4 quadrants x 2 links)", gf_place_stream},
};

/* ---- what the receiver and the simulator ask, whatever the detector type --------------- */

/* The config's detector_type of each kind (index: DET_KIND_*). */
static inline const char *det_kind_name(int kind)
{
    return kind >= 0 && kind < N_DET_KINDS ? det_kinds[kind].name : "";
}

/* DET_KIND_* of a detector_type name, or -1. */
static inline int det_kind_by_name(const char *name)
{
    for (int kind = 0; kind < N_DET_KINDS; kind++)
        if (strcmp(det_kind_name(kind), name) == 0) return kind;
    return -1;
}

/* Fill `out` for (kind, bit_depth, assembled image size); FORMAT_OK or why not. */
static inline int det_format_lookup(int kind, int bit_depth, int image_width, int image_height, det_format *out)
{
    memset(out, 0, sizeof(*out));
    out->kind = kind;
    out->bit_depth = bit_depth;
    if (kind < 0 || kind >= N_DET_KINDS) return FORMAT_UNKNOWN_KIND;
    return det_kinds[kind].geometry(out, bit_depth, image_width, image_height);
}

/* Module rows carried by packet p. */
static inline int packet_rows(const det_format *fmt, int packet)
{
    return packet == fmt->packets_per_frame - 1 ? fmt->last_packet_rows : fmt->rows_per_packet;
}

/* Payload bytes of packet p (pixels and any padding after them). */
static inline int packet_payload_size(const det_format *fmt, int packet)
{
    return (packet == fmt->packets_per_frame - 1 ? fmt->last_packet_size : fmt->packet_size) - fmt->header_size;
}

/* Check a datagram and read its header; 0 if it belongs to this stream format, else -1. */
static inline int parse_packet(const det_format *fmt, const uint8_t *packet, unsigned int length,
                               packet_info *out)
{
    return det_kinds[fmt->kind].parse(fmt, packet, length, out);
}

/* Write the header of packet p of a module frame in the detector's own format. */
static inline void det_write_header(const det_format *fmt, uint8_t *packet, uint64_t frame, int module, int p,
                                    uint64_t timestamp)
{
    det_kinds[fmt->kind].write_header(fmt, packet, frame, module, p, timestamp);
}

/* 0 if n_modules streams are possible for this kind, else -1 and why in `why`. */
static inline int det_check_streams(int kind, int n_modules, const char **why, int *required)
{
    *required = det_kinds[kind].n_streams;
    *why = det_kinds[kind].why_n_streams;
    return *required && n_modules != *required ? -1 : 0;
}

/* Does the detector place its streams itself (1: first_row, row_step and first_col are set), or do
 * the config's module_positions place them (0)? */
static inline int det_stream_placement(int kind, int module, int image_width, int image_height, int *first_row,
                                       int *row_step, int *first_col)
{
    if (!det_kinds[kind].place_stream) return 0;
    det_kinds[kind].place_stream(module, image_width, image_height, first_row, row_step, first_col);
    return 1;
}

#include "detector_codec.h" /* the pixel codec: wire <-> image pixels, by bit depth */

/* ---- gain-switching pixels ----------------------------------------------------------- */

/* The gain stage (0, 1, 2) of a raw pixel word, or -1 for the invalid code 10. */
static inline int gain_stage_of_word(uint32_t word)
{
    static const int stage_of_code[4] = {0, 1, -1, 2};
    return stage_of_code[(word >> GAIN_CODE_SHIFT) & 3];
}

/* The raw word of an ADC value (clipped to 14 bits) in gain stage 0, 1 or 2. */
static inline uint32_t gain_word(int stage, uint32_t adc)
{
    static const uint32_t code_of_stage[GAIN_STAGES] = {0, 1, 3};
    return (code_of_stage[stage] << GAIN_CODE_SHIFT) | (adc & GAIN_ADC_MASK);
}

#endif
