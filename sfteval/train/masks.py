"""Which characters of a rendered conversation are trained, and which tokens that makes.

One rule for every template: a conversation is rendered ONCE and tokenized ONCE (with
offsets); each assistant turn's trained span is its content plus the end-of-turn token
that closes it, found as characters and mapped to tokens through the offsets. Tokenizing
the prompt on its own would shift the boundary wherever BPE merges across it.

Where a turn is looked for:
- Templates with `{% generation %}` markers (TRL's `*_training.jinja` style): inside the
  block the template marks for that turn. The block is not trusted blindly: a marked
  header (`<|im_start|>assistant`, a leading newline) or a trailing newline after the end
  token is not content and gets no label. A template that marks a different number of
  blocks than there are assistant turns is refused.
- Templates without markers: between the render of the turns before it (with the
  generation prompt) and the render up to and including it; the template must be
  prefix-stable (earlier turns render the same later), else it is refused with a hint.

A token is trained when any of its characters lie in a span, so a token merged across the
boundary is trained (every response character is learned). The end-of-turn token must
follow the content with at most whitespace between: a template that ends turns with
nothing the model can emit is refused, since such a model would never learn to stop.

Not covered: tool calls, images, content given as a list of parts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sfteval.errors import SftevalError

GENERATION_RE = re.compile(r"\{%-?\s*generation\s*-?%\}")
Span = tuple[int, int]


def has_markers(template: str | None) -> bool:
    return bool(template and GENERATION_RE.search(template))


def _special_kwargs(tokenizer: Any) -> dict[str, Any]:
    return {k: getattr(tokenizer, k, None) for k in ("bos_token", "eos_token", "pad_token", "unk_token")}


def render(tokenizer: Any, msgs: list[dict[str, str]], gen_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen_prompt)


def _marked_regions(msgs: list[dict[str, str]], tokenizer: Any) -> tuple[str, list[Span]]:
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, indices = render_jinja_template(
        [msgs], chat_template=tokenizer.chat_template, return_assistant_tokens_mask=True, **_special_kwargs(tokenizer)
    )
    return rendered[0], [(int(a), int(b)) for a, b in indices[0]]


def _prefix_regions(msgs: list[dict[str, str]], tokenizer: Any) -> tuple[str, list[Span]]:
    text = render(tokenizer, msgs)
    regions = []
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        before = render(tokenizer, msgs[:i], gen_prompt=True)
        upto = render(tokenizer, msgs[: i + 1])
        if not (text.startswith(upto) and upto.startswith(before)):
            raise SftevalError(
                "the chat template is not prefix-stable (an earlier turn renders differently later)",
                field="chat_template",
                hint="add {% generation %} ... {% endgeneration %} markers around assistant content",
            )
        regions.append((len(before), len(upto)))
    return text, regions


def _content_span(text: str, region: Span, content: str, end_strings: Sequence[str], limit: int) -> Span:
    """The content inside `region`, extended through the end-of-turn token that follows it."""
    start, stop = region
    pos, used = text.find(content, start, stop), content
    if pos < 0 and content.strip():
        used = content.strip()
        pos = text.find(used, start, stop)
    if pos < 0:
        raise SftevalError(
            "an assistant turn's content is not inside the block the template renders (or marks) for it",
            field="chat_template",
            hint="the template must render message['content'] (trimming is fine) inside its {% generation %} block",
        )
    end = pos + len(used)
    best = None
    for s in end_strings:
        if not s:
            continue
        k = text.find(s, end, limit)
        if k >= 0 and not text[end:k].strip() and (best is None or k < best[0]):
            best = (k, k + len(s))
    if best is None:
        raise SftevalError(
            "no end-of-turn token after an assistant response: the model would never learn to stop",
            field="chat_template",
            hint="use a template that ends assistant turns with EOS or an end-of-turn token, or name it in end_tokens",
        )
    return pos, best[1]


def assistant_char_spans(msgs: list[dict[str, str]], tokenizer: Any, end_strings: Sequence[str]) -> tuple[str, list[Span]]:
    """The rendered text and, per assistant turn, the trained character span."""
    if has_markers(tokenizer.chat_template):
        text, regions = _marked_regions(msgs, tokenizer)
    else:
        text, regions = _prefix_regions(msgs, tokenizer)
    contents = [m["content"] for m in msgs if m["role"] == "assistant"]
    if len(regions) != len(contents):
        raise SftevalError(
            f"the template marks {len(regions)} generation block(s) for {len(contents)} assistant turn(s)",
            field="chat_template",
            hint="wrap exactly each assistant message in {% generation %} ... {% endgeneration %}",
        )
    spans = []
    for j, (region, content) in enumerate(zip(regions, contents)):
        limit = regions[j + 1][0] if j + 1 < len(regions) else len(text)
        spans.append(_content_span(text, region, content, end_strings, max(limit, region[1])))
    return text, spans


def token_mask(msgs: list[dict[str, str]], tokenizer: Any, end_strings: Sequence[str]) -> tuple[list[int], Any]:
    """Token ids of the one tokenization and, per token, whether it is trained."""
    if not getattr(tokenizer, "is_fast", False):
        raise SftevalError(
            "masking needs a fast tokenizer (token offsets)",
            field="model",
            hint="use the model's tokenizer.json (a fast tokenizer)",
        )
    text, spans = assistant_char_spans(msgs, tokenizer, end_strings)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(enc["input_ids"]), span_mask(enc["offset_mapping"], spans)


def span_mask(offsets: Sequence[tuple[int, int]], spans: Sequence[Span]) -> Any:
    """Per token, whether it is non-empty and any of its characters lies in a span.

    numpy over (tokens x spans): the Python comprehension it replaces was half of the
    cold tokenization time (perf/train_throughput.py --tokenize)."""
    import numpy as np

    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    sp = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    b, e = off[:, :1], off[:, 1:]
    hit = ((b < sp[None, :, 1]) & (e > sp[None, :, 0])).any(axis=1) if len(sp) else np.zeros(len(off), bool)
    return (off[:, 1] > off[:, 0]) & hit
