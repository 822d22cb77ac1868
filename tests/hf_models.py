"""Tiny models of every class fastmask.hf supports, a tokenizer for them and ragged batches (no download)."""

import pytest
import torch
import transformers as T

from fastmask import baselines

VOCAB = 128  # the models' vocabulary; the tokenizer has 120 tokens


@pytest.fixture(scope="module")
def tokenizer():
    return baselines.in_memory_tokenizer(120)


def tiny_model(name: str, tokenizer):
    """A one-layer model of each supported class, 16 wide (seeded: the same weights every call)."""
    torch.manual_seed(0)
    ids = dict(pad_token_id=tokenizer.pad_token_id)
    bert_like = dict(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, **ids)
    configs = {
        "BertForMaskedLM": lambda: T.BertConfig(max_position_embeddings=64, **bert_like),
        "RobertaForMaskedLM": lambda: T.RobertaConfig(max_position_embeddings=80, **bert_like),
        "XLMRobertaForMaskedLM": lambda: T.XLMRobertaConfig(max_position_embeddings=80, **bert_like),
        "DistilBertForMaskedLM": lambda: T.DistilBertConfig(vocab_size=VOCAB, dim=16, n_layers=1, n_heads=2,
                                                            hidden_dim=32, max_position_embeddings=64, **ids),
        "ModernBertForMaskedLM": lambda: T.ModernBertConfig(
            max_position_embeddings=64, bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
            cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id, global_attn_every_n_layers=1,
            **bert_like),
    }
    return getattr(T, name)(configs[name]())


def ragged_batch(tokenizer, lengths=(10, 20, 7, 15), seed=0):
    g = torch.Generator().manual_seed(seed)
    texts = [" ".join(f"w{i}" for i in torch.randint(5, 120, (n,), generator=g).tolist()) for n in lengths]
    return T.DataCollatorWithPadding(tokenizer)([tokenizer(t) for t in texts])
