#ifndef FACERI_TRAIN_OPS_BENCH_H
#define FACERI_TRAIN_OPS_BENCH_H
/* Micro-benchmark of the convolution backward kernels on MobileFaceNet's layer shapes
 * (random data): for each distinct layer shape, the input gradient (bwd data), the
 * weight gradient with its reduction (bwd filter) and the epilogue's backward (PReLU's
 * input and slope gradients and the bias gradient on the layer's output) are recorded
 * as their own sequences and run several times, best run kept. Per shape: the kernel
 * each uses, wall milliseconds and GFLOP/s per CPU-second (2 x MACs per op); totals
 * weight every shape by how often the network has it. The stem's input gradient is skipped, as the trainer
 * skips it. On a CPU device shared with other work, CPU time / cores estimates the
 * uncontended time (see fr_ops_bench_layers). */
#include <stdio.h>

#include "faceri/error.h"
#include "faceri/vk_context.h"

typedef struct fr_train_ops_bench_summary {
  double data_ms, filter_ms, epilogue_ms; /* whole network: sum over layers of the best run (as above) */
  double data_gflops, filter_gflops;
  int shapes, layers;
} fr_train_ops_bench_summary;

/* batch: images per run; runs: timed repetitions (one more untimed run warms up).
 * out: per-shape table (NULL: quiet). filter: NULL for every shape, else a substring
 * that the shape's label ("dw 3x3 s2 56 128", "conv 1x1 s1 28 64->128") must contain. */
int fr_train_ops_bench(fr_vk_context *ctx, int batch, int runs, const char *filter, FILE *out,
                       fr_train_ops_bench_summary *summary, fr_error *err);

#endif
