/*
 * jungfrau_conversion.c -- raw gain-switching pixels to photon counts or keV (see the header).
 *
 * energy = (ADC - pedestal[stage]) / gain[stage]; the tables hold pedestal[stage] and
 * scale[stage] = 1 / gain[stage] (keV) or 1 / (gain[stage] x photon energy) (photons) per pixel.
 * Photon counts are rounded half up, and counts below zero become 0: n = floor(E / E_photon + 0.5)
 * for E > 0, else 0 (the rule of PSI's JFConverter, Jungfraujoch's predecessor).
 *
 * Speed: a memory-bound pass. Photons are sparse: almost every pixel is in gain 0. Every block of 32 pixels
 * is converted as gain 0 in a vectorised loop that reads the raw words and the two gain-0 tables only (AVX2
 * where the CPU has it, picked at run time; else what the compiler makes of it); the rare pixels in gain 1
 * or 2, with the invalid code or the missing value are then converted again one by one. Flagged pixels are
 * overwritten afterwards (a short list).
 */
#include "jungfrau_conversion.h"
#include "cpu_dispatch.h"

#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detector_formats.h"

#define BLOCK 32 /* pixels per block: a vector pass, then a look for pixels out of gain 0 */
#define MISSING 0xFFFF /* the receiver's value of a lost packet's pixels */
#define TOP_COUNT 65534.0f

struct jc_tables {
    uint64_t n;
    int output;
    float *pedestal[GAIN_STAGES]; /* ADU */
    float *scale[GAIN_STAGES];    /* keV or photons per ADU */
    uint64_t *flagged, n_flagged;
};

void jc_destroy(jc_tables *t)
{
    if (!t) return;
    for (int s = 0; s < GAIN_STAGES; s++) {
        free(t->pedestal[s]);
        free(t->scale[s]);
    }
    free(t->flagged);
    free(t);
}

jc_tables *jc_create(uint64_t n_pixels, int output, const float *pedestal, const float *gain, double photon_energy_kev,
                     const uint64_t *flagged, uint64_t n_flagged, char *err, int err_len)
{
    if (output != JC_OUTPUT_PHOTONS && output != JC_OUTPUT_KEV) {
        snprintf(err, err_len, "unknown conversion output %d", output);
        return NULL;
    }
    if (output == JC_OUTPUT_PHOTONS && !(photon_energy_kev > 0 && isfinite(photon_energy_kev))) {
        snprintf(err, err_len, "photon counts need a positive photon energy, not %g keV", photon_energy_kev);
        return NULL;
    }
    jc_tables *t = calloc(1, sizeof(*t));
    if (!t) goto oom;
    t->n = n_pixels;
    t->output = output;
    for (int s = 0; s < GAIN_STAGES; s++) {
        t->pedestal[s] = malloc(n_pixels * sizeof(float));
        t->scale[s] = malloc(n_pixels * sizeof(float));
        if (!t->pedestal[s] || !t->scale[s]) goto oom;
    }
    /* room for the given flags and for pixels whose gain-0 entries cannot be used */
    t->flagged = malloc((n_flagged + n_pixels / 64 + 64) * sizeof(uint64_t));
    if (!t->flagged) goto oom;
    uint64_t room = n_flagged + n_pixels / 64 + 64;
    for (uint64_t k = 0; k < n_flagged; k++) {
        if (flagged[k] >= n_pixels) {
            snprintf(err, err_len, "flagged pixel %llu is outside the image", (unsigned long long)flagged[k]);
            jc_destroy(t);
            return NULL;
        }
        t->flagged[t->n_flagged++] = flagged[k];
    }
    double unit = output == JC_OUTPUT_PHOTONS ? photon_energy_kev : 1.0;
    for (uint64_t p = 0; p < n_pixels; p++) {
        int gap = 1;
        for (int s = 0; s < GAIN_STAGES; s++) gap &= gain[s * n_pixels + p] == 0.0f;
        for (int s = 0; s < GAIN_STAGES; s++) {
            float g = gain[s * n_pixels + p];
            t->pedestal[s][p] = gap ? 0.0f : pedestal[s * n_pixels + p];
            t->scale[s][p] = gap ? 0.0f : g == 0.0f ? NAN : (float)(1.0 / (g * unit));
        }
        if (!isfinite(t->pedestal[0][p]) || !isfinite(t->scale[0][p])) { /* keep the fast path finite */
            t->pedestal[0][p] = t->scale[0][p] = 0.0f;
            if (t->n_flagged == room) {
                room *= 2;
                uint64_t *more = realloc(t->flagged, room * sizeof(uint64_t));
                if (!more) goto oom;
                t->flagged = more;
            }
            t->flagged[t->n_flagged++] = p;
        }
    }
    return t;
oom:
    snprintf(err, err_len, "out of memory for the conversion tables of %llu pixels", (unsigned long long)n_pixels);
    jc_destroy(t);
    return NULL;
}

int jc_output_size(const jc_tables *t) { return t->output == JC_OUTPUT_PHOTONS ? 2 : 4; }

uint64_t jc_pixels(const jc_tables *t) { return t->n; }

/* Rounded half up, negative to 0, saturated at TOP_COUNT; NaN is no data. */
static inline uint16_t photon_count(float x)
{
    if (x != x) return JC_PHOTONS_NO_DATA;
    float y = x + 0.5f;
    y = y > 0.0f ? y : 0.0f;
    y = y < TOP_COUNT ? y : TOP_COUNT;
    return (uint16_t)(int32_t)y;
}

