"""What the examples share: a model, its tokenizer and tokenized texts, from flags.

``--model NAME_OR_PATH`` loads a Hugging Face masked-LM checkpoint (BERT, RoBERTa, XLM-R,
DistilBERT, ModernBERT) and its tokenizer. Without it the examples run offline: a small BERT is
built from a config and a WordPiece tokenizer is trained on the corpus (default: fastmask's
built-in corpus, the docstrings of Python's standard library; cached after the first run).
"""

from __future__ import annotations

import argparse
import datetime
import os

from transformers import AutoModelForMaskedLM, AutoTokenizer, BertConfig, BertForMaskedLM

from fastmask import data


def parse(script: str, description: str, argv: list[str] | None, **extra: dict) -> argparse.Namespace:
    """The shared flags plus `extra` ({flag: add_argument kwargs}) for the example file `script`."""
    prog = os.path.basename(script)
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a Hugging Face masked-LM name or folder (default: a small BERT, offline)")
    parser.add_argument("--corpus", help="a .txt/.jsonl file or folder (default: the built-in corpus)")
    parser.add_argument("--texts", type=int, default=20_000, help="documents to train and evaluate on")
    parser.add_argument("--max-length", type=int, default=128, help="tokens per sequence (longer ones are cut)")
    parser.add_argument("--hidden-size", type=int, default=128, help="width of the small BERT (without --model)")
    parser.add_argument("--vocab-size", type=int, default=8192, help="tokenizer size (without --model)")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per micro-step")
    parser.add_argument("--out", help="output folder (default: a new runs/<example>-<time> folder)")
    for flag, kwargs in extra.items():
        parser.add_argument(flag, **kwargs)
    args = parser.parse_args(argv)
    if args.out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        args.out = os.path.join("runs", f"{prog.removesuffix('.py')}-{stamp}")
    elif os.path.isdir(args.out) and os.listdir(args.out):
        parser.error(f"--out {args.out} exists and is not empty: choose a new folder (nothing is overwritten)")
    return args


def load(args: argparse.Namespace):
    """(model, tokenizer, train features, eval features); features are tokenizer outputs (dicts)."""
    texts = data.load_texts(args.corpus)[:args.texts]
    if args.model:
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        model = AutoModelForMaskedLM.from_pretrained(args.model)
    else:
        tokenizer = data.train_tokenizer(texts, args.vocab_size)
        model = BertForMaskedLM(BertConfig(
            vocab_size=len(tokenizer), hidden_size=args.hidden_size, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=4 * args.hidden_size, max_position_embeddings=args.max_length,
            pad_token_id=tokenizer.pad_token_id))
    features = [dict(tokenizer(text, truncation=True, max_length=args.max_length)) for text in texts]
    held_out = max(1, len(features) // 50)
    return model, tokenizer, features[held_out:], features[:held_out]
