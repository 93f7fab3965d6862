// Shared by the training kernels: the flat invocation index of a 1-D launch that the
// host split over x and y (x stays within maxComputeWorkGroupCount[0]).
uint flat_index()
{
  return (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
}
