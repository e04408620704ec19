/*
 * image_results.c -- ROI sums, radial profile and spot count of one image (see image_results.h).
 *
 * One pass over the image feeds the radial profile (the sum per bin of the pixel's precomputed bin; a bin's
 * count is its pixels less those without data) and the spot finder (runs of pixels above the threshold in each row); the ROIs are summed over their
 * precomputed runs of pixels. Masked pixels (bin_of n_bins + 1) and pixels without data (every bit set,
 * or NaN) are left out of all three. Spots are 4-connected components: a run of a row joins every run of
 * the row above whose columns overlap it (union-find over the runs, sizes kept at the roots), and spots
 * of at least min_pixels pixels are counted.
 */
#include "image_results.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define COPIES 4 /* of the profile's sums: neighbouring pixels (often of one bin) add to different ones */

typedef struct run {
    uint32_t start, end; /* columns [start, end) */
    uint32_t node;       /* its union-find node */
} run;

struct ir_scratch {
    double *sums;         /* float images */
    uint64_t *int_sums;   /* integer images */
    uint64_t *lacking;    /* pixels without data per bin */
    uint64_t *pixels;     /* pixels per bin (from the table) */
    run *rows[2]; /* the runs of the row above and of this row */
    uint32_t (*pack)[8];   /* per byte of a pixel mask: the positions of its set bits (then zeros) */
    uint8_t *pack_count;   /* per byte: how many bits are set */
    uint32_t *row_pixels;  /* the columns of a row's non-zero pixels (width + 8: a pack writes 8) */
    uint32_t *parent, *size;
    uint64_t n_nodes, node_capacity;
    int failed;
};

uint64_t ir_n_values(const ir_tables *t) { return (uint64_t)t->n_bins + (uint64_t)t->n_rois + 1; }

ir_scratch *ir_scratch_new(const ir_tables *t)
{
    ir_scratch *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->sums = calloc(COPIES * (t->n_bins + 2), sizeof(double));
    s->int_sums = calloc(COPIES * (t->n_bins + 2), sizeof(uint64_t));
    s->lacking = calloc(t->n_bins + 2, sizeof(uint64_t));
    s->pixels = calloc(t->n_bins + 2, sizeof(uint64_t));
    s->pack = malloc(256 * sizeof(*s->pack));
    s->pack_count = malloc(256);
    s->row_pixels = malloc((t->width + 8) * sizeof(uint32_t));
    if (s->pack && s->pack_count)
        for (int byte = 0; byte < 256; byte++) {
            int n = 0;
            for (int k = 0; k < 8; k++)
                if (byte >> k & 1) s->pack[byte][n++] = (uint32_t)k;
            s->pack_count[byte] = (uint8_t)n;
            while (n < 8) s->pack[byte][n++] = 0;
        }
    s->rows[0] = calloc(t->width / 2 + 1, sizeof(run));
    s->rows[1] = calloc(t->width / 2 + 1, sizeof(run));
    s->node_capacity = 4096;
    s->parent = malloc(s->node_capacity * sizeof(uint32_t));
    s->size = malloc(s->node_capacity * sizeof(uint32_t));
    if (!s->sums || !s->int_sums || !s->lacking || !s->pixels || !s->rows[0] || !s->rows[1] || !s->parent || !s->size ||
        !s->pack || !s->pack_count || !s->row_pixels) {
        ir_scratch_free(s);
        return NULL;
    }
    for (uint64_t i = 0; i < t->height * t->width; i++)
        if (t->bin_of[i] < t->n_bins) s->pixels[t->bin_of[i]]++;
    return s;
}

void ir_scratch_free(ir_scratch *s)
{
    if (!s) return;
    free(s->sums);
    free(s->int_sums);
    free(s->lacking);
    free(s->pixels);
    free(s->rows[0]);
    free(s->rows[1]);
    free(s->pack);
    free(s->pack_count);
    free(s->row_pixels);
    free(s->parent);
    free(s->size);
    free(s);
}

static uint32_t find(uint32_t *parent, uint32_t a)
{
    while (parent[a] != a) {
        parent[a] = parent[parent[a]];
        a = parent[a];
    }
    return a;
}

