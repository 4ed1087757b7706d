"""One recipe per model family (:class:`~pyrovae.runs.recipe.Recipe`), each in its own file:
vae, ae, a user's factory, the Gaussian mixture (gmm) and the semi-supervised VAE (ssvae)."""
