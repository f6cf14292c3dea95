"""dspark_ref: DSpark's draft loss (issue 15) in float64 PyTorch, the reference of
`vkdraft train-draft --loss ce+tv`, as NVIDIA NeMo implements DSpark's distribution matching:
per row, q = softmax(draft logits), p = softmax(target logits of the position before the
label: the target's own next-token distribution for it), a constant (no gradient):
    row loss = ce_w * CE(q, label) + tv_w * ||q - p||_1       (raw L1, not halved)
and the acceptance estimate of the row 1 - ||q - p||_1 / 2."""
import torch


def row_losses(draft_logits, target_logits, labels, ce_w=0.1, tv_w=0.9):
    """draft_logits, target_logits (k, V); labels (k,) long. Returns (row losses (k,), L1 (k,))."""
    q = torch.softmax(draft_logits, dim=-1)
    p = torch.softmax(target_logits.detach(), dim=-1)
    l1 = (q - p).abs().sum(-1)
    ce = torch.nn.functional.cross_entropy(draft_logits, labels, reduction="none")
    return ce_w * ce + tv_w * l1, l1
