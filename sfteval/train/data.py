"""From SFT files to token ids and loss masks: encoding, whole-turn truncation, loading.

Covered:
- Rows are read by `sfteval.formats.load_conversations` (alpaca with LLaMA-Factory's
  `history`, sharegpt with a top-level `system`, messages; JSONL / JSON / Parquet / hub
  id), the loader sfteval's held-out benchmark uses too.
- Rendering and masks: `sfteval.train.masks` (one rendering, one tokenization, content
  plus end-of-turn token trained per assistant turn; `last_turn_only` keeps the last).
- Truncation keeps whole turns: a conversation longer than `cutoff_len` loses its oldest
  complete user/assistant exchanges (a system message stays) and is re-rendered, so no
  role header is cut mid-token and no orphaned end token of a dropped turn is trained.
  Such samples are counted in `truncated`; one whose final exchange alone does not fit
  is dropped as `response_too_long`. Trailing tokens after the last trained token (a
  newline after `<|im_end|>`) are dropped: they predict nothing.
- `on_bad = "skip"` also covers rows the chat template cannot render or mask: they are
  counted under `template: <reason>` instead of stopping the run.
- Samples hold numpy arrays (int32 ids, bool mask: 5 bytes a token), built by
  `sfteval.train.tokencache` in several processes and cached on disk.

Not covered: tool calls, images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sfteval.errors import SftevalError
from sfteval.prompts import DEFAULT_TEMPLATE  # noqa: F401 - re-exported for callers
from sfteval.train.masks import token_mask
from sfteval.train.templates import END_OF_TURN_TOKENS, apply_settings
from sfteval.types import Conversation

__all__ = ["DEFAULT_TEMPLATE", "END_OF_TURN_TOKENS", "Encoded", "EncodedData", "encode", "encode_all", "fit", "truncate"]


@dataclass(frozen=True, eq=False)
class Encoded:
    """One training sample. mask[t] is True when token t is a label (predicted from t-1)."""

    input_ids: Any  # np.ndarray[int32]
    mask: Any  # np.ndarray[bool]
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_ids", np.asarray(self.input_ids, dtype=np.int32))
        object.__setattr__(self, "mask", np.asarray(self.mask, dtype=bool))

    @property
    def n_supervised(self) -> int:
        return int(self.mask.sum())

    def __len__(self) -> int:
        return len(self.input_ids)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Encoded)
            and np.array_equal(self.input_ids, other.input_ids)
            and np.array_equal(self.mask, other.mask)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class EncodedData:
    samples: tuple[Encoded, ...]
    rows: int  # rows read (kept + dropped)
    dropped: dict[str, int] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    truncated: int = 0  # kept samples that lost their oldest turns to cutoff_len

    @property
    def tokens(self) -> int:
        return sum(len(s) for s in self.samples)

    @property
    def supervised_tokens(self) -> int:
        return sum(s.n_supervised for s in self.samples)


def prepare_tokenizer(tokenizer: Any) -> str:
    """Give a template-less tokenizer DEFAULT_TEMPLATE; returns 'model' or 'default'."""
    return apply_settings(tokenizer, chat_template=None).source


def end_token_ids(tokenizer: Any, extra: Sequence[int] = ()) -> frozenset[int]:
    """EOS, the generation config's eos ids (`extra`) and known chat end-of-turn tokens."""
    ids = set(int(i) for i in extra)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in END_OF_TURN_TOKENS if t in vocab)
    return frozenset(ids)


def _messages(conv: Conversation) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in conv.messages]


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


def _encode_msgs(msgs: list[dict[str, str]], tokenizer: Any, end_ids: frozenset[int], source: str, last_turn_only: bool) -> Encoded:
    end_strings = [tokenizer.convert_ids_to_tokens(int(i)) for i in sorted(end_ids)]
    try:
        ids, mask = token_mask(msgs, tokenizer, end_strings)
    except SftevalError as e:
        if e.path is None:
            raise SftevalError(e.message, path=source or None, field=e.field, hint=e.hint) from e
        raise
    except Exception as e:  # noqa: BLE001 - jinja raises many types; name the row
        raise SftevalError(f"the chat template failed on this row: {e}", path=source or None, field="chat_template") from e
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise SftevalError("the chat template marks no assistant tokens", path=source or None, field="chat_template")
    if last_turn_only:
        start, _ = _runs(mask)[-1]
        mask[:start] = False
    mask[0] = False  # nothing predicts the first token
    return Encoded(ids, mask, source)


