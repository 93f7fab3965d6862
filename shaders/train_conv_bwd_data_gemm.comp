#version 450
// 1x1 conv / linear input gradient, vec4 stores (see train_conv_bwd_data_gemm.glsl).
#extension GL_GOOGLE_include_directive : require
#include "train_conv_bwd_data_gemm.glsl"