/* A new spot node of `pixels` pixels (UINT32_MAX if out of memory). */
static uint32_t new_node(ir_scratch *s, uint32_t pixels)
{
    if (s->n_nodes == s->node_capacity) {
        uint64_t capacity = s->node_capacity * 2;
        uint32_t *parent = realloc(s->parent, capacity * sizeof(uint32_t));
        if (parent) s->parent = parent;
        uint32_t *size = realloc(s->size, capacity * sizeof(uint32_t));
        if (size) s->size = size;
        if (!parent || !size || capacity >= UINT32_MAX) {
            s->failed = 1;
            return UINT32_MAX;
        }
        s->node_capacity = capacity;
    }
    uint32_t node = (uint32_t)s->n_nodes++;
    s->parent[node] = node;
    s->size[node] = pixels;
    return node;
}

/* Close the run [start, end) of this row: a node joined with the overlapping runs of the row above. */
static void close_run(ir_scratch *s, uint32_t start, uint32_t end, const run *above, uint64_t n_above,
                      uint64_t *first_above, run *row, uint64_t *n_row)
{
    uint32_t node = new_node(s, end - start);
    if (node == UINT32_MAX) return;
    uint64_t k = *first_above;
    while (k < n_above && above[k].end <= start) k++; /* runs above that end before this one starts */
    *first_above = k;
    for (; k < n_above && above[k].start < end; k++) {
        uint32_t a = find(s->parent, above[k].node), b = find(s->parent, node);
        if (a != b) { /* the larger tree's root stays root */
            if (s->size[a] < s->size[b]) {
                uint32_t t = a;
                a = b;
                b = t;
            }
            s->parent[b] = a;
            s->size[a] += s->size[b];
        }
    }
    if (k > *first_above) *first_above = k - 1; /* the last one may overlap the next run too */
    row[(*n_row)++] = (run){start, end, node};
}

/* A pixel without data: every bit set in an integer image, NaN in a float one. */
static inline int no_data_uint8_t(uint8_t v) { return v == UINT8_MAX; }
static inline int no_data_uint16_t(uint16_t v) { return v == UINT16_MAX; }
static inline int no_data_uint32_t(uint32_t v) { return v == UINT32_MAX; }
static inline int no_data_float(float v) { return v != v; }

/* Pixel masks of a block of m <= 32 pixels (bit k: pixel k): not zero (pixels without data are not zero),
 * above the threshold, without data. The generic loops serve every type; 16-bit blocks of 32 take SSE2
 * (every x86-64), the generic loops (named uint16_tail) a row's last, shorter block. */
#define BLOCK 32
#define MASKS(type, name)                                                                                              \
    static inline uint32_t nonzero_##name(const type *p, uint64_t m)                                                   \
    {                                                                                                                  \
        uint32_t mask = 0;                                                                                             \
        for (uint64_t k = 0; k < m; k++) mask |= (uint32_t)(p[k] != 0) << k;                                           \
        return mask;                                                                                                   \
    }                                                                                                                  \
    static inline uint32_t above_##name(const type *p, uint64_t m, type threshold)                                     \
    {                                                                                                                  \
        uint32_t mask = 0;                                                                                             \
        for (uint64_t k = 0; k < m; k++) mask |= (uint32_t)(p[k] > threshold) << k;                                    \
        return mask;                                                                                                   \
    }                                                                                                                  \
    static inline uint32_t missing_##name(const type *p, uint64_t m)                                                   \
    {                                                                                                                  \
        uint32_t mask = 0;                                                                                             \
        for (uint64_t k = 0; k < m; k++) mask |= (uint32_t)no_data_##type(p[k]) << k;                                  \
        return mask;                                                                                                   \
    }
MASKS(uint8_t, uint8_t)
MASKS(uint32_t, uint32_t)
MASKS(float, float)

#ifdef __SSE2__
MASKS(uint16_t, uint16_tail)

