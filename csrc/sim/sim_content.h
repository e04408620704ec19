/*
 * sim_content.h -- detector-like pixel content for the simulator (sim_content.c).
 * Keep this file parsable by cffi's cdef (the build script strips '#' lines).
 */
#ifndef STD_DAQ_SIM_CONTENT_H
#define STD_DAQ_SIM_CONTENT_H
#include <stdint.h>

#define SIM_CONTENT_RAMP 0
#define SIM_CONTENT_PHOTONS 1
#define SIM_CONTENT_JUNGFRAU_RAW 2
#define SIM_CONTENT_JUNGFRAU_PEDESTAL 3
#define SIM_CONTENT_VARIANTS 16

/* What a realistic content is made of; two specs with equal fields give equal pixels. */
typedef struct sim_content_spec {
    int content;              /* SIM_CONTENT_* (not RAMP) */
    uint32_t seed;
    double flux;              /* photons per pixel per frame (background; spots and rings add to it) */
    double noise;             /* Jungfrau contents: the noise sigma in gain 0, ADU */
    double photon_energy_kev; /* jungfrau-raw: the energy of one photon */
    double broken_switch;     /* jungfrau-raw: fraction of pixels whose gain switching is broken: where they
                                 would leave gain 0 they send the invalid gain code 10 */
} sim_content_spec;

/* The pixels of one module frame (width x height, row-major) of a content, unpacked into the image
 * dtype (uint8 for 4 and 8 bit, uint16 for 12 and 16 bit, uint32): what a test expects.
 * 0 on success, -1 for an unknown content. */
int sim_content_module_pixels(const sim_content_spec *spec, uint64_t frame, int module, int bit_depth, int width,
                              int height, void *out);

/* Does the content repeat SIM_CONTENT_VARIANTS module frames per module (all but jungfrau-pedestal,
 * whose noise is fresh in every frame)? */
int sim_content_banked(const sim_content_spec *spec);

/* Which of the SIM_CONTENT_VARIANTS module frames frame `frame` of module `module` shows (banked
 * contents): two module frames of the same module and variant have the same pixels (the sender
 * keeps their wire bytes). */
int sim_content_variant(const sim_content_spec *spec, uint64_t frame, int module);

/* The values of `n_pixels` pixels from row-major pixel `first` of a module frame (the simulator packs
 * them into the wire format with the codec of detector_formats.h). */
void sim_content_values(const sim_content_spec *spec, uint64_t frame, int module, int bit_depth, int width,
                        int height, uint64_t first, uint64_t n_pixels, uint32_t *out);

/* Module `module` shows the bank's pixels from this one on (rows rotated per module): its pixel p is
 * bank pixel (p + rotation) % (width x height). */
uint64_t sim_content_rotation(int module, int width, int height);
#endif
