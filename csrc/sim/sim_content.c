/*
 * sim_content.c -- detector-like pixel content for the simulator, deterministic from a seed.
 *
 * photons:           photon counts (Eiger-like): Poisson background falling off from a beam centre,
 *                    weak powder rings and Bragg spots, at `flux` photons per pixel per frame.
 * jungfrau-raw:      the same photon counts (same seed and flux) as a Jungfrau module sends them:
 *                    count x photon energy through the module's gain switching, gains and pedestals
 *                    (sim_jungfrau.c), plus Gaussian noise; 2 gain bits over a 14-bit ADC value.
 * jungfrau-pedestal: dark frames of the detector's pedestal mode: gain 0, forced gain 1 and forced
 *                    gain 2 in the cycle of sim_jungfrau.h, with the gain bits of that stage, and
 *                    fresh noise in every frame (a pedestal averages it away).
 *
 * Fast enough for the sender at line rate: SIM_CONTENT_VARIANTS module frames are computed once
 * per (spec, bit depth, module size) and kept; frame f of module m is variant v(f, m) of that bank,
 * with its rows rotated by an amount that depends on the module, so every module and frame differs
 * while a pixel costs a table read. The bank is built from pure functions of (seed, variant, pixel),
 * so every pixel can be recomputed (sim_content_module_pixels). jungfrau-pedestal has no bank: its
 * noise must differ in every frame, so each pixel is computed when sent, a pedestal plus a value of a
 * table of normal deviates picked by a per-frame hash (a few ns a pixel: hundreds of module frames
 * a second, plenty for a pedestal run).
 */
#include "sim_content.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "detector_formats.h"
#include "sim_jungfrau.h"
#include "sim_random.h"

#define GAUSS_BITS 18 /* jungfrau-pedestal's noise: a table of 2^18 normal deviates */
#define STREAM_BROKEN_SWITCH 47 /* random stream of the broken-switch pixels (photons 5-20, noise 31-46) */

typedef struct bank {
    sim_content_spec spec;
    int bit_depth, width, height;
    uint64_t n_pixels;
    uint32_t *values; /* SIM_CONTENT_VARIANTS x n_pixels, already saturated/masked to bit_depth */
    struct bank *next;
} bank;

static bank *banks; /* kept for the life of the process: a handful of configs per process */
static pthread_mutex_t banks_lock = PTHREAD_MUTEX_INITIALIZER;

/* The simulated Jungfrau pixels of one (seed, module size): the bank pixels' calibration. */
typedef struct pixel_set {
    uint32_t seed;
    int width, height;
    sim_jf_pixel *pixels;
    struct pixel_set *next;
} pixel_set;

static pixel_set *pixel_sets; /* guarded by banks_lock, kept like the banks */
static float gauss_table[1 << GAUSS_BITS];
static pthread_once_t gauss_once = PTHREAD_ONCE_INIT;

static void gauss_init(void)
{
    for (uint64_t i = 0; i < (1u << GAUSS_BITS); i++) gauss_table[i] = (float)sim_normal(sim_key(0, 70, i));
}

static uint32_t poisson(double lambda, uint64_t key)
{
    if (lambda <= 0) return 0;
    if (lambda > 30) {
        double v = lambda + sqrt(lambda) * sim_normal(key);
        return v < 0 ? 0 : (uint32_t)(v + 0.5);
    }
    double limit = exp(-lambda), p = 1.0;
    uint32_t k = 0;
    for (;;) {
        p *= sim_uniform(key + k);
        if (p <= limit || k > 200) return k;
        k++;
    }
}

/* Expected photons per pixel of one variant: background, rings and spots (spots vary per variant). */
static void photon_map(uint32_t seed, double flux, int width, int height, int variant, double *lambda)
{
    double cx = width * (0.3 + 0.4 * sim_uniform(sim_key(seed, 1, 0)));
    double cy = height * (-0.5 + 2.0 * sim_uniform(sim_key(seed, 1, 1))); /* the beam may be off the module */
    double ring_r[3];
    for (int k = 0; k < 3; k++) ring_r[k] = (0.2 + 0.3 * k + 0.1 * sim_uniform(sim_key(seed, 2, k))) * width;
    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++) {
            double dx = x - cx, dy = y - cy, r = sqrt(dx * dx + dy * dy);
            double s = r / (0.7 * width);
            double value = flux / (1.0 + s * s);
            for (int k = 0; k < 3; k++) {
                double d = (r - ring_r[k]) / 1.5;
                if (d > -6 && d < 6) value += 2.0 * flux * exp(-0.5 * d * d);
            }
            lambda[(uint64_t)y * width + x] = value;
        }
    int n_spots = (int)((uint64_t)width * height / 1500); /* about 175 spots on a Jungfrau module */
    for (int k = 0; k < n_spots; k++) {
        double sx = width * sim_uniform(sim_key(seed, 3, 2 * k)), sy = height * sim_uniform(sim_key(seed, 3, 2 * k + 1));
        /* each spot's intensity differs per variant: a rotating crystal */
        double peak = 200.0 * flux * -log(sim_uniform(sim_key(seed, 4, (uint64_t)k * SIM_CONTENT_VARIANTS + variant)));
        for (int y = (int)sy - 3; y <= (int)sy + 3; y++)
            for (int x = (int)sx - 3; x <= (int)sx + 3; x++) {
                if (x < 0 || y < 0 || x >= width || y >= height) continue;
                double dx = x + 0.5 - sx, dy = y + 0.5 - sy;
                lambda[(uint64_t)y * width + x] += peak * exp(-(dx * dx + dy * dy) / 2.0);
            }
    }
}

