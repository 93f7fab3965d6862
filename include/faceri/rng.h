#ifndef FACERI_RNG_H
#define FACERI_RNG_H
/* The counter-based random numbers of training and augmentation: SplitMix64's mixer
 * and stream (Steele, Lea, Flood 2014). Every draw is a pure function of (seed,
 * counters), so a resumed run draws exactly what an uninterrupted one would, on
 * every platform. Header-only: the functions are a few multiplies. */
#include <stdint.h>

/* SplitMix64's finaliser: a bijection that mixes every input bit into every output bit. */
static inline uint64_t fr_mix64(uint64_t z)
{
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* The next value of the stream whose state is *x. */
static inline uint64_t fr_splitmix64(uint64_t *x) { return fr_mix64(*x += 0x9e3779b97f4a7c15ull); }

/* Uniform in [0, 1) from the top 53 bits. */
static inline double fr_uniform01(uint64_t v) { return (double)(v >> 11) * (1.0 / 9007199254740992.0); }

#endif
