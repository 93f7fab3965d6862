#ifndef FACERI_OPS_BWD_INTERNAL_H
#define FACERI_OPS_BWD_INTERNAL_H
/* Shared by the training-op sources: the ops object, argument checks, reduction
 * chunking and dispatch helpers (ops_bwd.c), and the convolution backward kernels
 * (ops_bwd_conv.c, ops_bwd_dw.c). */
#include "faceri/train_ops.h"

/* Rows per reduction chunk: at least this many, and at most so many chunks. */
#define CHUNK_MIN_ROWS 64u
#define CHUNK_MAX_COUNT 256u
/* lavapipe silently cuts loops past ~65k iterations per invocation (DESIGN §3). */
#define CHUNK_MAX_ROWS 16384u

/* Returned by a fast kernel's record function that recorded nothing because the
 * arguments do not suit it (texel views too long or misaligned, grid too large): the
 * caller takes the direct kernel. */
#define TOPS_FALLBACK (-1)

/* Fast (texel-fed) convolution backward kernels; NULL where the device lacks them. */
typedef struct fr_tops_conv {
  int texel_ok; /* RGBA32F texel buffers, subgroup shuffles of >= 8 lanes */
  int cpu;      /* a CPU device: one subgroup per workgroup, fixed-K variants */
  uint32_t gemm_wg, filter_wg, dw_wg;
  fr_vk_kernel *data_gemm;          /* 1x1 input gradient, any K */
  fr_vk_kernel *data_gemm_fixed[3]; /* ... specialised for out_c = 64, 128, 256 (CPU only) */
  fr_vk_kernel *filter_gemm[2];     /* dense weight gradient: [0] 1x1, [1] implicit im2col */
  /* depthwise, channels % 4 == 0: [0] 3x3 stride 1, [1] 3x3 stride 2, [2] any shape */
  fr_vk_kernel *dw_data[3], *dw_filter[3];
  fr_vk_kernel *eltwise[2]; /* element-wise backward ops: [0] flat, [1] with column sums */
} fr_tops_conv;

/* Ops of train_eltwise_bwd (EB_* there). */
enum { EB_ADD, EB_RELU, EB_PRELU, EB_RELU_BWD, EB_PRELU_BWD, EB_COLSUM };

struct fr_train_ops {
  fr_vk_context *ctx;
  fr_vk_kernel *bwd_data, *bwd_filter, *reduce, *eltwise, *bn_stats, *l2norm_bwd, *pool, *pool_bwd, *concat;
  uint32_t wg;
  fr_tops_conv fast;
};

typedef struct reduce_push {
  uint32_t rows, cols, rows_per_chunk, chunks, mode, stage, mul_v1;
  float scale;
} reduce_push;

uint32_t fr_tops_clamp_wg(const fr_vk_device_info *info, uint32_t want);
/* Splits `rows` into equal chunks; a function of the shape alone. */
void fr_tops_chunking(uint64_t rows, uint32_t *rows_per_chunk, uint32_t *chunks);
/* A binding must hold `floats` floats from its offset. */
int fr_tops_need(fr_vk_arg a, uint64_t floats, const char *op, const char *what, fr_error *err);
/* A 1-D launch of `invocations` lanes of t->wg, split over x and y. */
int fr_tops_dispatch(fr_train_ops *t, fr_vk_sequence *seq, const fr_vk_kernel *k, const fr_vk_arg *args,
                     const void *push, uint64_t invocations, fr_error *err);
/* Stage 2 of every reduction: out[c] = scale * sum over chunks of part[k][c] (* v1[c]). */
int fr_tops_reduce_final(fr_train_ops *t, fr_vk_sequence *seq, uint32_t cols, uint32_t chunks, float scale,
                         fr_vk_arg v1, fr_vk_arg part, fr_vk_arg out, fr_error *err);

/* ops_bwd_conv.c: the convolution kernels, made and freed with the ops object. */
int fr_tops_conv_create(fr_train_ops *t, fr_error *err);
void fr_tops_conv_destroy(fr_train_ops *t);
/* ops_bwd_eltwise.c. fr_tops_eltwise: op over a [rows, cols] tensor (cols % 4 == 0, or
 * any shape for EB_ADD), b and v (per column) read as the op needs, out written unless
 * EB_COLSUM; with part.buffer set, each chunk's column sums of the op's term go to
 * part (fr_tops_chunking of rows, fr_train_reduce_scratch_floats floats) for
 * fr_tops_reduce_final. Arguments already checked; TOPS_FALLBACK where the texel views
 * do not fit. */
int fr_tops_eltwise_create(fr_train_ops *t, fr_error *err);
void fr_tops_eltwise_destroy(fr_train_ops *t);
int fr_tops_eltwise(fr_train_ops *t, fr_vk_sequence *seq, int op, uint64_t rows, uint64_t cols, fr_vk_arg a,
                    fr_vk_arg b, fr_vk_arg v, fr_vk_arg out, fr_vk_arg part, fr_error *err);
/* A uniform-texel-buffer view of `floats` floats at a.offset: the view starts at the
 * offset rounded down to the device's texel alignment and the shader adds *base texels.
 * 0 where that is impossible (offset not a multiple of 16 bytes, the view past the
 * buffer or longer than maxTexelBufferElements). */
int fr_tops_texel_view(const fr_train_ops *t, fr_vk_arg a, uint64_t floats, fr_vk_arg *view, uint32_t *base);

#endif
