#version 450
// Depthwise convs storing float texels (see conv_dw.glsl).
#extension GL_GOOGLE_include_directive : require
#include "conv_dw.glsl"
