/* Recorded command buffers of compute dispatches. A sequence owns the
 * descriptor sets and texel views its dispatches use, so a recorded network can
 * be submitted batch after batch without re-recording. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_internal.h"

#define SETS_PER_POOL 128

struct fr_vk_sequence {
  fr_vk_context *ctx;
  VkCommandBuffer cmd;
  VkFence fence;
  VkDescriptorPool *pools;
  int n_pools, cap_pools, sets_in_last_pool;
  VkBufferView *views;
  int n_views, cap_views;
  VkQueryPool queries;
  int max_timed, n_timed;
  char (*labels)[64];
  double *ms;
  int recording, recorded;
  int submitted; /* the fence belongs to a submission that may still be running */
};

int fr_vk_sequence_create(fr_vk_context *ctx, int max_timed, fr_vk_sequence **out, fr_error *err)
{
  *out = NULL;
  fr_vk_sequence *s = calloc(1, sizeof(*s));
  if (!s)
    return fr_error_set(err, FR_ERR_NOMEM, "creating a command sequence: out of memory");
  s->ctx = ctx;
  VkCommandBufferAllocateInfo cai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                     .commandPool = ctx->command_pool,
                                     .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                     .commandBufferCount = 1};
  int rc = fr_vk_check(vkAllocateCommandBuffers(ctx->device, &cai, &s->cmd), "vkAllocateCommandBuffers", err);
  VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  if (!rc)
    rc = fr_vk_check(vkCreateFence(ctx->device, &fci, NULL, &s->fence), "vkCreateFence", err);
  if (!rc && max_timed > 0 && ctx->info.has_timestamps) {
    VkQueryPoolCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                 .queryType = VK_QUERY_TYPE_TIMESTAMP,
                                 .queryCount = (uint32_t)(2 * max_timed)};
    rc = fr_vk_check(vkCreateQueryPool(ctx->device, &qci, NULL, &s->queries), "vkCreateQueryPool", err);
    s->max_timed = max_timed;
    s->labels = calloc((size_t)max_timed, sizeof(*s->labels));
    s->ms = calloc((size_t)max_timed, sizeof(*s->ms));
    if (!rc && (!s->labels || !s->ms))
      rc = fr_error_set(err, FR_ERR_NOMEM, "creating a command sequence: out of memory");
  }
  if (rc) {
    fr_vk_sequence_destroy(s);
    return rc;
  }
  *out = s;
  return FR_OK;
}

static void release_views(fr_vk_sequence *s)
{
  for (int i = 0; i < s->n_views; i++)
    vkDestroyBufferView(s->ctx->device, s->views[i], NULL);
  s->n_views = 0;
}

void fr_vk_sequence_destroy(fr_vk_sequence *s)
{
  if (!s)
    return;
  VkDevice dev = s->ctx->device;
  if (s->submitted)
    vkWaitForFences(dev, 1, &s->fence, VK_TRUE, s->ctx->fence_timeout_ns);
  release_views(s);
  free(s->views);
  int pools = s->cap_pools > s->n_pools ? s->cap_pools : s->n_pools;
  for (int i = 0; i < pools; i++)
    vkDestroyDescriptorPool(dev, s->pools[i], NULL);
  free(s->pools);
  if (s->queries)
    vkDestroyQueryPool(dev, s->queries, NULL);
  if (s->fence)
    vkDestroyFence(dev, s->fence, NULL);
  if (s->cmd)
    vkFreeCommandBuffers(dev, s->ctx->command_pool, 1, &s->cmd);
  free(s->labels);
  free(s->ms);
  free(s);
}

int fr_vk_sequence_begin(fr_vk_sequence *s, fr_error *err)
{
  /* Keep every pool made so far, reset, and fill them again from the first. */
  int pools = s->cap_pools > s->n_pools ? s->cap_pools : s->n_pools;
  for (int i = 0; i < pools; i++) {
    int rc = fr_vk_check(vkResetDescriptorPool(s->ctx->device, s->pools[i], 0), "vkResetDescriptorPool", err);
    if (rc)
      return rc;
  }
  s->sets_in_last_pool = 0;
  s->cap_pools = pools;
  s->n_pools = pools ? 1 : 0;
  release_views(s);
  s->n_timed = 0;
  int rc = fr_vk_check(vkResetCommandBuffer(s->cmd, 0), "vkResetCommandBuffer", err);
  VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  if (!rc)
    rc = fr_vk_check(vkBeginCommandBuffer(s->cmd, &bi), "vkBeginCommandBuffer", err);
  if (!rc && s->queries)
    vkCmdResetQueryPool(s->cmd, s->queries, 0, (uint32_t)(2 * s->max_timed));
  s->recording = !rc;
  s->recorded = 0;
  return rc;
}

