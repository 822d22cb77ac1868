"""apply_fastmask's inputs: shapes that do not fit input_ids are clear errors on every supported class
(checked on host metadata, nothing read back from the device), and an evaluation whose batches carry
no labels says that the Trainer reports no eval_loss."""

import re
import warnings

import pytest
import torch
import transformers as T

from fastmask.hf import SUPPORTED_MODELS, DataCollatorForLanguageModeling, FastMaskCallback, apply_fastmask

from conftest import RecordOps
from hf_models import ragged_batch, tiny_model, tokenizer  # noqa: F401 (a fixture)

SYNCING = {"aten.nonzero", "aten._local_scalar_dense", "aten.masked_select", "aten.item", "aten.index"}


@pytest.fixture(scope="module")
def patched(tokenizer):
    models = {}

    def get(name):
        if name not in models:
            models[name] = apply_fastmask(tiny_model(name, tokenizer), tokenizer).train()
        return models[name]

    return get


def _beyond(rows, length, extra):
    """Labels (rows, length + extra) whose labelled positions all lie past input_ids' length."""
    labels = torch.full((rows, length + extra), -100)
    labels[:, length:] = 7
    return labels


# (argument, its value for a batch of shape (B, L)); every one of them of a shape input_ids (B, L) rules out.
BAD_INPUTS = {
    "labels (B, L+1)": ("labels", lambda b, n: torch.full((b, n + 1), -100)),
    "labels (B, L+8), labelled past L only": ("labels", lambda b, n: _beyond(b, n, 8)),
    "labels (B, L-1)": ("labels", lambda b, n: torch.full((b, n - 1), 5)),
    "labels (B,)": ("labels", lambda b, n: torch.full((b,), 5)),
    "labels (B+1, L)": ("labels", lambda b, n: torch.full((b + 1, n), 5)),
    "labels (B-1, 0), a width-0 marker of another batch": ("labels", lambda b, n: torch.empty((b - 1, 0),
                                                                                             dtype=torch.int64)),
    "attention_mask (B, L-1)": ("attention_mask", lambda b, n: torch.ones((b, n - 1), dtype=torch.int64)),
    "attention_mask (B,)": ("attention_mask", lambda b, n: torch.ones((b,), dtype=torch.int64)),
    "token_type_ids (B, L+1)": ("token_type_ids", lambda b, n: torch.zeros((b, n + 1), dtype=torch.int64)),
    "special_tokens_mask (B, L-1)": ("special_tokens_mask", lambda b, n: torch.zeros((b, n - 1), dtype=torch.int64)),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
@pytest.mark.parametrize("name", SUPPORTED_MODELS)
def test_inputs_of_a_shape_other_than_input_ids_are_a_value_error_naming_both_shapes(name, case, patched,
                                                                                    tokenizer):
    model = patched(name)
    batch = ragged_batch(tokenizer)
    rows, length = batch["input_ids"].shape
    argument, make = BAD_INPUTS[case]
    value = make(rows, length)
    inputs = dict(batch, **{argument: value})
    if argument != "labels":
        inputs["labels"] = torch.empty((rows, 0), dtype=torch.int64)  # the drop-in collator's batch
    calls = int(model.fastmask.train_calls)
    with RecordOps() as recorder, pytest.raises(ValueError) as error:
        model(**inputs)
    message = str(error.value)
    assert argument in message and str(tuple(value.shape)) in message and str((rows, length)) in message, message
    if argument == "labels":
        assert str((rows, 0)) in message and "mask_in_model=True" in message, message
    assert not recorder.ops & SYNCING, recorder.ops & SYNCING  # a check on shapes reads nothing back
    assert int(model.fastmask.train_calls) == calls  # raised before masking: the mask counter did not advance


@pytest.mark.parametrize("name", SUPPORTED_MODELS)
def test_inputs_of_input_ids_shape_are_accepted_without_a_host_sync(name, patched, tokenizer):
    model = patched(name)
    ids = ragged_batch(tokenizer, lengths=(12, 12, 12))["input_ids"]  # packed rows: no attention mask (see
    rows, length = ids.shape  # test_hf_patch.test_no_host_sync_in_the_patched_step)
    extra = dict(token_type_ids=torch.zeros_like(ids), special_tokens_mask=torch.zeros_like(ids))
    model(input_ids=ids, **extra)  # warm-up: the special ids reach the device once
    with RecordOps() as recorder:
        losses = [model(input_ids=ids, labels=labels, **extra).loss
                  for labels in (None, torch.empty((rows, 0), dtype=torch.int64))]
    assert not recorder.ops & SYNCING, recorder.ops & SYNCING
    assert all(torch.isfinite(loss) for loss in losses)
    labels = torch.full_like(ids, -100)
    labels[:, 3] = ids[:, 3]
    out = model(input_ids=ids, labels=labels, **extra)
    assert torch.equal(out.slot_labels[out.positions >= 0], ids[:, 3])


def test_labels_with_inputs_embeds_are_checked_against_the_embeddings(patched, tokenizer):
    model = patched("BertForMaskedLM")
    ids = ragged_batch(tokenizer)["input_ids"]
    embeds = model.get_input_embeddings()(ids)
    with pytest.raises(ValueError, match=re.escape(f"labels has shape {(ids.shape[0], ids.shape[1] + 1)}")):
        model(inputs_embeds=embeds, labels=torch.full((ids.shape[0], ids.shape[1] + 1), -100))
    labels = torch.full_like(ids, -100)
    labels[:, 2] = ids[:, 2]
    assert torch.isfinite(model(inputs_embeds=embeds, labels=labels).loss)


def _features(tokenizer, count=8):
    g = torch.Generator().manual_seed(0)
    return [dict(tokenizer(" ".join(f"w{i}" for i in torch.randint(5, 120, (n,), generator=g).tolist())))
            for n in torch.randint(6, 20, (count,), generator=g).tolist()]


def _evaluate_twice(tokenizer, tmp_path, collator, callbacks):
    model = apply_fastmask(tiny_model("BertForMaskedLM", tokenizer), tokenizer)
    args = T.TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=4, report_to=[], use_cpu=True,
                               disable_tqdm=True, save_strategy="no")
    trainer = T.Trainer(model=model, args=args, eval_dataset=_features(tokenizer), data_collator=collator,
                        callbacks=callbacks)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = [trainer.evaluate(), trainer.evaluate()]
    said = [str(w.message) for w in caught if "eval_loss" in str(w.message)]
    return metrics, said


def test_evaluate_on_unlabelled_batches_says_once_that_no_eval_loss_is_reported(tokenizer, tmp_path):
    metrics, said = _evaluate_twice(tokenizer, tmp_path, T.DataCollatorWithPadding(tokenizer), [FastMaskCallback()])
    assert all("eval_loss" not in m for m in metrics)  # the Trainer computes no loss without labels
    assert len(said) == 1 and "mask_in_model=True" in said[0], said


def test_evaluate_with_the_width_0_labels_reports_eval_loss_and_says_nothing(tokenizer, tmp_path):
    collator = DataCollatorForLanguageModeling(tokenizer, mask_in_model=True)
    metrics, said = _evaluate_twice(tokenizer, tmp_path, collator, [FastMaskCallback()])
    assert all("eval_loss" in m for m in metrics) and said == []


def test_inference_without_labels_says_nothing(patched, tokenizer):
    model = patched("BertForMaskedLM").eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with torch.no_grad():
                model(**ragged_batch(tokenizer))
    finally:
        model.train()
