"""One recipe per model family (:class:`~pyrovae.runs.recipe.Recipe`), each in its own file:
vae, ae, a user's factory, the Gaussian mixture (gmm), the mixture-prior VAE, the
semi-supervised models (ssvae, adgm, sdgm), the sequence models (seqvae, dmm), and any
module added here: :mod:`pyrovae.runs.registry` imports every module of this package and
registers the recipes it defines, so a new family's recipe file is all this layer needs."""
