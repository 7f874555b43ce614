/*
 * replay.c - fuzz_replay: the fuzz targets' bodies, built without
 * libFuzzer, run over the files of DIR/<target>/ for every DIR given (the
 * inputs that once broke a target, tests/fuzz/regressions, and the seeds).
 * A broken property aborts; a missing DIR/<target> holds no input.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

int fuzz_decode(const uint8_t *data, size_t size);
int fuzz_iter(const uint8_t *data, size_t size);
int fuzz_object(const uint8_t *data, size_t size);
int fuzz_broker(const uint8_t *data, size_t size);

static const struct target {
    const char *name;
    int (*run)(const uint8_t *data, size_t size);
} targets[] = {
    {"decode", fuzz_decode},
    {"iter", fuzz_iter},
    {"object", fuzz_object},
    {"broker", fuzz_broker},
};

/* Run t over the file at path, read into a buffer of its exact size.
 * Returns 0, or -1 if it cannot be read (reported). */
static int run_file(const struct target *t, const char *path)
{
    FILE *fp = fopen(path, "rb");
    struct stat st;
    uint8_t *buf = NULL;
    int rc = -1;
    if (fp && fstat(fileno(fp), &st) == 0 && (buf = malloc(st.st_size ? (size_t)st.st_size : 1)) &&
        fread(buf, 1, (size_t)st.st_size, fp) == (size_t)st.st_size) {
        t->run(buf, (size_t)st.st_size);
        rc = 0;
    } else {
        fprintf(stderr, "fuzz_replay: cannot read %s\n", path);
    }
    free(buf);
    if (fp)
        fclose(fp);
    return rc;
}

static int regular(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

/* Run t over every file of dir/<t->name>, in name order.  Returns the
 * number of files run, or -1 if one could not be read. */
static int run_dir(const struct target *t, const char *dir)
{
    char path[4096];
    struct dirent **names;
    snprintf(path, sizeof path, "%s/%s", dir, t->name);
    int n = scandir(path, &names, regular, alphasort);
    if (n < 0)
        return errno == ENOENT ? 0 : -1;
    int rc = n;
    for (int k = 0; k < n; k++) {
        char file[8192];
        snprintf(file, sizeof file, "%s/%s", path, names[k]->d_name);
        printf("fuzz_replay: %s %s\n", t->name, file);
        if (rc >= 0 && run_file(t, file) < 0)
            rc = -1;
        free(names[k]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: fuzz_replay DIR...  (runs each target over DIR/<target>/*)\n");
        return 2;
    }
    /* Each line out before its input runs, in case that input aborts. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int a = 1; a < argc; a++) {
        for (size_t k = 0; k < sizeof targets / sizeof *targets; k++) {
            int n = run_dir(&targets[k], argv[a]);
            if (n < 0) {
                fprintf(stderr, "fuzz_replay: cannot read %s/%s\n", argv[a], targets[k].name);
                return 1;
            }
            printf("fuzz_replay: %s: %d inputs of %s\n", argv[a], n, targets[k].name);
        }
    }
    return 0;
}
