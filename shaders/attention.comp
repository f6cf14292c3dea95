#version 450
/* Attention with an online softmax (running max and sum; no rows x kv_len scores):
 *   o[row, h] = sum_j softmax_j(scale * q[row, h] . k[j, g]) v[j, g],   g = h / group
 * for keys j < n(row) = causal ? min(kv_len, q_pos0 + row + 1) : kv_len.
 * Workgroup (x, y) = (block of HPW query heads sharing one kv head, query row), so every
 * key and value row is read once for the HPW heads. The workgroup's lanes form teams of L
 * lanes; a team takes every T-th key (T = workgroup size / L), each lane holding NV 16-byte
 * words of the head dimension (words tl, tl+L, ...: a team reads consecutive words); the
 * dot product is reduced over the team with subgroup shuffles (teams are L-aligned and
 * L <= subgroup size; a plain subgroupAdd when L is the subgroup size). Each team keeps its own max, sum and accumulator per head; teams
 * are merged through shared memory at the end. Scores are in log2 units (q pre-scaled by
 * scale*log2(e)) so exp2 is the only transcendental.
 * Spec constants: 0 workgroup size, 1 L, 2 NV (>= ceil(hd/4 / L)), 3 HPW (divides group).
 * SPLIT: split-K over workgroups z, binding 3 the partials (attention.glsl).
 * Bindings: 0 q (f32), 1 k, 2 v (cache dtype by variant), 3 o (f32), and with LSE
 * 4 lse (f32 q_rows x n_q, natural log of the softmax denominator: training forward).
 * BLOCKS (DFlash training, many blocks of one sequence in one pass): query rows are blocks
 * of pc.block rows; block b = row / block sees the context keys j < anchors[b] (binding 5,
 * i32; clamped to q_pos0) and its own block's keys, rows q_pos0 + b*block .. + block - 1,
 * not the other blocks: the row's n visible keys are walked in that order. */
//! variant ATTENTION_F32 KV_F32=1
//! variant ATTENTION_F16 KV_F16=1
//! variant ATTENTION_SPLIT_F32 KV_F32=1 SPLIT=1
//! variant ATTENTION_SPLIT_F16 KV_F16=1 SPLIT=1
//! variant ATTENTION_LSE_F32 KV_F32=1 LSE=1
//! variant ATTENTION_LSE_F16 KV_F16=1 LSE=1
//! variant ATTENTION_BLOCKS_LSE_F32 KV_F32=1 LSE=1 BLOCKS=1
#include "attention.glsl"
