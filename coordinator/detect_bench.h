#ifndef FACERI_DETECT_BENCH_H
#define FACERI_DETECT_BENCH_H
/* Internal to faceri detect: its --bench mode (coordinator/detect_bench.c). */
#include "faceri/align.h"

typedef struct fr_bench_config {
  int limit;             /* images read from the inputs; 0: all */
  int min_face, max_face; /* 0: the detector's defaults */
  int detect_only;       /* skip the aligner passes */
} fr_bench_config;

/* Prints detection and alignment figures (text and a JSON line, or the JSON alone). */
int fr_detect_bench(fr_aligner *al, const char *const *inputs, int n_inputs, const fr_bench_config *cfg, int json,
                    fr_error *err);

#endif
