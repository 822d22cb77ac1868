"""PyTorch Lightning with ``apply_fastmask``: the LightningModule returns the patched model's loss.

The batch is only padded; the model masks it on its device in ``training_step`` (fresh masks
every step) and with fixed evaluation masks in ``validation_step``. Needs ``pip install lightning``.

    python examples/lightning_module.py --masking fully-explored
"""

import lightning as L
import torch
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding

import _setup
from fastmask.hf import apply_fastmask


class MaskedLM(L.LightningModule):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def training_step(self, batch, batch_idx):
        loss = self.model(**batch).loss
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("eval_loss", self.model(**batch).loss, batch_size=len(batch["input_ids"]))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=5e-4)


def main(argv=None):
    args = _setup.parse(__file__, __doc__, argv, **{
        "--masking": dict(default="random", help="random | bernoulli | fully-explored | mapnet"),
    })
    model, tokenizer, train, held_out = _setup.load(args)
    module = MaskedLM(apply_fastmask(model, tokenizer, masking=args.masking))
    pad = DataCollatorWithPadding(tokenizer)
    trainer = L.Trainer(max_steps=args.steps, default_root_dir=args.out, logger=False, enable_checkpointing=False)
    trainer.fit(module, DataLoader(train, batch_size=args.batch_size, shuffle=True, collate_fn=pad))
    (metrics,) = trainer.validate(module, DataLoader(held_out, batch_size=args.batch_size, collate_fn=pad))
    module.model.save_pretrained(args.out)
    print(f"eval loss {metrics['eval_loss']:.4f}; model saved to {args.out}")
    return metrics


if __name__ == "__main__":
    main()
