"""train_dpo.py trains LoRA adapters on the loop's export with TRL, on the
CPU. Each run's batch holds every pair, so the first logged loss is the mean
loss of all pairs under the starting policy, which the tests work out
themselves (hand.py) from the model's own log-probs and the export's
reference values."""

import json
import math

import pytest
import torch
from transformers import AutoTokenizer

import epsilon_dpo
import hand
import train_dpo

LN2 = math.log(2)


def train(base, dataset, out, *extra):
    argv = ["--base-model", str(base), "--dataset", str(dataset), "--output", str(out),
            "--batch-size", "64", "--grad-accum", "1", "--logging-steps", "1", "--dtype", "float32",
            "--max-length", "1024", *extra]
    return train_dpo.train(train_dpo.parse_args(argv))


def logged(trainer, key="loss"):
    """The value of key at each logged step."""
    return [e[key] for e in trainer.state.log_history if key in e]


@pytest.fixture(scope="module")
def tokenizer(base_model):
    return AutoTokenizer.from_pretrained(base_model)


@pytest.fixture(scope="module")
def pairs(export_dir):
    rows = hand.read_pairs(export_dir / "train.jsonl")
    assert len(rows) >= 3, "the loop exported too few pairs to train on"
    return rows


def dpo_logits(policy, tokenizer, pairs):
    """h of each pair: the policy's log-ratio minus the export's reference one."""
    out = []
    for r in pairs:
        lw, _ = hand.response_logp(policy, tokenizer, r["prompt"], r["chosen"])
        ll, _ = hand.response_logp(policy, tokenizer, r["prompt"], r["rejected"])
        out.append((lw - r["ref_chosen_logps"]) - (ll - r["ref_rejected_logps"]))
    return out


def scale_for(h):
    """A β that keeps every β·h within [−1, 1], where the loss is far from
    flat in h; a power of two, so β·h is exact."""
    return 2.0 ** -math.ceil(math.log2(max(abs(x) for x in h)))


@pytest.fixture(scope="module")
def dpo_run(base_model, export_dir, tokenizer, pairs, tmp_path_factory):
    """DPO from the base model: three steps at a large learning rate, so the
    adapter moves the policy (the later runs continue from it)."""
    h = dpo_logits(hand.load_policy(base_model), tokenizer, pairs)
    beta = scale_for(h)
    out = tmp_path_factory.mktemp("dpo") / "policy-1"
    trainer = train(base_model, export_dir / "train.jsonl", out, "--loss", "dpo", "--beta", repr(beta),
                    "--epochs", "3", "--learning-rate", "1e-2")
    return trainer, out, beta, h


def test_dpo_first_step_is_the_loss_of_the_export_reference(dpo_run):
    trainer, _, beta, h = dpo_run
    want = hand.mean(hand.softplus(-beta * x) for x in h)
    # TRL with its own reference (the adapter off: the policy itself at the
    # first step) would have h = 0 and loss ln 2 for every pair.
    assert abs(want - LN2) > 0.01
    assert logged(trainer)[0] == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert len(logged(trainer)) == 3


def test_dpo_loss_follows_the_reference_columns(base_model, export_dir, tmp_path, pairs, dpo_run):
    # Raising ref_chosen_logps by d lowers h by d: loss = mean softplus(−β·(h − d)).
    _, _, beta, h = dpo_run
    d = [(i + 1) / (len(pairs) * beta) for i in range(len(pairs))]
    shifted = [dict(r, ref_chosen_logps=r["ref_chosen_logps"] + di) for r, di in zip(pairs, d)]
    dataset = hand.write_pairs(tmp_path / "train.jsonl", shifted)
    trainer = train(base_model, dataset, tmp_path / "out", "--loss", "dpo", "--beta", repr(beta))
    want = hand.mean(hand.softplus(-beta * (x - di)) for x, di in zip(h, d))
    before = hand.mean(hand.softplus(-beta * x) for x in h)
    assert want - before > 0.05
    assert logged(trainer)[0] == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_dpo_from_an_adapter_keeps_the_export_reference(base_model, export_dir, tokenizer, pairs, dpo_run,
                                                        tmp_path):
    # --init-adapter: TRL's own reference would be a frozen copy of the
    # starting adapter, the policy itself: h = 0, loss ln 2.
    _, start, _, _ = dpo_run
    h = dpo_logits(hand.load_policy(base_model, start), tokenizer, pairs)
    beta = scale_for(h)
    want = hand.mean(hand.softplus(-beta * x) for x in h)
    assert abs(want - LN2) > 0.01
    out = tmp_path / "policy-2"
    trainer = train(base_model, export_dir / "train.jsonl", out, "--loss", "dpo", "--beta", repr(beta),
                    "--init-adapter", str(start))
    assert logged(trainer)[0] == pytest.approx(want, rel=1e-5, abs=1e-6)
    saved = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= saved
    assert "ref" not in saved, "no copy of TRL's reference adapter beside the trained one"


