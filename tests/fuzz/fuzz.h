/*
 * fuzz.h - what the fuzz targets share: the entry point each one defines
 * (libFuzzer's, or a named one for fuzz_replay, which links every target
 * into one program) and the check that turns a broken property into a
 * crash that libFuzzer records and fuzz_replay reports.
 */
#ifndef TASKQ_FUZZ_H
#define TASKQ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/*
 * FUZZ_TARGET(name) opens the definition of a target's body, a function of
 * (const uint8_t *data, size_t size) that returns 0.  Under libFuzzer it is
 * LLVMFuzzerTestOneInput; built with FUZZ_REPLAY it is fuzz_<name>, which
 * fuzz_replay calls on the files of tests/fuzz/regressions/<name>/.
 */
#ifdef FUZZ_REPLAY
#define FUZZ_TARGET(name) int fuzz_##name(const uint8_t *data, size_t size)
#else
#define FUZZ_TARGET(name)                                                                         \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);                                  \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
#endif

/* Abort with a message naming the broken property unless cond holds. */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif /* TASKQ_FUZZ_H */
