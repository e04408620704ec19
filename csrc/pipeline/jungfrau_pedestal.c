/*
 * jungfrau_pedestal.c -- per-pixel mean and RMS of dark frames, per gain stage (see the header).
 *
 * The sums are integers (ADC values are 14 bits): exact, and cheap to add in a loop the compiler
 * vectorises; the mean and variance are computed once at the end in double precision. 16 bytes per
 * pixel and stage (count, sum, sum of squares).
 */
#include "jungfrau_pedestal.h"
#include "cpu_dispatch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "detector_formats.h"

#define MISSING 0xFFFF

struct jp_accumulator {
    uint64_t n;
    uint64_t frames[GAIN_STAGES];
    uint32_t *count[GAIN_STAGES];
    uint32_t *sum[GAIN_STAGES];
    uint64_t *sum2[GAIN_STAGES];
};

void jp_destroy(jp_accumulator *acc)
{
    if (!acc) return;
    for (int s = 0; s < GAIN_STAGES; s++) {
        free(acc->count[s]);
        free(acc->sum[s]);
        free(acc->sum2[s]);
    }
    free(acc);
}

jp_accumulator *jp_create(uint64_t n_pixels, char *err, int err_len)
{
    jp_accumulator *acc = calloc(1, sizeof(*acc));
    if (!acc) goto oom;
    acc->n = n_pixels;
    for (int s = 0; s < GAIN_STAGES; s++) {
        acc->count[s] = calloc(n_pixels, sizeof(uint32_t));
        acc->sum[s] = calloc(n_pixels, sizeof(uint32_t));
        acc->sum2[s] = calloc(n_pixels, sizeof(uint64_t));
        if (!acc->count[s] || !acc->sum[s] || !acc->sum2[s]) goto oom;
    }
    return acc;
oom:
    snprintf(err, err_len, "out of memory for the pedestal sums of %llu pixels", (unsigned long long)n_pixels);
    jp_destroy(acc);
    return NULL;
}

/* The stage most pixels report (-1 if none reports a valid one). */
static int frame_stage(const uint16_t *frame, uint64_t n)
{
    uint64_t codes[4] = {0, 0, 0, 0};
    for (uint64_t p = 0; p < n; p++) codes[(frame[p] >> GAIN_CODE_SHIFT) & 3] += frame[p] != MISSING;
    static const int stage_of_code[4] = {0, 1, -1, 2};
    int best = -1;
    uint64_t most = 0;
    for (int code = 0; code < 4; code++)
        if (stage_of_code[code] >= 0 && codes[code] > most) {
            most = codes[code];
            best = stage_of_code[code];
        }
    return best;
}

AVX2_OR_GENERIC static void add_frame(const uint16_t *restrict frame, uint64_t n,
                                                                        uint16_t code, uint32_t *restrict count,
                                                                        uint32_t *restrict sum,
                                                                        uint64_t *restrict sum2)
{
    for (uint64_t p = 0; p < n; p++) {
        uint32_t word = frame[p];
        uint32_t take = (word >> GAIN_CODE_SHIFT) == code ? 0xFFFFFFFFu : 0; /* the missing value has code 3 but */
        take &= word != MISSING ? 0xFFFFFFFFu : 0;                           /* no ADC value */
        uint32_t adc = word & GAIN_ADC_MASK & take;
        count[p] += take & 1;
        sum[p] += adc;
        sum2[p] += (uint64_t)(adc * adc);
    }
}

int jp_add(jp_accumulator *acc, const uint16_t *frame)
{
    uint64_t total = acc->frames[0] + acc->frames[1] + acc->frames[2];
    int stage = frame_stage(frame, acc->n);
    if (stage < 0 || total >= JP_MAX_FRAMES) return -1;
    add_frame(frame, acc->n, (uint16_t)(gain_word(stage, 0) >> GAIN_CODE_SHIFT), acc->count[stage], acc->sum[stage],
              acc->sum2[stage]);
    acc->frames[stage]++;
    return stage;
}

void jp_frames(const jp_accumulator *acc, uint64_t *frames)
{
    for (int s = 0; s < GAIN_STAGES; s++) frames[s] = acc->frames[s];
}

void jp_result(const jp_accumulator *acc, float *mean, float *rms, uint32_t *count)
{
    for (int s = 0; s < GAIN_STAGES; s++)
        for (uint64_t p = 0; p < acc->n; p++) {
            uint32_t k = acc->count[s][p];
            uint64_t at = (uint64_t)s * acc->n + p;
            count[at] = k;
            if (k == 0) {
                mean[at] = rms[at] = NAN;
                continue;
            }
            double m = (double)acc->sum[s][p] / k, variance = (double)acc->sum2[s][p] / k - m * m;
            mean[at] = (float)m;
            rms[at] = (float)sqrt(variance > 0 ? variance : 0);
        }
}
