"""The hydra configs of Pixio, installed as the package ``pixio_configs``: one YAML file per
command (``pretrain.yaml``, ``recon_train.yaml``, ``robot_train.yaml``, ...) and one folder per
config group (``model/``, ``data/``, ``optim/``, ``train/``, ``recon/``, ``env/``, ``policy/``,
``experiment/``)."""
