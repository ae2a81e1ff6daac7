"""Chat template and special-token settings: which template renders, which tokens end a turn.

- `chat_template`: a Jinja file, or a built-in name below; by default the tokenizer's own
  template, and DEFAULT_TEMPLATE (alpaca-style, shared with sfteval's prompts) when it has
  none. Whatever renders in training is saved into every checkpoint's tokenizer, so the
  evaluation prompts exactly as training did.
- `end_tokens`: extra end-of-turn tokens (DeepSeek-Coder's `<|EOT|>`, ...). Together with
  EOS, the generation config's eos ids and the common chat end tokens they are the tokens
  that may close an assistant turn; the one that does is trained and becomes a stop token.
- `pad_token` / `eos_token`: set on the tokenizer; each must be ONE token already in the
  vocabulary (adding tokens would need new embedding rows, which this trainer does not do).

Built-in `chatml_training` has `{% generation %}` markers in the style of TRL's
`*_training.jinja` templates: the marked block holds a header newline, the content, the
end token and a trailing newline; only the content and its end token are trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfteval.errors import SftevalError
from sfteval.fileio import sha256_text
from sfteval.prompts import DEFAULT_TEMPLATE

# Chat end-of-turn tokens that stop generation in common templates (besides EOS).
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|end_of_turn|>", "<|EOT|>")

_CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_CHATML_TRAINING = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant' }}"
    "{% generation %}{{ '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endgeneration %}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# DeepSeek-Coder instruct's layout (### Instruction / ### Response, turns closed by <|EOT|>).
_DEEPSEEK_CODER = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n' }}"
    "{% else %}{{ '### Response:\n' + message['content'] + '\n<|EOT|>\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
)
BUILTIN_TEMPLATES: dict[str, str] = {
    "alpaca": DEFAULT_TEMPLATE,
    "chatml": _CHATML,
    "chatml_training": _CHATML_TRAINING,
    "llama3": _LLAMA3,
    "deepseek_coder": _DEEPSEEK_CODER,
}


@dataclass(frozen=True)
class TemplateInfo:
    source: str  # "model" | "default" | "builtin:<name>" | "file:<absolute path>"
    sha256: str  # of the template text: resume refuses a different one
    end_ids: frozenset[int]


def _single_token(tokenizer: Any, token: str, knob: str) -> int:
    ids = tokenizer.convert_tokens_to_ids([token])
    unk = tokenizer.unk_token_id
    if not ids or ids[0] is None or (ids[0] == unk and token != tokenizer.unk_token):
        raise SftevalError(
            f"'{token}' is not one token of this tokenizer's vocabulary",
            field=knob,
            hint="name a token the model already has (adding tokens would need new embedding rows)",
        )
    return int(ids[0])


def resolve_template(name: str) -> tuple[str, str]:
    """(template text, source label) for a file path or a built-in name."""
    if name in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[name], f"builtin:{name}"
    p = Path(name)
    if p.is_file():
        return p.read_text(encoding="utf-8"), f"file:{p.resolve()}"
    raise SftevalError(
        "chat template not found",
        path=name,
        field="chat_template",
        hint=f"a Jinja file or one of: {', '.join(BUILTIN_TEMPLATES)}",
    )


def apply_settings(
    tokenizer: Any,
    *,
    chat_template: str | None,
    end_tokens: Sequence[str] = (),
    pad_token: str | None = None,
    eos_token: str | None = None,
    generation_eos: Sequence[int] = (),
) -> TemplateInfo:
    """Set the template and special tokens on `tokenizer` (in place); return what was used."""
    if eos_token is not None:
        _single_token(tokenizer, eos_token, "eos_token")
        tokenizer.eos_token = eos_token
    if pad_token is not None:
        _single_token(tokenizer, pad_token, "pad_token")
        tokenizer.pad_token = pad_token
    if chat_template is not None:
        text, source = resolve_template(chat_template)
        tokenizer.chat_template = text
    elif getattr(tokenizer, "chat_template", None):
        source = "model"
    else:
        if tokenizer.eos_token is None:
            raise SftevalError(
                "the tokenizer has neither a chat template nor an EOS token",
                field="model",
                hint="set chat_template (a file or a built-in name) and eos_token, so the model can learn to stop",
            )
        tokenizer.chat_template = DEFAULT_TEMPLATE
        source = "default"
    ids = {int(i) for i in generation_eos}
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in END_OF_TURN_TOKENS if t in vocab)
    ids.update(_single_token(tokenizer, t, "end_tokens") for t in end_tokens)
    return TemplateInfo(source=source, sha256=sha256_text(tokenizer.chat_template), end_ids=frozenset(ids))
