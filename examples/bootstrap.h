/*
 * bootstrap.h - what the bootstrap_fit plugin (bootstrap_plugin.c) and its
 * client (bootstrap.c) share: one task's work (simulate a data set, fit a
 * line by least squares, bootstrap the fit), drawn from montecarlo.h's
 * generator, and the msgpack forms of its argument and result.  Both
 * compile this same code, so a data set run in the client's own process
 * gives bit for bit what a worker returns.
 */
#ifndef TASKQ_EXAMPLE_BOOTSTRAP_H
#define TASKQ_EXAMPLE_BOOTSTRAP_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <taskq.h>

#include "montecarlo.h"

/* The x of every point is drawn uniformly from [BS_X_MIN, BS_X_MAX). */
#define BS_X_MIN 0.0
#define BS_X_MAX 10.0

/* Bounds of a task's argument.  With at least 10 points, a resample whose
 * x are all the same (it has no slope, and is drawn again) turns up at
 * most once in 10^9 resamples. */
#define BS_MIN_POINTS 10
#define BS_MAX_POINTS 1000000
#define BS_MIN_RESAMPLES 2
#define BS_MAX_RESAMPLES 1000000

/* One task: the model y = intercept + slope x + N(0, sigma^2), and how to
 * sample it. */
typedef struct bs_params {
    uint64_t seed;      /* of the task's random stream */
    uint32_t points;    /* n, the points of the data set */
    uint32_t resamples; /* B, the bootstrap resamples of the points */
    double intercept;   /* the true intercept */
    double slope;       /* the true slope */
    double sigma;       /* the noise's standard deviation, >= 0 */
} bs_params_t;

/* What a task gives back. */
typedef struct bs_result {
    double intercept;    /* least-squares estimates from the data set */
    double slope;
    double se_intercept; /* their bootstrap standard errors: the standard */
    double se_slope;     /* deviations of the B refits (divisor B - 1) */
} bs_result_t;

/* Two independent standard normal deviates (Box and Muller, 1958). */
static inline void bs_normal_pair(mc_rng_t *r, double *z0, double *z1)
{
    double u = 1.0 - mc_uniform(r); /* in (0, 1], so log(u) is finite */
    double v = 2.0 * M_PI * mc_uniform(r);
    double rad = sqrt(-2.0 * log(u));
    *z0 = rad * cos(v);
    *z1 = rad * sin(v);
}

/* A uniform integer in [0, n), n >= 1, without bias (Lemire, 2019: the
 * multiply-shift map, rejecting the few low products that would favour
 * some values). */
static inline uint32_t bs_below(mc_rng_t *r, uint32_t n)
{
    uint64_t m = (mc_rng_next(r) >> 32) * n;
    if ((uint32_t)m < n) {
        uint32_t floor = (0u - n) % n; /* 2^32 mod n */
        while ((uint32_t)m < floor)
            m = (mc_rng_next(r) >> 32) * n;
    }
    return (uint32_t)(m >> 32);
}

/* Sums over the points of a fit, with x and y taken relative to the data
 * set's means (cx, cy in bs_line), which keeps them small and the
 * differences below free of cancellation. */
typedef struct bs_sums {
    double n, su, sv, suu, suv;
} bs_sums_t;

static inline void bs_add(bs_sums_t *s, double u, double v)
{
    s->n += 1;
    s->su += u;
    s->sv += v;
    s->suu += u * u;
    s->suv += u * v;
}

/* The least-squares line through the points summed in s, of x = cx + u and
 * y = cy + v: *a and *b get its intercept (at x = 0) and slope.  Returns
 * false, writing nothing, if the points' x have no spread. */
static inline bool bs_line(const bs_sums_t *s, double cx, double cy, double *a, double *b)
{
    double mu = s->su / s->n, mv = s->sv / s->n;
    double suu = s->suu - s->n * mu * mu;
    if (!(suu > 0))
        return false;
    *b = (s->suv - s->n * mu * mv) / suu;
    *a = cy + mv - *b * (cx + mu);
    return true;
}