static int next_descriptor_set(fr_vk_sequence *s, const fr_vk_kernel *k, VkDescriptorSet *set, fr_error *err)
{
  if (s->n_pools == 0 || s->sets_in_last_pool == SETS_PER_POOL) {
    if (s->n_pools < s->cap_pools) {
      /* A pool kept from an earlier recording, already reset. */
      s->n_pools++;
    } else {
      VkDescriptorPool *grown = realloc(s->pools, (size_t)(s->n_pools + 1) * sizeof(*grown));
      if (!grown)
        return fr_error_set(err, FR_ERR_NOMEM, "descriptor pools: out of memory");
      s->pools = grown;
      VkDescriptorPoolSize sizes[2] = {
          {.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = SETS_PER_POOL * FR_VK_MAX_BINDINGS},
          {.type = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER, .descriptorCount = SETS_PER_POOL * FR_VK_MAX_BINDINGS}};
      VkDescriptorPoolCreateInfo pci = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                                        .maxSets = SETS_PER_POOL,
                                        .poolSizeCount = 2,
                                        .pPoolSizes = sizes};
      int rc = fr_vk_check(vkCreateDescriptorPool(s->ctx->device, &pci, NULL, &s->pools[s->n_pools]),
                           "vkCreateDescriptorPool", err);
      if (rc)
        return rc;
      s->n_pools++;
      s->cap_pools = s->n_pools;
    }
    s->sets_in_last_pool = 0;
  }
  VkDescriptorSetAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                    .descriptorPool = s->pools[s->n_pools - 1],
                                    .descriptorSetCount = 1,
                                    .pSetLayouts = &k->set_layout};
  int rc = fr_vk_check(vkAllocateDescriptorSets(s->ctx->device, &ai, set), "vkAllocateDescriptorSets", err);
  if (!rc)
    s->sets_in_last_pool++;
  return rc;
}

static int make_texel_view(fr_vk_sequence *s, const fr_vk_arg *a, uint64_t range, VkBufferView *view, fr_error *err)
{
  const fr_vk_device_info *info = &s->ctx->info;
  if (a->offset % info->min_texel_offset_alignment)
    return fr_error_set(err, FR_ERR_INVALID, "texel view offset %llu is not a multiple of %llu",
                        (unsigned long long)a->offset, (unsigned long long)info->min_texel_offset_alignment);
  range -= range % 16;
  if (range == 0 || range / 16 > info->max_texel_buffer_elements)
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "texel view of %llu texels (device allows %llu)",
                        (unsigned long long)(range / 16), (unsigned long long)info->max_texel_buffer_elements);
  if (s->n_views == s->cap_views) {
    int cap = s->cap_views ? 2 * s->cap_views : 64;
    VkBufferView *grown = realloc(s->views, (size_t)cap * sizeof(*grown));
    if (!grown)
      return fr_error_set(err, FR_ERR_NOMEM, "texel views: out of memory");
    s->views = grown;
    s->cap_views = cap;
  }
  VkBufferViewCreateInfo vci = {.sType = VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO,
                                .buffer = a->buffer->buffer,
                                .format = VK_FORMAT_R32G32B32A32_SFLOAT,
                                .offset = a->offset,
                                .range = range};
  int rc = fr_vk_check(vkCreateBufferView(s->ctx->device, &vci, NULL, view), "vkCreateBufferView", err);
  if (!rc)
    s->views[s->n_views++] = *view;
  return rc;
}

