"""vitlab.reproduce.runkey: one key for the configs that train the same run, different keys otherwise.

References: the config classes' defaults (ImageConfig, Seq2SeqConfig, fit_legendre_p3's signature), the models'
constructor defaults (ResNet's ``act="relu"``, the ViT's ``pos_embed="learn"``), and SHA-256 of the canonical JSON
computed here by hand.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from vitlab.reproduce.runkey import DROPPED_KEYS, normalised_config, run_key

BASE = {"amp": "off", "epochs": 5, "lr": 0.01, "seed": 0}


def test_the_key_is_the_sha256_of_the_canonical_json_of_kind_seed_and_config() -> None:
    config = normalised_config("legendre", {"steps": 10})
    assert config == {"steps": 10, "points": 2000, "learning_rate": 5e-6}  # log_every and verbose dropped
    text = '{"config":{"learning_rate":5e-06,"points":2000,"steps":10},"kind":"legendre","seed":0}'
    assert json.dumps({"kind": "legendre", "seed": 0, "config": config}, sort_keys=True, separators=(",", ":")) == text
    assert run_key("legendre", 0, {"steps": 10}) == hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("same", [
    {"label_smoothing": 0.1, "train_per_class": 0, "mix_prob": 1.0},  # ImageConfig's defaults, written out
    {"lr": 0.010},  # the same float however it is written
    {"amp": False},  # amp's alias of off
    {"checkpoint_every": 7, "checkpoint_steps": 3, "log_every": 1, "eval_every": 2},  # cannot change the result
])
def test_keys_absent_at_their_default_or_without_effect_give_one_key(same: dict) -> None:
    assert run_key("image", 0, {**BASE, **same}) == run_key("image", 0, BASE)


@pytest.mark.parametrize("other", [{"lr": 0.02}, {"label_smoothing": 0.0}, {"threads": 2}, {"seed": 1},
                                   {"model_args": {"act": "mish"}}, {"dataset": "mnist5k"}])
def test_keys_that_can_change_the_result_change_the_key(other: dict) -> None:
    assert run_key("image", 0, {**BASE, **other}) != run_key("image", 0, BASE)


def test_the_seed_and_the_kind_are_part_of_the_key() -> None:
    assert run_key("image", 1, BASE) != run_key("image", 0, BASE)
    assert run_key("seq2seq", 0, {"seed": 0}) != run_key("image", 0, {"seed": 0})


def test_eval_every_is_kept_for_seq2seq_where_it_is_the_epoch() -> None:
    assert "eval_every" in DROPPED_KEYS["image"] and "eval_every" not in DROPPED_KEYS["seq2seq"]
    assert run_key("seq2seq", 0, {"eval_every": 100}) != run_key("seq2seq", 0, {"eval_every": 200})
    assert run_key("seq2seq", 0, {"log_every": 5, "dropout": 0.1}) == run_key("seq2seq", 0, {})


def test_model_args_at_the_models_defaults_give_one_key() -> None:
    resnet = {**BASE, "model": "resnet8", "model_args": {}}
    assert run_key("image", 0, {**resnet, "model_args": {"act": "relu"}}) == run_key("image", 0, resnet)
    assert run_key("image", 0, {**resnet, "model_args": {"act": "silu"}}) != run_key("image", 0, resnet)
    vit = {**BASE, "model": "vit_tiny_patch4_32", "model_args": {"depth": 2, "embed_dim": 32, "num_heads": 2}}
    learned = {**vit, "model_args": {**vit["model_args"], "pos_embed": "learn"}}
    sincos = {**vit, "model_args": {**vit["model_args"], "pos_embed": "sincos"}}
    assert run_key("image", 0, learned) == run_key("image", 0, vit) != run_key("image", 0, sincos)
    assert "img_size" not in normalised_config("image", vit)["model_args"]  # the data decides it
    # the same arguments on another model are another run
    assert run_key("image", 0, {**resnet, "model": "resnet20"}) != run_key("image", 0, resnet)


def test_building_the_model_to_read_its_defaults_leaves_the_random_stream_alone() -> None:
    before = torch.get_rng_state()
    run_key("image", 0, {**BASE, "model": "resnet8", "model_args": {"act": "gelu"}})
    assert torch.equal(torch.get_rng_state(), before)


def test_a_fine_tuning_run_is_keyed_by_what_it_starts_from_not_its_path() -> None:
    tune = {**BASE, "init": "/out/runs/a/pretrain/seed0"}
    moved = {**BASE, "init": "/out/runs/b/pretrain/seed0"}
    assert run_key("image", 0, tune, {tune["init"]: "K1"}) == run_key("image", 0, moved, {moved["init"]: "K1"})
    assert run_key("image", 0, tune, {tune["init"]: "K1"}) != run_key("image", 0, tune, {tune["init"]: "K2"})
    assert normalised_config("image", tune)["init"] == tune["init"]  # not a run of the plan: the path as written


def test_a_config_its_class_refuses_is_keyed_as_written() -> None:
    assert normalised_config("image", {"epochs": 0, "lr": 0.01}) == {"epochs": 0, "lr": 0.01}
    assert run_key("image", 0, {"epochs": 0}) != run_key("image", 0, {"epochs": 1})
    assert normalised_config("seq2seq", {"dataset": "nope", "log_every": 3}) == {"dataset": "nope"}


def test_a_student_is_keyed_by_its_teachers_key_not_its_path() -> None:
    """Reference: the rule for ``init`` above, applied to ``distill.teacher``; DistillSettings' defaults (hard, λ = 0.5,
    τ = 1) filled in like any other default."""
    student = {**BASE, "distill": {"teacher": "/out/runs/deit/teacher/seed0"}}
    moved = {**BASE, "distill": {"teacher": "/out/runs/label_smoothing/cnn/smoothing/seed0"}}
    keys = {student["distill"]["teacher"]: "K1", moved["distill"]["teacher"]: "K1"}
    assert run_key("image", 0, student, keys) == run_key("image", 0, moved, keys)
    assert run_key("image", 0, student, keys) != run_key("image", 0, student, {student["distill"]["teacher"]: "K2"})
    spelled = {**BASE, "distill": {"teacher": student["distill"]["teacher"], "kind": "hard", "alpha": 1 / 2, "tau": 1}}
    assert run_key("image", 0, spelled, keys) == run_key("image", 0, student, keys)
    soft = {**BASE, "distill": {**spelled["distill"], "kind": "soft"}}
    assert run_key("image", 0, soft, keys) != run_key("image", 0, student, keys)
    assert normalised_config("image", student, keys)["distill"] == {"teacher": {"run": "K1"}, "kind": "hard",
                                                                     "alpha": 0.5, "tau": 1.0}
    assert normalised_config("image", student)["distill"]["teacher"] == student["distill"]["teacher"]  # not of the plan
