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
#define SIM_CONTENT_VARIANTS 16

/* The pixels of one module frame (width x height, row-major) of a content type, unpacked into
 * the image dtype (uint8 for 4 and 8 bit, uint16 for 12 and 16 bit, uint32): what a test expects.
 * Deterministic from (content, seed, flux, frame, module). 0 on success, -1 for an unknown content. */
int sim_content_module_pixels(int content, uint32_t seed, double flux, uint64_t frame, int module, int bit_depth,
                              int width, int height, void *out);

/* Which of the SIM_CONTENT_VARIANTS module frames frame `frame` of module `module` shows: two module
 * frames of the same module and variant have the same pixels (the sender keeps their wire bytes). */
int sim_content_variant(uint32_t seed, uint64_t frame, int module);

/* The values of `n_pixels` pixels from row-major pixel `first` of a module frame (the simulator packs
 * them into the wire format with the codec of detector_formats.h). */
void sim_content_values(int content, uint32_t seed, double flux, uint64_t frame, int module, int bit_depth,
                        int width, int height, uint64_t first, uint64_t n_pixels, uint32_t *out);
#endif
