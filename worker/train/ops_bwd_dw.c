/* Depthwise convolution backward passes on the texel-fed kernels. */
#include "ops_bwd_dw.h"

int fr_tops_dw_create(fr_train_ops *t, fr_error *err)
{
  (void)t, (void)err;
  return FR_OK;
}

void fr_tops_dw_destroy(fr_train_ops *t) { (void)t; }

int fr_tops_dw_supports(const fr_train_ops *t, const fr_conv_params *p, int filter)
{
  (void)t, (void)p, (void)filter;
  return 0;
}

const char *fr_tops_dw_kernel_name(const fr_train_ops *t, const fr_conv_params *p, int filter)
{
  (void)t, (void)p;
  return filter ? "train_dw_bwd_filter" : "train_dw_bwd_data";
}

int fr_tops_dw_record_data(fr_train_ops *t, fr_vk_sequence *seq, const fr_conv_params *p, fr_vk_arg dy,
                           fr_vk_arg weights, fr_vk_arg dx, fr_error *err)
{
  (void)t, (void)seq, (void)p, (void)dy, (void)weights, (void)dx, (void)err;
  return TOPS_FALLBACK;
}

int fr_tops_dw_record_filter(fr_train_ops *t, fr_vk_sequence *seq, const fr_conv_params *p, fr_vk_arg x,
                             fr_vk_arg dy, fr_vk_arg scratch, fr_vk_arg dw, fr_error *err)
{
  (void)t, (void)seq, (void)p, (void)x, (void)dy, (void)scratch, (void)dw, (void)err;
  return TOPS_FALLBACK;
}
