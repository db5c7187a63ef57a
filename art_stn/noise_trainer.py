"""
The training loop that every noise-training method of art-stn shares (:class:`NoiseTrainer`): seeded data order and
noise per epoch, validation, LR scheduler, checkpoints after every epoch and every K batches with exact resume, and
DDP under torchrun. A method is a subclass with its loss (:mod:`art_stn.trainer`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from art.defences.trainer.trainer import Trainer
from art.estimators.classification.pytorch import PyTorchClassifier
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from art_stn.checkpoint import (
    check_resume_settings,
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from art_stn.distributed import barrier, is_main, unwrap
from art_stn.noise import fill_noise
from art_stn.validation import check_int, check_labels

if TYPE_CHECKING:
    from art_stn.classifier import STNClassifier

__all__ = ["NoiseTrainer"]


class NoiseTrainer(Trainer):
    """
    Training of an :class:`~art_stn.STNClassifier`'s base model under the classifier's own noise (its kind and
    scale), drawn on the device: the loop that every method shares. A method is a subclass with its loss of one batch
    (:meth:`loss`) and its settings (:meth:`method_settings`); see :class:`GaussianAugmentationTrainer`,
    :class:`STNTrainer` and :class:`ConsistencyTrainer`.

    Each epoch draws its data order and noise from streams seeded by `(seed, epoch)`, so a run resumed from an
    epoch checkpoint, or from a mid-epoch one (`checkpoint_every`), reproduces the unbroken run. A checkpoint records
    the method and its settings, and a resume under other settings is refused.

    Under `torchrun` (an initialised `torch.distributed` process group) the model trains as
    `DistributedDataParallel`: each rank takes its part of every epoch's order (a `DistributedSampler` seeded by
    `seed`, so `batch_size` is per rank), gradients are all-reduced, only rank 0 writes checkpoints, and every rank
    resumes from the same checkpoint.
    """

    #: The method's name, recorded in checkpoints.
    method = "noise"

    def __init__(self, classifier: STNClassifier, seed: int = 0, metadata: dict[str, Any] | None = None) -> None:
        """
        Create a trainer.

        :param classifier: The smoothed classifier whose base model is trained; it needs an optimizer.
        :param seed: Seed of the data order and the training noise.
        :param metadata: Plain values stored in every checkpoint (the command line stores the model's registry
               name and the data set, so that `STNClassifier.load(path)` can rebuild the model).
        """
        if not isinstance(classifier, PyTorchClassifier) or not hasattr(classifier, "smoothing_settings"):
            raise TypeError(f"`classifier` must be an art_stn.STNClassifier; got {type(classifier).__name__}.")
        if classifier.optimizer is None:
            raise ValueError("the classifier has no optimizer: pass `optimizer=` to STNClassifier to train it.")
        super().__init__(classifier)
        self.seed = int(seed)
        self.metadata = dict(metadata or {})
        self.history: list[dict[str, float]] = []
        self._batch_size: int | None = None  # of the run in progress: stored in checkpoints, compared on resume

    @property
    def classifier(self) -> STNClassifier:
        """
        The classifier being trained.
        """
        return self._classifier  # type: ignore[return-value]

    def method_settings(self) -> dict[str, Any]:
        """
        The method's own settings, stored at the top level of every checkpoint and compared on resume.

        :return: A dict of plain values (empty for the base class).
        """
        return {}

    def _smoothing_record(self) -> dict[str, Any]:
        """
        :return: The `smoothing` entry of checkpoints: the classifier's smoothing settings.
        """
        return self.classifier.smoothing_settings()

    # ------------------------------------------------------------------------------------------------ pieces
    def _noisy(self, x: torch.Tensor, generator: torch.Generator, copies: int = 1) -> torch.Tensor:
        """
        :param x: A batch on the device.
        :param generator: The noise generator.
        :param copies: Noisy copies of the batch, stacked copy by copy.
        :return: `x + r` with the classifier's noise, shape `(copies * B, ...)`.
        """
        clf = self.classifier
        stacked = x if copies == 1 else x.repeat(copies, *([1] * (x.dim() - 1)))
        return stacked + fill_noise(torch.empty_like(stacked), clf.noise, float(clf.scale), generator)

    def loss(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """
        The training loss of one batch (the model must already be in the wanted mode).

        :param x: Clean inputs on the device.
        :param y: Class indices on the device.
        :param generator: The noise generator.
        :return: The scalar loss.
        """
        raise NotImplementedError

    def _generator(self, epoch: int, purpose: int) -> torch.Generator:
        """
        :param epoch: The epoch.
        :param purpose: 0 for the data order (host), 1 for the noise (device), 2 for validation noise.
        :return: A generator seeded by `(seed, epoch, purpose)`.
        """
        device = "cpu" if purpose == 0 else self.classifier.device
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() and purpose == 1 else 0
        gen = torch.Generator(device=device)
        gen.manual_seed((self.seed * 1_000_003 + epoch) * 7 + purpose + 1_000_033 * rank)
        return gen

    @torch.no_grad()
    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 512, epoch: int = 0) -> tuple[float, float]:
        """
        Accuracy of the base model on clean inputs and under one draw of the classifier's noise.

        :param x: Inputs.
        :param y: Labels, indices or one-hot.
        :param batch_size: Batch size.
        :param epoch: Seeds the noise (reproducible validation).
        :return: `(clean_accuracy, noisy_accuracy)`.
        """
        clf = self.classifier
        labels = torch.from_numpy(check_labels(y, clf.nb_classes))
        x_t = clf._check_x(x)
        if len(labels) != len(x_t):
            raise ValueError(f"`x` and `y` have different lengths: {len(x_t)} and {len(labels)}.")
        clf.model.eval()
        gen = self._generator(epoch, 2)
        clean = noisy = 0
        for s in range(0, len(x_t), batch_size):
            xb = x_t[s : s + batch_size].to(clf.device)
            yb = labels[s : s + batch_size].to(clf.device)
            clean += int((clf._logits(xb).argmax(1) == yb).sum())
            noisy += int((clf._logits(self._noisy(xb, gen)).argmax(1) == yb).sum())
        return clean / len(x_t), noisy / len(x_t)

    # ------------------------------------------------------------------------------------------------ checkpoints
    def save_checkpoint(
        self, path: str | Path, epoch: int, scheduler: Any = None, partial: dict[str, Any] | None = None
    ) -> Path:
        """
        Write a checkpoint: model `state_dict`, smoothing settings, epoch, the method and its settings (e.g. `gamma`),
        optimizer (and scheduler) state, history, and the global random state that dropout draws from (so that a
        resumed run equals an unbroken one).

        Written to a temporary file then renamed, so a killed run never leaves a half-written checkpoint.

        :param path: Destination file.
        :param epoch: The last completed epoch (0-based; -1 before the first one ends).
        :param scheduler: Optional LR scheduler whose state is saved.
        :param partial: Progress inside the next epoch (`fit(..., checkpoint_every=K)`): its index, the batches done,
               the training-noise generator's state, the running loss sums, and the wall-clock and CPU seconds spent.
        :return: The path.
        """
        clf = self.classifier
        ckpt = {
            "model_state": unwrap(clf.model).state_dict(),
            "smoothing": self._smoothing_record(),
            "epoch": int(epoch),
            "method": self.method,
            **self.method_settings(),
            "seed": self.seed,
            "batch_size": self._batch_size,
            "optimizer_state": clf.optimizer.state_dict(),
            "scheduler_state": None if scheduler is None else scheduler.state_dict(),
            "history": self.history,
            "metadata": self.metadata,
            "rng_state": rng_state(self.classifier.device),
            "partial": partial,
            "channels_last": clf.uses_channels_last(),  # the memory format it trained in (a speed setting only)
        }
        return save_checkpoint(path, ckpt)

    def _resume(self, path: str | Path, scheduler: Any) -> int:
        """
        Restore model, optimizer, scheduler, history and the global random state from a checkpoint, after checking
        that it was trained with the same noise, scale, method, method settings, seed and batch size, and that the
        optimizer and scheduler have the stored ones' settings (a missing setting is a difference).

        :param path: The checkpoint.
        :param scheduler: Optional LR scheduler to restore.
        :return: The first epoch still to run.
        :raises ValueError: if the checkpoint does not fit the model or was trained with other settings.
        """
        clf = self.classifier
        ckpt = load_checkpoint(path)
        record = self._smoothing_record()
        now = {
            **{k: record[k] for k in ("noise", "scale") if k in record},
            "method": self.method,
            **self.method_settings(),
            "seed": self.seed,
            "batch_size": self._batch_size,
        }
        check_resume_settings(ckpt, now, path, clf.optimizer, scheduler)
        try:
            unwrap(clf.model).load_state_dict(ckpt["model_state"])
        except RuntimeError as err:
            raise ValueError(f"checkpoint {path} does not fit this model: {err}") from err
        if ckpt.get("optimizer_state") is not None:
            clf.optimizer.load_state_dict(ckpt["optimizer_state"])
        if scheduler is not None and ckpt.get("scheduler_state") is not None:
            scheduler.load_state_dict(ckpt["scheduler_state"])
        self.history = list(ckpt.get("history", []))
        self._partial = ckpt.get("partial")
        restore_rng_state(ckpt.get("rng_state") or {}, clf.device)
        return int(ckpt["epoch"]) + 1

    # ------------------------------------------------------------------------------------------------ training
    def fit(  # type: ignore[override]
        self,
        x: np.ndarray,
        y: np.ndarray,
        nb_epochs: int = 10,
        batch_size: int = 128,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None,
        scheduler: Any = None,
        verbose: bool = True,
        checkpoint: str | Path | None = None,
        resume_from: str | Path | None = None,
        checkpoint_every: int | None = None,
        **kwargs: Any,
    ) -> list[dict[str, float]]:
        """
        Train on in-memory arrays.

        :param x: Training inputs of shape `(N, *input_shape)`.
        :param y: Labels, indices `(N,)` or one-hot `(N, nb_classes)`.
        :param nb_epochs: Total number of epochs (a resumed run continues up to it).
        :param batch_size: Batch size.
        :param validation_data: Optional `(x_val, y_val)`: clean and noisy accuracy after every epoch.
        :param scheduler: Optional LR scheduler, stepped after every epoch.
        :param verbose: Show progress bars with the running loss.
        :param checkpoint: Optional file written after every epoch.
        :param resume_from: Optional checkpoint to continue from (its epoch + 1, or the batch after the last one a
               `checkpoint_every` checkpoint recorded).
        :param checkpoint_every: Also write `checkpoint` every K batches inside an epoch, so that a killed run loses
               at most K batches (the epoch's data order and noise are seeded, so the resumed run equals an unbroken
               one); None: after every epoch only.
        :param kwargs: Ignored (ART compatibility).
        :return: The history: one dict per epoch (loss, accuracies, wall-clock `seconds` and the process's
                 `cpu_seconds`, which other work on the machine does not inflate).
        """
        clf = self.classifier
        x_t = clf._check_x(x)
        labels = torch.from_numpy(check_labels(y, clf.nb_classes))
        if len(labels) != len(x_t):
            raise ValueError(f"`x` and `y` have different lengths: {len(x_t)} and {len(labels)}.")

        def batches(epoch: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
            if torch.distributed.is_initialized():
                sampler = torch.utils.data.DistributedSampler(range(len(x_t)), shuffle=True, seed=self.seed)
                sampler.set_epoch(epoch)
                order = torch.tensor(list(sampler), dtype=torch.int64)
            else:
                order = torch.randperm(len(x_t), generator=self._generator(epoch, 0))
            for s in range(0, len(order), batch_size):
                idx = order[s : s + batch_size]
                yield x_t[idx], labels[idx]

        if checkpoint_every is not None:
            checkpoint_every = check_int(checkpoint_every, "checkpoint_every", 1)
        self._batch_size = check_int(batch_size, "batch_size", 1)
        return self._train(
            batches,
            -(-len(x_t) // batch_size),
            nb_epochs,
            validation_data,
            scheduler,
            verbose,
            checkpoint,
            resume_from,
            checkpoint_every,
        )

    def fit_generator(  # type: ignore[override]
        self,
        generator: Any,
        nb_epochs: int = 10,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None,
        scheduler: Any = None,
        verbose: bool = True,
        checkpoint: str | Path | None = None,
        resume_from: str | Path | None = None,
        **kwargs: Any,
    ) -> list[dict[str, float]]:
        """
        Train from a torch `DataLoader` (any iterable of `(x, y)` batches) or an ART `DataGenerator`, for data that
        does not fit in memory. A `DataLoader`'s `DistributedSampler` gets `set_epoch(epoch)` before every epoch (a
        new order each epoch, as in PyTorch's DDP recipe). An ART `DataGenerator` needs its `size` (the epoch length).

        :param generator: The data source.
        :param nb_epochs: Total number of epochs.
        :param validation_data: Optional `(x_val, y_val)` arrays.
        :param scheduler: Optional LR scheduler, stepped after every epoch.
        :param verbose: Show progress bars.
        :param checkpoint: Optional file written after every epoch.
        :param resume_from: Optional checkpoint to continue from.
        :param kwargs: Ignored.
        :return: The history.
        :raises ValueError: for an ART `DataGenerator` without a `size`.
        """
        from art.data_generators import DataGenerator

        if isinstance(generator, DataGenerator):
            if not generator.size:
                raise ValueError(
                    "the DataGenerator has size=None, so an epoch has no length: give it `size` (the number of "
                    "training examples) or pass the DataLoader itself."
                )
            steps = -(-generator.size // generator.batch_size)

            def batches(epoch: int) -> Iterable[tuple[Any, Any]]:
                for _ in range(steps):
                    yield generator.get_batch()

        elif isinstance(generator, Iterable):
            steps = len(generator) if hasattr(generator, "__len__") else None
            samplers = [
                getattr(generator, "sampler", None),
                getattr(getattr(generator, "batch_sampler", None), "sampler", None),
            ]
            distributed = [s for s in samplers if isinstance(s, torch.utils.data.DistributedSampler)]

            def batches(epoch: int) -> Iterable[tuple[Any, Any]]:
                for sampler in distributed[:1]:
                    sampler.set_epoch(epoch)
                yield from generator

        else:
            raise TypeError("`generator` must be a torch DataLoader (iterable of (x, y)) or an ART DataGenerator.")
        self._batch_size = getattr(generator, "batch_size", None)
        return self._train(batches, steps, nb_epochs, validation_data, scheduler, verbose, checkpoint, resume_from)

    def _train(
        self,
        batches: Any,
        steps: int | None,
        nb_epochs: int,
        validation_data: tuple[np.ndarray, np.ndarray] | None,
        scheduler: Any,
        verbose: bool,
        checkpoint: str | Path | None,
        resume_from: str | Path | None,
        checkpoint_every: int | None = None,
    ) -> list[dict[str, float]]:
        """
        The epoch loop shared by `fit` and `fit_generator`.

        :param batches: Callable `epoch -> iterable of (x, y)` batches.
        :param steps: Batches per epoch, for the progress bar (None if unknown).
        :param nb_epochs: Total number of epochs.
        :param validation_data: Optional `(x_val, y_val)`.
        :param scheduler: Optional LR scheduler.
        :param verbose: Show progress bars.
        :param checkpoint: Optional checkpoint file.
        :param resume_from: Optional checkpoint to resume from.
        :param checkpoint_every: Write a mid-epoch checkpoint every K batches (batches must be reproducible per
               epoch, as `fit`'s are).
        :return: The history.
        """
        if isinstance(nb_epochs, bool) or not isinstance(nb_epochs, (int, np.integer)) or nb_epochs < 0:
            raise ValueError(f"`nb_epochs` must be an integer >= 0; got {nb_epochs!r}.")
        clf = self.classifier
        self._partial = None
        start_epoch = self._resume(resume_from, scheduler) if resume_from is not None else 0
        if resume_from is None:
            self.history = []
        partial, self._partial = self._partial, None
        if partial is not None and partial["epoch"] != start_epoch:
            partial = None
        verbose = verbose and is_main()
        clf.uses_channels_last()  # the memory format (measured unless set), before DDP wraps the model
        with self._distributed_model():
            for epoch in range(start_epoch, nb_epochs):
                began, cpu_began = time.perf_counter(), time.process_time()
                clf.model.train()
                noise_gen = self._generator(epoch, 1)
                total, seen, skip = 0.0, 0, 0
                if partial is not None and partial["epoch"] == epoch:  # continue inside the epoch
                    noise_gen.set_state(partial["noise_state"])
                    total, seen, skip = float(partial["total"]), int(partial["seen"]), int(partial["step"])
                    began -= float(partial["seconds"])
                    cpu_began -= float(partial.get("cpu_seconds", 0.0))
                bar = tqdm(
                    batches(epoch), total=steps, desc=f"epoch {epoch + 1}/{nb_epochs}", disable=not verbose, leave=False
                )
                for step, (xb, yb) in enumerate(bar):
                    if step < skip:
                        continue
                    xb = clf._check_x(xb, name="x batch").to(clf.device)
                    yb = torch.from_numpy(check_labels(yb, clf.nb_classes)).to(clf.device)
                    clf.optimizer.zero_grad(set_to_none=True)
                    loss = self.loss(xb, yb, noise_gen)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"the training loss became {loss.item()} in epoch {epoch + 1}.")
                    loss.backward()
                    clf.optimizer.step()
                    total += loss.item() * len(xb)
                    seen += len(xb)
                    bar.set_postfix(loss=f"{total / seen:.4f}")
                    if checkpoint is not None and checkpoint_every and (step + 1) % checkpoint_every == 0:
                        state = {
                            "epoch": epoch,
                            "step": step + 1,
                            "noise_state": noise_gen.get_state(),
                            "total": total,
                            "seen": seen,
                            "seconds": time.perf_counter() - began,
                            "cpu_seconds": time.process_time() - cpu_began,
                        }
                        if is_main():
                            self.save_checkpoint(checkpoint, epoch - 1, scheduler, partial=state)
                        barrier()
                bar.close()
                if scheduler is not None:
                    scheduler.step()
                record: dict[str, float] = {"epoch": epoch + 1, "loss": total / max(seen, 1)}
                if validation_data is not None:
                    record["val_clean_acc"], record["val_noisy_acc"] = self.evaluate(*validation_data, epoch=epoch)
                record["seconds"] = time.perf_counter() - began
                record["cpu_seconds"] = time.process_time() - cpu_began
                self.history.append(record)
                if verbose:
                    tqdm.write(
                        " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
                    )
                if checkpoint is not None:
                    if is_main():
                        self.save_checkpoint(checkpoint, epoch, scheduler)
                    barrier()  # every rank sees the checkpoint before going on
            return self.history

    @contextlib.contextmanager
    def _distributed_model(self) -> Iterator[None]:
        """
        Inside a `torch.distributed` process group, wrap the user's model (inside ART's wrapper) in
        `DistributedDataParallel` for the duration of training; a no-op otherwise.
        """
        wrapper = self.classifier._model  # ART's wrapper around the user's model
        if torch.distributed.is_initialized() and not isinstance(wrapper._model, DistributedDataParallel):
            wrapper._model = DistributedDataParallel(wrapper._model)
        try:
            yield
        finally:
            wrapper._model = unwrap(wrapper._model)
