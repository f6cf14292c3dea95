/* pipeline.c: one descriptor layout per texel mask (storage buffers, but for bindings among
 * the first VKD_TEXEL_BINDINGS that are uniform texel buffers: VKD_LAYOUT_BLOCKS weights, KV
 * caches read through their views) and their pipeline layouts (128 bytes of push constants)
 * shared by every shader; pipelines created on first use per
 * (shader variant, specialization constants); the pipeline cache persisted under
 * $XDG_CACHE_HOME/vkdraft (or ~/.cache/vkdraft), one file per device UUID. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void cache_path(vkd_ctx *ctx) {
    const char *base = getenv("XDG_CACHE_HOME");
    char dir[800];
    if (base && *base) snprintf(dir, sizeof dir, "%s/vkdraft", base);
    else if (getenv("HOME")) snprintf(dir, sizeof dir, "%s/.cache/vkdraft", getenv("HOME"));
    else { ctx->pcache_path[0] = 0; return; }
    char *hex = ctx->pcache_path;
    int n = snprintf(hex, sizeof ctx->pcache_path, "%s/pipelines-", dir);
    for (int i = 0; i < (int)VK_UUID_SIZE && n < (int)(sizeof ctx->pcache_path) - 8; i++)
        n += snprintf(hex + n, sizeof ctx->pcache_path - n, "%02x", ctx->info.uuid[i]);
    snprintf(hex + n, sizeof ctx->pcache_path - n, ".bin");
}

static void mkdir_p(const char *path) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        mkdir(tmp, 0755);
        *p = '/';
    }
}

vkd_result vkd_pipelines_init(vkd_ctx *ctx, vkd_error *err) {
    for (uint32_t mask = 0; mask < 1u << VKD_TEXEL_BINDINGS; mask++) {
        VkDescriptorSetLayoutBinding b[VKD_MAX_BINDINGS];
        for (uint32_t i = 0; i < VKD_MAX_BINDINGS; i++)
            b[i] = (VkDescriptorSetLayoutBinding){
                .binding = i,
                .descriptorType = mask >> i & 1u ? VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER
                                                 : VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                .descriptorCount = 1,
                .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
            };
        VkDescriptorSetLayoutCreateInfo dci = {
            .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
            .bindingCount = VKD_MAX_BINDINGS,
            .pBindings = b,
        };
        VKD_CHECK_VK(err, vkCreateDescriptorSetLayout(ctx->device, &dci, NULL, &ctx->dsl[mask]),
                     "vkCreateDescriptorSetLayout");
        VkPushConstantRange pr = {.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .size = VKD_MAX_PUSH_BYTES};
        VkPipelineLayoutCreateInfo lci = {
            .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
            .setLayoutCount = 1,
            .pSetLayouts = &ctx->dsl[mask],
            .pushConstantRangeCount = 1,
            .pPushConstantRanges = &pr,
        };
        VKD_CHECK_VK(err, vkCreatePipelineLayout(ctx->device, &lci, NULL, &ctx->layout[mask]),
                     "vkCreatePipelineLayout");
    }

    cache_path(ctx);
    void *data = NULL;
    size_t size = 0;
    FILE *f = ctx->pcache_path[0] ? fopen(ctx->pcache_path, "rb") : NULL;
    if (f) {
        if (fseek(f, 0, SEEK_END) == 0) {
            long n = ftell(f);
            if (n > 0 && n < (64l << 20) && fseek(f, 0, SEEK_SET) == 0 && (data = malloc((size_t)n)))
                size = fread(data, 1, (size_t)n, f);
        }
        fclose(f);
    }
    VkPipelineCacheCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
        .initialDataSize = size,
        .pInitialData = data,
    };
    VkResult vr = vkCreatePipelineCache(ctx->device, &pci, NULL, &ctx->pcache);
    if (vr != VK_SUCCESS && size) { /* a stale or corrupt cache file: start empty */
        pci.initialDataSize = 0;
        pci.pInitialData = NULL;
        vr = vkCreatePipelineCache(ctx->device, &pci, NULL, &ctx->pcache);
    }
    free(data);
    if (vr != VK_SUCCESS) return vkd_vk_fail(err, vr, "vkCreatePipelineCache");
    return VKD_OK;
}

