"""Fixtures of the trainer tests: the loop's export (SELFPLAY_EXPORT, set by
the Go test examples/vllm/trainer_test.go, which runs these with the
environment scripts/install-python-stack installs), and a tiny causal LM
with random weights and a byte-level tokenizer with a chat template, both
made here: nothing comes from a hub."""

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # train_dpo.py, epsilon_dpo.py
REPO = HERE.parent.parent.parent

# The chat template: <|role|>content<|end|> per message, then <|assistant|>
# for the reply. The end-of-turn token is the tokenizer's EOS, so TRL (DPO
# and CPO alike) counts it in the response, as the export's log-probs do.
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="session")
def export_dir() -> Path:
    d = os.environ.get("SELFPLAY_EXPORT")
    if not d:
        pytest.fail("SELFPLAY_EXPORT is not set: run `go test ./examples/vllm`, which exports a real loop's "
                    "pairs and runs these tests on them")
    d = Path(d)
    for f in ("train.jsonl", "train.parquet"):
        assert (d / f).is_file(), f"{d / f} is missing"
    return d


def make_tokenizer():
    """Bytes as tokens (a byte-level BPE without merges), plus the chat's
    special tokens: any text encodes, and a prompt's tokens are always a
    prefix of the prompt-and-reply's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|end|>", pad_token="<|pad|>",
                                   additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"])
    fast.chat_template = CHAT_TEMPLATE
    return fast


@pytest.fixture(scope="session")
def base_model(tmp_path_factory) -> Path:
    """A two-layer Qwen2 with random weights and the byte tokenizer, saved
    as a model folder for --base-model."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = make_tokenizer()
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    # Larger output weights than the initialiser's, so the model's
    # log-probs differ from a uniform distribution's by whole nats.
    with torch.no_grad():
        model.lm_head.weight.mul_(50)
    out = tmp_path_factory.mktemp("base-model")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
