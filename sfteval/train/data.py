"""From SFT files to token ids and loss masks: rendering, masking, truncation.

Covered:
- Rows are read by `sfteval.formats.load_conversations` (alpaca / sharegpt / messages;
  JSONL / JSON / Parquet / hub id), the loader sfteval's held-out benchmark uses too.
- Rendering uses the tokenizer's chat template. A tokenizer without one gets
  DEFAULT_TEMPLATE (below), which is then saved with every checkpoint so that sfteval
  prompts the tuned model exactly as it was trained.
- The loss mask comes from the token ids of the ONE rendered conversation, never from
  tokenizing the prompt on its own (which shifts the boundary wherever BPE merges across
  it). Templates with `{% generation %}` markers: transformers' assistant-token mask of
  that one tokenization. Templates without markers: the assistant spans are found as
  characters (render of the turns before + generation prompt, render up to the turn,
  cut after its end-of-turn token) and mapped to tokens through the offsets of the one
  tokenization. A token is trained when any of its characters lie in a response, so a
  token merged across the boundary is trained (every response character is learned).
- Every assistant turn is trained (or only the last, `last_turn_only`), including the
  end-of-turn / EOS token after it; a template that emits none is refused, since such a
  model would never learn to stop. Masks never depend on the pad id (pad == eos is safe).
- Truncation at `cutoff_len` cuts the prompt from the left (keeping BOS); a sample whose
  last response cannot fit is dropped and counted under `response_too_long`.

Not covered: tool calls, images, and templates that are neither prefix-stable nor marked
with `{% generation %}` (refused with a hint).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sfteval.errors import SftevalError
from sfteval.types import Conversation

# Alpaca-style default template, shared with sfteval's prompts so evaluation renders
# conversations exactly as training did (documented in sfteval/prompts.py).
from sfteval.prompts import DEFAULT_TEMPLATE  # noqa: E402

# Chat end-of-turn tokens that stop generation in common templates (besides EOS).
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|end_of_turn|>")
_GENERATION_RE = re.compile(r"\{%-?\s*generation\s*-?%\}")


@dataclass(frozen=True)
class Encoded:
    """One training sample. mask[t] is True when token t is a label (predicted from t-1)."""

    input_ids: tuple[int, ...]
    mask: tuple[bool, ...]
    source: str = ""

    @property
    def n_supervised(self) -> int:
        return sum(self.mask)

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class EncodedData:
    samples: tuple[Encoded, ...]
    rows: int  # rows read (kept + dropped)
    dropped: dict[str, int] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    @property
    def tokens(self) -> int:
        return sum(len(s) for s in self.samples)

    @property
    def supervised_tokens(self) -> int:
        return sum(s.n_supervised for s in self.samples)


def prepare_tokenizer(tokenizer: Any) -> str:
    """Give a template-less tokenizer DEFAULT_TEMPLATE; returns 'model' or 'default'."""
    if getattr(tokenizer, "chat_template", None):
        return "model"
    if tokenizer.eos_token is None:
        raise SftevalError(
            "the tokenizer has neither a chat template nor an EOS token",
            field="model",
            hint="give the tokenizer a chat template or an eos_token so the model can learn to stop",
        )
    tokenizer.chat_template = DEFAULT_TEMPLATE
    return "default"


def end_token_ids(tokenizer: Any, extra: Sequence[int] = ()) -> frozenset[int]:
    """EOS, the generation config's eos ids (`extra`) and known chat end-of-turn tokens."""
    ids = set(extra)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    added = tokenizer.get_added_vocab()
    ids.update(added[t] for t in END_OF_TURN_TOKENS if t in added)
    return frozenset(ids)


def _messages(conv: Conversation) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in conv.messages]


def _mask_from_markers(msgs: list[dict[str, str]], tokenizer: Any) -> tuple[list[int], list[bool]]:
    out = tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    return list(out["input_ids"]), [bool(x) for x in out["assistant_masks"]]


def _render(tokenizer: Any, msgs: list[dict[str, str]], gen_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen_prompt)


