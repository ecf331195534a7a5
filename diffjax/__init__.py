"""diffjax: one math core for generative diffusion models."""
