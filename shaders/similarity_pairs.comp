#version 450
// Scores fused with a threshold scan: pairs above it appended (see similarity.glsl).
#extension GL_GOOGLE_include_directive : require
#define PAIRS
#include "similarity.glsl"