def assistant_char_spans(msgs: list[dict[str, str]], tokenizer: Any, end_strings: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered text and the character span of each assistant turn (to its end token)."""
    text = _render(tokenizer, msgs)
    spans = []
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        before = _render(tokenizer, msgs[:i], gen_prompt=True)
        upto = _render(tokenizer, msgs[: i + 1])
        if not (text.startswith(upto) and upto.startswith(before)):
            raise SftevalError(
                "the chat template is not prefix-stable (an earlier turn renders differently later)",
                field="chat_template",
                hint="add {% generation %} ... {% endgeneration %} markers around assistant content",
            )
        start, end = len(before), len(upto)
        segment = text[start:end]
        cut = max((segment.rfind(s) + len(s) for s in end_strings if s and s in segment), default=-1)
        spans.append((start, start + cut if cut >= 0 else end))
    return text, spans


def _mask_from_prefixes(msgs: list[dict[str, str]], tokenizer: Any, end_ids: frozenset[int]) -> tuple[list[int], list[bool]]:
    if not getattr(tokenizer, "is_fast", False):
        raise SftevalError(
            "masking without {% generation %} markers needs a fast tokenizer (token offsets)",
            field="model",
            hint="use the model's tokenizer.json (a fast tokenizer) or a template with generation markers",
        )
    end_strings = [tokenizer.convert_ids_to_tokens(i) for i in end_ids]
    text, spans = assistant_char_spans(msgs, tokenizer, end_strings)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [e > b and any(b < se and e > ss for ss, se in spans) for b, e in enc["offset_mapping"]]
    return list(enc["input_ids"]), mask


def _runs(mask: Sequence[bool]) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    runs, start = [], None
    for i, m in enumerate(mask):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(mask)))
    return runs


def _train_end_tokens(ids: list[int], mask: list[bool], end_ids: frozenset[int], source: str) -> None:
    """Make sure each response's end-of-turn token is trained (extend by one if it follows)."""
    for start, end in _runs(mask):
        if ids[end - 1] in end_ids:
            continue
        if end < len(ids) and ids[end] in end_ids:
            mask[end] = True
            continue
        raise SftevalError(
            "no end-of-turn token after an assistant response: the model would never learn to stop",
            path=source or None,
            field="chat_template",
            hint="use a chat template that ends assistant turns with EOS or an end-of-turn token",
        )


def encode(conv: Conversation, tokenizer: Any, end_ids: frozenset[int], *, last_turn_only: bool = False) -> Encoded:
    """Render one conversation, tokenize it once, and mark the trained tokens."""
    msgs = _messages(conv)
    template = tokenizer.chat_template or ""
    try:
        if _GENERATION_RE.search(template):
            ids, mask = _mask_from_markers(msgs, tokenizer)
        else:
            ids, mask = _mask_from_prefixes(msgs, tokenizer, end_ids)
    except SftevalError as e:
        if e.path is None:
            raise SftevalError(e.message, path=conv.source, field=e.field, hint=e.hint) from e
        raise
    except Exception as e:  # noqa: BLE001 - jinja raises many types; name the row
        raise SftevalError(f"the chat template failed on this row: {e}", path=conv.source) from e
    if not any(mask):
        raise SftevalError(
            "the chat template marks no assistant tokens (all labels would be -100)",
            path=conv.source,
            field="chat_template",
            hint="check the template's {% generation %} markers",
        )
    _train_end_tokens(ids, mask, end_ids, conv.source)
    if last_turn_only:
        start, _ = _runs(mask)[-1]
        mask = [m and i >= start for i, m in enumerate(mask)]
    mask[0] = False  # nothing predicts the first token
    return Encoded(tuple(ids), tuple(mask), conv.source)


def truncate(sample: Encoded, cutoff_len: int, bos_id: int | None) -> Encoded | str:
    """Fit `cutoff_len` by cutting the prompt from the left; a reason string when it cannot.

    Trailing tokens after the last trained token (e.g. a newline after <|im_end|>) are
    dropped first: they would predict nothing.
    """
    ids, mask = list(sample.input_ids), list(sample.mask)
    runs = _runs(mask)
    if not runs:
        return "no_supervised_tokens"
    end = runs[-1][1]
    ids, mask = ids[:end], mask[:end]
    if len(ids) <= cutoff_len:
        return Encoded(tuple(ids), tuple(mask), sample.source)
    keep_bos = bos_id is not None and ids[0] == bos_id
    budget = cutoff_len - int(keep_bos)
    # the whole last response plus at least one token of context to predict it from
    if end - runs[-1][0] + 1 > budget:
        return "response_too_long"
    head_ids, head_mask = ([ids[0]], [False]) if keep_bos else ([], [])
    ids = head_ids + ids[end - budget :]
    mask = head_mask + mask[end - budget :]
    mask[0] = False
    return Encoded(tuple(ids), tuple(mask), sample.source)


def encode_all(
    convs: Sequence[Conversation],
    tokenizer: Any,
    *,
    cutoff_len: int,
    end_ids: frozenset[int],
    last_turn_only: bool = False,
) -> tuple[list[Encoded], dict[str, int]]:
    """Encode and truncate; returns kept samples and drop counts by reason."""
    kept: list[Encoded] = []
    dropped: dict[str, int] = {}
    for conv in convs:
        out = truncate(encode(conv, tokenizer, end_ids, last_turn_only=last_turn_only), cutoff_len, tokenizer.bos_token_id)
        if isinstance(out, str):
            dropped[out] = dropped.get(out, 0) + 1
        else:
            kept.append(out)
    return kept, dropped


def load_encoded(
    files: Sequence[str],
    tokenizer: Any,
    *,
    fmt: str = "auto",
    on_bad: str = "error",
    cutoff_len: int,
    end_ids: frozenset[int],
    last_turn_only: bool = False,
) -> EncodedData:
    """Load every file with the shared sfteval loader, then encode; bad rows skipped are counted."""
    from sfteval.formats import load_conversations

    samples: list[Encoded] = []
    dropped: dict[str, int] = {}
    rows = 0
    for f in files:
        convs, report = load_conversations(f, fmt=fmt, on_bad=on_bad)  # type: ignore[arg-type]
        rows += report.kept + report.skipped
        for reason, n in report.skip_reasons.items():
            dropped[f"bad_row: {reason}"] = dropped.get(f"bad_row: {reason}", 0) + n
        kept, why = encode_all(convs, tokenizer, cutoff_len=cutoff_len, end_ids=end_ids, last_turn_only=last_turn_only)
        samples.extend(kept)
        for reason, n in why.items():
            dropped[reason] = dropped.get(reason, 0) + n
    if not samples:
        raise SftevalError(
            f"no trainable samples left (dropped: {dropped})", path=", ".join(files), hint="raise cutoff_len?"
        )
    return EncodedData(tuple(samples), rows, dropped, tuple(files))