static uint32_t saturate(uint64_t v, int bit_depth) /* a counter's ceiling, below the "missing" value */
{
    uint64_t top = (bit_depth >= 32 ? 0xFFFFFFFFull : (1ull << bit_depth) - 1) - 1;
    return (uint32_t)(v > top ? top : v);
}

static uint32_t mask_to(uint32_t word, int bit_depth)
{
    return bit_depth >= 32 ? word : word & ((1u << bit_depth) - 1);
}

/* The calibration of every bank pixel of a Jungfrau module (caller holds banks_lock). */
static const sim_jf_pixel *pixels_locked(uint32_t seed, int width, int height)
{
    pixel_set *s = pixel_sets;
    while (s && !(s->seed == seed && s->width == width && s->height == height)) s = s->next;
    if (!s) {
        uint64_t n = (uint64_t)width * height;
        s = calloc(1, sizeof(*s));
        if (!s) abort();
        *s = (pixel_set){seed, width, height, malloc(n * sizeof(sim_jf_pixel)), pixel_sets};
        if (!s->pixels) abort();
        for (uint64_t p = 0; p < n; p++) sim_jf_pixel_calibration(seed, p, &s->pixels[p]);
        pixel_sets = s;
    }
    return s->pixels;
}

static void build_bank(bank *b)
{
    const sim_content_spec *s = &b->spec;
    uint64_t n = b->n_pixels;
    double *lambda = malloc(n * sizeof(double));
    if (!lambda) abort();
    const sim_jf_pixel *pixels =
        s->content == SIM_CONTENT_JUNGFRAU_RAW ? pixels_locked(s->seed, b->width, b->height) : NULL;
    for (int v = 0; v < SIM_CONTENT_VARIANTS; v++) {
        uint32_t *out = b->values + (uint64_t)v * n;
        photon_map(s->seed, s->flux, b->width, b->height, v, lambda);
        for (uint64_t p = 0; p < n; p++) {
            uint32_t photons = poisson(lambda[p], sim_key(s->seed, 5 + v, p)); /* the same counts in both */
            if (!pixels) {
                out[p] = saturate(photons, b->bit_depth);
            } else {
                double gauss = sim_normal(sim_key(s->seed, 31 + v, p));
                double energy = photons * s->photon_energy_kev;
                uint32_t word = sim_jf_word(&pixels[p], energy, s->noise, gauss);
                if (s->broken_switch > 0 && gain_stage_of_word(word) != 0 &&
                    sim_uniform(sim_key(s->seed, STREAM_BROKEN_SWITCH, p)) < s->broken_switch)
                    word = (2u << GAIN_CODE_SHIFT) | (word & GAIN_ADC_MASK); /* the invalid code 10 */
                out[p] = mask_to(word, b->bit_depth);
            }
        }
    }
    free(lambda);
}

static int same_spec(const sim_content_spec *a, const sim_content_spec *b)
{
    return a->content == b->content && a->seed == b->seed && a->flux == b->flux && a->noise == b->noise &&
           a->photon_energy_kev == b->photon_energy_kev && a->broken_switch == b->broken_switch;
}

static const bank *bank_for(const sim_content_spec *spec, int bit_depth, int width, int height)
{
    pthread_mutex_lock(&banks_lock);
    bank *b = banks;
    while (b && !(same_spec(&b->spec, spec) && b->bit_depth == bit_depth && b->width == width && b->height == height))
        b = b->next;
    if (!b) {
        b = calloc(1, sizeof(*b));
        if (!b) abort();
        *b = (bank){*spec, bit_depth, width, height, (uint64_t)width * height, NULL, banks};
        b->values = malloc((uint64_t)SIM_CONTENT_VARIANTS * b->n_pixels * sizeof(uint32_t));
        if (!b->values) abort();
        build_bank(b);
        banks = b;
    }
    pthread_mutex_unlock(&banks_lock);
    return b;
}