/* 32 words to 32 bits: bit k set where word k of the four vectors is zero. */
static inline uint32_t zero_words(__m128i a, __m128i b, __m128i c, __m128i d)
{
    const __m128i z = _mm_setzero_si128();
    uint32_t low = (uint32_t)_mm_movemask_epi8(_mm_packs_epi16(_mm_cmpeq_epi16(a, z), _mm_cmpeq_epi16(b, z)));
    uint32_t high = (uint32_t)_mm_movemask_epi8(_mm_packs_epi16(_mm_cmpeq_epi16(c, z), _mm_cmpeq_epi16(d, z)));
    return low | high << 16;
}
#define LOAD(p, k) _mm_loadu_si128((const __m128i *)((p) + 8 * (k)))
static inline uint32_t nonzero_uint16_t(const uint16_t *p, uint64_t m)
{
    if (m < BLOCK) return nonzero_uint16_tail(p, m);
    return ~zero_words(LOAD(p, 0), LOAD(p, 1), LOAD(p, 2), LOAD(p, 3));
}
static inline uint32_t above_uint16_t(const uint16_t *p, uint64_t m, uint16_t threshold)
{
    if (m < BLOCK) return above_uint16_tail(p, m, threshold);
    const __m128i t = _mm_set1_epi16((short)threshold); /* v > t: the saturated v - t is not zero */
    return ~zero_words(_mm_subs_epu16(LOAD(p, 0), t), _mm_subs_epu16(LOAD(p, 1), t), _mm_subs_epu16(LOAD(p, 2), t),
                       _mm_subs_epu16(LOAD(p, 3), t));
}
static inline uint32_t missing_uint16_t(const uint16_t *p, uint64_t m)
{
    if (m < BLOCK) return missing_uint16_tail(p, m);
    const __m128i all = _mm_set1_epi16(-1); /* every bit set: ~v is zero */
    return zero_words(_mm_xor_si128(LOAD(p, 0), all), _mm_xor_si128(LOAD(p, 1), all), _mm_xor_si128(LOAD(p, 2), all),
                      _mm_xor_si128(LOAD(p, 3), all));
}
#undef LOAD
#else
MASKS(uint16_t, uint16_t)
#endif

/* The 8 columns of `positions` (a byte's set bits first) plus `base` to out: 8 written, the byte's count kept. */
static inline void pack_columns(uint32_t *out, const uint32_t *positions, uint32_t base)
{
#ifdef __SSE2__
    const __m128i b = _mm_set1_epi32((int)base);
    _mm_storeu_si128((__m128i *)out, _mm_add_epi32(_mm_loadu_si128((const __m128i *)positions), b));
    _mm_storeu_si128((__m128i *)(out + 4), _mm_add_epi32(_mm_loadu_si128((const __m128i *)(positions + 4)), b));
#else
    for (int k = 0; k < 8; k++) out[k] = positions[k] + base;
#endif
}

/* The runs of spot pixels of one row (returns how many), each joined with the runs of the row above it
 * overlaps: a block with no pixel above the threshold is skipped; in the others the candidates (above, not
 * masked, with data) are a bit mask whose runs are found 32 pixels a step. A run may go on into the next block. */
#define SPOT_ROW(type)                                                                                                 \
    static uint64_t spot_row_##type(const ir_tables *t, const type *line, const uint16_t *bins, type threshold,        \
                                    int all_above, ir_scratch *s, const run *over, uint64_t n_above, run *row)         \
    {                                                                                                                  \
        const uint16_t masked = (uint16_t)(t->n_bins + 1);                                                             \
        uint64_t n_row = 0, first_above = 0;                                                                           \
        int64_t start = -1;                                                                                            \
        for (uint64_t x0 = 0; x0 < t->width; x0 += BLOCK) {                                                            \
            const uint64_t m = x0 + BLOCK < t->width ? BLOCK : t->width - x0;                                          \
            uint32_t spot = all_above ? (m == BLOCK ? UINT32_MAX : (1u << m) - 1) : above_##type(line + x0, m, threshold); \
            if (spot) spot &= ~missing_##type(line + x0, m);                                                           \
            for (uint32_t left = spot; left; left &= left - 1) {                                                       \
                const unsigned k = (unsigned)__builtin_ctz(left);                                                      \
                if (bins[x0 + k] == masked) spot &= ~(1u << k);                                                        \
            }                                                                                                          \
            for (uint64_t k = 0; k < m;) {                                                                             \
                if (start < 0) { /* the next run's first pixel */                                                      \
                    const uint32_t rest = spot >> k;                                                                   \
                    if (!rest) break;                                                                                  \
                    k += (uint64_t)__builtin_ctz(rest);                                                                \
                    start = (int64_t)(x0 + k);                                                                         \
                }                                                                                                      \
                const uint32_t gaps = ~spot >> k; /* after the block's 32 pixels: 0, the run may go on */              \
                if (!gaps) break;                                                                                      \
                k += (uint64_t)__builtin_ctz(gaps);                                                                    \
                close_run(s, (uint32_t)start, (uint32_t)(x0 + k), over, n_above, &first_above, row, &n_row);           \
                start = -1;                                                                                            \
            }                                                                                                          \
        }                                                                                                              \
        if (start >= 0) close_run(s, (uint32_t)start, (uint32_t)t->width, over, n_above, &first_above, row, &n_row);   \
        return n_row;                                                                                                  \
    }