/* A block of gain-0 words to photons, any CPU (the compiler vectorises it for SSE2). */
static void photons_gain0(const uint16_t *restrict raw, const float *restrict pedestal, const float *restrict scale,
                          uint16_t *restrict out, int m)
{
    for (int k = 0; k < m; k++) out[k] = photon_count(((float)raw[k] - pedestal[k]) * scale[k]);
}

/* The same with AVX2, 16 pixels a step: same arithmetic (no FMA), so the same counts. */
__attribute__((target("avx2"))) static void photons_gain0_avx2(const uint16_t *restrict raw,
                                                               const float *restrict pedestal,
                                                               const float *restrict scale, uint16_t *restrict out,
                                                               int m)
{
    const __m256 half = _mm256_set1_ps(0.5f), zero = _mm256_setzero_ps(), top = _mm256_set1_ps(TOP_COUNT);
    int k = 0;
    for (; k + 16 <= m; k += 16) {
        __m256i words = _mm256_loadu_si256((const __m256i *)(raw + k));
        __m256 x[2] = {_mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(words))),
                       _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(words, 1)))};
        __m256i n[2];
        for (int h = 0; h < 2; h++) {
            __m256 y = _mm256_mul_ps(_mm256_sub_ps(x[h], _mm256_loadu_ps(pedestal + k + 8 * h)),
                                     _mm256_loadu_ps(scale + k + 8 * h));
            y = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(y, half), zero), top);
            n[h] = _mm256_cvttps_epi32(y);
        }
        __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(n[0], n[1]), 0xD8); /* undo lane interleave */
        _mm256_storeu_si256((__m256i *)(out + k), packed);
    }
    photons_gain0(raw + k, pedestal + k, scale + k, out + k, m - k);
}

AVX2_OR_GENERIC static void kev_gain0(const uint16_t *restrict raw,
                                                                        const float *restrict pedestal,
                                                                        const float *restrict scale,
                                                                        float *restrict out, int m)
{
    for (int k = 0; k < m; k++) out[k] = ((float)raw[k] - pedestal[k]) * scale[k];
}

static int have_avx2(void)
{
    static int known = -1;
    if (known < 0) known = __builtin_cpu_supports("avx2") ? 1 : 0;
    return known;
}

/* A pixel out of gain 0 (or without data), after the fast path wrote its block: first the value (NaN no
 * data, +inf saturated), then the output. */
static void other_stage(const jc_tables *t, uint16_t word, void *out, uint64_t p, jc_counts *c)
{
    static const int stage_of_code[4] = {0, 1, 0, 2}; /* code 10 is invalid: given no data below */
    int code = word >> GAIN_CODE_SHIFT, stage = stage_of_code[code];
    uint32_t adc = word & GAIN_ADC_MASK;
    float x = ((float)adc - t->pedestal[stage][p]) * t->scale[stage][p];
    c->stage_pixels[0]--; /* the fast path counted it in gain 0 */
    if (code == GAIN_CODE_INVALID || word == MISSING)
        x = NAN;
    else {
        c->stage_pixels[stage]++;
        if (stage == 2 && adc == 0) x = INFINITY; /* gain 2 bottomed out: more charge than it holds */
    }
    if (t->output == JC_OUTPUT_KEV) {
        ((float *)out)[p] = x;
        c->no_data += x != x;
        c->saturated += x == INFINITY;
        return;
    }
    uint16_t n = x == INFINITY ? JC_PHOTONS_SATURATED : photon_count(x);
    ((uint16_t *)out)[p] = n;
    c->no_data += n == JC_PHOTONS_NO_DATA;
    c->saturated += n == JC_PHOTONS_SATURATED;
}

void jc_convert(const jc_tables *t, const uint16_t *raw, void *out, jc_counts *counts)
{
    jc_counts c;
    memset(&c, 0, sizeof(c));
    int avx2 = have_avx2();
    for (uint64_t first = 0; first < t->n; first += BLOCK) {
        int m = t->n - first < BLOCK ? (int)(t->n - first) : BLOCK;
        c.stage_pixels[0] += m;
        if (t->output == JC_OUTPUT_KEV)
            kev_gain0(raw + first, t->pedestal[0] + first, t->scale[0] + first, (float *)out + first, m);
        else if (avx2)
            photons_gain0_avx2(raw + first, t->pedestal[0] + first, t->scale[0] + first, (uint16_t *)out + first, m);
        else
            photons_gain0(raw + first, t->pedestal[0] + first, t->scale[0] + first, (uint16_t *)out + first, m);
        uint16_t any = 0;
        for (int k = 0; k < m; k++) any |= raw[first + k];
        if (any >> GAIN_CODE_SHIFT) /* rare: pixels out of gain 0 are done again, one by one */
            for (int k = 0; k < m; k++)
                if (raw[first + k] >> GAIN_CODE_SHIFT) other_stage(t, raw[first + k], out, first + k, &c);
    }
    for (uint64_t k = 0; k < t->n_flagged; k++) {
        uint64_t p = t->flagged[k];
        if (t->output == JC_OUTPUT_KEV) {
            float *o = (float *)out + p;
            c.saturated -= *o == INFINITY;
            c.no_data += *o == *o;
            *o = NAN;
        } else {
            uint16_t *o = (uint16_t *)out + p;
            c.saturated -= *o == JC_PHOTONS_SATURATED;
            c.no_data += *o != JC_PHOTONS_NO_DATA;
            *o = JC_PHOTONS_NO_DATA;
        }
    }
    if (counts) *counts = c;
}