def encode(conv: Conversation, tokenizer: Any, end_ids: frozenset[int], *, last_turn_only: bool = False) -> Encoded:
    """Render one conversation, tokenize it once, and mark the trained tokens."""
    return _encode_msgs(_messages(conv), tokenizer, end_ids, conv.source, last_turn_only)


def _trim_tail(sample: Encoded) -> Encoded:
    trained = np.flatnonzero(sample.mask)
    end = int(trained[-1]) + 1 if len(trained) else 0
    return Encoded(sample.input_ids[:end], sample.mask[:end], sample.source)


def truncate(sample: Encoded, cutoff_len: int, bos_id: int | None = None) -> Encoded | str:
    """Drop the tail after the last trained token; a reason string when it still does not fit.

    (Whole-turn truncation needs the conversation: see `fit`.)"""
    if not sample.mask.any():
        return "no_supervised_tokens"
    out = _trim_tail(sample)
    return out if len(out) <= cutoff_len else "response_too_long"


def fit(conv: Conversation, tokenizer: Any, end_ids: frozenset[int], cutoff_len: int, *, last_turn_only: bool = False) -> tuple[Encoded | str, bool]:
    """(sample or drop reason, whether whole turns were dropped to fit `cutoff_len`)."""
    msgs = _messages(conv)
    head = msgs[:1] if msgs and msgs[0]["role"] == "system" else []
    body = msgs[len(head) :]
    cut = False
    while True:
        out = truncate(_encode_msgs(head + body, tokenizer, end_ids, conv.source, last_turn_only), cutoff_len)
        if not isinstance(out, str) or len(body) <= 2:
            return out, cut and not isinstance(out, str)
        body, cut = body[2:], True  # the oldest complete user/assistant exchange


def encode_all(
    convs: Sequence[Conversation],
    tokenizer: Any,
    *,
    cutoff_len: int,
    end_ids: frozenset[int],
    last_turn_only: bool = False,
    on_bad: str = "error",
) -> tuple[list[Encoded], dict[str, int], int]:
    """Encode and fit; returns kept samples, drop counts by reason, and how many were truncated."""
    kept: list[Encoded] = []
    dropped: dict[str, int] = {}
    truncated = 0
    for conv in convs:
        try:
            out, cut = fit(conv, tokenizer, end_ids, cutoff_len, last_turn_only=last_turn_only)
        except SftevalError as e:
            if on_bad != "skip":
                raise
            out, cut = f"template: {e.message}", False
        if isinstance(out, str):
            dropped[out] = dropped.get(out, 0) + 1
        else:
            kept.append(out)
            truncated += int(cut)
    return kept, dropped, truncated


def preview(data: EncodedData, tokenizer: Any, n: int = 2, *, color: bool = False) -> str:
    """Two encoded examples with the supervised spans in [[ ]] (or green), and the counts."""
    lines = [
        f"rows {data.rows}, samples {len(data.samples)}, tokens {data.tokens}, supervised {data.supervised_tokens}, "
        f"truncated {data.truncated}, dropped {sum(data.dropped.values())}"
    ]
    lines += [f"  dropped[{k}] = {v}" for k, v in sorted(data.dropped.items())]
    for s in data.samples[:n]:
        parts, ids, mask = [], s.input_ids.tolist(), s.mask.tolist()
        k = 0
        while k < len(ids):
            j = k
            while j < len(ids) and mask[j] == mask[k]:
                j += 1
            text = tokenizer.decode(ids[k:j])
            if mask[k]:
                text = f"\x1b[1;32m{text}\x1b[0m" if color else f"[[{text}]]"
            parts.append(text)
            k = j
        lines += [f"--- {s.source}: {len(s)} tokens, {s.n_supervised} supervised", "".join(parts)]
    return "\n".join(lines)
