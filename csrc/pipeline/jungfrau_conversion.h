/*
 * jungfrau_conversion.h -- raw gain-switching pixels (gain code + 14-bit ADC) to photon counts or keV:
 * energy = (ADC - pedestal[stage]) / gain[stage], per pixel, with per-pixel tables; one image at a
 * time, any number of threads at once (the tables are read only). Knows nothing of files.
 * Keep this file parsable by cffi's cdef (the build script strips '#' lines).
 */
#ifndef STD_DAQ_JUNGFRAU_CONVERSION_H
#define STD_DAQ_JUNGFRAU_CONVERSION_H
#include <stdint.h>

/* Output kinds: uint16 photon counts at a photon energy, or float32 keV. */
#define JC_OUTPUT_PHOTONS 0
#define JC_OUTPUT_KEV 1

/* uint16 photon values that are not counts: no valid data (lost packet, invalid gain code 10,
 * flagged pixel, no pedestal for the pixel's stage), and saturated (gain 2 at the ADC floor, or a
 * count of 65534 or more). keV output: NaN and +infinity. */
#define JC_PHOTONS_NO_DATA 65535
#define JC_PHOTONS_SATURATED 65534

typedef struct jc_tables jc_tables;

typedef struct jc_counts {
    uint64_t stage_pixels[3]; /* pixels converted in gain 0, 1, 2 */
    uint64_t no_data;         /* pixels given the no-data value (flagged pixels included) */
    uint64_t saturated;
} jc_counts;

/* Tables for images of n_pixels: pedestal and gain as [stage][pixel] (3 x n_pixels float32 each, ADU
 * and ADU per keV; gain 0 in all three stages marks a pixel without sensor, a gap, converted to 0),
 * `flagged` pixel indices (n_flagged) always given the no-data value. photon_energy_kev is used for
 * JC_OUTPUT_PHOTONS. NULL and err on failure. */
jc_tables *jc_create(uint64_t n_pixels, int output, const float *pedestal, const float *gain, double photon_energy_kev,
                     const uint64_t *flagged, uint64_t n_flagged, char *err, int err_len);

/* Bytes per output pixel (2 or 4). */
int jc_output_size(const jc_tables *tables);

/* Pixels of the images the tables convert. */
uint64_t jc_pixels(const jc_tables *tables);

/* Convert one image of raw words into out (n_pixels of the output kind); counts may be NULL. */
void jc_convert(const jc_tables *tables, const uint16_t *raw, void *out, jc_counts *counts);

void jc_destroy(jc_tables *tables);
#endif
