/*
 * What every C benchmark program measures besides its own counts: a
 * monotonic clock in seconds and the process's peak resident memory.
 * Included by each program (they are built one file each by
 * scripts/bench-c.sh); the functions are static inline so a program that
 * uses only one of them still builds with -Werror.
 */
#ifndef CHRONICA_BENCH_CLOCK_H
#define CHRONICA_BENCH_CLOCK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Peak resident memory (VmHWM) in KiB, 0 when /proc cannot tell. */
static inline long peak_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kib = atol(line + 6);
        }
    }
    if (f) {
        fclose(f);
    }
    return kib;
}

#endif
