/*
 * sim_content.c -- detector-like pixel content for the simulator, deterministic from a seed.
 *
 * photons:      photon counts (Eiger-like): Poisson background falling off from a beam centre,
 *               weak powder rings and Bragg spots, at `flux` photons per pixel per frame.
 * jungfrau-raw: Jungfrau raw words: 2 gain bits + 14-bit ADC, a per-pixel pedestal (fixed per
 *               module) plus Gaussian noise, photons of about 12 keV switching to gain 1 or 2
 *               when they do not fit gain 0.
 *
 * Fast enough for the sender at line rate: SIM_CONTENT_VARIANTS module frames are computed once
 * per (content, seed, flux, bit depth, module size) and kept; frame f of module m is variant
 * hash(seed, f, m) of that bank, with its rows rotated by an amount that depends on the module,
 * so every module and frame differs while a pixel costs a table read. The bank is built from pure
 * functions of (seed, variant, pixel), so every pixel can be recomputed (sim_content_module_pixels).
 */
#include "sim_content.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct bank {
    int content;
    uint32_t seed;
    double flux;
    int bit_depth, width, height;
    uint64_t n_pixels;
    uint32_t *values; /* SIM_CONTENT_VARIANTS x n_pixels, already saturated/masked to bit_depth */
    struct bank *next;
} bank;