int sim_content_variant(const sim_content_spec *spec, uint64_t frame, int module)
{
    return (int)(sim_mix(((uint64_t)spec->seed << 40) ^ (frame * 131) ^ (uint64_t)module) % SIM_CONTENT_VARIANTS);
}

uint64_t sim_content_rotation(int module, int width, int height)
{
    return (uint64_t)((module * 37) % height) * width;
}

/* The bank pixels of a module frame's variant; the module's pixel p is values[(p + rotation) % n]. */
static const uint32_t *frame_values(const bank *b, uint64_t frame, int module, uint64_t *rotation)
{
    uint64_t variant = (uint64_t)sim_content_variant(&b->spec, frame, module);
    *rotation = sim_content_rotation(module, b->width, b->height);
    return b->values + variant * b->n_pixels;
}

static int realistic(const sim_content_spec *spec)
{
    return spec->content == SIM_CONTENT_PHOTONS || spec->content == SIM_CONTENT_JUNGFRAU_RAW ||
           spec->content == SIM_CONTENT_JUNGFRAU_PEDESTAL;
}

int sim_content_banked(const sim_content_spec *spec) { return spec->content != SIM_CONTENT_JUNGFRAU_PEDESTAL; }

/* jungfrau-pedestal: pixels [first, first + count) of a module frame, computed now. The noise of
 * module pixel p is gauss_table[top bits of (p x a + b)], a and b hashed from (seed, frame, module):
 * a fresh draw per frame for every pixel. */
static void pedestal_values(const sim_content_spec *spec, uint64_t frame, int module, int bit_depth, int width,
                            int height, uint64_t first, uint64_t count, uint32_t *out)
{
    pthread_once(&gauss_once, gauss_init);
    pthread_mutex_lock(&banks_lock);
    const sim_jf_pixel *pixels = pixels_locked(spec->seed, width, height);
    pthread_mutex_unlock(&banks_lock);
    uint64_t n = (uint64_t)width * height, b = (first + sim_content_rotation(module, width, height)) % n;
    uint64_t h = sim_key(spec->seed, 71, frame * 64 + (uint64_t)module);
    uint32_t a = (uint32_t)h | 1u, offset = (uint32_t)(h >> 32);
    int stage = sim_jf_pedestal_stage(frame);
    for (uint64_t k = 0; k < count; k++, b = b + 1 == n ? 0 : b + 1) {
        float gauss = gauss_table[((uint32_t)(first + k) * a + offset) >> (32 - GAUSS_BITS)];
        out[k] = mask_to(sim_jf_dark_word(&pixels[b], stage, spec->noise, gauss), bit_depth);
    }
}

int sim_content_module_pixels(const sim_content_spec *spec, uint64_t frame, int module, int bit_depth, int width,
                              int height, void *out)
{
    if (!realistic(spec)) return -1;
    if (!sim_content_banked(spec)) {
        uint64_t n = (uint64_t)width * height;
        uint32_t *values = malloc(n * sizeof(uint32_t));
        if (!values) return -1;
        pedestal_values(spec, frame, module, bit_depth, width, height, 0, n, values);
        for (uint64_t p = 0; p < n; p++) {
            if (bit_depth <= 8) ((uint8_t *)out)[p] = (uint8_t)values[p];
            else if (bit_depth <= 16) ((uint16_t *)out)[p] = (uint16_t)values[p];
            else ((uint32_t *)out)[p] = values[p];
        }
        free(values);
        return 0;
    }
    const bank *b = bank_for(spec, bit_depth, width, height);
    uint64_t rotation, n = b->n_pixels;
    const uint32_t *values = frame_values(b, frame, module, &rotation);
    for (uint64_t p = 0; p < n; p++) {
        uint32_t v = values[(p + rotation) % n];
        if (bit_depth <= 8) ((uint8_t *)out)[p] = (uint8_t)v;
        else if (bit_depth <= 16) ((uint16_t *)out)[p] = (uint16_t)v;
        else ((uint32_t *)out)[p] = v;
    }
    return 0;
}

void sim_content_values(const sim_content_spec *spec, uint64_t frame, int module, int bit_depth, int width,
                        int height, uint64_t first, uint64_t n_pixels, uint32_t *out)
{
    if (!sim_content_banked(spec)) {
        pedestal_values(spec, frame, module, bit_depth, width, height, first, n_pixels, out);
        return;
    }
    const bank *b = bank_for(spec, bit_depth, width, height);
    uint64_t rotation, n = b->n_pixels;
    const uint32_t *values = frame_values(b, frame, module, &rotation);
    uint64_t i = (first + rotation) % n;
#define NEXT_VALUE() (i == n ? (i = 1, values[0]) : values[i++])
    for (uint64_t k = 0; k < n_pixels; k++) out[k] = NEXT_VALUE();
#undef NEXT_VALUE
}
