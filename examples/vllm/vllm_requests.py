"""Read request bodies as vLLM's OpenAI-compatible server reads them.

  python vllm_requests.py RECORDED.json READ.json

RECORDED.json is {"max_model_len": N, "requests": [{"path": ..., "body": {...},
"response": {...}}, ...]}: the bodies selfplay's clients sent and the server's
replies (examples/vllm/protocol_test.go records them). Each body is validated
with the request class vLLM's router declares for its path, and the results
are written to READ.json as one JSON list, one entry per request (a file, not
stdout, which vLLM's logger writes to):

  class      the class vLLM parsed the body into (for a union, the member)
  error      vLLM's validation error, or null
  ignored    fields vLLM does not know: its OpenAIBaseModel keeps them as
             extras and only logs them at debug level, LoadLoRAAdapterRequest
             (a plain BaseModel) drops them; either way they do nothing
  changed    fields whose validated value differs from the one sent
  sampling   for chat and completions, the SamplingParams vLLM makes of the
             request, as its serving code does: get_max_tokens, then
             to_sampling_params with a model whose generation_config sets
             every sampling knob (GENERATION_CONFIG)
  pooling    for /classify and /pooling, the PoolingParams' use_activation

The Go test asserts on what is written; this script decides nothing.
Written against vLLM 0.18.0 (examples/vllm/requirements-vllm-protocol.txt);
the vLLM files read are named where they are used.
"""

import json
import sys
import warnings

from pydantic import BaseModel, TypeAdapter, ValidationError

# vllm/entrypoints/openai/chat_completion/api_router.py and
# completion/api_router.py declare these bodies; tokenize, classify and
# pooling take the unions below (vllm/entrypoints/serve/tokenize/
# api_router.py, pooling/classify/api_router.py, pooling/pooling/
# api_router.py), which FastAPI validates as pydantic unions; the LoRA route
# (vllm/entrypoints/serve/lora/api_router.py) takes LoadLoRAAdapterRequest.
from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
from vllm.entrypoints.openai.completion.protocol import CompletionRequest
from vllm.entrypoints.pooling.classify.protocol import ClassificationRequest
from vllm.entrypoints.pooling.pooling.protocol import PoolingRequest
from vllm.entrypoints.serve.lora.protocol import LoadLoRAAdapterRequest
from vllm.entrypoints.serve.tokenize.protocol import TokenizeRequest

try:
    from vllm.entrypoints.utils import get_max_tokens  # vLLM 0.18
except ImportError:  # later versions moved it
    from vllm.entrypoints.serve.utils.api_utils import get_max_tokens

ROUTES = {
    "/v1/chat/completions": TypeAdapter(ChatCompletionRequest),
    "/v1/completions": TypeAdapter(CompletionRequest),
    "/tokenize": TypeAdapter(TokenizeRequest),
    "/classify": TypeAdapter(ClassificationRequest),
    "/pooling": TypeAdapter(PoolingRequest),
    "/v1/load_lora_adapter": TypeAdapter(LoadLoRAAdapterRequest),
}

# The server's default_sampling_params as a model's generation_config sets
# them: vLLM takes repetition_penalty, temperature, top_k, top_p, min_p and
# max_new_tokens (as max_tokens) from it (get_diff_sampling_param in
# vllm/config/model.py), and a value the request leaves out comes from here
# ("Priority: user -> server default -> OpenAI default", to_sampling_params
# in vllm/entrypoints/openai/chat_completion/protocol.py). None of these is
# a value selfplay sends, so a knob that arrives as sent was read from the
# request.
GENERATION_CONFIG = {
    "repetition_penalty": 1.07,
    "temperature": 0.65,
    "top_k": 25,
    "top_p": 0.85,
    "min_p": 0.07,
    "max_tokens": 3000,
}

SAMPLING = ("n", "temperature", "top_p", "top_k", "min_p", "seed", "max_tokens", "logprobs",
            "prompt_logprobs", "repetition_penalty", "presence_penalty", "frequency_penalty")


def known_fields(cls):
    # The names vLLM's OpenAIBaseModel.__log_extra_fields__ compares a
    # body's keys with (vllm/entrypoints/openai/engine/protocol.py): field
    # names and their aliases.
    names = set()
    for name, field in cls.model_fields.items():
        names.add(name)
        if field.alias:
            names.add(field.alias)
    return names


def as_sent(value):
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_unset=True)
    if isinstance(value, list):
        return [as_sent(v) for v in value]
    if isinstance(value, dict):
        return {k: as_sent(v) for k, v in value.items()}
    return value


def sampling(req, body, response, max_model_len):
    # The serving code's order (vllm/entrypoints/openai/chat_completion/
    # serving.py and completion/serving.py): max_tokens from
    # get_max_tokens — chat reads max_completion_tokens before max_tokens —
    # with the prompt's length, then to_sampling_params.
    if isinstance(req, ChatCompletionRequest):
        asked = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    else:
        asked = req.max_tokens
    if isinstance(body.get("prompt"), list):
        prompt_len = len(body["prompt"])  # token ids
    else:
        prompt_len = response["usage"]["prompt_tokens"]  # as the server rendered it
    max_tokens = get_max_tokens(max_model_len, asked, prompt_len, GENERATION_CONFIG)
    params = req.to_sampling_params(max_tokens, GENERATION_CONFIG)
    return {k: getattr(params, k) for k in SAMPLING}


def read(entry, max_model_len):
    path, body = entry["path"], entry["body"]
    out = {"path": path, "class": None, "error": None, "ignored": [], "changed": [],
           "sampling": None, "pooling": None}
    adapter = ROUTES.get(path)
    if adapter is None:
        out["error"] = f"no vLLM route {path}"
        return out
    try:
        req = adapter.validate_python(json.loads(json.dumps(body)))
    except ValidationError as e:
        out["error"] = str(e)
        return out
    cls = type(req)
    out["class"] = cls.__name__
    fields = known_fields(cls)
    out["ignored"] = sorted(set(body) - fields)
    for key in sorted(set(body) & fields):
        got = as_sent(getattr(req, key))
        if got != body[key]:
            out["changed"].append({"field": key, "sent": body[key], "read": got})
    if isinstance(req, (ChatCompletionRequest, CompletionRequest)):
        out["sampling"] = sampling(req, body, entry["response"], max_model_len)
    if path in ("/classify", "/pooling"):
        out["pooling"] = {"use_activation": req.to_pooling_params().use_activation}
    return out


def main(argv):
    with open(argv[1]) as f:
        recorded = json.load(f)
    with warnings.catch_warnings():
        # max_tokens on chat is deprecated in vLLM's schema (pydantic warns
        # when it is read); selfplay sends it on purpose, for servers that
        # read only it.
        warnings.simplefilter("ignore", DeprecationWarning)
        results = [read(e, recorded["max_model_len"]) for e in recorded["requests"]]
    with open(argv[2], "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv)
