#version 450
// Depthwise conv input gradient, vec4 stores (see train_dw_bwd_data.glsl).
#extension GL_GOOGLE_include_directive : require
#include "train_dw_bwd_data.glsl"
