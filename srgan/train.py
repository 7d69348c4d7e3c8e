"""``python -m srgan.train`` (what ``torchrun`` runs, and what the bundled model cards record): the training
entry point, which lives in ``srgan.training.train``."""

from srgan.training.train import main

if __name__ == "__main__":
    raise SystemExit(main())
