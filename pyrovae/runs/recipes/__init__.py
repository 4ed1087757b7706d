"""One recipe per model family (:class:`~pyrovae.runs.recipe.Recipe`), each in its own file:
vae, ae, a user's factory, the Gaussian mixture (gmm), the mixture-prior VAE, the
semi-supervised models (ssvae, adgm, sdgm) and the sequence models (seqvae, dmm)."""
