"""Fine-tuning the ICH classifier from a reader's slice labels ("Retrain classifier from
my labels").

The reader's labels reach this module only through
``lesion_core.ich.reader_labels.weak_scans_from_store(store)``: one
:class:`~.data.WeakScan` per reviewed CT, slice-level rows for the slices the reader
marked haemorrhage / no haemorrhage (and subtypes), everything else unknown. The
classifier is initialised from the model and trained for a few steps at a low learning
rate on those labels (whole scans, so that a labelled slice is never cropped away), which
corrects its mistakes without forgetting the rest. **The pseudo-masks and the segmenter
are kept as they are** (the segmenter learnt from the pseudo-masks of the training
cohort; a re-derivation would need that cohort), and so are the thresholds. The result is
a new version of the same model (``1.0`` -> ``1.1``), which saves itself.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from pathlib import Path

from ..errors import FeedbackStoreError
from ..progress import Progress, ensure_progress
from ..training import OptimConfig
from .config import ClassifierTrainConfig
from .data import WeakLabelDataset
from .model import ICHModel
from .train import load_samples, stage_folder, stage_report, train_classifier

#: Fine-tuning defaults: few steps, a tenth of the training learning rate, whole scans,
#: and no acquisition randomization: the reader's labels are about these very scans, and
#: a few dozen steps are too few for randomization to add robustness (the model's
#: training already had it).
FINETUNE = ClassifierTrainConfig(max_slices=None, augment=None,
                                 optim=OptimConfig(steps=40, lr=1e-4, batch_size=2,
                                                   deterministic=True))


def _labelled(scan) -> bool:
    return any(v is not None and not math.isnan(v) for v in scan.labels) or any(
        v is not None and not math.isnan(v) for _, labels in scan.slices for v in labels)


def finetune_ich(model: ICHModel, store: str | Path, optim: OptimConfig | None = None,
                 progress: Progress | None = None, checkpoint_dir: str | Path | None = None
                 ) -> tuple[ICHModel, dict]:
    """Fine-tune ``model``'s classifier on the slice labels in ``store``.

    ``optim``: the optimisation settings (default ``FINETUNE.optim``; the batch is cut to
    the number of labelled scans). ``checkpoint_dir``: resumable, in its ``classifier``
    subfolder. Returns ``(model, report)``: the unsaved model (same name, the next
    version; segmenter and thresholds kept) and the fine-tune's report. Raises
    :class:`FeedbackStoreError` when the store holds no usable label (nothing would change).
    """
    from .reader_labels import weak_scans_from_store  # written by the review module

    progress = ensure_progress(progress)
    if model.classifier is None:
        raise FeedbackStoreError("this model has no slice classifier to fine-tune",
                                 "choose an ICHWeakSeg model (--init)", source=store)
    scans = [s for s in weak_scans_from_store(store) if _labelled(s)]
    if not scans:
        raise FeedbackStoreError("the feedback store holds no ICH slice labels",
                                 "mark slices haemorrhage / no haemorrhage in the ICH "
                                 "module first", source=store)
    samples = load_samples(WeakLabelDataset(scans, model.config), model.config,
                           progress.sub(0.0, 0.3))
    optim = optim or FINETUNE.optim
    train_config = replace(FINETUNE, optim=replace(optim, batch_size=min(optim.batch_size,
                                                                         len(samples))))
    classifier, result = train_classifier(samples, model.config, train_config,
                                          progress.sub(0.3, 0.95),
                                          net=copy.deepcopy(model.classifier),
                                          checkpoint_dir=stage_folder(checkpoint_dir,
                                                                      "classifier"))
    report = {"supervision": "reader's slice labels (feedback store); segmenter and "
                             "thresholds kept",
              "scans": len(samples), "labelled_slices": sum(len(s.slices) for s in scans),
              "classifier": stage_report(train_config, result),
              "finetuned_from": f"{model.model_id} {model.version}", "store": str(store),
              "base_training": model.metadata.training if model.metadata else {}}
    tuned = ICHModel(None, classifier, model.segmenter, model.config, model.thresholds,
                     model.combination, model.current_card().fine_tuned(report))
    progress.update(1.0, "fine-tuned")
    return tuned, report
