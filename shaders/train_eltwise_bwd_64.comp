#version 450
// Element-wise backward ops storing texels as two 64-bit halves (shaderInt64): lavapipe
// stores one lane and one component at a time, so this halves the store work.
#extension GL_GOOGLE_include_directive : require
#extension GL_ARB_gpu_shader_int64 : require
#define OUT_U64
#include "train_eltwise_bwd.glsl"
