"""Running models: the training loop, evaluation, the test-time pipeline, checkpoints, distributed set-up and
the learning-rate schedule."""
