#version 450
// Depthwise convs storing texels as two 64-bit halves: shaderInt64 (see conv_dw.glsl).
#extension GL_GOOGLE_include_directive : require
#extension GL_ARB_gpu_shader_int64 : require
#define OUT_U64
#include "conv_dw.glsl"
