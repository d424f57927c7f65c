"""The console scripts of pixio_3d: pixio-recon, pixio-depth, pixio-scenes, pixio-recon-train, pixio-recon-eval, pixio-recon-demo."""
