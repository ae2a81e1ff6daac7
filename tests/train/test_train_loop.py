"""The loss math: accumulation == big batch, packed == unpacked, checkpointing == plain."""

from __future__ import annotations

import pytest

from sfteval.types import Conversation, Message
from sfteval.train.batching import collate
from sfteval.train.data import encode, end_token_ids, truncate
from sfteval.train.loop import lr_factor, token_loss_sum, train_step


def samples(tok, n: int = 4):
    ends = end_token_ids(tok)
    out = []
    for i in range(n):
        conv = Conversation(
            str(i),
            (Message("user", f"Question {i}: " + "why " * (1 + 3 * i)), Message("assistant", "Because " * (1 + 2 * (n - i)))),
            f"mem:{i}",
        )
        out.append(truncate(encode(conv, tok, ends), 512, tok.bos_token_id))
    return out


@pytest.fixture
def model(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)


def make_accelerator(accum: int):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import GradientAccumulationPlugin

    AcceleratorState._reset_state()
    return Accelerator(cpu=True, gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=accum, sync_with_dataloader=False))


@pytest.fixture
def accelerator():
    return make_accelerator(1)


def grads_after(accelerator, model, micro_batches):
    model.zero_grad(set_to_none=True)
    if accelerator.gradient_accumulation_steps != len(micro_batches):
        accelerator = make_accelerator(len(micro_batches))
    loss, n = train_step(accelerator, model, micro_batches)
    return loss, n, {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def test_four_accumulated_micro_batches_equal_one_batch_of_four(model, accelerator, tiny_tokenizer):
    import torch

    s = samples(tiny_tokenizer)
    pad = tiny_tokenizer.pad_token_id
    loss_a, n_a, g_a = grads_after(accelerator, model, [collate([[x]], pad, packed=False) for x in s])
    loss_b, n_b, g_b = grads_after(accelerator, model, [collate([[x] for x in s], pad, packed=False)])
    assert n_a == n_b == sum(x.n_supervised for x in s)
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    for k in g_b:
        torch.testing.assert_close(g_a[k], g_b[k], rtol=1e-5, atol=1e-7)
    # the trap this guards against: averaging per micro-batch weights short samples up
    with torch.no_grad():
        per_mb = [float(token_loss_sum(model, collate([[x]], pad, packed=False))) / x.n_supervised for x in s]
    assert abs(sum(per_mb) / len(per_mb) - loss_b) > 1e-3


def test_packed_loss_equals_unpacked(model, tiny_tokenizer):
    import torch

    s = samples(tiny_tokenizer)
    pad = tiny_tokenizer.pad_token_id
    with torch.no_grad():
        unpacked = float(token_loss_sum(model, collate([[x] for x in s], pad, packed=False)))
        one_row = float(token_loss_sum(model, collate([s], pad, packed=True)))
        two_rows = float(token_loss_sum(model, collate([s[:3], s[3:]], pad, packed=True)))
        leaky = collate([s], pad, packed=True)
        leaky["position_ids"] = torch.arange(leaky["input_ids"].shape[1])[None]  # positions keep running
        leaked = float(token_loss_sum(model, leaky))
    assert one_row == pytest.approx(unpacked, rel=1e-5)
    assert two_rows == pytest.approx(unpacked, rel=1e-5)
    assert abs(leaked - unpacked) / unpacked > 1e-3  # attention across samples would show


def test_gradient_checkpointing_gives_the_same_gradients(model, accelerator, tiny_tokenizer):
    import torch

    batch = [collate([[x] for x in samples(tiny_tokenizer)], tiny_tokenizer.pad_token_id, packed=False)]
    model.train()
    _, _, plain = grads_after(accelerator, model, batch)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    _, _, ckpt = grads_after(accelerator, model, batch)
    for k in plain:
        torch.testing.assert_close(plain[k], ckpt[k], rtol=1e-5, atol=1e-7)


def test_schedules_warm_up_then_decay():
    assert [lr_factor(s, total=10, warmup=2, schedule="linear") for s in (0, 1, 2, 10)] == [0.5, 1.0, 1.0, 0.0]
    assert lr_factor(6, total=10, warmup=2, schedule="cosine") == pytest.approx(0.5)
    assert lr_factor(9, total=10, warmup=0, schedule="constant") == 1.0
