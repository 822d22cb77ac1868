"""An ``accelerate`` loop with ``apply_fastmask``: one process or many (``accelerate launch``).

Masks are keyed by the rank and a device-side step counter, so ranks and accumulation
micro-steps never share a mask.

Resuming exactly: ``accelerator.save_state`` writes the model's state dict — with what
``apply_fastmask`` added, the mask counter and MAPNet's proposal net — the optimizer's, the RNG
states, accelerate's accumulation step and this loop's micro-step (registered for checkpointing);
``--resume`` loads it with ``load_state`` and continues to ``--steps`` with the masks, losses and
weights of the uninterrupted run. The data order is accelerate's seedable sampler (epoch e is
shuffled by seed + e), so the resumed run picks its epoch and skips the batches already seen.

    python examples/accelerate_loop.py
    accelerate launch --num_processes 2 examples/accelerate_loop.py --masking fully-explored
    python examples/accelerate_loop.py --masking mapnet --steps 100 --out runs/a
    python examples/accelerate_loop.py --masking mapnet --steps 300 --resume runs/a/state
"""

import os

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding

import _setup
from fastmask.hf import apply_fastmask


class Progress:
    """Optimizer steps and micro-steps made so far: saved and loaded with the accelerator's state."""

    def __init__(self):
        self.steps = self.micro_steps = 0

    def state_dict(self) -> dict:
        return {"steps": self.steps, "micro_steps": self.micro_steps}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.micro_steps = state["steps"], state["micro_steps"]


def main(argv=None):
    args = _setup.parse(__file__, __doc__, argv, **{
        "--masking": dict(default="random", help="random | bernoulli | fully-explored | mapnet"),
        "--grad-accum": dict(type=int, default=2, help="gradient accumulation steps"),
        "--resume": dict(help="an earlier run's state folder (OUT/state): continue it to --steps"),
        "--seed": dict(type=int, default=0, help="seeds the initial weights, dropout and the data order"),
    })
    # The seedable sampler shuffles epoch e by seed + e: a resumed run reproduces any epoch's order.
    accelerator = Accelerator(gradient_accumulation_steps=args.grad_accum,
                              dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))
    set_seed(args.seed)
    model, tokenizer, train, _ = _setup.load(args)
    model = apply_fastmask(model, tokenizer, masking=args.masking)
    # Its own generator: a new iterator (each epoch, and the resumed one) then draws nothing from torch's
    # global RNG, which dropout uses and the checkpoint restores.
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, collate_fn=DataCollatorWithPadding(tokenizer),
                        generator=torch.Generator().manual_seed(args.seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    progress = Progress()
    accelerator.register_for_checkpointing(progress)
    if args.resume:  # the model's state dict brings back model.fastmask's too: the mask counter, the proposal net
        accelerator.load_state(args.resume)
    model.train()
    epoch, seen = divmod(progress.micro_steps, len(loader))
    losses = []
    while progress.steps < args.steps:
        loader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(loader, seen) if seen else loader
        for batch in batches:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            losses.append(loss.detach())
            progress.micro_steps += 1
            # Steps end where gradients were synced and applied (after --grad-accum micro-steps, or fewer
            # at an epoch's end), so a checkpoint never drops a half-accumulated gradient.
            progress.steps += accelerator.sync_gradients
            if progress.steps == args.steps:
                break
        epoch, seen = epoch + 1, 0
    train_losses = [loss.item() for loss in losses]  # one host sync per loss, after training
    # Not safetensors: the tied decoder and embedding weights are one tensor, which it will not store twice.
    accelerator.save_state(os.path.join(args.out, "state"), safe_serialization=False)
    accelerator.unwrap_model(model).save_pretrained(args.out, is_main_process=accelerator.is_main_process)
    mean_loss = sum(train_losses) / max(1, len(train_losses))
    accelerator.print(f"mean train loss {mean_loss:.4f}; model saved to {args.out}")
    return {"train_loss": mean_loss, "train_losses": train_losses}


if __name__ == "__main__":
    main()
