"""Writes epsilon_dpo_vectors.json: inputs of the ε-DPO step (DESIGN §1.3)
and its expected outputs, which the Go package metric (epsilon_dpo_test.go)
and the Python trainer (examples/vllm/tests/test_epsilon_dpo.py) both check.

The expected values are worked out here in 60-digit decimal arithmetic
(Python's decimal module) from the very doubles the file holds, apart from
the code under test on either side; the first vectors are also worked by
hand in metric/epsilon_dpo_test.go. Run from the repository root:

    python3 metric/testdata/make_epsilon_dpo_vectors.py
"""

import json
import math
import random
from decimal import Decimal, getcontext
from pathlib import Path

getcontext().prec = 60
OUT = Path(__file__).with_name("epsilon_dpo_vectors.json")


def log_softmax_at(x: list[Decimal], tok: int) -> Decimal:
    return x[tok] - sum(v.exp() for v in x).ln()


def sequence_sums(seq: dict, eps: Decimal) -> dict:
    """Summed log-probs of seq's tokens under the policy, the reference and
    the policies perturbed down (c = +ε) and up (c = −ε)."""
    out = {"policy": Decimal(0), "reference": Decimal(0), "down": Decimal(0), "up": Decimal(0)}
    for t, tok in enumerate(seq["tokens"]):
        z = [Decimal(v) for v in seq["policy"][t]]
        ref = [Decimal(v) for v in seq["reference"][t]]
        out["policy"] += log_softmax_at(z, tok)
        out["reference"] += log_softmax_at(ref, tok)
        out["down"] += log_softmax_at([a + eps * (a - b) for a, b in zip(z, ref)], tok)
        out["up"] += log_softmax_at([a - eps * (a - b) for a, b in zip(z, ref)], tok)
    return out


def expected(pair: dict) -> dict:
    beta, eps = Decimal(pair["beta"]), Decimal(pair["epsilon"])
    w, l = sequence_sums(pair["chosen"], eps), sequence_sums(pair["rejected"], eps)
    ratio = w["reference"] - l["reference"]
    h = w["policy"] - l["policy"] - ratio
    down = w["down"] - l["down"] - ratio
    up = w["up"] - l["up"] - ratio
    step = 1 if down > h > up else -1 if up > h > down else 0
    pair_beta = beta / (1 + eps * step)
    loss = (1 + (-pair_beta * h).exp()).ln()
    return {"h": h, "down": down, "up": up, "step": step, "beta": pair_beta, "loss": loss}


def margin(e: dict) -> Decimal:
    """How far the step decision is from flipping (0 for a tie)."""
    return min(abs(e["down"] - e["h"]), abs(e["h"] - e["up"]))


def hand_worked() -> tuple[dict, dict]:
    """The pair of metric/epsilon_dpo_test.go's handWorkedPair."""
    ln = math.log
    chosen = {"tokens": [0, 1, 2],
              "policy": [[ln(4), 0.0, 0.0], [0.0, ln(16), 0.0], [ln(2), ln(3), ln(5)]],
              "reference": [[0.0, 0.0, 0.0], [0.0, ln(4), 0.0], [ln(2), ln(3), ln(5)]]}
    rejected = {"tokens": [1, 1, 0],
                "policy": [[ln(4), 0.0, 0.0], [0.0, 0.0, 0.0], [ln(2), ln(3), ln(5)]],
                "reference": [[0.0, 0.0, 0.0], [ln(4), 0.0, 0.0], [ln(2), ln(3), ln(5)]]}
    return chosen, rejected


def random_sequence(rng: random.Random, vocab: int, scale: float, same: bool = False) -> dict:
    n = rng.randint(1, 5)
    policy = [[round(rng.gauss(0, scale), 6) for _ in range(vocab)] for _ in range(n)]
    # Now and then a logit large enough to overflow exp without the max shift.
    if rng.random() < 0.5:
        policy[0][rng.randrange(vocab)] = 700.25
    reference = [list(row) for row in policy] if same else \
        [[round(v + rng.gauss(0, scale / 2), 6) for v in row] for row in policy]
    return {"tokens": [rng.randrange(vocab) for _ in range(n)], "policy": policy, "reference": reference}


def main() -> None:
    chosen, rejected = hand_worked()
    pairs = [
        {"name": "hand-worked: confidence grows as beta goes down", "beta": 0.1, "epsilon": 0.5,
         "chosen": chosen, "rejected": rejected},
        {"name": "hand-worked, swapped: steps the other way", "beta": 0.1, "epsilon": 0.5,
         "chosen": rejected, "rejected": chosen},
    ]
    rng = random.Random(20250521)
    same = random_sequence(rng, 4, 2.0, same=True)
    same_rejected = random_sequence(rng, 4, 2.0, same=True)
    pairs.append({"name": "policy equals reference: a tie, s = 0", "beta": 0.01, "epsilon": 0.01,
                  "chosen": same, "rejected": same_rejected})
    wanted = {1: 2, -1: 2, 0: 1}  # random pairs still wanted per step
    while any(wanted.values()):
        vocab = rng.randint(3, 7)
        pair = {"beta": 0.01, "epsilon": 0.01, "chosen": random_sequence(rng, vocab, 3.0),
                "rejected": random_sequence(rng, vocab, 3.0)}
        e = expected(pair)
        if wanted[e["step"]] == 0 or margin(e) < Decimal("1e-7"):
            continue
        wanted[e["step"]] -= 1
        kind = {1: "relaxed (s = +1)", -1: "tightened (s = -1)", 0: "not monotone (s = 0)"}[e["step"]]
        pair["name"] = f"random, vocabulary {vocab}: {kind}"
        pairs.append(pair)

    for pair in pairs:
        e = expected(pair)
        pair["want"] = {"logit": float(e["h"]), "logit_down": float(e["down"]), "logit_up": float(e["up"]),
                        "step": e["step"], "beta": float(e["beta"]), "loss": float(e["loss"])}

    next_beta = [
        {"name": "mean of the hand-worked pairs' betas: (1/15 + 1/5)/2 = 2/15", "beta": 0.1,
         "pair_betas": [0.1 / 1.5, 0.1 / 0.5]},
        {"name": "a batch of every step", "beta": 0.01, "pair_betas": [0.01 / 1.01, 0.01 / 0.99, 0.01, 0.01 / 1.01]},
        {"name": "an empty batch keeps beta", "beta": 0.01, "pair_betas": []},
    ]
    for case in next_beta:
        betas = [Decimal(b) for b in case["pair_betas"]]
        case["want"] = float(sum(betas) / len(betas)) if betas else case["beta"]

    doc = {"about": "ε-DPO shared test vectors (DESIGN §1.3): written by make_epsilon_dpo_vectors.py, checked by "
                    "metric/epsilon_dpo_test.go and examples/vllm/tests/test_epsilon_dpo.py to 1e-9.",
           "pairs": pairs, "next_beta": next_beta}
    OUT.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
