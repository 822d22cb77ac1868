"""A plain PyTorch loop with ``apply_fastmask``: the batch is only padded; the model masks it.

``model(input_ids=..., attention_mask=...)`` without labels masks on the model's device (fresh
masks every step, no host sync) and returns the MLM loss of the masked tokens.

Resuming exactly: ``model.state_dict()`` holds what ``apply_fastmask`` added (the mask counter and
MAPNet's proposal net), so the run's ``checkpoint.pt`` — the model's and the optimizer's state
dicts, the RNG state and the step — is all it takes; ``--resume`` continues it to ``--steps`` with
the masks, losses and weights of the uninterrupted run (the data order is seeded and skipped).

    python examples/plain_loop.py --masking bernoulli
    python examples/plain_loop.py --masking mapnet --steps 100 --out runs/a
    python examples/plain_loop.py --masking mapnet --steps 300 --resume runs/a/checkpoint.pt
"""

import itertools
import os

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm
from transformers import DataCollatorWithPadding

import _setup
from fastmask.hf import apply_fastmask


def main(argv=None):
    args = _setup.parse(__file__, __doc__, argv, **{
        "--masking": dict(default="random", help="random | bernoulli | fully-explored | mapnet"),
        "--resume": dict(help="an earlier run's checkpoint.pt: continue it to --steps"),
        "--seed": dict(type=int, default=0, help="seeds the initial weights, dropout and the data order"),
    })
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer, train, held_out = _setup.load(args)
    model = apply_fastmask(model, tokenizer, masking=args.masking).to(device).train()
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, collate_fn=DataCollatorWithPadding(tokenizer),
                        generator=torch.Generator().manual_seed(args.seed))  # seeded: a resumed run sees the same batches
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    start = 0
    if args.resume:  # the model's state dict brings back model.fastmask's too: the mask counter, the proposal net
        checkpoint = torch.load(args.resume, map_location=device, weights_only=True)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        torch.set_rng_state(checkpoint["rng"])  # dropout
        if torch.cuda.is_available():
            torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
        start = checkpoint["step"]
    batches = itertools.islice(itertools.cycle(loader), start, args.steps)
    bar = tqdm(batches, total=args.steps, initial=start, desc="train")
    losses = []
    for batch in bar:
        loss = model(**batch.to(device)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())  # a host sync, for the progress bar only
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    checkpoint = dict(model=model.state_dict(), optimizer=optimizer.state_dict(), rng=torch.get_rng_state(),
                      cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [], step=args.steps)
    model.eval()
    with torch.no_grad():  # evaluation masks: plain random, a fixed seed, whatever the strategy
        batch = DataCollatorWithPadding(tokenizer)(held_out[:args.batch_size]).to(device)
        eval_loss = model(**batch).loss.item()
    dropped = model.fastmask.take_dropped_labels()
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    torch.save(checkpoint, os.path.join(args.out, "checkpoint.pt"))
    print(f"eval loss {eval_loss:.4f}; {dropped} labels dropped for capacity; model saved to {args.out}")
    return {"eval_loss": eval_loss, "train_losses": losses}


if __name__ == "__main__":
    main()
