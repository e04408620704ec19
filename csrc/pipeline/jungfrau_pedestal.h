/*
 * jungfrau_pedestal.h -- the pedestal of gain-switching pixels from dark frames: every pixel's mean
 * and RMS in each gain stage, the stage of a frame being the one most of its pixels report (the
 * detector's pedestal mode forces whole frames into gain 1 or 2). Knows nothing of files.
 * Keep this file parsable by cffi's cdef (the build script strips '#' lines).
 */
#ifndef STD_DAQ_JUNGFRAU_PEDESTAL_H
#define STD_DAQ_JUNGFRAU_PEDESTAL_H
#include <stdint.h>

/* Frames one accumulator takes at most (its sums are exact 32-bit integers up to then). */
#define JP_MAX_FRAMES 200000

typedef struct jp_accumulator jp_accumulator;

jp_accumulator *jp_create(uint64_t n_pixels, char *err, int err_len);

/* Add one complete dark frame of raw words. Returns its gain stage (0, 1, 2), or -1 if it was not
 * used: no pixel reports a valid stage, or JP_MAX_FRAMES were added already. A pixel that reports
 * another stage than the frame's is not added (it counts as a wrong frame for that pixel). */
int jp_add(jp_accumulator *acc, const uint16_t *frame);

/* Frames added per stage (3 values). */
void jp_frames(const jp_accumulator *acc, uint64_t *frames);

/* Per stage and pixel ([stage][pixel], 3 x n_pixels each): the mean and RMS of the ADC values in
 * ADU (NaN where the pixel never reported that stage), and the frames that went into them. */
void jp_result(const jp_accumulator *acc, float *mean, float *rms, uint32_t *count);

void jp_destroy(jp_accumulator *acc);
#endif