static bank *banks; /* kept for the life of the process: a handful of configs per process */
static pthread_mutex_t banks_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t mix(uint64_t x) /* splitmix64 finaliser: a counter-based random stream */
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static double uniform(uint64_t key) { return ((mix(key) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

static double normal(uint64_t key) /* Box-Muller from two uniforms of the key's stream */
{
    return sqrt(-2.0 * log(uniform(key))) * cos(6.283185307179586 * uniform(key ^ 0x5bd1e995u));
}

static uint64_t key_of(uint32_t seed, uint64_t stream, uint64_t index)
{
    return mix(((uint64_t)seed << 32) ^ (stream << 56) ^ mix(index + 0x632be59bd9b4e019ull * stream));
}

static uint32_t poisson(double lambda, uint64_t key)
{
    if (lambda <= 0) return 0;
    if (lambda > 30) {
        double v = lambda + sqrt(lambda) * normal(key);
        return v < 0 ? 0 : (uint32_t)(v + 0.5);
    }
    double limit = exp(-lambda), p = 1.0;
    uint32_t k = 0;
    for (;;) {
        p *= uniform(key + k);
        if (p <= limit || k > 200) return k;
        k++;
    }
}

/* Expected photons per pixel of one variant: background, rings and spots (spots vary per variant). */
static void photon_map(uint32_t seed, double flux, int width, int height, int variant, double *lambda)
{
    double cx = width * (0.3 + 0.4 * uniform(key_of(seed, 1, 0)));
    double cy = height * (-0.5 + 2.0 * uniform(key_of(seed, 1, 1))); /* the beam may be off the module */
    double ring_r[3];
    for (int k = 0; k < 3; k++) ring_r[k] = (0.2 + 0.3 * k + 0.1 * uniform(key_of(seed, 2, k))) * width;
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
        double sx = width * uniform(key_of(seed, 3, 2 * k)), sy = height * uniform(key_of(seed, 3, 2 * k + 1));
        /* each spot's intensity differs per variant: a rotating crystal */
        double peak = 200.0 * flux * -log(uniform(key_of(seed, 4, (uint64_t)k * SIM_CONTENT_VARIANTS + variant)));
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

static uint32_t jungfrau_word(double pedestal, double noise, uint32_t photons)
{
    const double adu_per_photon = 480.0; /* about 12 keV at gain 0 */
    double signal = photons * adu_per_photon, adc = pedestal + signal + noise;
    uint32_t gain = 0;
    if (adc > 15000) { /* switch to gain 1 (bits 01), then gain 2 (bits 11) */
        gain = 1;
        adc = 1800 + signal / 30 + noise / 10;
        if (adc > 15000) {
            gain = 3;
            adc = 1500 + signal / 400;
        }
    }
    if (adc < 0) adc = 0;
    if (adc > 16382) adc = 16382;
    return (gain << 14) | (uint32_t)adc;
}

static void build_bank(bank *b)
{
    uint64_t n = b->n_pixels;
    double *lambda = malloc(n * sizeof(double));
    if (!lambda) abort();
    for (int v = 0; v < SIM_CONTENT_VARIANTS; v++) {
        uint32_t *out = b->values + (uint64_t)v * n;
        double flux = b->content == SIM_CONTENT_JUNGFRAU_RAW ? b->flux * 0.05 : b->flux; /* sparse photons */
        photon_map(b->seed, flux, b->width, b->height, v, lambda);
        for (uint64_t p = 0; p < n; p++) {
            uint32_t photons = poisson(lambda[p], key_of(b->seed, 5 + v, p));
            if (b->content == SIM_CONTENT_PHOTONS) {
                out[p] = saturate(photons, b->bit_depth);
            } else {
                double pedestal = 3000.0 + 40.0 * normal(key_of(b->seed, 30, p));
                double noise = 5.0 * normal(key_of(b->seed, 31 + v, p));
                uint32_t word = jungfrau_word(pedestal, noise, photons);
                out[p] = b->bit_depth >= 32 ? word : word & ((1u << b->bit_depth) - 1);
            }
        }
    }
    free(lambda);
}

static const bank *bank_for(int content, uint32_t seed, double flux, int bit_depth, int width, int height)
{
    pthread_mutex_lock(&banks_lock);
    bank *b = banks;
    while (b && !(b->content == content && b->seed == seed && b->flux == flux && b->bit_depth == bit_depth &&
                  b->width == width && b->height == height))
        b = b->next;
    if (!b) {
        b = calloc(1, sizeof(*b));
        if (!b) abort();
        *b = (bank){content, seed, flux, bit_depth, width, height, (uint64_t)width * height, NULL, banks};
        b->values = malloc((uint64_t)SIM_CONTENT_VARIANTS * b->n_pixels * sizeof(uint32_t));
        if (!b->values) abort();
        build_bank(b);
        banks = b;
    }
    pthread_mutex_unlock(&banks_lock);
    return b;
}

int sim_content_variant(uint32_t seed, uint64_t frame, int module)
{
    return (int)(mix(((uint64_t)seed << 40) ^ (frame * 131) ^ (uint64_t)module) % SIM_CONTENT_VARIANTS);
}

/* Variant and first bank pixel of a module frame (rows rotated per module). */
static const uint32_t *frame_values(const bank *b, uint64_t frame, int module, uint64_t *rotation)
{
    uint64_t variant = (uint64_t)sim_content_variant(b->seed, frame, module);
    *rotation = (uint64_t)((module * 37) % b->height) * b->width;
    return b->values + variant * b->n_pixels;
}

int sim_content_module_pixels(int content, uint32_t seed, double flux, uint64_t frame, int module, int bit_depth,
                              int width, int height, void *out)
{
    if (content != SIM_CONTENT_PHOTONS && content != SIM_CONTENT_JUNGFRAU_RAW) return -1;
    const bank *b = bank_for(content, seed, flux, bit_depth, width, height);
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

void sim_content_values(int content, uint32_t seed, double flux, uint64_t frame, int module, int bit_depth,
                        int width, int height, uint64_t first, uint64_t n_pixels, uint32_t *out)
{
    const bank *b = bank_for(content, seed, flux, bit_depth, width, height);
    uint64_t rotation, n = b->n_pixels;
    const uint32_t *values = frame_values(b, frame, module, &rotation);
    uint64_t i = (first + rotation) % n;
#define NEXT_VALUE() (i == n ? (i = 1, values[0]) : values[i++])
    for (uint64_t k = 0; k < n_pixels; k++) out[k] = NEXT_VALUE();
#undef NEXT_VALUE
}
