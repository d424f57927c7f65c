"""Glue to other robot-learning frameworks (imported on their own: each needs its framework).

* :mod:`~pixio_robot.integrations.robomimic_core`: ``PixioCore``, a robomimic observation
  encoder core around a frozen Pixio encoder (BC and BC-RNN train with it unchanged).
"""
