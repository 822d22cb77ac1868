"""What users run today, built locally for like-for-like comparisons (no download).

The Hugging Face collator needs a tokenizer only for its [MASK] id and vocabulary size; a
word-level tokenizer made in memory with exactly those gives the collator's real code path.
"""

from __future__ import annotations

from fastmask.data import SPECIAL_TOKENS


def in_memory_tokenizer(vocab_size: int):
    """A PreTrainedTokenizerFast of `vocab_size` tokens: the specials first, then placeholder words
    ``w<id>``; text splits on whitespace and encodes as ``[CLS] ... [SEP]``, as BERT's does."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    vocab.update({f"w{i}": i for i in range(len(SPECIAL_TOKENS), vocab_size)})
    tokenizer = Tokenizer(WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = WhitespaceSplit()
    tokenizer.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    names = ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token")
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **dict(zip(names, SPECIAL_TOKENS)))


def hf_collator(tokenizer, mlm_probability=0.15, mask_replace_prob=0.8, random_replace_prob=0.1):
    """Hugging Face's DataCollatorForLanguageModeling with the given 80/10/10 split."""
    from transformers import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(
        tokenizer=tokenizer, mlm_probability=mlm_probability,
        mask_replace_prob=mask_replace_prob, random_replace_prob=random_replace_prob,
    )
