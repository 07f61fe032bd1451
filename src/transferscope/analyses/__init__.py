"""Analyses of what is transferred: pure functions over models and data, each returning a frozen result.

Each analysis of two models has one uniform call, ``kernel(model_a, model_b, domain, *, seed, device, ...)``
(:mod:`.kernels`); the one registry of the analyses (:mod:`transferscope.study.registry`) holds each as its
kernel, and the study's adapters and the contract tests call that same object. For criticality, ``model_b`` is
theta^0 (P for a P-T model, RI for an RI-T model).

What each reads of ``domain`` (SCIENCE.md): mistakes, CKA and the barrier the test split (the barrier's
BatchNorm statistics, if any, the training split); criticality, flatness, gradient stability and the principal
gradient component the training split (the training loss); the transferability scores the target's training
images and labels. Multi-label targets (labels (N, L)) are handled by each analysis: the loss is the per-label
BCE, the error 1 - mean AUC, mistakes are per (example, label) decision at ``threshold`` (option of
``mistakes``), LEEP and H-score are not applicable and LogME is taken per label. ``seed`` draws every sample an
analysis takes. Options without a defensible default are
required: ``lr`` of ``stability`` (eta, the run's learning rate), and ``source_x`` of ``scores`` for its MMD
(the images of the SOURCE domain; without them the MMD is NaN with a note, as ``domain`` is the target).
"""
