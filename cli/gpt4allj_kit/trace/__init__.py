"""The data trace: what each optimizer step of a training read (`records`), what it should read
(`layout`, `expected`), and how the training loop captures it (`capture`)."""