/*
 * One task: draw the data set from p->seed (n x uniform on [BS_X_MIN,
 * BS_X_MAX), then the n noise terms), fit it, then fit B resamples of its
 * points drawn with replacement (a resample whose x are all equal is drawn
 * again) and write the fit and the refits' standard deviations to *ret.
 * cancelled, if not NULL, is asked every 64 resamples whether to give up.
 * Returns 0, TASKQ_ENOMEM, TASKQ_ECANCELED, or TASKQ_EINVAL if the data
 * set's x are all equal (then no line fits; with 10 or more uniform
 * doubles the odds are below 2^-470); on an error *ret is not written.
 */
static inline int bs_run(const bs_params_t *p, bool (*cancelled)(void *), void *ctx,
                         bs_result_t *ret)
{
    uint32_t n = p->points;
    double *u = malloc(2 * (size_t)n * sizeof *u);
    if (!u)
        return TASKQ_ENOMEM;
    double *v = u + n;
    mc_rng_t rng;
    mc_rng_seed(&rng, p->seed);
    for (uint32_t i = 0; i < n; i++)
        u[i] = BS_X_MIN + (BS_X_MAX - BS_X_MIN) * mc_uniform(&rng);
    for (uint32_t i = 0; i < n; i += 2) {
        double z0, z1;
        bs_normal_pair(&rng, &z0, &z1);
        v[i] = p->intercept + p->slope * u[i] + p->sigma * z0;
        if (i + 1 < n)
            v[i + 1] = p->intercept + p->slope * u[i + 1] + p->sigma * z1;
    }
    double cx = 0, cy = 0;
    for (uint32_t i = 0; i < n; i++) {
        cx += u[i];
        cy += v[i];
    }
    cx /= n;
    cy /= n;
    bs_sums_t all = {0};
    for (uint32_t i = 0; i < n; i++) {
        u[i] -= cx;
        v[i] -= cy;
        bs_add(&all, u[i], v[i]);
    }
    bs_result_t r;
    if (!bs_line(&all, cx, cy, &r.intercept, &r.slope)) {
        free(u); /* all x equal: never seen in practice, but no resample could differ */
        return TASKQ_EINVAL;
    }

    /* Welford's running means and sums of squared deviations of the refits. */
    double mean_a = 0, m2_a = 0, mean_b = 0, m2_b = 0;
    for (uint32_t k = 0; k < p->resamples;) {
        if (k % 64 == 0 && cancelled && cancelled(ctx)) {
            free(u);
            return TASKQ_ECANCELED;
        }
        bs_sums_t s = {0};
        uint32_t first = bs_below(&rng, n);
        bool spread = false;
        bs_add(&s, u[first], v[first]);
        for (uint32_t i = 1; i < n; i++) {
            uint32_t j = bs_below(&rng, n);
            spread |= u[j] != u[first];
            bs_add(&s, u[j], v[j]);
        }
        double a, b;
        if (!spread || !bs_line(&s, cx, cy, &a, &b))
            continue;
        k++;
        double da = a - mean_a, db = b - mean_b;
        mean_a += da / k;
        mean_b += db / k;
        m2_a += da * (a - mean_a);
        m2_b += db * (b - mean_b);
    }
    free(u);
    r.se_intercept = sqrt(m2_a / (p->resamples - 1));
    r.se_slope = sqrt(m2_b / (p->resamples - 1));
    *ret = r;
    return 0;
}

/* ---- The wire forms ----------------------------------------------------
 * Argument: {"seed": uint or nil, "points": uint, "resamples": uint,
 * "intercept": number, "slope": number, "sigma": number}; without a seed
 * (or with nil) the worker uses the task's seed from the broker.
 * Result: {"intercept", "slope", "se_intercept", "se_slope"}, all f64. */

static inline void bs_pack_key(msgpack_packer *pk, const char *key)
{
    msgpack_pack_str(pk, strlen(key));
    msgpack_pack_str_body(pk, key, strlen(key));
}

static inline bool bs_key_is(const msgpack_object *k, const char *name)
{
    size_t len = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == len &&
           memcmp(k->via.str.ptr, name, len) == 0;
}

/* Encode p, with its seed, as the argument of a task into sb (cleared first). */
static inline void bs_params_pack(const bs_params_t *p, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    bs_pack_key(&pk, "seed");
    msgpack_pack_uint64(&pk, p->seed);
    bs_pack_key(&pk, "points");
    msgpack_pack_uint32(&pk, p->points);
    bs_pack_key(&pk, "resamples");
    msgpack_pack_uint32(&pk, p->resamples);
    bs_pack_key(&pk, "intercept");
    msgpack_pack_double(&pk, p->intercept);
    bs_pack_key(&pk, "slope");
    msgpack_pack_double(&pk, p->slope);
    bs_pack_key(&pk, "sigma");
    msgpack_pack_double(&pk, p->sigma);
}

