#version 450
// GEMM / implicit-GEMM convs storing texels as two 64-bit halves: N % 4 == 0, shaderInt64.
#extension GL_GOOGLE_include_directive : require
#extension GL_ARB_gpu_shader_int64 : require
#define OUT_U64
#include "conv_gemm.glsl"
