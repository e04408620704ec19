/*
 * detector_codec.h -- the pixel codec of csrc/detectors/detector_formats.h (which includes it after
 * det_format is defined; include that one): wire pixels <-> image pixels, by bit depth only. No
 * detector type is known here.
 */
#ifndef STD_DAQ_DETECTOR_CODEC_H
#define STD_DAQ_DETECTOR_CODEC_H

/* ---- pixel codec: wire format <-> values / image pixels ------------------------------
 * 4 bit: two pixels a byte, low nibble first; 12 bit: two pixels in three bytes (low 8 bits
 * of the first, then its high 4 bits in the low nibble and the second's low 4 bits in the
 * high nibble, then the second's high 8 bits); 8/16/32 bit: little-endian integers. */

/* Value of pixel i of a run of wire pixels. */
static inline uint32_t det_wire_pixel(const det_format *fmt, const uint8_t *wire, int i)
{
    switch (fmt->bit_depth) {
    case 4:
        return (i & 1) ? wire[i / 2] >> 4 : wire[i / 2] & 0x0f;
    case 12: {
        const uint8_t *b = wire + 3 * (i / 2);
        return (i & 1) ? (uint32_t)((b[1] >> 4) | (b[2] << 4)) : (uint32_t)(b[0] | ((b[1] & 0x0f) << 8));
    }
    case 8:
        return wire[i];
    case 16: {
        uint16_t v;
        memcpy(&v, wire + 2 * i, 2);
        return v;
    }
    default: {
        uint32_t v;
        memcpy(&v, wire + 4 * i, 4);
        return v;
    }
    }
}

/* Store a value as one image pixel (image_bytes_per_pixel wide). */
static inline void det_store_pixel(const det_format *fmt, uint8_t *dst, uint32_t value)
{
    if (fmt->image_bytes_per_pixel == 1) *dst = (uint8_t)value;
    else if (fmt->image_bytes_per_pixel == 2) { uint16_t v = (uint16_t)value; memcpy(dst, &v, 2); }
    else memcpy(dst, &value, 4);
}

/* Is every packet's payload exactly its rows of image pixels (no packing, no padding)? Then the
 * receiver lets the kernel put a payload where its pixels belong, with no copy of its own. */
static inline int det_payload_is_pixels(const det_format *fmt)
{
    int bytes = fmt->image_bytes_per_pixel;
    return fmt->bit_depth == 8 * bytes &&
           fmt->payload_size == fmt->rows_per_packet * fmt->module_width * bytes &&
           fmt->last_packet_size - fmt->header_size == fmt->last_packet_rows * fmt->module_width * bytes;
}

/* n wire pixels -> n image pixels, in order (the image dtype is the wire's, widened). */
static inline void det_decode_run(const det_format *fmt, const uint8_t *wire, uint8_t *image, int n)
{
    if (fmt->bit_depth == 8 || fmt->bit_depth == 16 || fmt->bit_depth == 32) {
        memcpy(image, wire, (size_t)n * fmt->image_bytes_per_pixel);
        return;
    }
    for (int i = 0; i < n; i++) det_store_pixel(fmt, image + (size_t)i * fmt->image_bytes_per_pixel,
                                                det_wire_pixel(fmt, wire, i));
}

/* n values (masked to the wire's bit depth) -> wire format. */
static inline void det_encode_run(const det_format *fmt, const uint32_t *values, uint8_t *wire, int n)
{
    switch (fmt->bit_depth) {
    case 4:
        for (int k = 0; k < n / 2; k++) wire[k] = (uint8_t)((values[2 * k] & 0xf) | ((values[2 * k + 1] & 0xf) << 4));
        break;
    case 12:
        for (int k = 0; k < n / 2; k++) {
            uint32_t a = values[2 * k] & 0xfff, b = values[2 * k + 1] & 0xfff;
            wire[3 * k] = (uint8_t)a;
            wire[3 * k + 1] = (uint8_t)((a >> 8) | ((b & 0x0f) << 4));
            wire[3 * k + 2] = (uint8_t)(b >> 4);
        }
        break;
    case 8:
        for (int k = 0; k < n; k++) wire[k] = (uint8_t)values[k];
        break;
    case 16:
        for (int k = 0; k < n; k++) { uint16_t v = (uint16_t)values[k]; memcpy(wire + 2 * k, &v, 2); }
        break;
    default:
        memcpy(wire, values, (size_t)n * 4);
    }
}

#endif