/* A finite number of any msgpack numeric type into *ret; false if o is not one. */
static inline bool bs_number(const msgpack_object *o, double *ret)
{
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        *ret = (double)o->via.u64;
        return true;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        *ret = (double)o->via.i64;
        return true;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        *ret = o->via.f64;
        return isfinite(*ret);
    default:
        return false;
    }
}

/* An unsigned integer in [min, max] into *ret; false if o is not one. */
static inline bool bs_count(const msgpack_object *o, uint32_t min, uint32_t max, uint32_t *ret)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 < min || o->via.u64 > max)
        return false;
    *ret = (uint32_t)o->via.u64;
    return true;
}

/* Read a task's argument into *p, whose seed is kept when the argument has
 * none or nil.  Returns NULL, or why the argument is bad. */
static inline const char *bs_params_parse(const msgpack_object *o, bs_params_t *p)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return "the argument is not a map";
    unsigned seen = 0;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        const msgpack_object *v = &o->via.map.ptr[i].val;
        if (bs_key_is(k, "seed")) {
            if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                p->seed = v->via.u64;
            else if (v->type != MSGPACK_OBJECT_NIL)
                return "\"seed\" is neither an unsigned integer nor nil";
        } else if (bs_key_is(k, "points")) {
            if (!bs_count(v, BS_MIN_POINTS, BS_MAX_POINTS, &p->points))
                return "\"points\" is not an integer in [10, 1000000]";
            seen |= 1;
        } else if (bs_key_is(k, "resamples")) {
            if (!bs_count(v, BS_MIN_RESAMPLES, BS_MAX_RESAMPLES, &p->resamples))
                return "\"resamples\" is not an integer in [2, 1000000]";
            seen |= 2;
        } else if (bs_key_is(k, "intercept")) {
            if (!bs_number(v, &p->intercept))
                return "\"intercept\" is not a finite number";
            seen |= 4;
        } else if (bs_key_is(k, "slope")) {
            if (!bs_number(v, &p->slope))
                return "\"slope\" is not a finite number";
            seen |= 8;
        } else if (bs_key_is(k, "sigma")) {
            if (!bs_number(v, &p->sigma) || p->sigma < 0)
                return "\"sigma\" is not a finite number >= 0";
            seen |= 16;
        } else {
            return "unknown key (only \"seed\", \"points\", \"resamples\", \"intercept\", "
                   "\"slope\" and \"sigma\")";
        }
    }
    return seen == 31 ? NULL
                      : "missing key (\"points\", \"resamples\", \"intercept\", \"slope\" and "
                        "\"sigma\" are required)";
}

/* Encode r as a task's result into sb (cleared first). */
static inline void bs_result_pack(const bs_result_t *r, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    bs_pack_key(&pk, "intercept");
    msgpack_pack_double(&pk, r->intercept);
    bs_pack_key(&pk, "slope");
    msgpack_pack_double(&pk, r->slope);
    bs_pack_key(&pk, "se_intercept");
    msgpack_pack_double(&pk, r->se_intercept);
    bs_pack_key(&pk, "se_slope");
    msgpack_pack_double(&pk, r->se_slope);
}

/* Read a task's result into *r; false (and *r partly written) if o is not
 * one.  The values are taken as sent, bit for bit. */
static inline bool bs_result_parse(const msgpack_object *o, bs_result_t *r)
{
    if (o->type != MSGPACK_OBJECT_MAP || o->via.map.size != 4)
        return false;
    static const char *const keys[4] = {"intercept", "slope", "se_intercept", "se_slope"};
    double *vals[4] = {&r->intercept, &r->slope, &r->se_intercept, &r->se_slope};
    unsigned seen = 0;
    for (uint32_t i = 0; i < 4; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        for (unsigned j = 0; j < 4; j++) {
            if (bs_key_is(k, keys[j]) && v->type == MSGPACK_OBJECT_FLOAT64) {
                *vals[j] = v->via.f64;
                seen |= 1u << j;
            }
        }
    }
    return seen == 15;
}

#endif /* TASKQ_EXAMPLE_BOOTSTRAP_H */