int fr_vk_sequence_dispatch(fr_vk_sequence *s, const fr_vk_kernel *k, const fr_vk_arg *args, const void *push,
                            uint32_t gx, uint32_t gy, uint32_t gz, const char *label, fr_error *err)
{
  if (!s->recording)
    return fr_error_set(err, FR_ERR_INTERNAL, "dispatch of %s outside begin/end", k->name);
  const fr_vk_device_info *info = &s->ctx->info;
  if (gx == 0 || gy == 0 || gz == 0)
    return FR_OK;
  if (gx > info->max_workgroup_count[0] || gy > info->max_workgroup_count[1] || gz > info->max_workgroup_count[2])
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "%s: grid %ux%ux%u exceeds the device's %ux%ux%u", k->name, gx, gy,
                        gz, info->max_workgroup_count[0], info->max_workgroup_count[1], info->max_workgroup_count[2]);
  VkDescriptorSet set;
  int rc = next_descriptor_set(s, k, &set, err);
  if (rc)
    return rc;
  VkWriteDescriptorSet writes[FR_VK_MAX_BINDINGS];
  VkDescriptorBufferInfo buffer_infos[FR_VK_MAX_BINDINGS];
  VkBufferView views[FR_VK_MAX_BINDINGS];
  for (int i = 0; i < k->n_bindings; i++) {
    const fr_vk_arg *a = &args[i];
    if (!a->buffer || !a->buffer->buffer || a->offset >= a->buffer->size)
      return fr_error_set(err, FR_ERR_INVALID, "%s: binding %d has no buffer or its offset is past the end", k->name, i);
    uint64_t range = a->range ? a->range : a->buffer->size - a->offset;
    if (range > a->buffer->size - a->offset)
      return fr_error_set(err, FR_ERR_INVALID, "%s: binding %d range exceeds its buffer", k->name, i);
    writes[i] = (VkWriteDescriptorSet){.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                                       .dstSet = set,
                                       .dstBinding = (uint32_t)i,
                                       .descriptorCount = 1};
    if (k->kinds[i] == FR_BIND_TEXEL) {
      rc = make_texel_view(s, a, range, &views[i], err);
      if (rc) {
        fr_error_prefix(err, "%s binding %d", k->name, i);
        return rc;
      }
      writes[i].descriptorType = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER;
      writes[i].pTexelBufferView = &views[i];
    } else {
      if (range > info->max_storage_buffer_range)
        return fr_error_set(err, FR_ERR_UNSUPPORTED,
                            "%s: binding %d spans %llu bytes, over the device's maxStorageBufferRange %llu", k->name,
                            i, (unsigned long long)range, (unsigned long long)info->max_storage_buffer_range);
      buffer_infos[i] = (VkDescriptorBufferInfo){.buffer = a->buffer->buffer, .offset = a->offset, .range = range};
      writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
      writes[i].pBufferInfo = &buffer_infos[i];
    }
  }
  vkUpdateDescriptorSets(s->ctx->device, (uint32_t)k->n_bindings, writes, 0, NULL);
  vkCmdBindPipeline(s->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, k->pipeline);
  vkCmdBindDescriptorSets(s->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, k->layout, 0, 1, &set, 0, NULL);
  if (k->push_size)
    vkCmdPushConstants(s->cmd, k->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, k->push_size, push);
  int timed = label && s->queries && s->n_timed < s->max_timed;
  if (timed)
    vkCmdWriteTimestamp(s->cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, s->queries, (uint32_t)(2 * s->n_timed));
  vkCmdDispatch(s->cmd, gx, gy, gz);
  if (timed) {
    vkCmdWriteTimestamp(s->cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, s->queries, (uint32_t)(2 * s->n_timed + 1));
    snprintf(s->labels[s->n_timed], sizeof(s->labels[0]), "%s", label);
    s->n_timed++;
  }
  return FR_OK;
}

void fr_vk_sequence_barrier(fr_vk_sequence *s)
{
  VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                        .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT,
                        .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT};
  vkCmdPipelineBarrier(s->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb,
                       0, NULL, 0, NULL);
}

int fr_vk_sequence_end(fr_vk_sequence *s, fr_error *err)
{
  if (!s->recording)
    return fr_error_set(err, FR_ERR_INTERNAL, "sequence end without begin");
  /* Make the results visible to host reads and to transfer copies after the fence. */
  VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                        .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT,
                        .dstAccessMask = VK_ACCESS_HOST_READ_BIT | VK_ACCESS_TRANSFER_READ_BIT};
  vkCmdPipelineBarrier(s->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                       VK_PIPELINE_STAGE_HOST_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
  s->recording = 0;
  int rc = fr_vk_check(vkEndCommandBuffer(s->cmd), "vkEndCommandBuffer", err);
  s->recorded = !rc;
  return rc;
}

int fr_vk_sequence_run(fr_vk_sequence *s, fr_error *err)
{
  if (!s->recorded)
    return fr_error_set(err, FR_ERR_INTERNAL, "running a sequence that was not recorded");
  VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &s->cmd};
  int rc = fr_vk_check(vkResetFences(s->ctx->device, 1, &s->fence), "vkResetFences", err);
  if (!rc)
    rc = fr_vk_check(vkQueueSubmit(s->ctx->queue, 1, &si, s->fence), "vkQueueSubmit", err);
  s->submitted = !rc;
  if (!rc)
    rc = fr_vk_wait_fence(s->ctx, s->fence, "compute sequence", err);
  if (!rc && s->n_timed) {
    uint64_t *ts = malloc(sizeof(uint64_t) * 2 * (size_t)s->n_timed);
    if (!ts)
      return fr_error_set(err, FR_ERR_NOMEM, "timestamps: out of memory");
    rc = fr_vk_check(vkGetQueryPoolResults(s->ctx->device, s->queries, 0, (uint32_t)(2 * s->n_timed),
                                           sizeof(uint64_t) * 2 * (size_t)s->n_timed, ts, sizeof(uint64_t),
                                           VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT),
                     "vkGetQueryPoolResults", err);
    for (int i = 0; !rc && i < s->n_timed; i++)
      s->ms[i] = (double)(ts[2 * i + 1] - ts[2 * i]) * s->ctx->info.timestamp_period_ns * 1e-6;
    free(ts);
  }
  return rc;
}

int fr_vk_sequence_timed_count(const fr_vk_sequence *s) { return s->n_timed; }

int fr_vk_sequence_timing(const fr_vk_sequence *s, int i, const char **label, double *ms)
{
  if (i < 0 || i >= s->n_timed)
    return FR_ERR_INVALID;
  *label = s->labels[i];
  *ms = s->ms[i];
  return FR_OK;
}
