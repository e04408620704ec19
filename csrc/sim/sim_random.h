/*
 * sim_random.h -- counter-based random numbers of the simulator's content: every value is a pure
 * function of (seed, stream, index), so any pixel of any frame can be recomputed on its own.
 */
#ifndef STD_DAQ_SIM_RANDOM_H
#define STD_DAQ_SIM_RANDOM_H
#include <math.h>
#include <stdint.h>

static inline uint64_t sim_mix(uint64_t x) /* splitmix64 finaliser */
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Uniform in (0, 1). */
static inline double sim_uniform(uint64_t key) { return ((sim_mix(key) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

/* Standard normal (Box-Muller from two uniforms of the key's stream). */
static inline double sim_normal(uint64_t key)
{
    return sqrt(-2.0 * log(sim_uniform(key))) * cos(6.283185307179586 * sim_uniform(key ^ 0x5bd1e995u));
}

/* The key of value `index` of random stream `stream` under `seed`. */
static inline uint64_t sim_key(uint32_t seed, uint64_t stream, uint64_t index)
{
    return sim_mix(((uint64_t)seed << 32) ^ (stream << 56) ^ sim_mix(index + 0x632be59bd9b4e019ull * stream));
}
#endif
