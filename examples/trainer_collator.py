"""The Hugging Face Trainer with fastmask's drop-in collator: changing the import is the whole migration.

Masks come from fastmask's C++ kernel instead of transformers' Python code: the same statistics
(15% Bernoulli, 80/10/10), fresh on every call, never repeated across DataLoader workers.

    python examples/trainer_collator.py                          # a small BERT, offline
    python examples/trainer_collator.py --model bert-base-uncased
"""

from transformers import Trainer, TrainingArguments

import _setup
from fastmask.hf import DataCollatorForLanguageModeling  # was: from transformers import DataCollatorForLanguageModeling


def main(argv=None):
    args = _setup.parse(__file__, __doc__, argv, **{"--workers": dict(type=int, default=0, help="DataLoader workers")})
    model, tokenizer, train, held_out = _setup.load(args)
    training = TrainingArguments(output_dir=args.out, max_steps=args.steps, per_device_train_batch_size=args.batch_size,
                                 learning_rate=5e-4, logging_steps=max(1, args.steps // 10), save_strategy="no",
                                 report_to=[], dataloader_num_workers=args.workers)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    trainer = Trainer(model=model, args=training, train_dataset=train, eval_dataset=held_out, data_collator=collator)
    trainer.train()
    metrics = trainer.evaluate()
    trainer.save_model(args.out)
    print(f"eval loss {metrics['eval_loss']:.4f}; model saved to {args.out}")
    return metrics


if __name__ == "__main__":
    main()
