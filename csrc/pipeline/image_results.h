/*
 * image_results.h -- per-image results of the image pipeline (after the Jungfrau conversion, before
 * compression): sums over regions of interest, a radial profile and a spot count, from tables made once
 * per acquisition (daq_server.pipeline.image_results); any number of threads at once, each with its own
 * scratch. Knows nothing of files.
 * Keep this file parsable by cffi's cdef (the build script strips '#' lines).
 */
#ifndef STD_DAQ_IMAGE_RESULTS_H
#define STD_DAQ_IMAGE_RESULTS_H
#include <stdint.h>

/* Pixel types of the images: unsigned integers (no data: every bit set) or float32 (no data: NaN). */
#define IR_U8 0
#define IR_U16 1
#define IR_U32 2
#define IR_F32 3

/* Bins of a radial profile at most (bin_of is uint16, with two values that are not bins). */
#define IR_MAX_BINS 65534

typedef struct ir_tables {
    uint64_t height, width;
    int pixel_type;           /* IR_U8 .. IR_F32 */
    const uint16_t *bin_of;   /* per pixel: its radial bin (0 .. n_bins - 1), n_bins: outside the profile's
                                 range, n_bins + 1: masked (left out of every result) */
    int n_bins;               /* 0: no radial profile; at most IR_MAX_BINS */
    const uint64_t *roi_runs; /* n_runs triples (first pixel, pixels, roi), masked pixels already left out */
    uint64_t n_runs;
    int n_rois;
    int spots;                /* 0: no spot count */
    double threshold;         /* a spot pixel is above it (strictly) */
    uint32_t min_pixels;      /* a spot has at least this many 4-connected pixels */
} ir_tables;

typedef struct ir_scratch ir_scratch;

/* Doubles one image's results take: the profile (n_bins means, NaN where no pixel counted), the ROI sums
 * (n_rois), the spot count. */
uint64_t ir_n_values(const ir_tables *tables);

/* Scratch of one thread (NULL: out of memory). */
ir_scratch *ir_scratch_new(const ir_tables *tables);
void ir_scratch_free(ir_scratch *scratch);

/* The results of one image into out (ir_n_values doubles); 0, or -1 if the spot count ran out of
 * memory (the count is then NaN). */
int ir_compute(const ir_tables *tables, const void *image, double *out, ir_scratch *scratch);
#endif
