"""The training engine: configuration, loop, optimizer and schedule, checkpoints, distributed, logging."""
