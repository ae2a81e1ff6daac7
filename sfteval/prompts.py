"""Prompt rendering: chat template or plain text, and the exact string sent.

Rules that keep prompts honest (PITFALLS: double BOS, auto templates):
- The rendered string includes the BOS text when the model expects one; backends
  tokenize with `add_special_tokens=False`, so there is exactly one BOS.
- Whether a chat template was used, and its hash, is recorded per run; `compare`
  refuses to compare runs whose template use differs unless told to.
- Without a chat template, conversations render with DEFAULT_TEMPLATE below, the same
  one the trainer uses (and saves) for tokenizers that have none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sfteval.errors import SftevalError
from sfteval.fileio import sha256_text
from sfteval.types import Message

# The documented default instruction template, for tokenizers without a chat template.
# The trainer renders training data with it and saves it into the checkpoint's
# tokenizer, so an un-templated base and its tuned child see the same conversation text.
# Alpaca-style; the response and its EOS sit inside generation markers (assistant mask).
DEFAULT_TEMPLATE = (
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}"
    "{% else %}{{ '### Response:\n' }}{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}"
    "{{ '\n\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
)


def render_messages(tokenizer: Any, messages: Sequence[Message], *, template: str | None = None, add_generation_prompt: bool = True) -> str:
    """Render through a Jinja chat template (the tokenizer's, or `template`)."""
    return tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in messages],
        chat_template=template,
        tokenize=False,
        add_generation_prompt=add_generation_prompt,
    )


@dataclass(frozen=True)
class Renderer:
    """Turns text or messages into the exact prompt string for one model."""

    tokenizer: Any | None  # a transformers tokenizer, or None (replay without a checkpoint)
    chat: bool
    bos_text: str = ""

    def plain(self, text: str) -> str:
        return self.bos_text + text

    def conversation(self, messages: Sequence[Message]) -> str:
        """A prompt that asks for the next assistant turn."""
        if self.tokenizer is None:  # replay without a checkpoint: nothing to template with
            return "".join(f"{m.role}: {m.content}\n\n" for m in messages) + "assistant:"
        rendered = render_messages(self.tokenizer, messages, template=None if self.chat else DEFAULT_TEMPLATE)
        # Templates that omit BOS rely on the tokenizer adding it; we add it as text.
        if self.bos_text and not rendered.startswith(self.bos_text):
            rendered = self.bos_text + rendered
        return rendered

    def info(self) -> dict[str, Any]:
        template = getattr(self.tokenizer, "chat_template", None) if self.tokenizer is not None else None
        return {
            "chat_template_used": self.chat,
            "chat_template_sha256": sha256_text(template) if (self.chat and isinstance(template, str)) else None,
            "bos_text": self.bos_text,
            "default_template_sha256": None if self.chat else sha256_text(DEFAULT_TEMPLATE),
        }


def _bos_text(tokenizer: Any) -> str:
    """The BOS text if this tokenizer adds BOS when encoding plain text, else ''."""
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None:
        return ""
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return tokenizer.bos_token if ids and ids[0] == bos_id else ""


def make_renderer(tokenizer: Any | None, mode: str) -> Renderer:
    """`mode`: auto (template when the tokenizer has one) | on (require one) | off."""
    if mode not in {"auto", "on", "off"}:
        raise SftevalError(f"unknown chat-template mode '{mode}'", field="chat_template", hint="auto | on | off")
    if tokenizer is None:
        if mode == "on":
            raise SftevalError("--chat-template on needs a checkpoint with a tokenizer", field="chat_template")
        return Renderer(None, chat=False)
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if mode == "on" and not has_template:
        raise SftevalError(
            "--chat-template on, but the tokenizer has no chat template",
            field="chat_template",
            hint="use --chat-template off (plain prompts) or add a chat_template to tokenizer_config.json",
        )
    chat = has_template and mode != "off"
    return Renderer(tokenizer, chat=chat, bos_text=_bos_text(tokenizer))
