#version 450
// Scores fused with a per-row top-k list (see similarity.glsl).
#extension GL_GOOGLE_include_directive : require
#include "similarity.glsl"
