"""Training MVideo: dataset builder, latent cache, LoRA trainer with consistency loss."""