/* One pass over the image's rows for the profile and the spots. The profile adds each pixel to its bin's sum
 * (an integer sum for integer images; pixels outside the range and masked ones to two extra bins, never
 * read: no test per pixel) and counts the pixels without data (found by a vector compare per block): a bin's
 * count is its pixels (known from the table) less those, its sum less theirs (integers: every bit set; floats:
 * NaN, never added). Zero pixels add nothing: per row, the columns of the other pixels are packed into a list
 * first (a vector compare per 32 pixels, a table per 8), then only those are added, without a branch per
 * pixel (photon-counting images are mostly zero). The threshold of the spots is compared in the image's own
 * type (integers: above floor(threshold), clamped to the type). */
#define PASS(type, acc, add, limit)                                                                                    \
    static void pass_##type(const ir_tables *t, const type *image, ir_scratch *s, acc *sums, uint64_t *lacking)        \
    {                                                                                                                  \
        const uint64_t stride = (uint64_t)t->n_bins + 2, width = t->width;                                             \
        const type threshold = limit;                                                                                  \
        const int all_above = t->spots && t->threshold < 0 && (type)-1 > 0; /* unsigned: all pixels are above */       \
        uint64_t n_above = 0;                                                                                          \
        int current = 0;                                                                                               \
        for (uint64_t y = 0; y < t->height; y++) {                                                                     \
            const type *line = image + y * width;                                                                      \
            const uint16_t *bins = t->bin_of + y * width;                                                              \
            uint64_t n = 0;                                                                                            \
            if (t->n_bins > 0)                                                                                         \
                for (uint64_t x0 = 0; x0 < width; x0 += BLOCK) {                                                       \
                    const uint64_t m = x0 + BLOCK < width ? BLOCK : width - x0;                                        \
                    const uint32_t mask = nonzero_##type(line + x0, m);                                                \
                    for (uint32_t lost = missing_##type(line + x0, m); lost; lost &= lost - 1)                         \
                        lacking[bins[x0 + (uint64_t)__builtin_ctz(lost)]]++;                                           \
                    for (unsigned j = 0; j < 4; j++) { /* the set bits' columns, a byte of the mask at a time */       \
                        const uint8_t byte = (uint8_t)(mask >> (8 * j));                                               \
                        pack_columns(s->row_pixels + n, s->pack[byte], (uint32_t)x0 + 8 * j);                          \
                        n += s->pack_count[byte];                                                                      \
                    }                                                                                                  \
                }                                                                                                      \
            for (uint64_t k = 0; k < n; k++) { /* the k-th non-zero pixel to the k-th copy */                          \
                const uint32_t x = s->row_pixels[k];                                                                   \
                const type v = line[x];                                                                                \
                sums[(k & (COPIES - 1)) * stride + bins[x]] += (add) ? (acc)v : 0;                                     \
            }                                                                                                          \
            if (!t->spots) continue;                                                                                   \
            run *row = s->rows[current];                                                                               \
            n_above = spot_row_##type(t, line, bins, threshold, all_above, s, s->rows[1 - current], n_above, row);     \
            current = 1 - current;                                                                                     \
        }                                                                                                              \
    }

/* The threshold in an unsigned type: floor(threshold) clamped to [0, max] (below 0: every pixel is above). */
static uint64_t unsigned_threshold(double threshold, uint64_t max)
{
    return threshold < 0 ? 0 : threshold >= (double)max ? max : (uint64_t)floor(threshold);
}

SPOT_ROW(uint8_t)
SPOT_ROW(uint16_t)
SPOT_ROW(uint32_t)
SPOT_ROW(float)

PASS(uint8_t, uint64_t, 1, (uint8_t)unsigned_threshold(t->threshold, UINT8_MAX))
PASS(uint16_t, uint64_t, 1, (uint16_t)unsigned_threshold(t->threshold, UINT16_MAX))
PASS(uint32_t, uint64_t, 1, (uint32_t)unsigned_threshold(t->threshold, UINT32_MAX))
PASS(float, double, !no_data_float(v), (float)t->threshold)

/* A ROI's runs summed in the image's own kind of number (integers: 64-bit, exact and vectorised), then added as
 * a double. */
#define ROI_SUM(type, acc)                                                                                             \
    static void rois_##type(const ir_tables *t, const type *image, double *out)                                        \
    {                                                                                                                  \
        for (uint64_t r = 0; r < t->n_runs; r++) {                                                                     \
            const uint64_t *triple = t->roi_runs + 3 * r;                                                              \
            const type *p = image + triple[0];                                                                         \
            acc total = 0;                                                                                             \
            for (uint64_t k = 0; k < triple[1]; k++) {                                                                 \
                type v = p[k];                                                                                         \
                total += no_data_##type(v) ? 0 : (acc)v;                                                               \
            }                                                                                                          \
            out[triple[2]] += (double)total;                                                                           \
        }                                                                                                              \
    }

ROI_SUM(uint8_t, uint64_t)
ROI_SUM(uint16_t, uint64_t)
ROI_SUM(uint32_t, uint64_t)
ROI_SUM(float, double)

int ir_compute(const ir_tables *t, const void *image, double *out, ir_scratch *s)
{
    double *profile = out, *rois = out + t->n_bins, *spot_count = rois + t->n_rois;
    const uint64_t stride = (uint64_t)t->n_bins + 2;
    memset(s->sums, 0, COPIES * stride * sizeof(double));
    memset(s->int_sums, 0, COPIES * stride * sizeof(uint64_t));
    memset(s->lacking, 0, stride * sizeof(uint64_t));
    s->n_nodes = 0;
    s->failed = 0;
    if (t->n_bins > 0 || t->spots) switch (t->pixel_type) {
        case IR_U8: pass_uint8_t(t, image, s, s->int_sums, s->lacking); break;
        case IR_U16: pass_uint16_t(t, image, s, s->int_sums, s->lacking); break;
        case IR_U32: pass_uint32_t(t, image, s, s->int_sums, s->lacking); break;
        default: pass_float(t, image, s, s->sums, s->lacking); break;
        }
    for (int b = 0; b < t->n_bins; b++) {
        uint64_t count = s->pixels[b] - s->lacking[b];
        double sum = 0;
        uint64_t int_sum = 0;
        for (int c = 0; c < COPIES; c++) {
            sum += s->sums[c * stride + b];
            int_sum += s->int_sums[c * stride + b];
        }
        if (t->pixel_type != IR_F32) /* the pixels without data (every bit set) were added too */
            sum = (double)(int_sum - s->lacking[b] * (uint64_t)(t->pixel_type == IR_U8    ? UINT8_MAX
                                                                : t->pixel_type == IR_U16 ? UINT16_MAX
                                                                                          : UINT32_MAX));
        profile[b] = count ? sum / (double)count : NAN;
    }
    memset(rois, 0, t->n_rois * sizeof(double));
    switch (t->pixel_type) {
    case IR_U8: rois_uint8_t(t, image, rois); break;
    case IR_U16: rois_uint16_t(t, image, rois); break;
    case IR_U32: rois_uint32_t(t, image, rois); break;
    default: rois_float(t, image, rois); break;
    }
    uint64_t spots = 0;
    for (uint64_t n = 0; n < s->n_nodes; n++)
        if (s->parent[n] == n && s->size[n] >= t->min_pixels) spots++;
    *spot_count = s->failed ? NAN : (double)spots;
    return s->failed ? -1 : 0;
}
