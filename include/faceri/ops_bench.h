#ifndef FACERI_OPS_BENCH_H
#define FACERI_OPS_BENCH_H
/* Micro-benchmark of the conv kernels on MobileFaceNet's layer shapes (random
 * weights, 52 convs): each layer is recorded as its own sequence and run several
 * times; wall and process CPU milliseconds and GFLOP/s are reported per layer and in
 * total. On a CPU device (lavapipe) shared with other work, wall time depends on the
 * load; CPU time divided by the core count estimates the uncontended time. */
#include <stdio.h>

#include "faceri/error.h"
#include "faceri/vk_context.h"

typedef struct fr_ops_bench_summary {
  double total_ms;       /* sum over layers of the best run: CPU ms / cores on a CPU device, else wall ms */
  double images_per_s;   /* batch / total_ms */
  double gflops;         /* 2 * MACs / total time */
  int layers;
} fr_ops_bench_summary;

/* batch: images per run; runs: timed repetitions per layer (the best is kept; one
 * more untimed run warms up). out: per-layer table (NULL: quiet). */
int fr_ops_bench_layers(fr_vk_context *ctx, int batch, int runs, FILE *out, fr_ops_bench_summary *summary,
                        fr_error *err);

#endif
