"""epsilon_dpo.py against the ε-DPO vectors shared with the Go package
metric (metric/testdata/epsilon_dpo_vectors.json; their expected values come
from 60-digit decimal arithmetic, and the first three are worked by hand in
metric/epsilon_dpo_test.go, TestEpsilonDPOSharedVectors: h = ln(8/3),
β_i = 1/15, loss = ln(1 + (3/8)^(1/15)); swapped, β_i = 1/5, loss =
ln(1 + (8/3)^(1/5)); a policy equal to its reference, s = 0, loss = ln 2)."""

import json
import math

import pytest
import torch
from conftest import REPO

import epsilon_dpo

VECTORS = json.loads((REPO / "metric" / "testdata" / "epsilon_dpo_vectors.json").read_text(encoding="utf-8"))


def logps(seq: dict, epsilon: float) -> epsilon_dpo.SequenceLogps:
    t = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731 — a batch of one
    tokens = torch.tensor([seq["tokens"]])
    return epsilon_dpo.sequence_logps(t(seq["policy"]), t(seq["reference"]), tokens, torch.ones_like(tokens),
                                      epsilon)


@pytest.mark.parametrize("v", VECTORS["pairs"], ids=[v["name"] for v in VECTORS["pairs"]])
def test_step_and_loss_agree_with_the_shared_vectors(v):
    st = epsilon_dpo.epsilon_dpo_step(logps(v["chosen"], v["epsilon"]), logps(v["rejected"], v["epsilon"]),
                                      v["beta"], v["epsilon"])
    want = v["want"]
    assert st.logit.item() == pytest.approx(want["logit"], abs=1e-9)
    assert st.logit_down.item() == pytest.approx(want["logit_down"], abs=1e-9)
    assert st.logit_up.item() == pytest.approx(want["logit_up"], abs=1e-9)
    assert st.step.item() == want["step"]
    assert st.beta.item() == pytest.approx(want["beta"], abs=1e-9)
    assert epsilon_dpo.epsilon_dpo_loss(st).item() == pytest.approx(want["loss"], abs=1e-9)


def test_the_vectors_cover_every_step():
    steps = [v["want"]["step"] for v in VECTORS["pairs"]]
    assert steps.count(1) and steps.count(-1) and steps.count(0) >= 2
    first = VECTORS["pairs"][0]["want"]
    assert first["loss"] == pytest.approx(math.log1p((3 / 8) ** (1 / 15)), abs=1e-12)


@pytest.mark.parametrize("c", VECTORS["next_beta"], ids=[c["name"] for c in VECTORS["next_beta"]])
def test_next_beta_agrees_with_the_shared_vectors(c):
    assert epsilon_dpo.next_beta(c["beta"], c["pair_betas"]) == pytest.approx(c["want"], abs=1e-12)


def test_a_batch_gives_each_pair_its_own_step():
    # The shared pairs stacked in one padded batch give what each gives alone.
    pairs = [v for v in VECTORS["pairs"] if v["epsilon"] == 0.01 and v["beta"] == 0.01]
    seqs = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
    vocab = {len(s["policy"][0]) for s in seqs}
    width, length = max(vocab), max(len(s["tokens"]) for s in seqs)
    pad = -1e4  # logits of the extra vocabulary entries: probability ≈ 0

    def padded(rows):
        return [r + [pad] * (width - len(r)) for r in rows] + [[0.0] * width] * (length - len(rows))

    def batch(key):
        return torch.tensor([padded(s[key]) for s in seqs], dtype=torch.float64)

    tokens = torch.tensor([s["tokens"] + [0] * (length - len(s["tokens"])) for s in seqs])
    mask = torch.tensor([[1] * len(s["tokens"]) + [0] * (length - len(s["tokens"])) for s in seqs])
    lps = epsilon_dpo.sequence_logps(batch("policy"), batch("reference"), tokens, mask, 0.01)
    st = epsilon_dpo.epsilon_dpo_step(*epsilon_dpo.split_pairs(lps), 0.01, 0.01)
    assert st.step.tolist() == [p["want"]["step"] for p in pairs]
    assert st.logit.tolist() == pytest.approx([p["want"]["logit"] for p in pairs], abs=1e-9)
    assert st.beta.tolist() == pytest.approx([p["want"]["beta"] for p in pairs], abs=1e-9)


def test_out_of_range_epsilon_and_beta_are_refused():
    seq = VECTORS["pairs"][0]["chosen"]
    with pytest.raises(ValueError, match="epsilon 1"):
        logps(seq, 1.0)
    lp = logps(seq, 0.5)
    with pytest.raises(ValueError, match="beta must be a positive finite number"):
        epsilon_dpo.epsilon_dpo_step(lp, lp, 0.0, 0.5)
