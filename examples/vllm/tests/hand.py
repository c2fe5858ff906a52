"""The tests' own arithmetic, apart from TRL's: each response tokenized from
the chat template's text, teacher-forced through the model in double
precision, its token log-probs summed; the losses from their formulas."""

import json
import math
from pathlib import Path

import torch


def read_pairs(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_pairs(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


def load_policy(base: Path, adapter: Path | None = None):
    """The base model, with adapter when given, in float64 and eval mode."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float64)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter).double()
    return model.eval()


def response_ids(tokenizer, prompt: list[dict], response: list[dict]) -> tuple[list[int], int]:
    """(prompt-and-response ids, prompt length): the response's tokens are
    what the template adds after the generation prompt, <|end|> included."""
    p = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(prompt + response, tokenize=False)
    assert full.startswith(p), (p, full)
    p_ids = tokenizer(p, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    assert ids[: len(p_ids)] == p_ids
    return ids, len(p_ids)


def response_logits(model, tokenizer, prompt, response) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits [T, V] that predict each of the response's T tokens, and the tokens."""
    ids, n = response_ids(tokenizer, prompt, response)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    return logits[n - 1 : -1], torch.tensor(ids[n:])


def response_logp(model, tokenizer, prompt, response) -> tuple[float, int]:
    """(log π(response|prompt) summed over its tokens, token count)."""
    logits, tokens = response_logits(model, tokenizer, prompt, response)
    lp = torch.log_softmax(logits, dim=-1).gather(-1, tokens[:, None]).squeeze(-1)
    return math.fsum(lp.tolist()), len(tokens)


def softplus(x: float) -> float:
    """log(1 + e^x) = −log σ(−x)."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def mean(xs) -> float:
    xs = list(xs)
    return math.fsum(xs) / len(xs)
