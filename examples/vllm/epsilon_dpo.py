"""ε-DPO (Lee et al., "KL Penalty Control via Perturbation for Direct
Preference Optimization"): each preference pair gets its own KL weight
β_i = β/(1 + ε·s_i), from how the pair's DPO logit moves when β is perturbed.

The same arithmetic as the Go package metric (metric/epsilon_dpo.go:
PerturbedLogProbs, EpsilonDPOStep, NextBeta); both are checked against the
shared vectors in metric/testdata/epsilon_dpo_vectors.json.

The DPO optimum for a KL weight β' is π_ref·exp(r/β') ∝ π_θ^(β/β')·π_ref^(1−β/β'),
so per token, in logits, the policies estimated for β perturbed down and up
are the softmax of

    (1+ε)·z_θ − ε·z_ref   (β/(1+ε), "down")
    (1−ε)·z_θ + ε·z_ref   (β/(1−ε), "up"),

evaluated as z_θ ± ε·(z_θ − z_ref), exact when policy and reference agree.
s_i = +1 when the pair's logit grows as β goes down (h_down > h > h_up),
−1 for the opposite order, 0 otherwise (ties included). The loss is
−log σ(β_i·h) with β_i held constant (it is piecewise constant in θ), and
the base β moves after each optimiser step to the mean of the batch's β_i.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

DEFAULT_BETA = 0.01
DEFAULT_EPSILON = 0.01


@dataclass
class SequenceLogps:
    """Log-probs (nats) of B responses, summed over each one's tokens."""

    policy: torch.Tensor  # log softmax(z_θ), with the policy's gradient
    reference: torch.Tensor  # log softmax(z_ref)
    down: torch.Tensor  # log softmax(z_θ + ε·(z_θ − z_ref)), no gradient
    up: torch.Tensor  # log softmax(z_θ − ε·(z_θ − z_ref)), no gradient


def split_pairs(lps: SequenceLogps) -> tuple[SequenceLogps, SequenceLogps]:
    """(chosen, rejected) of a batch that stacks its B chosen responses, then
    its B rejected ones (TRL's preference batches)."""
    halves = [v.chunk(2, dim=0) for v in (lps.policy, lps.reference, lps.down, lps.up)]
    return SequenceLogps(*(h[0] for h in halves)), SequenceLogps(*(h[1] for h in halves))


@dataclass
class Step:
    """The ε-DPO decision for B pairs (metric.EpsilonStep)."""

    logit: torch.Tensor  # h under the policy
    logit_down: torch.Tensor  # h under the policy estimated for β/(1+ε)
    logit_up: torch.Tensor  # h under the policy estimated for β/(1−ε)
    step: torch.Tensor  # s ∈ {−1, 0, +1}
    beta: torch.Tensor  # β_i = β/(1 + ε·s)


def check_epsilon(epsilon: float) -> None:
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon {epsilon} out of range: want 0 < ε < 1 (default {DEFAULT_EPSILON})")


def sequence_logps(policy_logits: torch.Tensor, reference_logits: torch.Tensor, tokens: torch.Tensor,
                   mask: torch.Tensor, epsilon: float) -> SequenceLogps:
    """Sums over the masked positions of log softmax(x)[token] for the policy,
    the reference and the two perturbed policies.

    policy_logits and reference_logits are [B, T, V]: row t holds the logits
    that predict tokens[:, t]; mask [B, T] is 1 at response tokens.
    """
    check_epsilon(epsilon)
    if policy_logits.shape != reference_logits.shape:
        raise ValueError(f"policy logits {tuple(policy_logits.shape)} and reference logits "
                         f"{tuple(reference_logits.shape)} differ in shape")
    keep = mask.bool()
    index = tokens.unsqueeze(-1)

    def summed(x):
        lp = torch.log_softmax(x, dim=-1).gather(-1, index).squeeze(-1)
        return torch.where(keep, lp, torch.zeros_like(lp)).sum(-1)

    policy = summed(policy_logits)
    with torch.no_grad():
        z, ref = policy_logits.detach(), reference_logits.detach()
        gap = z - ref
        return SequenceLogps(policy=policy, reference=summed(ref), down=summed(z + epsilon * gap),
                             up=summed(z + (-epsilon) * gap))


def epsilon_dpo_step(chosen: SequenceLogps, rejected: SequenceLogps, beta: float, epsilon: float,
                     reference_ratio: torch.Tensor | None = None) -> Step:
    """The step of each pair. reference_ratio, when given, is log π_ref(y_w) −
    log π_ref(y_l) from elsewhere (the export's, in the trainer) instead of
    the reference logits' own; it shifts h, h_down and h_up alike, so it
    never changes s."""
    check_epsilon(epsilon)
    if not (beta > 0 and math.isfinite(beta)):
        raise ValueError(f"beta must be a positive finite number, got {beta}")
    if reference_ratio is None:
        reference_ratio = chosen.reference - rejected.reference
    logit = chosen.policy - rejected.policy - reference_ratio
    down = (chosen.down - rejected.down - reference_ratio).detach()
    up = (chosen.up - rejected.up - reference_ratio).detach()
    h = logit.detach()
    step = torch.zeros_like(h, dtype=torch.long)
    step = torch.where((down > h) & (h > up), 1, step)
    step = torch.where((up > h) & (h > down), -1, step)
    # β_i in double precision whatever the logits' precision, as metric computes it.
    pair_beta = beta / (1 + epsilon * step.to(torch.float64))
    return Step(logit=logit, logit_down=down, logit_up=up, step=step, beta=pair_beta)


def epsilon_dpo_loss(step: Step) -> torch.Tensor:
    """−log σ(β_i·h) per pair (metric.EpsilonStep.Loss); the gradient flows
    through h only."""
    return -F.logsigmoid(step.beta.to(step.logit.dtype) * step.logit)


def next_beta(beta: float, pair_betas: list[float]) -> float:
    """The base β after an optimiser step: the mean of the batch's β_i, or β
    itself for an empty batch (metric.NextBeta)."""
    if not pair_betas:
        return beta
    return math.fsum(pair_betas) / len(pair_betas)
