// What first-touching memory costs on this machine (BENCHMARKS.md, "The machine").
// cc -O2 -o /tmp/memprobe bench/probe/memprobe.c && /tmp/memprobe bench-out/resnet50.onnx
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e3 + t.tv_nsec / 1e6; }

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: memprobe FILE (≥ 64 MB, in the page cache)\n"); return 2; }
    int fd = open(argv[1], O_RDONLY);
    struct stat st; fstat(fd, &st);
    size_t n = (size_t)st.st_size & ~(size_t)4095;
    volatile long sink = 0;
    char out[4096]; snprintf(out, sizeof out, "%s.probe", argv[1]);
    printf("%.0f MB; ms per run:\n", n / 1e6);
    for (int k = 0; k < 3; k++) {
        double t0 = now();
        char *anon = mmap(0, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        memset(anon, 1, n);                                   // fresh anonymous memory, first touch
        double t1 = now();
        char *map = mmap(0, n, PROT_READ, MAP_PRIVATE, fd, 0);
        long s = 0; for (size_t i = 0; i < n; i += 4096) s += map[i]; sink += s;   // mapped page-cache pages
        double t2 = now();
        for (size_t i = 0; i < n; i += 1 << 20) pread(fd, anon, 1 << 20, i); // 1 MB at a time into one warm buffer
        double t3 = now();
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        for (size_t i = 0; i < n; i += 1 << 20) write(o, anon + i, n - i < (1 << 20) ? n - i : 1 << 20);
        close(o);                                             // a new file
        double t4 = now();
        unlink(out);                                          // deleting a file just written
        double t5 = now();
        printf("fresh memory %.0f | mapped file %.0f | pread into a warm 1 MB buffer %.0f | write new file %.0f | delete it %.0f\n",
               t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4);
        munmap(anon, n); munmap(map, n);
    }
    return 0;
}
