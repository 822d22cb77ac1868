"""A plain PyTorch loop with ``apply_fastmask``: the batch is only padded; the model masks it.

``model(input_ids=..., attention_mask=...)`` without labels masks on the model's device (fresh
masks every step, no host sync) and returns the MLM loss of the masked tokens.

    python examples/plain_loop.py --masking bernoulli
"""

import itertools
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm
from transformers import DataCollatorWithPadding

import _setup
from fastmask.hf import apply_fastmask


def main(argv=None):
    args = _setup.parse(__file__, __doc__, argv, **{
        "--masking": dict(default="random", help="random | bernoulli | fully-explored | mapnet"),
    })
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer, train, held_out = _setup.load(args)
    model = apply_fastmask(model, tokenizer, masking=args.masking).to(device).train()
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, collate_fn=DataCollatorWithPadding(tokenizer))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    bar = tqdm(itertools.islice(itertools.cycle(loader), args.steps), total=args.steps, desc="train")
    for batch in bar:
        loss = model(**batch.to(device)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{loss.item():.3f}")  # a host sync, for the progress bar only
    model.eval()
    with torch.no_grad():  # evaluation masks: plain random, a fixed seed, whatever the strategy
        batch = DataCollatorWithPadding(tokenizer)(held_out[:args.batch_size]).to(device)
        eval_loss = model(**batch).loss.item()
    dropped = model.fastmask.take_dropped_labels()
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(f"eval loss {eval_loss:.4f}; {dropped} labels dropped for capacity; model saved to {args.out}")
    return {"eval_loss": eval_loss}


if __name__ == "__main__":
    main()
