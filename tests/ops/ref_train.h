/* ref_train.h: plain-C double references of the training ops (optimizers, fused loss). */
#ifndef REF_TRAIN_H
#define REF_TRAIN_H

#include <stdint.h>

#include "vkd_train_ops.h"

/* One optimizer update of n values in double, torch.optim semantics (see ops_optim.c).
 * clip: the factor already applied to g (1 without clipping). */
void ref_optim_update(double *p, const double *g, double *m, double *v, uint64_t n,
                      const vkd_optim_params *hp, double clip);
/* torch.nn.utils.clip_grad_norm_ factor for a global norm. */
double ref_clip_factor(double norm, double max_norm);

/* Fused LM head + loss, double. H: rows x hidden, W: vocab x hidden (as doubles), labels
 * (-1: no CE for the row), row weights; teacher logits tl: rows x vocab or NULL (no KL).
 * loss[r] = row_w[r] * (ce_w * CE_r + kl_w * T^2 * KL_r); dH = d(sum loss)/dH,
 * dW (NULL: skipped) = d(sum loss)/dW. */
void ref_lm_loss(double *loss, double *dH, double *dW, const double *H, const double *W,
                 const int32_t *labels, const double *row_w, const double *tl, uint32_t rows,
                 uint32_t hidden, uint32_t vocab, double ce_w, double kl_w, double T);
/* As ref_lm_loss with the L1 teacher term (temperature 1): q = softmax(z), p = softmax(tl),
 * loss[r] = row_w[r] * (ce_w * CE_r + l1_w * sum |q - p|); l1out[r] (NULL: skipped) = the raw
 * L1; the gradient takes sign(0) = 0. */
void ref_lm_loss_l1(double *loss, double *l1out, double *dH, double *dW, const double *H, const double *W,
                    const int32_t *labels, const double *row_w, const double *tl, uint32_t rows,
                    uint32_t hidden, uint32_t vocab, double ce_w, double l1_w);

#endif
