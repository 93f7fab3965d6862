#ifndef FACERI_OPS_H
#define FACERI_OPS_H
/* The network's device ops: each records one or more dispatches into a sequence.
 * Tensors are NHWC float32. Convolutions carry their epilogue (bias, activation,
 * residual add) so no intermediate tensor is written twice.
 *
 * Weights go to the device in a layout each kernel chooses: pack them with
 * fr_ops_pack_conv_weights and upload the packed floats. */
#include <stddef.h>
#include <stdint.h>

#include "faceri/error.h"
#include "faceri/model.h"
#include "faceri/vk_context.h"

typedef struct fr_conv_params {
  int batch;
  int in_h, in_w, in_c;
  int out_h, out_w, out_c;
  int kernel_h, kernel_w;
  int stride_h, stride_w;
  int pad_top, pad_left; /* bottom/right padding follows from the sizes */
  int depthwise;         /* 1: in_c == out_c, one filter per channel */
  fr_activation activation;
  int has_residual;      /* residual tensor has the output's shape */
} fr_conv_params;

/* Fills conv params from a model layer for a given batch. */
void fr_conv_params_from_layer(const fr_layer *layer, int batch, fr_conv_params *p);

typedef struct fr_ops fr_ops;

int fr_ops_create(fr_vk_context *ctx, fr_ops **out, fr_error *err);
void fr_ops_destroy(fr_ops *ops);

/* Which kernel a conv with these params will use (for per-layer timings and tests). */
const char *fr_ops_conv_kernel_name(const fr_ops *ops, const fr_conv_params *p);

/* Device layout of a conv's weights: *count floats written by fr_ops_pack_conv_weights
 * from the model's layout (dense OHWI, depthwise HWC). Also the bias/slope layout:
 * out_c floats padded to fr_ops_channel_padding. */
size_t fr_ops_packed_weight_count(const fr_ops *ops, const fr_conv_params *p);
void fr_ops_pack_conv_weights(const fr_ops *ops, const fr_conv_params *p, const float *weights, float *packed);
size_t fr_ops_packed_channel_count(const fr_conv_params *p);
void fr_ops_pack_channels(const fr_conv_params *p, const float *values, float *packed);

/* Bytes to allocate for an n x h x w x c activation tensor (and for each 256-byte
 * aligned slot holding one): the fast kernels read tensors through 16-byte texels, so
 * the size is rounded up to a whole texel. Conv inputs, residuals and outputs must be
 * at least this large. */
size_t fr_ops_tensor_bytes(const fr_ops *ops, int n, int h, int w, int c);

/* Every buffer argument must stay alive until the sequence is no longer run.
 * slope is ignored unless the activation is PReLU; residual unless has_residual
 * (pass the output as a placeholder). Offsets: multiples of 256 bytes. */
int fr_ops_record_conv(fr_ops *ops, fr_vk_sequence *seq, const fr_conv_params *p, fr_vk_arg input,
                       fr_vk_arg weights, fr_vk_arg bias, fr_vk_arg slope, fr_vk_arg residual, fr_vk_arg output,
                       const char *label, fr_error *err);

/* out[r] = in[r] / sqrt(max(sum(in[r]^2), 1e-10)) and norms[r] = sqrt(sum(in[r]^2)), rows x dim. */
int fr_ops_record_l2norm(fr_ops *ops, fr_vk_sequence *seq, int rows, int dim, fr_vk_arg input, fr_vk_arg output,
                         fr_vk_arg norms, const char *label, fr_error *err);

/* ---- naive C references, the ground truth for every kernel's test ---- */
/* Weights in the model's layout; accumulates in double. */
void fr_ref_conv(const fr_conv_params *p, const float *input, const float *weights, const float *bias,
                 const float *slope, const float *residual, float *output);
void fr_ref_l2norm(int rows, int dim, const float *input, float *output, float *norms);

#endif
