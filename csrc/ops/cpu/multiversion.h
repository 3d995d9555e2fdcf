// Macros of the CPU loops compiled for several instruction sets.
//
// A loop is written once as an HWNAS_ALWAYS_INLINE template and instantiated inside
// plain HWNAS_MULTIVERSION functions: GCC/clang clone those per instruction set
// (target_clones) and pick the best clone when the library loads, so a wheel built for
// generic x86-64 still runs AVX2/AVX-512 code on machines that have it, and no -march
// flag is needed at build time. Always-inline matters: a helper that is not inlined is
// compiled once, for the default instruction set, and called from every clone.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__INTEL_COMPILER)
#define HWNAS_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HWNAS_MULTIVERSION
#endif

#if defined(__GNUC__) || defined(__clang__)
#define HWNAS_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define HWNAS_ALWAYS_INLINE inline
#endif
