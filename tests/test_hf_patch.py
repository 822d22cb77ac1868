"""fastmask.hf.apply_fastmask: exactness against the unpatched model, on-device masking, saving, errors."""

import copy
import os
import subprocess
import sys

import pytest
import torch
import transformers as T

import fastmask
from fastmask import baselines
from fastmask.hf import FastMaskedLMOutput, apply_fastmask, patch
from fastmask.mapnet import proposal_width
from fastmask.reference import IGNORE_INDEX
from fastmask.train.config import Config

from conftest import RecordOps
from hf_models import VOCAB, ragged_batch, tiny_model, tokenizer  # noqa: F401 (a fixture)

def collator_batch(tokenizer, seed=0):
    collator = T.DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.3, seed=seed)
    batch = ragged_batch(tokenizer, seed=seed)
    return collator([{k: v[i][batch["attention_mask"][i].bool()].tolist() for k, v in batch.items()}
                     for i in range(len(batch["input_ids"]))])


@pytest.mark.parametrize("fused_loss", [True, False])
@pytest.mark.parametrize("name", patch.SUPPORTED_MODELS)
def test_loss_and_gradients_equal_the_unpatched_model(name, fused_loss, tokenizer):
    """In float64, per class: the fused head (the decoder and cross-entropy of
    fastmask.linear_cross_entropy, the decoder's weight and bias found from the model) and the
    materialised one give the unpatched model's loss and every parameter's gradient."""
    batch = collator_batch(tokenizer)
    reference = tiny_model(name, tokenizer).double().eval()  # eval: no dropout, the comparison is exact
    patched = apply_fastmask(copy.deepcopy(reference), tokenizer, fused_loss=fused_loss)
    assert type(patched) is type(reference)
    expected = reference(**batch)
    with RecordOps() as recorder:
        got = patched(**batch)
        got.loss.backward()
    assert any("linear_cross_entropy" in op for op in recorder.ops) == fused_loss
    expected.loss.backward()
    # ModernBERT computes its loss from float32 logits; the others in the model's float64.
    tolerance = 1e-6 if name == "ModernBertForMaskedLM" else 1e-12
    torch.testing.assert_close(got.loss, expected.loss.to(got.loss.dtype), rtol=tolerance, atol=tolerance)
    for (param, p_ref), p_got in zip(reference.named_parameters(), patched.parameters()):
        torch.testing.assert_close(p_got.grad, p_ref.grad, rtol=tolerance, atol=tolerance, msg=param)
    assert isinstance(got, FastMaskedLMOutput)
    used = got.positions >= 0
    rows = torch.arange(len(used)).unsqueeze(1).expand_as(used)
    assert torch.equal(got.slot_labels[used], batch["labels"][rows[used], got.positions[used]])
    assert int(used.sum()) == int((batch["labels"] != IGNORE_INDEX).sum())
    if fused_loss:  # no logits were held in a forward with gradients; without them they are
        assert got.logits is None
        with torch.no_grad():
            got = patched(**batch)
    # The logits are the labelled tokens' rows of the dense logits.
    torch.testing.assert_close(got.logits[used], expected.logits[rows[used], got.positions[used]].to(got.logits.dtype),
                               rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("name", ["BertForMaskedLM", "DistilBertForMaskedLM"])
def test_without_labels_the_loss_is_the_unpatched_models_on_fastmasks_masks(name, tokenizer):
    batch = ragged_batch(tokenizer)
    reference = tiny_model(name, tokenizer).eval()
    patched = apply_fastmask(copy.deepcopy(reference), tokenizer).train()
    for module in patched.modules():  # train mode for the masks, no dropout for the comparison
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    for call in range(2):
        got = patched(**batch)
        maskable = fastmask.maskable_mask(batch["input_ids"], batch["attention_mask"], tokenizer.all_special_ids)
        masked = fastmask.mask_tokens(batch["input_ids"], maskable, tokenizer.mask_token_id, len(tokenizer),
                                      exact_count=True, epoch=call)  # call t of rank 0: epoch t
        expected = reference(input_ids=masked.input_ids, attention_mask=batch["attention_mask"], labels=masked.labels)
        torch.testing.assert_close(got.loss, expected.loss)
        labelled = masked.labels != IGNORE_INDEX
        assert torch.equal(labelled.sum(1), fastmask.masked_count(maskable.sum(1), 0.15))


def test_masks_are_fresh_per_step_apart_per_rank_and_fixed_per_sequence_in_evaluation(tokenizer, monkeypatch):
    batch = ragged_batch(tokenizer)
    model = apply_fastmask(tiny_model("BertForMaskedLM", tokenizer), tokenizer).train()
    first, second = model(**batch).positions, model(**batch).positions
    assert not torch.equal(first, second)  # a new mask every training step
    monkeypatch.setattr(patch, "rank_and_world", lambda: (1, 2))
    other_rank = apply_fastmask(tiny_model("BertForMaskedLM", tokenizer), tokenizer).train()
    assert not torch.equal(other_rank(**batch).positions, first)  # rank 1 of 2: its own masks
    model.eval()
    with torch.no_grad():
        evaluated = model(**batch).positions
        assert torch.equal(model(**batch).positions, evaluated)  # evaluation masks do not advance
        flipped = model(**{k: v.flip(0) for k, v in batch.items()}).positions
        assert torch.equal(flipped.flip(0), evaluated)  # a sequence's masks, whatever its place in the batch
        assert not torch.equal(evaluated[0], evaluated[1])


def test_fully_explored_labels_every_maskable_token_once(tokenizer):
    batch = ragged_batch(tokenizer)
    model = apply_fastmask(tiny_model("RobertaForMaskedLM", tokenizer), tokenizer, masking="fully-explored",
                           num_segments=3).train()
    out = model(**batch)
    rows, length = batch["input_ids"].shape
    assert out.positions.shape[0] == 3 * rows  # the K views of the batch, in one step
    covered = torch.zeros(rows, length, dtype=torch.int64)
    for view in range(3):
        index = out.positions[view * rows:(view + 1) * rows]
        covered.scatter_add_(1, index.clamp(min=0), (index >= 0).long())
    maskable = fastmask.maskable_mask(batch["input_ids"], batch["attention_mask"], tokenizer.all_special_ids)
    assert torch.equal(covered, maskable.long())


def test_mapnet_trains_its_proposal_and_restores_it_from_the_saved_folder(tokenizer, tmp_path):
    batch = ragged_batch(tokenizer)
    model = apply_fastmask(tiny_model("BertForMaskedLM", tokenizer), tokenizer, masking="mapnet").train()
    model(**batch).loss.backward()
    proposal = model.fastmask.masking.proposal
    assert proposal.head.weight.grad is not None and proposal.head.weight.grad.abs().sum() > 0
    with torch.no_grad():
        proposal.head.weight.normal_()
    model.save_pretrained(tmp_path)
    assert not any(k.startswith("fastmask.") for k in _saved_keys(tmp_path))
    restored = apply_fastmask(T.AutoModelForMaskedLM.from_pretrained(tmp_path), tokenizer, masking="mapnet")
    for (name, saved), loaded in zip(proposal.state_dict().items(), restored.fastmask.masking.proposal.state_dict().values()):
        assert torch.equal(saved, loaded), name


def test_the_proposal_net_has_the_width_fastmask_pretrain_gives_it(tokenizer):
    """One default for MAPNet's width: apply_fastmask's equals fastmask pretrain's, for a model
    whose quarter width is odd too."""
    for width in (16, 100):
        config = T.BertConfig(vocab_size=VOCAB, hidden_size=width, num_hidden_layers=1, num_attention_heads=4,
                              intermediate_size=32, max_position_embeddings=64)
        model = apply_fastmask(T.BertForMaskedLM(config), tokenizer, masking="mapnet")
        pretrain = Config(hidden_size=width, num_heads=4, masking="mapnet").resolved()
        assert model.fastmask.masking.proposal.project.out_features == pretrain.mapnet_hidden == proposal_width(width)
        assert model.fastmask.settings["proposal_hidden"] == proposal_width(width)


def _saved_keys(folder) -> list[str]:
    from safetensors import safe_open

    with safe_open(os.path.join(folder, "model.safetensors"), "pt") as f:
        return list(f.keys())


def test_saved_model_loads_where_fastmask_was_never_imported(tokenizer, tmp_path):
    model = apply_fastmask(tiny_model("DistilBertForMaskedLM", tokenizer), tokenizer)
    model.save_pretrained(tmp_path)
    check = ("import sys, torch, transformers\n"
             f"m = transformers.AutoModelForMaskedLM.from_pretrained({str(tmp_path)!r})\n"
             "assert type(m).__name__ == 'DistilBertForMaskedLM'\n"
             "assert not any(n.startswith('fastmask') for n in sys.modules)\n"
             f"torch.save(m.state_dict(), {str(tmp_path / 'loaded.pt')!r})\n")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = torch.load(tmp_path / "loaded.pt")
    for name, value in model.state_dict().items():
        if not name.startswith("fastmask."):
            assert torch.equal(loaded[name], value), name


def test_no_host_sync_in_the_patched_step(tokenizer):
    # Packed rows without an attention mask: with one, transformers' own SDPA mask creation syncs
    # (it reads padding_mask.all() to skip the mask), which is no part of fastmask's.
    ids = ragged_batch(tokenizer, lengths=(12, 12, 12))["input_ids"]
    model = apply_fastmask(tiny_model("BertForMaskedLM", tokenizer), tokenizer).train()
    model(input_ids=ids)  # warm-up: the special ids reach the device once
    with RecordOps() as recorder:
        model(input_ids=ids).loss.backward()
    assert "fastmask.mask_tokens_cpp" in recorder.ops and "fastmask.gather_masked_cpp" in recorder.ops
    syncing = {"aten.nonzero", "aten._local_scalar_dense", "aten.masked_select", "aten.item", "aten.index"}
    assert not recorder.ops & syncing, recorder.ops & syncing


def test_compiled_steps_get_fresh_masks_without_recompiling(tokenizer):
    batch = ragged_batch(tokenizer)
    model = apply_fastmask(tiny_model("BertForMaskedLM", tokenizer), tokenizer).train()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    positions = [compiled(**batch).positions]
    with torch._dynamo.config.patch(error_on_recompile=True):
        positions += [compiled(**batch).positions for _ in range(2)]
    assert not torch.equal(positions[0], positions[1]) and not torch.equal(positions[1], positions[2])


def test_dropped_labels_are_counted_and_reported(tokenizer):
    batch = collator_batch(tokenizer)
    model = apply_fastmask(tiny_model("BertForMaskedLM", tokenizer), tokenizer)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fastmask.counts, "gather_capacity", lambda *a, **k: 2)  # 2 slots a row: some labels overflow
        model(**batch)
    overflow = int(((batch["labels"] != IGNORE_INDEX).sum(1) - 2).clamp(min=0).sum())
    assert overflow > 0
    state = T.TrainerState()
    state.log_history.append({"loss": 1.0})
    fastmask.hf.FastMaskCallback().on_log(None, state, None, model=model, logs={})
    assert state.log_history[-1]["fastmask_dropped_labels"] == overflow
    assert model.fastmask.take_dropped_labels() == 0  # read once


