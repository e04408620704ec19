/*
 * compress_race.c -- the image pipeline under the sanitizers: several threads compute the per-image results
 * (radial profile, ROI sums, spot count: many spots, so the spot finder grows its scratch) and compress 16-bit
 * images at once (each asking the cached processor check on its first image) while the caller
 * submits, takes and gives back chunks, and reads the counters. Built and run by
 * tests/test_thread_safety.py with -fsanitize=thread and with -fsanitize=address,undefined.
 *
 * usage: compress_race
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image_pipeline.h"

#define N_IMAGES 64
#define WIDTH 512
#define HEIGHT 256
#define IMAGE_PIXELS (WIDTH * HEIGHT)
#define N_BINS 64

int main(void)
{
    char err[256];
    uint64_t bytes = IMAGE_PIXELS * 2;
    uint16_t *bin_of = malloc(IMAGE_PIXELS * sizeof(uint16_t));
    for (int i = 0; i < IMAGE_PIXELS; i++) bin_of[i] = i % 97 == 0 ? N_BINS + 1 : (uint16_t)((i % WIDTH) / 8);
    uint64_t roi_runs[] = {0, 100, 0, WIDTH * 10 + 5, 300, 1, WIDTH * 200, WIDTH, 1};
    ir_tables results = {HEIGHT, WIDTH, IR_U16, bin_of, N_BINS, roi_runs, 3, 2, 1, 10.0, 1};
    ip_stages stages = {NULL, 1, &results};
    ip_pool *pool = ip_create(4, 8, bytes, 2, &stages, err, sizeof(err));
    if (!pool) {
        fprintf(stderr, "ip_create: %s\n", err);
        return 2;
    }
    uint16_t *images = malloc(8 * bytes); /* one per job in flight, reused */
    uint64_t compressed = 0;
    int submitted = 0, taken = 0;
    while (taken < N_IMAGES) {
        if (submitted < N_IMAGES && submitted - taken < 8) {
            uint16_t *image = images + (size_t)(submitted % 8) * IMAGE_PIXELS;
            for (int i = 0; i < IMAGE_PIXELS; i++) image[i] = (uint16_t)((i * 7 + submitted) % 13);
            if (ip_submit(pool, image, bytes, (uint64_t)submitted, 0) < 0) return 3;
            submitted++;
            continue;
        }
        ip_result result;
        if (ip_next(pool, 1000, &result)) {
            if (result.tag != (uint64_t)taken || result.size == 0) return 4; /* in order, and compressed */
            if (!result.results || !(result.results[N_BINS + 2] > 1000)) return 5; /* a spot count, of many */
            compressed += result.size;
            ip_done(pool, result.job);
            taken++;
        }
        ip_counters counters;
        ip_get_counters(pool, &counters);
    }
    ip_counters final;
    ip_destroy(pool, &final);
    free(images);
    free(bin_of);
    printf("compressed %llu images: %llu -> %llu bytes\n", (unsigned long long)final.images,
           (unsigned long long)final.bytes_in, (unsigned long long)compressed);
    return final.images == N_IMAGES ? 0 : 1;
}
