#version 450
// Element-wise backward ops, vec4 stores (see train_eltwise_bwd.glsl).
#extension GL_GOOGLE_include_directive : require
#include "train_eltwise_bwd.glsl"
