/*
 * cpu_dispatch.h -- one function compiled for AVX2 and for any x86-64, the processor choosing at load
 * time (GCC's target_clones, an ifunc). Under the sanitizers (tests/test_thread_safety.py) the ifunc's
 * resolver would run before their runtime is set up and crash the program, so there only the generic
 * version is built.
 */
#ifndef STD_DAQ_CPU_DISPATCH_H
#define STD_DAQ_CPU_DISPATCH_H

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define AVX2_OR_GENERIC
#else
#define AVX2_OR_GENERIC __attribute__((target_clones("avx2", "default")))
#endif

#endif