def test_the_adapter_is_written_and_loads_back(base_model, tokenizer, pairs, dpo_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    trainer, out, _, _ = dpo_run
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 16 and config["peft_type"] == "LORA"
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_model), out)
    trained = {k: v for k, v in trainer.model.state_dict().items() if "lora_" in k}
    got = {k: v for k, v in loaded.state_dict().items() if "lora_" in k}
    assert trained.keys() == got.keys() and len(got) > 0
    for k, v in trained.items():
        assert torch.equal(v.cpu(), got[k]), k
    assert any(v.abs().max() > 0 for k, v in got.items() if "lora_B" in k), "training moved the adapter"
    # The adapter changes the policy's log-probs.
    r = pairs[0]
    base_lp, _ = hand.response_logp(hand.load_policy(base_model), tokenizer, r["prompt"], r["chosen"])
    tuned_lp, _ = hand.response_logp(hand.load_policy(base_model, out), tokenizer, r["prompt"], r["chosen"])
    assert abs(tuned_lp - base_lp) > 1e-3


def test_parquet_export_trains_like_the_jsonl(base_model, export_dir, tmp_path, dpo_run):
    trainer, _, beta, _ = dpo_run
    parquet = train(base_model, export_dir / "train.parquet", tmp_path / "out", "--loss", "dpo",
                    "--beta", repr(beta))
    assert logged(parquet)[0] == pytest.approx(logged(trainer)[0], rel=1e-6)


def test_simpo_first_step_is_trls_simpo_loss(base_model, export_dir, tokenizer, pairs, tmp_path):
    # −log σ(β·[lp(y_w)/|y_w| − lp(y_l)/|y_l|] − γ) at β 2 and γ 0.5 (the
    # defaults), from the base model's own log-probs; no reference.
    policy = hand.load_policy(base_model)
    u = []
    for r in pairs:
        lw, nw = hand.response_logp(policy, tokenizer, r["prompt"], r["chosen"])
        ll, nl = hand.response_logp(policy, tokenizer, r["prompt"], r["rejected"])
        u.append(2.0 * (lw / nw - ll / nl) - 0.5)
    want = hand.mean(hand.softplus(-x) for x in u)
    assert min(abs(x) for x in u) < 5, "some pair's loss is not flat in its margin"
    # The reference columns play no part: the export without them trains too.
    bare = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in pairs]
    dataset = hand.write_pairs(tmp_path / "train.jsonl", bare)
    trainer = train(base_model, dataset, tmp_path / "out", "--loss", "simpo", "--epochs", "2")
    assert logged(trainer)[0] == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()


def test_epsilon_dpo_first_step_and_beta(base_model, export_dir, tokenizer, pairs, dpo_run, tmp_path):
    # From the DPO adapter, so the policy differs from the reference (the
    # base model) and the perturbations move h; ε is the default, 0.01.
    _, start, _, _ = dpo_run
    eps = epsilon_dpo.DEFAULT_EPSILON
    assert train_dpo.parse_args(["--base-model", "m", "--dataset", "d", "--output", "o"]).epsilon == eps
    policy, reference = hand.load_policy(base_model, start), hand.load_policy(base_model)

    def seq(r, key):
        z, tokens = hand.response_logits(policy, tokenizer, r["prompt"], r[key])
        z_ref, _ = hand.response_logits(reference, tokenizer, r["prompt"], r[key])
        return epsilon_dpo.sequence_logps(z[None], z_ref[None], tokens[None], torch.ones(1, len(tokens)), eps)

    ratio = torch.tensor([r["ref_chosen_logps"] - r["ref_rejected_logps"] for r in pairs], dtype=torch.float64)
    chosen = [seq(r, "chosen") for r in pairs]
    rejected = [seq(r, "rejected") for r in pairs]
    cat = lambda xs: epsilon_dpo.SequenceLogps(*(torch.cat([getattr(x, f) for x in xs])  # noqa: E731
                                                 for f in ("policy", "reference", "down", "up")))
    beta0 = scale_for(dpo_logits(policy, tokenizer, pairs))
    st = epsilon_dpo.epsilon_dpo_step(cat(chosen), cat(rejected), beta0, eps, reference_ratio=ratio)
    gaps = torch.minimum((st.logit_down - st.logit).abs(), (st.logit - st.logit_up).abs())
    assert gaps.min() > 1e-4, "a decision too close to a tie to compare float32 with float64"
    assert (st.step != 0).any(), "the perturbations moved no pair"
    want_loss = hand.mean(epsilon_dpo.epsilon_dpo_loss(st).tolist())
    want_beta = epsilon_dpo.next_beta(beta0, st.beta.tolist())

    trainer = train(base_model, export_dir / "train.jsonl", tmp_path / "out", "--loss", "epsilon-dpo",
                    "--beta", repr(beta0), "--init-adapter", str(start), "--epochs", "2")
    assert logged(trainer)[0] == pytest.approx(want_loss, rel=1e-5, abs=1e-6)
    assert logged(trainer, "epsilon_dpo/relaxed")[0] == pytest.approx((st.step == 1).double().mean().item())
    assert logged(trainer, "epsilon_dpo/tightened")[0] == pytest.approx((st.step == -1).double().mean().item())
    # β moves after the first step to the mean of its β_i (metric.NextBeta).
    assert logged(trainer, "epsilon_dpo/base_beta") == pytest.approx([beta0, want_beta], rel=1e-12)
    assert want_beta != beta0
