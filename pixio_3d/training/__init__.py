"""Training the 3D models: losses (:mod:`~pixio_3d.training.losses`, one module per term) and
the task's batches, optimizer and objective on the shared engine
(:mod:`~pixio_3d.training.train`)."""
