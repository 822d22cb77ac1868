"""The Hugging Face Trainer with ``apply_fastmask``: masks made on the model's device inside its
forward, the vocabulary head run on the masked tokens only.

Two changes to a Trainer script: patch the model, and let the collator only pad
(``mask_in_model=True``: it hands the Trainer labels of width 0, so ``evaluate()`` still reports
``eval_loss``). ``FastMaskCallback`` logs any labelled token dropped for capacity. The saved
folder is a standard checkpoint: ``AutoModelForMaskedLM.from_pretrained`` loads it without fastmask.

    python examples/trainer_apply_fastmask.py --masking fully-explored
    python examples/trainer_apply_fastmask.py --model bert-base-uncased --masking mapnet
"""

from transformers import Trainer, TrainingArguments

import _setup
from fastmask.hf import DataCollatorForLanguageModeling, FastMaskCallback, apply_fastmask


def main(argv=None):
    args = _setup.parse(__file__, __doc__, argv, **{
        "--masking": dict(default="random", help="random | bernoulli | fully-explored | mapnet"),
        "--grad-accum": dict(type=int, default=1, help="gradient accumulation steps"),
        "--workers": dict(type=int, default=0, help="DataLoader workers"),
    })
    model, tokenizer, train, held_out = _setup.load(args)
    model = apply_fastmask(model, tokenizer, masking=args.masking)
    training = TrainingArguments(output_dir=args.out, max_steps=args.steps, per_device_train_batch_size=args.batch_size,
                                 gradient_accumulation_steps=args.grad_accum, learning_rate=5e-4,
                                 logging_steps=max(1, args.steps // 10), save_strategy="no", report_to=[],
                                 dataloader_num_workers=args.workers)
    collator = DataCollatorForLanguageModeling(tokenizer, mask_in_model=True)
    trainer = Trainer(model=model, args=training, train_dataset=train, eval_dataset=held_out, data_collator=collator,
                      callbacks=[FastMaskCallback()])
    trainer.train()
    metrics = trainer.evaluate()
    trainer.save_model(args.out)
    print(f"eval loss {metrics['eval_loss']:.4f}; model saved to {args.out}")
    return metrics


if __name__ == "__main__":
    main()
