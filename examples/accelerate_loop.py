"""An ``accelerate`` loop with ``apply_fastmask``: one process or many (``accelerate launch``).

Masks are keyed by the rank and a device-side step counter, so ranks and accumulation
micro-steps never share a mask.

    python examples/accelerate_loop.py
    accelerate launch --num_processes 2 examples/accelerate_loop.py --masking fully-explored
"""

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding

import _setup
from fastmask.hf import apply_fastmask


def main(argv=None):
    args = _setup.parse(__file__, __doc__, argv, **{
        "--masking": dict(default="random", help="random | bernoulli | fully-explored | mapnet"),
        "--grad-accum": dict(type=int, default=2, help="gradient accumulation steps"),
    })
    accelerator = Accelerator(gradient_accumulation_steps=args.grad_accum)
    model, tokenizer, train, _ = _setup.load(args)
    model = apply_fastmask(model, tokenizer, masking=args.masking)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, collate_fn=DataCollatorWithPadding(tokenizer))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    model.train()
    micro_steps, losses = 0, []
    while micro_steps < args.steps * args.grad_accum:
        for batch in loader:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            losses.append(loss.detach())
            micro_steps += 1
            if micro_steps == args.steps * args.grad_accum:
                break
    mean_loss = torch.stack(losses).mean().item()
    accelerator.unwrap_model(model).save_pretrained(args.out, is_main_process=accelerator.is_main_process)
    accelerator.print(f"mean train loss {mean_loss:.4f}; model saved to {args.out}")
    return {"train_loss": mean_loss}


if __name__ == "__main__":
    main()
