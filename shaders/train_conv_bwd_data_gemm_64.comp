#version 450
// 1x1 conv / linear input gradient storing texels as two 64-bit halves (shaderInt64):
// lavapipe stores one lane and one component at a time, so this halves the store work.
#extension GL_GOOGLE_include_directive : require
#extension GL_ARB_gpu_shader_int64 : require
#define OUT_U64
#include "train_conv_bwd_data_gemm.glsl"
