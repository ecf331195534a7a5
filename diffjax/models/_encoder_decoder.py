"""The two networks of the UDM encoder model, article (十一) item 5: an encoder F_phi(x_0) and a decoder
q(x_0 | x_t) of the latent x_t = abar_t F_phi(x_0) + bbar_t eps, trained together by one loss."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from ._mlp import MLP


class EncoderDecoder(nn.Module):
    """Residual MLPs for both halves: `model(z_t, t, cond)` decodes, `model.apply(..., method="encode")` encodes.

    The latent has the data's shape. The encoder sees no time (it is called at t = 0) and starts at the identity
    plus a learned residual, so training begins from the plain Gaussian diffusion of x_0.

    Attributes:
        hidden, depth, time_embed_dim, time_scale, num_classes, dropout: as in `MLP`, for the decoder; the encoder
            has the same width and depth.
    """

    hidden: int = 256
    depth: int = 4
    time_embed_dim: int = 128
    time_scale: float = 1.0
    num_classes: int = 0
    dropout: float = 0.0

    def setup(self):
        self.encoder = MLP(self.hidden, self.depth, self.time_embed_dim, num_classes=self.num_classes,
                           dropout=self.dropout)
        self.decoder = MLP(self.hidden, self.depth, self.time_embed_dim, num_classes=self.num_classes,
                           time_scale=self.time_scale, dropout=self.dropout)

    def encode(self, x, t=None, cond=None, train: bool = False):
        """`F_phi(x_0) = x_0 + r_phi(x_0)` (the residual's last layer starts at zero)."""
        return x + self.encoder(x, jnp.zeros((x.shape[0],), jnp.float32), cond, train)

    def __call__(self, x, t, cond=None, train: bool = False):
        if self.is_initializing():  # create the encoder's parameters along with the decoder's
            self.encode(x, None, cond, train)
        return self.decoder(x, t, cond, train)
