#ifndef FACERI_OPS_BWD_DW_H
#define FACERI_OPS_BWD_DW_H
/* Depthwise convolution backward kernels (texel-fed), used by ops_bwd_conv.c. */
#include "ops_bwd_internal.h"

int fr_tops_dw_create(fr_train_ops *t, fr_error *err);
void fr_tops_dw_destroy(fr_train_ops *t);
/* Whether the fast kernels handle this depthwise shape (filter: the weight gradient). */
int fr_tops_dw_supports(const fr_train_ops *t, const fr_conv_params *p, int filter);
const char *fr_tops_dw_kernel_name(const fr_train_ops *t, const fr_conv_params *p, int filter);
/* Partial sums (each of kernel_h x kernel_w x channels floats) the strip weight-gradient
 * kernel leaves for this shape; 0 where it does not take the shape. */
size_t fr_tops_dw_filter_partials(const fr_conv_params *p);
/* Arguments already checked; TOPS_FALLBACK where the views do not fit. */
int fr_tops_dw_record_data(fr_train_ops *t, fr_vk_sequence *seq, const fr_conv_params *p, fr_vk_arg dy,
                           fr_vk_arg weights, fr_vk_arg dx, fr_error *err);
int fr_tops_dw_record_filter(fr_train_ops *t, fr_vk_sequence *seq, const fr_conv_params *p, fr_vk_arg x,
                             fr_vk_arg dy, fr_vk_arg scratch, fr_vk_arg dw, fr_error *err);

#endif
