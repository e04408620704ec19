/*
 * jungfrau_conversion.c -- raw gain-switching pixels to photon counts or keV (see the header).
 *
 * energy = (ADC - pedestal[stage]) / gain[stage]; the tables hold pedestal[stage] and
 * scale[stage] = 1 / gain[stage] (keV) or 1 / (gain[stage] x photon energy) (photons) per pixel.
 * Photon counts are rounded half up, and counts below zero become 0: n = floor(E / E_photon + 0.5)
 * for E > 0, else 0 (the rule of PSI's JFConverter, Jungfraujoch's predecessor).
 *
 * Speed: a memory-bound pass. Most blocks of an image hold only gain-0 pixels (photons are sparse);
 * such a block reads the raw words and the two gain-0 tables only, in a loop the compiler
 * vectorises (an AVX2 clone is picked at run time where the CPU has it). Blocks with a pixel in
 * gain 1 or 2, the invalid code or the missing value take the per-pixel path. Flagged pixels are
 * overwritten afterwards (a short list).
 */
#include "jungfrau_conversion.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detector_formats.h"

#define BLOCK 64 /* pixels per block: the fast path is taken per block */
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

/* Rounded half up, negative to 0, saturated at TOP_COUNT; NaN is no data. */
static inline uint16_t photon_count(float x)
{
    if (x != x) return JC_PHOTONS_NO_DATA;
    float y = x + 0.5f;
    y = y < 0.0f ? 0.0f : y;
    y = y > TOP_COUNT ? TOP_COUNT : y;
    return (uint16_t)(int32_t)y;
}

/* A block of gain-0 words: the vectorised loop. */
__attribute__((target_clones("avx2", "default"))) static void photons_gain0(const uint16_t *restrict raw,
                                                                            const float *restrict pedestal,
                                                                            const float *restrict scale,
                                                                            uint16_t *restrict out, int m)
{
    for (int k = 0; k < m; k++) {
        float y = ((float)raw[k] - pedestal[k]) * scale[k] + 0.5f;
        y = y < 0.0f ? 0.0f : y;
        y = y > TOP_COUNT ? TOP_COUNT : y;
        out[k] = (uint16_t)(int32_t)y;
    }
}

__attribute__((target_clones("avx2", "default"))) static void kev_gain0(const uint16_t *restrict raw,
                                                                        const float *restrict pedestal,
                                                                        const float *restrict scale,
                                                                        float *restrict out, int m)
{
    for (int k = 0; k < m; k++) out[k] = ((float)raw[k] - pedestal[k]) * scale[k];
}

/* One pixel of any word: the energy (or photons) as a float; NaN no data, +inf saturated. */
static inline float pixel_value(const jc_tables *t, uint64_t p, uint16_t word, jc_counts *c)
{
    int stage = word == MISSING ? -1 : gain_stage_of_word(word);
    if (stage < 0) return NAN;
    uint32_t adc = word & GAIN_ADC_MASK;
    c->stage_pixels[stage]++;
    if (stage == 2 && adc == 0) return INFINITY; /* gain 2 bottomed out: more charge than it can hold */
    return ((float)adc - t->pedestal[stage][p]) * t->scale[stage][p];
}

static void slow_block(const jc_tables *t, const uint16_t *raw, void *out, uint64_t first, int m, jc_counts *c)
{
    for (int k = 0; k < m; k++) {
        uint64_t p = first + k;
        float x = pixel_value(t, p, raw[p], c);
        if (t->output == JC_OUTPUT_KEV) {
            ((float *)out)[p] = x;
            c->no_data += x != x;
            c->saturated += x == INFINITY;
        } else {
            uint16_t n = x == INFINITY ? JC_PHOTONS_SATURATED : photon_count(x);
            ((uint16_t *)out)[p] = n;
            c->no_data += n == JC_PHOTONS_NO_DATA;
            c->saturated += n == JC_PHOTONS_SATURATED;
        }
    }
}

void jc_convert(const jc_tables *t, const uint16_t *raw, void *out, jc_counts *counts)
{
    jc_counts c;
    memset(&c, 0, sizeof(c));
    for (uint64_t first = 0; first < t->n; first += BLOCK) {
        int m = t->n - first < BLOCK ? (int)(t->n - first) : BLOCK;
        uint16_t any = 0;
        for (int k = 0; k < m; k++) any |= raw[first + k];
        if (any >> GAIN_CODE_SHIFT) {
            slow_block(t, raw, out, first, m, &c);
            continue;
        }
        c.stage_pixels[0] += m;
        if (t->output == JC_OUTPUT_KEV)
            kev_gain0(raw + first, t->pedestal[0] + first, t->scale[0] + first, (float *)out + first, m);
        else
            photons_gain0(raw + first, t->pedestal[0] + first, t->scale[0] + first, (uint16_t *)out + first, m);
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
