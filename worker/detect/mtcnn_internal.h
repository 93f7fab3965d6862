#ifndef FACERI_MTCNN_INTERNAL_H
#define FACERI_MTCNN_INTERNAL_H
/* Internal to worker/detect: how a graph node maps onto the op parameters. */
#include "faceri/mtcnn.h"

/* A fully connected node becomes a 1x1 conv on a 1x1 input with in_c channels. */
void mtcnn_conv_params(const fr_mtcnn_node *nd, int n, int ih, int iw, int ic, int oh, int ow, fr_conv_params *p);
void mtcnn_pool_params(const fr_mtcnn_node *nd, int n, int ih, int iw, int c, fr_pool_params *p);

#endif
