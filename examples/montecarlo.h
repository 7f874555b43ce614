/*
 * montecarlo.h - what the mc_integrate plugin (montecarlo.c) and pi_client
 * share: the random number generator, the integrand 1/(1+x^2) and the loop
 * that draws samples.  Both compile this same code, so a task run in
 * pi_client --serial gives bit for bit the sums a worker returns.
 */
#ifndef TASKQ_EXAMPLE_MONTECARLO_H
#define TASKQ_EXAMPLE_MONTECARLO_H

#include <stdint.h>

/* The generator: xoshiro256** 1.0 (Blackman and Vigna, 2018). */
typedef struct mc_rng {
    uint64_t s[4]; /* the state; never all zero */
} mc_rng_t;

/* Running sums of one task's samples of f. */
typedef struct mc_sums {
    double sum;   /* sum of f(x_i) */
    double sumsq; /* sum of f(x_i)^2 */
    uint64_t n;   /* samples drawn */
} mc_sums_t;

/* SplitMix64 (Steele, Lea and Flood, 2014): advances *x and returns the
 * next output.  Used only to spread a 64-bit seed over the 256-bit state. */
static inline uint64_t mc_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* Seed r from a 64-bit seed, as the generator's authors recommend: four
 * SplitMix64 outputs, which are never all zero. */
static inline void mc_rng_seed(mc_rng_t *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = mc_splitmix64(&seed);
}

static inline uint64_t mc_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* The next 64 random bits (xoshiro256**). */
static inline uint64_t mc_rng_next(mc_rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = mc_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = mc_rotl(s[3], 45);
    return result;
}

/* A uniform double in [0, 1): the top 53 bits, scaled. */
static inline double mc_uniform(mc_rng_t *r)
{
    return (double)(mc_rng_next(r) >> 11) * 0x1.0p-53;
}

/* The integrand; its integral over [0, 1] is pi/4. */
static inline double mc_f(double x)
{
    return 1.0 / (1.0 + x * x);
}

/* Draw n more samples from r into acc.  Each sample is added in turn, so
 * drawing a task's samples in one call or in several chunks gives the same
 * bits. */
static inline void mc_draw(mc_rng_t *r, uint64_t n, mc_sums_t *acc)
{
    for (uint64_t i = 0; i < n; i++) {
        double y = mc_f(mc_uniform(r));
        acc->sum += y;
        acc->sumsq += y * y;
    }
    acc->n += n;
}

#endif /* TASKQ_EXAMPLE_MONTECARLO_H */
