"""Build a tiny Llama checkpoint from nothing: no hub, a few seconds on a CPU.

The tokenizer is a byte-level BPE trained on text we have locally (a corpus the caller
passes, else a slice of the Python standard library's own source). The model is a
randomly initialised `LlamaForCausalLM` with head_dim 64, because vLLM's CPU attention
kernel rejects smaller heads. The folder loads with transformers and vLLM as it is.

Special tokens are chosen to avoid a known SFT trap: pad is its own token, never EOS,
so training can supervise the end-of-turn token.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

BOS, EOS, PAD, IM_START, IM_END = "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"

# ChatML-style; `{% generation %}` marks assistant content for assistant-token masks.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}"
    "{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    vocab_size: int = 1024
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 2  # head_dim = hidden / heads = 64 (vLLM CPU needs >= 32)
    intermediate_size: int = 256
    max_position_embeddings: int = 2048
    seed: int = 0
    chat_template: bool = True


def default_corpus(max_chars: int = 400_000) -> list[str]:
    """Local text to train the tokenizer on: the stdlib's source plus digits and prose."""
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    names = ["textwrap.py", "string.py", "random.py", "statistics.py", "fractions.py", "calendar.py", "json/encoder.py"]
    texts: list[str] = []
    total = 0
    for name in names:
        p = stdlib / name
        if p.is_file():
            t = p.read_text(encoding="utf-8", errors="replace")
            texts.append(t)
            total += len(t)
        if total >= max_chars:
            break
    texts.append(" ".join(str(i) for i in range(2000)))
    texts.append("Question: What is 3 + 4? Answer: 7. #### 7\nA. B. C. D. Answer: A\n")
    return texts


def build_tokenizer(corpus: Iterable[str], vocab_size: int, chat_template: bool = True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=2048,
    )
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(out_dir: str | Path, spec: TinySpec = TinySpec(), corpus: Iterable[str] | None = None) -> Path:
    """Write tokenizer + randomly initialised Llama to `out_dir`; returns the path."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(corpus if corpus is not None else default_corpus(), spec.vocab_size, spec.chat_template)
    tok.save_pretrained(out)
    eos_ids = [tok.convert_tokens_to_ids(EOS), tok.convert_tokens_to_ids(IM_END)]
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=tok.bos_token_id,
        eos_token_id=eos_ids,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
        torch_dtype="float32",
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=eos_ids, pad_token_id=tok.pad_token_id
    )
    model.save_pretrained(out, safe_serialization=True)
    (out / "sfteval_tiny.json").write_text(json.dumps({"spec": spec.__dict__}, indent=2))
    return out


if __name__ == "__main__":
    import sys

    target = sys.argv[1] if len(sys.argv) > 1 else "tiny-model"
    print(build_tiny_model(target))
