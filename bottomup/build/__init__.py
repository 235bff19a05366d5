"""Configs -> objects: the one place that builds models, data sets, losses, optimisers, codecs and that turns a
checkpoint into a model.

* :data:`CONF_DIR` is where the Hydra configs are: ``bottomup/conf`` inside an installed wheel (package data), the
  repository's top-level ``conf/`` in a source checkout or an editable install. :func:`compose` composes one of
  its root configs (``train`` / ``eval``) without a Hydra run.
* Constructors of the library take plain typed arguments; this module reads the config groups
  (``conf/<group>/*.yaml``) and passes them on, instantiating ``_target_`` nodes with Hydra.
* :func:`load_model` is the one path from a checkpoint file to a model, always through the weights-only loader
  (``bottomup.engine.checkpoint.load_checkpoint``), with one precedence (see there).

The package by role: :mod:`~bottomup.build.config` (composing, schemas, settings of a config),
:mod:`~bottomup.build.datasets`, :mod:`~bottomup.build.networks`, :mod:`~bottomup.build.checkpoints` and
:mod:`~bottomup.build.runs` (the jobs of ``train`` / ``evaluate``), :mod:`~bottomup.build.pretrained` (pretrained models
by name: ``bottomup.models.zoo``); everything is importable from here.
"""

from __future__ import annotations

from bottomup.build.checkpoints import (
    ExperimentRequiredError,
    checkpoint_state_dict,
    describe_model,
    experiments_for,
    load_initial_weights,
    load_model,
    load_resume_checkpoint,
)
from bottomup.build.config import (
    CONF_DIR,
    LEGACY_TARGETS,
    as_config,
    compose,
    config_differences,
    config_test_group,
    data_layout,
    experiments,
    register_schemas,
    saved_config,
    settings_from_config,
    test_settings,
    trainer_settings,
)
from bottomup.build.datasets import (
    LAYOUT_KEYS,
    build_train_dataset,
    build_train_loader,
    check_data_layout,
    check_run_config,
    complete_data_layout,
    data_keys,
    prepare_data_root,
    val_set,
)
from bottomup.build.networks import (
    build_codec,
    build_loss,
    build_model,
    build_optimizer,
    estimator_from_config,
    evaluate_model,
)
from bottomup.build.pretrained import pretrained_weights, resolve_weights, zoo_command_overrides, zoo_test_overrides
from bottomup.build.runs import build_train_state, evaluation_config, training_job
from bottomup.models.weights import describe_weights, is_project_checkpoint, mismatch_summary

__all__ = [
    "CONF_DIR",
    "ExperimentRequiredError",
    "LAYOUT_KEYS",
    "LEGACY_TARGETS",
    "as_config",
    "build_codec",
    "build_loss",
    "build_model",
    "build_optimizer",
    "build_train_dataset",
    "build_train_loader",
    "build_train_state",
    "check_data_layout",
    "check_run_config",
    "checkpoint_state_dict",
    "complete_data_layout",
    "compose",
    "config_differences",
    "config_test_group",
    "data_keys",
    "data_layout",
    "describe_model",
    "describe_weights",
    "estimator_from_config",
    "evaluate_model",
    "evaluation_config",
    "experiments",
    "experiments_for",
    "is_project_checkpoint",
    "load_initial_weights",
    "load_model",
    "load_resume_checkpoint",
    "mismatch_summary",
    "prepare_data_root",
    "pretrained_weights",
    "register_schemas",
    "resolve_weights",
    "saved_config",
    "settings_from_config",
    "test_settings",
    "trainer_settings",
    "training_job",
    "val_set",
    "zoo_command_overrides",
    "zoo_test_overrides",
]

register_schemas()
