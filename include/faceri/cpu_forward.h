#ifndef FACERI_CPU_FORWARD_H
#define FACERI_CPU_FORWARD_H
/* Naive CPU forward pass of an fr_model (worker/nn/cpu_forward.c): the
 * reference every faster engine is checked against. Plain loops, double
 * accumulation, float storage; no threads, no tricks. */
#include "faceri/error.h"
#include "faceri/model.h"

/* input_nhwc: batch x input_h x input_w x input_c, already normalised
 * ((pixel - mean) / std). out_raw_embeddings: batch x embedding_size, the output
 * layer's values as they are (not L2-normalised). */
int fr_cpu_forward(const fr_model *model, const float *input_nhwc, int batch, float *out_raw_embeddings,
                   fr_error *err);

/* The same, and for every layer i with layer_outputs[i] != NULL also copies
 * that layer's output (batch x out_h x out_w x out_c) there. layer_outputs is
 * NULL or an array of model->n_layers pointers. */
int fr_cpu_forward_capture(const fr_model *model, const float *input_nhwc, int batch, float *out_raw_embeddings,
                           float *const *layer_outputs, fr_error *err);

/* One fused layer: out = act(conv(in) + bias) (+ residual when residual != NULL).
 * in: batch x in_h x in_w x in_c; residual and out: batch x out_h x out_w x out_c.
 * For op-level tests of other engines. */
void fr_cpu_layer_forward(const fr_layer *layer, const float *in, const float *residual, int batch, float *out);

#endif