@pytest.mark.parametrize("call,error,message", [
    (lambda tok: apply_fastmask(T.BertForSequenceClassification(T.BertConfig(vocab_size=VOCAB, hidden_size=16,
                                num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)), tok),
     TypeError, "got BertForSequenceClassification"),
    (lambda tok: apply_fastmask(tiny_model("BertForMaskedLM", tok), tok, masking="spans"), ValueError,
     "masking must be one of"),
    (lambda tok: apply_fastmask(tiny_model("BertForMaskedLM", tok), baselines.in_memory_tokenizer(200)), ValueError,
     "more than the model's vocab_size"),
    (lambda tok: apply_fastmask(tiny_model("BertForMaskedLM", tok)), ValueError, "needs the tokenizer"),
    (lambda tok: apply_fastmask(tiny_model("BertForMaskedLM", tok), tok, mlm_probability=1.5), ValueError,
     "mlm_probability"),
    (lambda tok: apply_fastmask(apply_fastmask(tiny_model("BertForMaskedLM", tok), tok), tok), ValueError,
     "already patched"),
    (lambda tok: apply_fastmask(tiny_model("BertForMaskedLM", tok), tok, masking="mapnet", proposal_hidden=5),
     ValueError, "proposal_hidden must be an even number >= 2"),
])
def test_bad_arguments_are_clear_errors(tokenizer, call, error, message):
    with pytest.raises(error, match=message):
        call(tokenizer)
