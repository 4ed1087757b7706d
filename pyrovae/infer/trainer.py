"""Stochastic variational inference: the training loop, :class:`Trainer`, with callbacks.

Each step draws a minibatch x (B, D), estimates the objective's loss
-ELBO(x) = -sum_n E_q[log p(x_n, z_n) - log q(z_n | x_n)] with Pyro's own ELBO,
divides by B (so the learning rate does not depend on the batch size) and takes a
gradient step with a torch optimizer. History records the per-example bound in
nats, higher is better.

A program with global latents theta (sites outside the data plate) is trained as Pyro's
subsample idiom trains it (:mod:`pyrovae.infer.subsample`): the minibatch of B rows is a
subsample of the N training rows, its sites scaled by N / B, so a step's loss estimates the
full-data -ELBO with KL(q(theta) || p(theta)) counted once per N rows; the step divides it
by N. Its history's ``train_elbo`` is that full-data bound per example.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pyro
import torch
from pyro.infer import ELBO

from ..errors import TrainingDiverged, option
from ..ranks import shared_seed
from .batches import Data, Transform, make_batches
from .captured import CapturedLoss
from .denormals import flushed_denormals
from .distributed import all_reduce_sums, data_parallel, world
from .evaluate import evaluate_elbo
from .modes import program_mode
from .objectives import evaluation_objective
from .params import adam, collect_params, module_state, unused_parameters
from .program import check_program, choose_objective, enumerate_sites
from .progress import epoch_summary, progress_bar
from .scale import LATENT_SCALES, LatentScaling, warmup_weight
from .schedule import StepDecay
from .streams import gather_streams, random_streams, restore_streams
from .subsample import DataPlateScale, training_rows, wrapped
from .vectorized import particle_objective

#: ``callback(trainer)``, called after each epoch with the :class:`Trainer`.
Callback = Callable[["Trainer"], None]


class History(list):
    """Per-epoch records ``{"epoch", "train_elbo", "test_elbo", "seconds"}`` (nats per example)."""

    def column(self, key: str) -> list[Any]:
        """One value per epoch of ``key`` (None where an epoch did not record it)."""
        return [record.get(key) for record in self]


class Trainer:
    """Fits a (model, guide) pair by SVI; ``run(epochs)`` trains until that many epochs are done.

    Args:
        model, guide: Pyro programs with the same signature ``(x, y=None)`` or ``(*batch)``;
            PyroModules or plain functions using ``pyro.param`` / ``pyro.module``. The model
            may carry one optional attribute of the pair contract, ``latent_scales``
            (:data:`~pyrovae.infer.scale.LATENT_SCALES`): a dict {latent site name: scale}
            whose every site is scaled by its value in *both* model and guide
            (:func:`~pyrovae.infer.scale.scale_latents`), so the training ELBO's KL term
            E_q[log p(z) - log q(z | x)] of that site is multiplied by the scale (the
            beta-VAE's beta: :attr:`pyrovae.models.VAE.latent_scales` is {"z": beta}).
            Absent or empty, nothing is scaled; the test ELBO is never scaled.
        data: training data, any form of :data:`~pyrovae.infer.batches.Data`.
        test_data: evaluated each epoch (one-sample test ELBO, unweighted objective).
        batch_size, lr: minibatch size and Adam's learning rate.
        optimizer: ``callable(params) -> torch.optim.Optimizer``; by default Adam(lr) in
            its fused form (one kernel for all parameters) where torch has it.
        objective: ``"auto"`` (the default: ``"enum"`` when the program enumerates a site,
            ``"elbo"`` otherwise; :func:`~pyrovae.infer.program.choose_objective`),
            ``"elbo"``, ``"meanfield"``, ``"enum"``, ``"iwae"`` or a ``pyro.infer.ELBO``.
            The pair is checked against pyrovae's contract on the first batch
            (:func:`~pyrovae.infer.program.check_program`) before anything trains.
        num_particles: samples per example in the training estimate (vectorized where the
            program allows it, else one after another with a warning); K of IWAE.
        dreg: doubly reparameterised guide gradients for ``"iwae"`` (Tucker et al. 2019).
        transform: applied to each training batch's x, e.g. dynamic binarization.
        seed: seeds Pyro/torch/numpy and the data order; None leaves the RNG as it is.
        metrics: each called as ``metric(trainer)`` at the end of every epoch, returning a
            dict of numbers merged into that epoch's record (e.g. a validation accuracy)
            before the callbacks run.
        callbacks: each called as ``callback(trainer)`` after every epoch.
        progress: show a tqdm bar with the running ELBO.
        device: where batches go (the model and guide must already be there).
        capture: replay each step's loss from a graph captured once per batch shape and
            checked against Pyro's eager loss (:class:`~pyrovae.infer.captured.CapturedLoss`);
            False runs the Pyro program on every step.
        flush_denormals: flush denormal floats to zero on CPU while ``run`` trains (see
            :mod:`pyrovae.infer.denormals`: they slow steps several-fold late in training);
            the previous mode is restored when ``run`` returns.
        kl_warmup: E > 0 weights every latent site, in model and guide, by
            w_e = (e + 1) / (E + 1) in epochs e = 0..E-1 and by 1 after
            (:func:`~pyrovae.infer.scale.warmup_weight`): the training objective of epoch e is
            E_q[log p(x | z)] + w_e E_q[log p(z) - log q(z | x)] (KL warm-up, Bowman et al.
            2016), on top of ``latent_scales``. Each epoch's record holds its ``kl_weight``;
            its ``train_elbo`` is the weighted bound. The weight follows the epoch count, so
            a resumed run continues the schedule. 0: none.
        data_plate: the name of the plate over the examples, where more than one plate of
            the batch's size holds every observation (found otherwise; a model's
            ``data_plate`` attribute names it too:
            :func:`~pyrovae.infer.plates.find_data_plate`).
        lr_decay, lr_decay_epochs: step decay of the learning rate: epoch e (counted from 0)
            trains at lr_0 * lr_decay ** floor(e / lr_decay_epochs), lr_0 each parameter
            group's learning rate when the optimizer was made (VaDE's 0.9 every 10 epochs:
            ``lr_decay=0.9, lr_decay_epochs=10``). The rate follows the epoch count, so a
            resumed run continues the schedule; each epoch's record holds its ``lr`` (of the
            first group). 1: constant.

    A program with global latents (sites outside the data plate) is trained with each
    minibatch of B rows scaled as a subsample of the N training rows, as Pyro's
    ``pyro.plate("data", N, subsample=...)`` idiom scales it (:mod:`pyrovae.infer.subsample`),
    so an epoch's objective is the full-data ELBO, the global prior and KL counted once per N
    rows (not once per minibatch); a data plate that already subsamples is left as it is.

    Steps run with the pair's torch modules in training mode, the test ELBO in evaluation
    mode (dropout, batch normalisation: :mod:`~pyrovae.infer.modes`), and each submodule's
    own flag is restored after.

    Under torch.distributed (a process group initialised, e.g. by ``torchrun``), each of
    the R ranks takes a disjoint share of every global batch of R x ``batch_size`` rows
    (in-memory tensors; a DataLoader is used as given, with its own sampler), the loss runs
    inside ``DistributedDataParallel`` which averages the gradients, and each rank's loss is
    scaled so that the average is the gradient of the global batch's mean loss: the steps of
    one process with batch R x ``batch_size``. ``seed`` (drawn on rank 0 and shared when
    None) orders the data alike on every rank; rank r's sampling noise is seeded with
    seed + r. Epoch records are summed over the ranks, so every rank holds the same
    history; only rank 0 shows the bar. Metrics and callbacks run on every rank (write files
    from rank 0 only: :func:`~pyrovae.infer.distributed.is_main_process`).
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        data: Data,
        *,
        test_data: Data | None = None,
        batch_size: int = 128,
        lr: float = 1e-3,
        optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer] | None = None,
        objective: str | ELBO = "auto",
        num_particles: int = 1,
        dreg: bool = False,
        transform: Transform | None = None,
        seed: int | None = None,
        metrics: Sequence[Callable[[Trainer], dict[str, Any]]] = (),
        callbacks: Sequence[Callback] = (),
        progress: bool = True,
        device: torch.device | str | None = None,
        capture: bool = True,
        flush_denormals: bool = True,
        kl_warmup: int = 0,
        data_plate: str | None = None,
        lr_decay: float = 1.0,
        lr_decay_epochs: int = 1,
    ) -> None:
        if kl_warmup < 0:
            raise ValueError(f"kl_warmup must be >= 0 epochs, got {kl_warmup}")
        self.rank, self.ranks = world()
        if self.ranks > 1 and seed is None:
            seed = shared_seed(torch.initial_seed() % 2**62)  # rank 0's, so data orders agree
        if seed is not None:
            pyro.set_rng_seed(seed + self.rank)
        self.model, self.guide = model, guide
        self.device = device
        generator = torch.Generator(device=device or "cpu")
        generator.manual_seed(seed if seed is not None else torch.initial_seed())
        self.generator = generator
        self.batches = make_batches(
            data, batch_size, True, generator, transform, device, (self.rank, self.ranks)
        )
        #: How the program's sites are treated, from a check of the first batch.
        self.program = check_program(model, guide, self.batches.peek(), data_plate)
        objective = choose_objective(objective, self.program)
        # Discrete latents the guide leaves to the model, unmarked: summed, as log_marginal
        # sums them, rather than sampled by TraceEnum_ELBO from their prior.
        self._eval_model = enumerate_sites(model, self.program.unmarked_discrete)
        scales = getattr(model, LATENT_SCALES, None) or {}
        self.kl_warmup = kl_warmup
        #: The latent sites' weights while training (``latent_scales``, warm-up factor).
        self.scaling = LatentScaling(scales, varying=kl_warmup > 0)
        if scales or kl_warmup:
            self._model = self.scaling.wrap(self._eval_model)
            self._guide = self.scaling.wrap(guide)
        else:
            self._model, self._guide = self._eval_model, guide
        #: N, the training rows a minibatch is a subsample of, where the program has global
        #: latents and its data plate does not subsample already (else None).
        self.subsample_rows: int | None = None
        if self.program.sites.global_latents and not self.program.subsampled:
            self.subsample_rows = training_rows(
                self.batches, data, self.program.sites.global_latents
            )
            scale = DataPlateScale(self.program.data_plate, self.subsample_rows)
            self._model = wrapped(self._model, scale)
            self._guide = wrapped(self._guide, scale)
        #: The objective trained with: a name of OBJECTIVES ("auto" resolved) or an ELBO.
        self.objective = objective
        nesting = self.program.nesting
        self.elbo = particle_objective(
            objective,
            num_particles,
            dreg,
            self._eval_model,
            guide,
            self.batches.peek(),
            nesting,
            data_plate=self.program.data_plate,
        )
        # The test ELBO: unweighted, one particle, the plain ELBO for IWAE (or the user's ELBO).
        self.test_elbo = evaluation_objective(objective, nesting)
        self.test_data = test_data
        self.metrics = list(metrics)
        self.callbacks = list(callbacks)
        self.progress = progress
        self.flush_denormals = flush_denormals
        self.epoch = 0
        self.history = History()
        #: Under torch.distributed: every rank's random states at the last epoch's end.
        self._streams: list[dict[str, Any]] | None = None
        self.params, self.store_names = collect_params(
            self.elbo, self._model, self._guide, self.batches.peek()
        )
        if not self.params:
            raise ValueError(
                "the model and guide have no trainable parameters: nothing to fit. A guide "
                "must be a PyroModule with parameters or call pyro.param / pyro.module."
            )
        make_optimizer = optimizer or (lambda params: adam(params, lr))
        self.optimizer = make_optimizer(self.params)
        #: The learning rate's step decay (``lr_decay`` every ``lr_decay_epochs``).
        self.schedule = StepDecay(self.optimizer, lr_decay, lr_decay_epochs)
        modules = [p for p in (model, guide) if isinstance(p, torch.nn.Module)]
        self.loss = CapturedLoss(
            self.elbo, self._model, self._guide, modules, self.params, enabled=capture
        )
        #: The loss each step calls: ``loss``, or DistributedDataParallel around it.
        self.step_loss: Callable[..., torch.Tensor] = self.loss
        if self.ranks > 1:
            unused = unused_parameters(
                self.elbo, self._model, self._guide, self.batches.peek(), self.params
            )
            self.step_loss = data_parallel(self.loss, modules, self.params, device, unused)

    def step(self, args: tuple, rows: float | None = None) -> torch.Tensor:
        """One gradient step on a batch; returns the batch's summed loss (detached).

        The gradient is that of the summed loss over ``rows`` (the batch's rows by default;
        under torch.distributed, the global batch's rows over the number of ranks, since
        the ranks' gradients are averaged)."""
        try:
            loss = self.step_loss(*args)
        except ValueError as e:  # Pyro's validation of a distribution's parameters
            self._check_parameters()
            if getattr(self, "_stepped", False) and str(e).startswith("Expected parameter"):
                # Finite weights whose outputs overflow: a step after a finite loss did it.
                raise TrainingDiverged(
                    f"the model's outputs became NaN or infinite at epoch {self.epoch + 1} "
                    f"({str(e).splitlines()[0][:120]}...): an optimizer step diverged (the "
                    f"loss before it was finite). Lower the learning rate ({option('lr')}), or "
                    "check the data for extreme values"
                ) from e
            raise
        if self.subsample_rows is not None:  # N / B times the batch's terms: back to B rows
            loss = loss * (args[0].shape[0] / self.subsample_rows)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"the loss became {loss.item()} at epoch {self.epoch + 1}; parameters are "
                f"left at the last finite step. Lower the learning rate ({option('lr')}), check "
                "the data for extreme values, or use a likelihood with a floor on its scale."
            )
        (loss / (rows or args[0].shape[0])).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._stepped = True
        return loss.detach()

    def _check_parameters(self) -> None:
        """Raise TrainingDiverged when a parameter has become NaN or infinite: an optimizer
        step diverged (the loss before it was finite), which Pyro then reports as a
        distribution parameter outside its constraint."""
        groups = self.optimizer.param_groups
        if all(bool(torch.isfinite(p).all()) for g in groups for p in g["params"]):
            return
        raise TrainingDiverged(
            f"the parameters became NaN or infinite at epoch {self.epoch + 1}: an optimizer "
            "step diverged (the loss before it was finite). Lower the learning rate "
            f"({option('lr')}), or check the data for extreme values"
        )

    def run(self, epochs: int) -> History:
        """Train until ``epochs`` epochs are done in all (a resumed trainer continues)."""
        steps = len(self.batches)
        with (
            flushed_denormals(self.flush_denormals),
            progress_bar(
                total=epochs * steps,
                initial=min(self.epoch, epochs) * steps,
                disable=not self.progress or self.rank != 0,
                desc="train",
                unit="step",
                dynamic_ncols=True,
                mininterval=0.5,
            ) as bar,
        ):
            while self.epoch < epochs:
                start = time.perf_counter()
                if not self.schedule.constant:
                    self.schedule.set_epoch(self.epoch)
                if self.kl_warmup:
                    # Changed in place: captured graphs read the new weight (and the recheck
                    # below compares one of them with Pyro's loss under it).
                    self.scaling.factor = warmup_weight(self.epoch, self.kl_warmup)
                total, count = 0.0, 0  # a tensor on the loss's device after the first step
                with program_mode(self.model, self.guide, training=True):
                    self.loss.recheck()
                    for i, args in enumerate(self.batches):
                        if self.ranks > 1 and hasattr(self.batches, "global_rows"):
                            loss = self.step(args, self.batches.global_rows(i) / self.ranks)
                        else:  # one process: step(args), as a subclass may define it
                            loss = self.step(args)
                        total = total + loss
                        count += args[0].shape[0]
                        bar.update(1)
                        if i % 10 == 0 or i == steps - 1:
                            elbo = -float(total) / count
                            bar.set_postfix_str(
                                f"epoch {self.epoch + 1}/{epochs} elbo {elbo:.2f}", refresh=False
                            )
                total, count = all_reduce_sums([float(total), count])
                record: dict[str, Any] = {"epoch": self.epoch + 1, "train_elbo": -total / count}
                if self.kl_warmup:
                    record["kl_weight"] = self.scaling.factor
                if not self.schedule.constant:
                    record["lr"] = self.optimizer.param_groups[0]["lr"]
                self._check_parameters()  # the last step may have diverged: never saved
                if self.test_data is not None:
                    record["test_elbo"] = evaluate_elbo(
                        self._eval_model,
                        self.guide,
                        self.test_data,
                        objective=self.test_elbo,
                        device=self.device,
                        global_plate=(
                            self.program.data_plate if self.program.sites.global_latents else None
                        ),
                    )
                record["seconds"] = time.perf_counter() - start
                self.epoch += 1
                shown = []
                for metric in self.metrics:
                    numbers = metric(self)
                    record.update(numbers)
                    shown += list(numbers)
                self.history.append(record)
                if self.ranks > 1:  # for state_dict, which a callback of rank 0 alone may call
                    self._streams = gather_streams(self.generator, self.ranks)
                bar.set_postfix_str(epoch_summary(record, epochs, shown), refresh=False)
                for callback in self.callbacks:
                    callback(self)
        return self.history

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue: parameters, optimizer, epoch, history, RNG states."""
        store = pyro.get_param_store()
        rng = random_streams(self.generator)
        if self._streams is not None:  # every rank's, gathered when the last epoch ended
            rng["ranks"] = self._streams
        return {
            "model": module_state(self.model),
            "guide": module_state(self.guide),
            "params": {name: store.get_state()["params"][name] for name in self.store_names},
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "history": [dict(r) for r in self.history],
            "rng": rng,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved: the model and guide (or Pyro's parameter
        store), the optimizer, the epoch, the history and the random streams, so training goes
        on as if it had not stopped."""
        for program, key in ((self.model, "model"), (self.guide, "guide")):
            if isinstance(program, torch.nn.Module):
                program.load_state_dict(state[key])
        store = pyro.get_param_store()
        with torch.no_grad():
            for name, value in state.get("params", {}).items():
                store.get_param(name).unconstrained().copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        self.history = History(state["history"])
        restore_streams(state["rng"], self.generator, self.rank, self.ranks)
