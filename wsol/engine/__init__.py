"""The machinery shared by training and evaluation: the training loop and its checkpoints, optimizer and schedule
builders, ``torch.distributed`` set-up, and the frozen-feature cache of the ``head`` recipe."""
