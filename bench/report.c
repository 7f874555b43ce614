/*
 * report.c - the figures of taskq-bench: the median [min–max] of the runs,
 * one human line per figure set, and one JSON record per figure set (on
 * stdout with --json, and in results.jsonl with --out-dir), the record
 * bench/compare.sh reads.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* v sorted into s (BENCH_MAX_RUNS entries). */
static void sorted(const double *v, unsigned n, double *s)
{
    memcpy(s, v, n * sizeof *v);
    qsort(s, n, sizeof *s, cmp_double);
}

double bench_median(const double *v, unsigned n, double *ret_min, double *ret_max)
{
    double s[BENCH_MAX_RUNS];
    sorted(v, n, s);
    if (ret_min)
        *ret_min = s[0];
    if (ret_max)
        *ret_max = s[n - 1];
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

unsigned bench_median_index(const double *v, unsigned n)
{
    double s[BENCH_MAX_RUNS];
    sorted(v, n, s);
    double want = s[(n - 1) / 2];
    unsigned i = 0;
    while (v[i] != want)
        i++;
    return i;
}

void bench_report_init(bench_report_t *r, const char *workload, const char *variant, uint64_t n)
{
    *r = (bench_report_t){.workload = workload, .n = n, .cpu = true};
    snprintf(r->variant, sizeof r->variant, "%s", variant);
}

bench_figure_t *bench_report_fig(bench_report_t *r, const char *key, const char *label,
                                 const char *unit, int decimals)
{
    bench_figure_t *f = &r->figs[r->n_figs++];
    *f = (bench_figure_t){.key = key, .label = label, .unit = unit, .decimals = decimals};
    return f;
}

void bench_report_extra(bench_report_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = need >= 0 ? realloc(r->extra, r->extra_len + (size_t)need + 1) : NULL;
    if (!p)
        return; /* the record goes out without these members */
    r->extra = p;
    va_start(ap, fmt);
    vsnprintf(p + r->extra_len, (size_t)need + 1, fmt, ap);
    va_end(ap);
    r->extra_len += (size_t)need;
}

void bench_report_fini(bench_report_t *r)
{
    free(r->extra);
    r->extra = NULL;
    r->extra_len = 0;
}

/* v with `decimals` decimals and thousands separators. */
static const char *fmt_num(double v, int decimals, char *buf, size_t cap)
{
    char raw[64];
    snprintf(raw, sizeof raw, "%.*f", decimals, fabs(v));
    size_t int_len = strcspn(raw, ".");
    size_t o = 0;
    if (v < 0 && o + 1 < cap)
        buf[o++] = '-';
    for (size_t i = 0; raw[i] && o + 1 < cap; i++) {
        if (i && i < int_len && (int_len - i) % 3 == 0)
            buf[o++] = ',';
        if (o + 1 < cap)
            buf[o++] = raw[i];
    }
    buf[o] = '\0';
    return buf;
}

/* "342,118 tasks/s [330,210–350,900]" with its label first. */
static void print_value(FILE *f, const char *label, const char *unit, int decimals,
                        const double *v, unsigned n)
{
    double lo, hi, med = bench_median(v, n, &lo, &hi);
    char a[48], b[48], c[48];
    fprintf(f, "%s%s%s%s%s [%s–%s]", label, label[0] ? " " : "",
            fmt_num(med, decimals, a, sizeof a), unit[0] ? " " : "", unit,
            fmt_num(lo, decimals, b, sizeof b), fmt_num(hi, decimals, c, sizeof c));
}

static void print_human(FILE *f, const bench_report_t *r)
{
    fprintf(f, "%s: ", r->title);
    for (size_t i = 0; i < r->n_figs; i++) {
        const bench_figure_t *g = &r->figs[i];
        if (i)
            fputs(", ", f);
        print_value(f, g->label, g->unit, g->decimals, g->v, r->runs);
    }
    if (r->cpu) {
        fputs("; ", f);
        print_value(f, "broker", "µs/task", 2, r->cpu_us, r->runs);
    }
    fputc('\n', f);
    fflush(f);
}

static void print_summary(FILE *f, const char *key, const double *v, unsigned n)
{
    double lo, hi, med = bench_median(v, n, &lo, &hi);
    fprintf(f, "\"%s\":{\"median\":%.10g,\"min\":%.10g,\"max\":%.10g}", key, med, lo, hi);
}

static void print_json(FILE *f, const bench_report_t *r)
{
    fprintf(f, "{\"system\":\"taskq\",\"workload\":\"%s\",\"variant\":\"%s\",\"n\":%" PRIu64
               ",\"runs\":%u,\"figures\":{",
            r->workload, r->variant, r->n, r->runs);
    for (size_t i = 0; i < r->n_figs; i++) {
        if (i)
            fputc(',', f);
        print_summary(f, r->figs[i].key, r->figs[i].v, r->runs);
    }
    fputc('}', f);
    if (r->cpu) {
        fputc(',', f);
        print_summary(f, "broker_cpu_us_per_task", r->cpu_us, r->runs);
    }
    fprintf(f, "%s}\n", r->extra ? r->extra : "");
    fflush(f);
}

void bench_report_print(bench_t *b, bench_report_t *r)
{
    print_human(b->o.json ? stderr : stdout, r);
    if (b->o.json)
        print_json(stdout, r);
    if (b->jsonl)
        print_json(b->jsonl, r);
    bench_report_fini(r);
}

void bench_say(bench_t *b, const char *fmt, ...)
{
    FILE *f = b->o.json ? stderr : stdout;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fflush(f);
}
