/*
 * sim_jungfrau.c -- the simulated Jungfrau module: three dynamic gain stages per pixel.
 *
 * Gains (ADU per keV), per pixel: gain 0 about 40 (2 % spread), gain 1 about -1.5 and gain 2 about
 * -0.25 (3 % spread). Pedestals (ADU): gain 0 about 3000, gain 1 about 14500, gain 2 about 14000
 * (spread 100 to 150). The signs follow the detector: in gain 1 and 2 the ADC value falls as charge
 * collects. Gain 2 is steeper than a real module's so that one 12.4 keV photon still moves the ADC
 * by about 3 ADU: the conversion can then give back every photon count exactly (the test truth).
 *
 * Gain switching: a pixel stays in gain 0 while gain0 x energy stays within G0_RANGE_ADU of its
 * pedestal, switches to gain 1 beyond, and to gain 2 when |gain1| x energy passes G1_RANGE_ADU; in
 * gain 2 the ADC value bottoms out at 0 (saturated, about 4,500 photons of 12.4 keV).
 * One pixel in 10,000 is dead (always 0), one in 10,000 noisy (20 times the noise).
 */
#include "sim_jungfrau.h"

#include <math.h>

#include "detector_formats.h"
#include "sim_content.h"
#include "sim_random.h"

#define G0_RANGE_ADU 11000.0
#define G1_RANGE_ADU 12500.0
#define ADC_TOP 16382.0 /* 16383 in gain 2 would be the receiver's missing value 0xFFFF */
#define BAD_PIXEL_FRACTION 1e-4
#define NOISY_FACTOR 20.0

enum { STREAM_GAIN = 50, STREAM_PEDESTAL = 53, STREAM_STATE = 56 };

static const double GAIN_MEAN[GAIN_STAGES] = {40.0, -1.5, -0.25};
static const double GAIN_SPREAD[GAIN_STAGES] = {0.02, 0.03, 0.03};
static const double PEDESTAL_MEAN[GAIN_STAGES] = {3000.0, 14500.0, 14000.0};
static const double PEDESTAL_SPREAD[GAIN_STAGES] = {100.0, 150.0, 150.0};
static const double STAGE_NOISE[GAIN_STAGES] = {1.0, 0.25, 0.125};

void sim_jf_pixel_calibration(uint32_t seed, uint64_t bank_pixel, sim_jf_pixel *out)
{
    for (int s = 0; s < GAIN_STAGES; s++) {
        out->gain[s] = GAIN_MEAN[s] * (1.0 + GAIN_SPREAD[s] * sim_normal(sim_key(seed, STREAM_GAIN + s, bank_pixel)));
        out->pedestal[s] = PEDESTAL_MEAN[s] + PEDESTAL_SPREAD[s] * sim_normal(sim_key(seed, STREAM_PEDESTAL + s, bank_pixel));
    }
    double u = sim_uniform(sim_key(seed, STREAM_STATE, bank_pixel));
    out->state = u < BAD_PIXEL_FRACTION ? SIM_JF_PIXEL_DEAD : u < 2 * BAD_PIXEL_FRACTION ? SIM_JF_PIXEL_NOISY : SIM_JF_PIXEL_OK;
    out->noise_scale = out->state == SIM_JF_PIXEL_NOISY ? NOISY_FACTOR : 1.0;
}

static uint32_t adc_word(const sim_jf_pixel *pixel, int stage, double mean, double noise_adu, double gauss)
{
    if (pixel->state == SIM_JF_PIXEL_DEAD) return 0;
    double adc = floor(mean + noise_adu * STAGE_NOISE[stage] * pixel->noise_scale * gauss + 0.5);
    return gain_word(stage, (uint32_t)(adc < 0 ? 0 : adc > ADC_TOP ? ADC_TOP : adc));
}

uint32_t sim_jf_word(const sim_jf_pixel *pixel, double energy_kev, double noise_adu, double gauss)
{
    int stage = pixel->gain[0] * energy_kev <= G0_RANGE_ADU ? 0 : -pixel->gain[1] * energy_kev <= G1_RANGE_ADU ? 1 : 2;
    return adc_word(pixel, stage, pixel->pedestal[stage] + pixel->gain[stage] * energy_kev, noise_adu, gauss);
}

uint32_t sim_jf_dark_word(const sim_jf_pixel *pixel, int stage, double noise_adu, double gauss)
{
    return adc_word(pixel, stage, pixel->pedestal[stage], noise_adu, gauss);
}

int sim_jf_pedestal_stage(uint64_t frame)
{
    uint64_t at = (frame + SIM_JF_PEDESTAL_CYCLE - 1) % SIM_JF_PEDESTAL_CYCLE; /* frame 0 counts as the last */
    uint64_t half = SIM_JF_PEDESTAL_CYCLE / 2;
    if (at % SIM_JF_PEDESTAL_FRAMES != SIM_JF_PEDESTAL_FRAMES - 1) return 0;
    return at < half ? 1 : 2;
}

void sim_jf_module_calibration(uint32_t seed, int module, int width, int height, double *gains, double *pedestals,
                               uint8_t *states)
{
    uint64_t n = (uint64_t)width * height, rotation = sim_content_rotation(module, width, height);
    for (uint64_t p = 0; p < n; p++) {
        sim_jf_pixel pixel;
        sim_jf_pixel_calibration(seed, (p + rotation) % n, &pixel);
        for (int s = 0; s < GAIN_STAGES; s++) {
            gains[s * n + p] = pixel.gain[s];
            pedestals[s * n + p] = pixel.pedestal[s];
        }
        states[p] = (uint8_t)pixel.state;
    }
}
