#version 450
// GEMM / implicit-GEMM convs writing through a storage buffer: any N (see conv_gemm.glsl).
#extension GL_GOOGLE_include_directive : require
#include "conv_gemm.glsl"
