/* Compute pipelines: one per shader and specialisation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/shaders.h"
#include "kernel_internal.h"

int fr_vk_kernel_create(fr_vk_context *ctx, const char *shader, int n_bindings, const fr_vk_binding_kind *kinds,
                        uint32_t push_size, const uint32_t *spec, int n_spec, fr_vk_kernel **out, fr_error *err)
{
  *out = NULL;
  const fr_shader_blob *blob = fr_shader_find(shader);
  if (!blob)
    return fr_error_set(err, FR_ERR_NOT_FOUND, "shader %s: not built into this binary", shader);
  if (n_bindings < 0 || n_bindings > FR_VK_MAX_BINDINGS || n_spec < 0 || n_spec > FR_VK_MAX_SPEC)
    return fr_error_set(err, FR_ERR_INVALID, "shader %s: %d bindings / %d constants exceed the limits", shader,
                        n_bindings, n_spec);
  if (push_size > ctx->info.max_push_constants || push_size % 4)
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "shader %s: %u bytes of push constants (device allows %u)", shader,
                        push_size, ctx->info.max_push_constants);
  fr_vk_kernel *k = calloc(1, sizeof(*k));
  if (!k)
    return fr_error_set(err, FR_ERR_NOMEM, "shader %s: out of memory", shader);
  snprintf(k->name, sizeof(k->name), "%s", shader);
  k->n_bindings = n_bindings;
  k->push_size = push_size;
  for (int i = 0; i < n_bindings; i++) {
    k->kinds[i] = kinds[i];
    if (kinds[i] == FR_BIND_TEXEL && !ctx->info.has_texel_rgba32f) {
      free(k);
      return fr_error_set(err, FR_ERR_UNSUPPORTED, "shader %s: the device has no RGBA32F uniform texel buffers",
                          shader);
    }
  }

  VkDescriptorSetLayoutBinding b[FR_VK_MAX_BINDINGS];
  for (int i = 0; i < n_bindings; i++)
    b[i] = (VkDescriptorSetLayoutBinding){.binding = (uint32_t)i,
                                          .descriptorType = kinds[i] == FR_BIND_TEXEL
                                                                ? VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER
                                                                : VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                          .descriptorCount = 1,
                                          .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT};
  VkDescriptorSetLayoutCreateInfo lci = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
                                         .bindingCount = (uint32_t)n_bindings,
                                         .pBindings = b};
  char what[128];
  snprintf(what, sizeof(what), "vkCreateDescriptorSetLayout (%s)", shader);
  int rc = fr_vk_check(vkCreateDescriptorSetLayout(ctx->device, &lci, NULL, &k->set_layout), what, err);
  VkPushConstantRange pcr = {.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .offset = 0, .size = push_size};
  VkPipelineLayoutCreateInfo plci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                     .setLayoutCount = 1,
                                     .pSetLayouts = &k->set_layout,
                                     .pushConstantRangeCount = push_size ? 1 : 0,
                                     .pPushConstantRanges = &pcr};
  if (!rc) {
    snprintf(what, sizeof(what), "vkCreatePipelineLayout (%s)", shader);
    rc = fr_vk_check(vkCreatePipelineLayout(ctx->device, &plci, NULL, &k->layout), what, err);
  }
  VkShaderModule module = VK_NULL_HANDLE;
  if (!rc) {
    VkShaderModuleCreateInfo smci = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                     .codeSize = blob->size_bytes,
                                     .pCode = blob->words};
    snprintf(what, sizeof(what), "vkCreateShaderModule (%s)", shader);
    rc = fr_vk_check(vkCreateShaderModule(ctx->device, &smci, NULL, &module), what, err);
  }
  if (!rc) {
    VkSpecializationMapEntry entries[FR_VK_MAX_SPEC];
    for (int i = 0; i < n_spec; i++)
      entries[i] = (VkSpecializationMapEntry){.constantID = (uint32_t)i, .offset = (uint32_t)(4 * i), .size = 4};
    VkSpecializationInfo si = {.mapEntryCount = (uint32_t)n_spec, .pMapEntries = entries,
                               .dataSize = (size_t)n_spec * 4, .pData = spec};
    VkComputePipelineCreateInfo cpci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                  .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                  .module = module,
                  .pName = "main",
                  .pSpecializationInfo = n_spec ? &si : NULL},
        .layout = k->layout};
    snprintf(what, sizeof(what), "vkCreateComputePipelines (%s)", shader);
    rc = fr_vk_check(vkCreateComputePipelines(ctx->device, VK_NULL_HANDLE, 1, &cpci, NULL, &k->pipeline), what, err);
    vkDestroyShaderModule(ctx->device, module, NULL);
  }
  if (rc) {
    fr_vk_kernel_destroy(ctx, k);
    return rc;
  }
  *out = k;
  return FR_OK;
}

void fr_vk_kernel_destroy(fr_vk_context *ctx, fr_vk_kernel *k)
{
  if (!k)
    return;
  if (k->pipeline)
    vkDestroyPipeline(ctx->device, k->pipeline, NULL);
  if (k->layout)
    vkDestroyPipelineLayout(ctx->device, k->layout, NULL);
  if (k->set_layout)
    vkDestroyDescriptorSetLayout(ctx->device, k->set_layout, NULL);
  free(k);
}

const char *fr_vk_kernel_name(const fr_vk_kernel *kernel) { return kernel->name; }
