"""Chat turns from a rendered prompt, so a rater reads a conversation, not template tokens.

Samples record the prompt exactly as sent (`<s><|im_start|>user\\n...<|im_end|>\\n...`).
`chat_turns` recognises the templates people use and returns (role, text) turns:
ChatML (Qwen, the tiny model, many SFT recipes), Llama 3 headers, Llama 2 / Mistral
`[INST]`, Gemma `<start_of_turn>`, Phi-3 / Zephyr `<|user|>`, and sfteval's own
alpaca-style default (`### Instruction:` / `### Response:`). The trailing empty
assistant turn (the generation prompt) is dropped; BOS/EOS-like tokens are removed.
Anything unrecognised comes back as one user turn with special tokens stripped.

Not covered: templates that interleave tool calls; they show as plain text.
"""

from __future__ import annotations

import re

_SPECIAL = re.compile(r"<\|(?:begin_of_text|end_of_text|endoftext|eot_id|im_end|im_start|end|eos|bos)\|>|</?s>|<bos>|<eos>"
                      r"|<end_of_turn>|<｜(?:begin|end)▁of▁sentence｜>")
_CHATML = re.compile(r"<\|im_start\|>(\w+)\n(.*?)(?:<\|im_end\|>|$)", re.S)
_LLAMA3 = re.compile(r"<\|start_header_id\|>(\w+)<\|end_header_id\|>\n*(.*?)(?:<\|eot_id\|>|$)", re.S)
_GEMMA = re.compile(r"<start_of_turn>(\w+)\n(.*?)(?:<end_of_turn>|$)", re.S)
_PIPES = re.compile(r"<\|(system|user|assistant)\|>\n?(.*?)(?=<\|(?:system|user|assistant|end)\|>|$)", re.S)
_INST = re.compile(r"\[INST\](.*?)\[/INST\]([^\[]*)", re.S)
_ALPACA = re.compile(r"### (Instruction|Input|Response):\n(.*?)(?=\n*### (?:Instruction|Input|Response):|$)", re.S)
_ROLES = {"model": "assistant", "gpt": "assistant", "human": "user", "Instruction": "user", "Input": "user",
          "Response": "assistant"}


def _clean(text: str) -> str:
    return _SPECIAL.sub("", text).strip()


def chat_turns(prompt: str) -> list[tuple[str, str]]:
    """[(role, text), ...] of a rendered prompt; roles are system | user | assistant."""
    for pattern in (_CHATML, _LLAMA3, _GEMMA, _PIPES):
        found = pattern.findall(prompt)
        if found:
            turns = [(_ROLES.get(r, r), _clean(x)) for r, x in found]
            break
    else:
        inst = _INST.findall(prompt)
        if inst:
            turns = []
            for user, answer in inst:
                turns.append(("user", _clean(user)))
                turns.append(("assistant", _clean(answer)))
        else:
            alpaca = _ALPACA.findall(prompt)
            if alpaca:
                head = _clean(prompt[: prompt.find("### ")])
                turns = ([("system", head)] if head else []) + [(_ROLES[r], _clean(x)) for r, x in alpaca]
            else:
                return [("user", _clean(prompt))]
    while turns and turns[-1][0] == "assistant" and not turns[-1][1]:
        turns.pop()  # the generation prompt: the answer the two models wrote goes there
    return [(r, x) for r, x in turns if x or r != "system"] or [("user", _clean(prompt))]