static void save_cache(vkd_ctx *ctx) {
    if (!ctx->pcache || !ctx->pcache_path[0] || ctx->npipes == 0) return;
    size_t size = 0;
    if (vkGetPipelineCacheData(ctx->device, ctx->pcache, &size, NULL) != VK_SUCCESS || !size) return;
    void *data = malloc(size);
    if (!data) return;
    if (vkGetPipelineCacheData(ctx->device, ctx->pcache, &size, data) == VK_SUCCESS) {
        mkdir_p(ctx->pcache_path);
        char tmp[1100];
        snprintf(tmp, sizeof tmp, "%s.%d.tmp", ctx->pcache_path, (int)getpid());
        FILE *f = fopen(tmp, "wb");
        if (f) {
            bool ok = fwrite(data, 1, size, f) == size;
            ok = fclose(f) == 0 && ok;
            if (!ok || rename(tmp, ctx->pcache_path) != 0) unlink(tmp);
        }
    }
    free(data);
}

vkd_result vkd_pipeline_get(vkd_ctx *ctx, vkd_shader_id shader, const uint32_t *spec,
                            uint32_t nspec, VkPipeline *out, vkd_error *err) {
    if ((unsigned)shader >= VKD_SHADER_COUNT || nspec > VKD_MAX_SPEC)
        return vkd_fail(err, VKD_ERR_INVALID, "bad shader id %d", (int)shader);
    for (uint32_t i = 0; i < ctx->npipes; i++) {
        vkd_pipeline_entry *e = &ctx->pipes[i];
        if (e->shader == shader && e->nspec == nspec &&
            memcmp(e->spec, spec, nspec * sizeof *spec) == 0) {
            *out = e->pipeline;
            return VKD_OK;
        }
    }
    if (!ctx->modules[shader]) {
        VkShaderModuleCreateInfo mci = {
            .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
            .codeSize = vkd_shader_table[shader].bytes,
            .pCode = vkd_shader_table[shader].code,
        };
        VKD_CHECK_VK(err, vkCreateShaderModule(ctx->device, &mci, NULL, &ctx->modules[shader]),
                     "vkCreateShaderModule");
    }
    VkSpecializationMapEntry map[VKD_MAX_SPEC];
    for (uint32_t i = 0; i < nspec; i++)
        map[i] = (VkSpecializationMapEntry){.constantID = i, .offset = i * 4, .size = 4};
    VkSpecializationInfo si = {
        .mapEntryCount = nspec, .pMapEntries = map, .dataSize = nspec * 4, .pData = spec};
    VkComputePipelineCreateInfo cci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {
            .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
            .stage = VK_SHADER_STAGE_COMPUTE_BIT,
            .module = ctx->modules[shader],
            .pName = "main",
            .pSpecializationInfo = nspec ? &si : NULL,
        },
        .layout = ctx->layout[vkd_shader_table[shader].texel_mask],
    };
    VkPipeline p;
    VkResult vr = vkCreateComputePipelines(ctx->device, ctx->pcache, 1, &cci, NULL, &p);
    if (vr != VK_SUCCESS) {
        vkd_vk_fail(err, vr, "vkCreateComputePipelines");
        return vkd_error_prefix(err, "shader %s", vkd_shader_table[shader].name);
    }
    if (ctx->npipes == ctx->cap_pipes) {
        uint32_t cap = ctx->cap_pipes ? ctx->cap_pipes * 2 : 64;
        vkd_pipeline_entry *e = realloc(ctx->pipes, cap * sizeof *e);
        if (!e) {
            vkDestroyPipeline(ctx->device, p, NULL);
            return vkd_fail(err, VKD_ERR_NOMEM, "out of host memory");
        }
        ctx->pipes = e;
        ctx->cap_pipes = cap;
    }
    vkd_pipeline_entry *e = &ctx->pipes[ctx->npipes++];
    memset(e, 0, sizeof *e);
    e->shader = shader;
    e->nspec = nspec;
    memcpy(e->spec, spec, nspec * sizeof *spec);
    e->pipeline = p;
    *out = p;
    return VKD_OK;
}

void vkd_pipelines_destroy(vkd_ctx *ctx) {
    save_cache(ctx);
    for (uint32_t i = 0; i < ctx->npipes; i++) vkDestroyPipeline(ctx->device, ctx->pipes[i].pipeline, NULL);
    free(ctx->pipes);
    ctx->pipes = NULL;
    ctx->npipes = 0;
    for (int i = 0; i < VKD_SHADER_COUNT; i++)
        if (ctx->modules[i]) vkDestroyShaderModule(ctx->device, ctx->modules[i], NULL);
    if (ctx->pcache) vkDestroyPipelineCache(ctx->device, ctx->pcache, NULL);
    for (uint32_t i = 0; i < 1u << VKD_TEXEL_BINDINGS; i++) {
        if (ctx->layout[i]) vkDestroyPipelineLayout(ctx->device, ctx->layout[i], NULL);
        if (ctx->dsl[i]) vkDestroyDescriptorSetLayout(ctx->device, ctx->dsl[i], NULL);
    }
}
