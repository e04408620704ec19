/*
 * sim_jungfrau.h -- the simulated Jungfrau module behind the jungfrau-raw and jungfrau-pedestal
 * contents (sim_jungfrau.c): per-pixel gains and pedestals of the three gain stages, deterministic
 * from the seed; the raw word a pixel sends for the energy it collected; the detector's pedestal mode.
 * Keep this file parsable by cffi's cdef (the build script strips '#' lines).
 */
#ifndef STD_DAQ_SIM_JUNGFRAU_H
#define STD_DAQ_SIM_JUNGFRAU_H
#include <stdint.h>

/* Pedestal mode (slsDetectorPackage's, with 3 frames and 50 loops): 50 times [2 frames in dynamic
 * gain 0, 1 frame forced to gain 1], then 50 times [2 frames in gain 0, 1 forced to gain 2]: a cycle
 * of 300 frames, 200 of gain 0, 50 of gain 1, 50 of gain 2. Frame f (from 1) is at (f - 1) % 300. */
#define SIM_JF_PEDESTAL_FRAMES 3
#define SIM_JF_PEDESTAL_LOOPS 50
#define SIM_JF_PEDESTAL_CYCLE 300

/* Pixel states: working; dead (always sends 0: gain 0, ADC 0); noisy (20 times the others' noise). */
#define SIM_JF_PIXEL_OK 0
#define SIM_JF_PIXEL_DEAD 1
#define SIM_JF_PIXEL_NOISY 2

typedef struct sim_jf_pixel {
    double gain[3];     /* ADU per keV in gain 0, 1, 2 (1 and 2 negative: the ADC value falls with charge) */
    double pedestal[3]; /* ADU in gain 0, 1, 2 */
    double noise_scale; /* 1, or 20 for a noisy pixel */
    int state;          /* SIM_JF_PIXEL_* */
} sim_jf_pixel;

/* The calibration of one pixel of the simulator's pixel bank (see sim_content.c for the bank). */
void sim_jf_pixel_calibration(uint32_t seed, uint64_t bank_pixel, sim_jf_pixel *out);

/* The raw word of a pixel that collected `energy_kev` in one frame: the stage the module's gain
 * switching picks, pedestal + gain x energy, plus `gauss` (a standard normal) times the noise
 * (`noise_adu` in gain 0, a quarter of it in gain 1, an eighth in gain 2), rounded and clipped to 14 bits. */
uint32_t sim_jf_word(const sim_jf_pixel *pixel, double energy_kev, double noise_adu, double gauss);

/* The raw word of a dark frame taken in (forced) gain stage `stage`. */
uint32_t sim_jf_dark_word(const sim_jf_pixel *pixel, int stage, double noise_adu, double gauss);

/* The gain stage (0, 1, 2) frame number `frame` is taken in by the pedestal mode. */
int sim_jf_pedestal_stage(uint64_t frame);

/* The calibration of every pixel (row-major) of module `module`: gains and pedestals as
 * [stage][pixel] (3 x width x height doubles each), states one byte per pixel. */
void sim_jf_module_calibration(uint32_t seed, int module, int width, int height, double *gains, double *pedestals,
                               uint8_t *states);
#endif
