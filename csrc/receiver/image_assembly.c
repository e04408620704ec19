/*
 * image_assembly.c -- where a module's pixels go in the assembled image.
 *
 * module_positions gives [start_x, start_y, end_x, end_y], both ends inclusive. A span
 * larger than the module holds chip gaps (chips are 256 x 256 pixels): the extra pixels
 * are split evenly between neighbouring chips. start > end mirrors that axis.
 * Gap pixels are never written (they stay 0); pixels of lost packets get the missing
 * value: every bit set (0xFF, 0xFFFF, 0xFFFFFFFF for the image dtype).
 * A detector type that places its streams itself (det_stream_placement in detector_formats.h)
 * ignores module_positions: its streams go where that rule says. Pixels are decoded by the codec there.
 */
#include "receiver_internal.h"

#include <stdio.h>
#include <stdlib.h>

#define MISSING_BYTE 0xFF

/* Gap between chips along one axis, or -1 if the span does not fit the module. */
static int chip_gap(int span, int module_pixels)
{
    int chips = module_pixels / CHIP_PIXELS;
    int extra = span - module_pixels;
    if (extra < 0) return -1;
    if (chips <= 1) return extra == 0 ? 0 : -1;
    if (extra % (chips - 1)) return -1;
    return extra / (chips - 1);
}

int geometry_init(module_geometry *geom, const det_format *fmt, const int32_t position[4],
                  int image_width, int image_height, char *err, int err_len)
{
    int sx = position[0], sy = position[1], ex = position[2], ey = position[3];
    if (sx < 0 || ex < 0 || sy < 0 || ey < 0 || sx >= image_width || ex >= image_width ||
        sy >= image_height || ey >= image_height) {
        snprintf(err, err_len, "position [%d, %d, %d, %d] lies outside the %d x %d image",
                 sx, sy, ex, ey, image_width, image_height);
        return -1;
    }
    int span_x = abs(ex - sx) + 1, span_y = abs(ey - sy) + 1;
    int gap_x = chip_gap(span_x, fmt->module_width);
    int gap_y = chip_gap(span_y, fmt->module_height);
    if (gap_x < 0 || gap_y < 0) {
        snprintf(err, err_len,
                 "position [%d, %d, %d, %d] spans %d x %d pixels; a %d x %d module needs exactly "
                 "that plus equal gaps between its %d x %d chips",
                 sx, sy, ex, ey, span_x, span_y, fmt->module_width, fmt->module_height,
                 fmt->module_width / CHIP_PIXELS, fmt->module_height / CHIP_PIXELS);
        return -1;
    }
    int dir_x = ex >= sx ? 1 : -1, dir_y = ey >= sy ? 1 : -1;
    for (int r = 0; r < fmt->module_height; r++)
        geom->row_y[r] = sy + dir_y * (r + (r / CHIP_PIXELS) * gap_y);
    geom->n_segments = fmt->module_width / CHIP_PIXELS;
    geom->segment_width = CHIP_PIXELS;
    for (int s = 0; s < geom->n_segments; s++)
        geom->segment_x[s] = sx + dir_x * s * (CHIP_PIXELS + gap_x);
    geom->dir_x = dir_x;
    geom->image_width = image_width;
    geom->bytes_per_pixel = fmt->image_bytes_per_pixel;
    return 0;
}

void geometry_init_stream(module_geometry *geom, const det_format *fmt, int first_row, int row_step, int first_col,
                          int image_width)
{
    for (int r = 0; r < fmt->module_height; r++) geom->row_y[r] = first_row + row_step * r;
    geom->n_segments = 1;
    geom->segment_width = fmt->module_width;
    geom->segment_x[0] = first_col;
    geom->dir_x = 1;
    geom->image_width = image_width;
    geom->bytes_per_pixel = fmt->image_bytes_per_pixel;
}

/* One chip-wide run of pixels from the wire format into the image (src NULL: missing). */
static void copy_segment(const module_geometry *geom, const det_format *fmt, uint8_t *dst_row, int x0,
                         const uint8_t *src)
{
    int n = geom->segment_width, bpp = geom->bytes_per_pixel;
    if (!src) {
        size_t first = geom->dir_x > 0 ? (size_t)x0 : (size_t)(x0 - n + 1);
        memset(dst_row + first * bpp, MISSING_BYTE, (size_t)n * bpp);
    } else if (geom->dir_x > 0) {
        det_decode_run(fmt, src, dst_row + (size_t)x0 * bpp, n);
    } else { /* mirrored: pixel o of the run lands at x0 - o */
        for (int o = 0; o < n; o++) det_store_pixel(fmt, dst_row + (size_t)(x0 - o) * bpp, det_wire_pixel(fmt, src, o));
    }
}

void place_packet(const module_geometry *geom, const det_format *fmt, uint8_t *image,
                  int packet_number, const uint8_t *payload)
{
    size_t wire_row_bytes = (size_t)fmt->module_width * fmt->bit_depth / 8;
    size_t wire_segment_bytes = (size_t)geom->segment_width * fmt->bit_depth / 8;
    size_t image_row_bytes = (size_t)geom->image_width * geom->bytes_per_pixel;
    int first_row = packet_number * fmt->rows_per_packet;
    int n_rows = packet_rows(fmt, packet_number);
    for (int i = 0; i < n_rows; i++) {
        uint8_t *dst_row = image + (size_t)geom->row_y[first_row + i] * image_row_bytes;
        const uint8_t *src_row = payload ? payload + i * wire_row_bytes : NULL;
        for (int s = 0; s < geom->n_segments; s++)
            copy_segment(geom, fmt, dst_row, geom->segment_x[s],
                         src_row ? src_row + s * wire_segment_bytes : NULL);
    }
}

int packet_spans(const module_geometry *geom, const det_format *fmt, int packet_number, size_t *offsets,
                 size_t *lengths, int max)
{
    if (!det_payload_is_pixels(fmt) || geom->dir_x < 0) return -1;
    size_t image_row_bytes = (size_t)geom->image_width * geom->bytes_per_pixel;
    size_t segment_bytes = (size_t)geom->segment_width * geom->bytes_per_pixel;
    int first_row = packet_number * fmt->rows_per_packet, n = 0;
    for (int i = 0; i < packet_rows(fmt, packet_number); i++) {
        for (int s = 0; s < geom->n_segments; s++) {
            size_t offset = (size_t)geom->row_y[first_row + i] * image_row_bytes +
                            (size_t)geom->segment_x[s] * geom->bytes_per_pixel;
            if (n && offsets[n - 1] + lengths[n - 1] == offset) { /* goes on where the last one ended */
                lengths[n - 1] += segment_bytes;
                continue;
            }
            if (n == max) return -1;
            offsets[n] = offset;
            lengths[n++] = segment_bytes;
        }
    }
    return n;
}

void fill_module(const module_geometry *geom, const det_format *fmt, uint8_t *image)
{
    for (int p = 0; p < fmt->packets_per_frame; p++) place_packet(geom, fmt, image, p, NULL);
}

int mark_coverage(const module_geometry *geom, const det_format *fmt, uint8_t *coverage)
{
    for (int r = 0; r < fmt->module_height; r++) {
        uint8_t *row = coverage + (size_t)geom->row_y[r] * geom->image_width;
        for (int s = 0; s < geom->n_segments; s++) {
            for (int o = 0; o < geom->segment_width; o++) {
                uint8_t *pixel = row + geom->segment_x[s] + geom->dir_x * o;
                if (*pixel) return -1;
                *pixel = 1;
            }
        }
    }
    return 0;
}
