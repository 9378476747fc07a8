"""vitlab.reproduce.recipes: the shipped recipes load and every run's config is valid; bad recipes raise ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest

from vitlab.errors import ConfigError
from vitlab.reproduce.recipes import load_recipes, recipe_from_dict
from vitlab.reproduce.stats import DIRECTION, EQUIVALENCE, NONINFERIORITY

SHIPPED = {"cutmix", "label_smoothing", "mish", "data_size", "posenc", "transformer_label_smoothing", "legendre",
           "vit_transfer", "deit"}


def test_shipped_recipes_load_and_every_variant_config_is_valid() -> None:
    from vitlab.train.tasks.image_config import config_from_dict
    from vitlab.train.tasks.seq2seq import Seq2SeqConfig

    recipes = load_recipes()
    assert {r.name for r in recipes} == SHIPPED
    for recipe in recipes:
        assert recipe.claims, recipe.name
        for family, variant in recipe.arms():
            for quick in (False, True):
                cfg = recipe.config(variant, seed=1, quick=quick, family=family)
                if recipe.kind == "image":
                    assert config_from_dict(cfg).seed == 1
                    if recipe.pretrain:
                        assert config_from_dict(recipe.pretrain_config(quick)).init is None
                elif recipe.kind == "seq2seq":
                    assert Seq2SeqConfig.from_dict(cfg).seed == 1


def test_variant_overrides_merge_into_the_family_model_args() -> None:
    (smoothing,) = load_recipes(["label_smoothing"])
    vit = smoothing.config("smoothing", seed=0, quick=False, family="vit")
    assert vit["label_smoothing"] == 0.1 and vit["model_args"]["depth"] == smoothing.families["vit"]["model_args"]["depth"]
    assert vit["epochs"] == 100  # the family's own budget overrides the base's
    cnn = smoothing.config("smoothing", seed=0, quick=False, family="cnn")
    assert cnn["model"] == "resnet8" and cnn["model_args"] == {} and cnn["epochs"] == 60  # no ViT args leak in
    (mish,) = load_recipes(["mish"])
    assert mish.config("mish", seed=0, quick=False, family="cnn")["model_args"] == {"act": "mish"}
    assert "act" not in mish.families["cnn"]["model_args"]  # the recipe is not modified
    with pytest.raises(ConfigError, match="name one"):
        mish.config("mish", seed=0, quick=False)
    with pytest.raises(ConfigError, match="unknown family"):
        mish.config("mish", seed=0, quick=False, family="vitt")


def test_image_claims_run_on_mnist5k_on_the_families_the_protocol_keeps() -> None:
    # issue 15: the image claims on the 28×28 MNIST set; issue 29 (PROTOCOL.md): the ViT family of cutmix and mish
    # is declared untestable (or cut) before the run and not run, so those recipes run ResNet-8 only
    families = {"cutmix": {"cnn"}, "label_smoothing": {"vit", "cnn"}, "mish": {"cnn"}, "data_size": {"vit", "cnn"}}
    for recipe in load_recipes(list(families)):
        assert set(recipe.families) == families[recipe.name], recipe.name
        assert recipe.families["cnn"]["model"] == "resnet8" and recipe.base["dataset"] == "mnist5k"
        if "vit" not in recipe.families:
            assert any("(ViT)" in u.text for u in recipe.untestable), recipe.name
    (posenc,) = load_recipes(["posenc"])
    assert posenc.base["dataset"] == "mnist5k" and posenc.base["model_args"]["stem"] == "conv"


def test_quick_overrides_come_last_and_cap_every_variant() -> None:
    (size,) = load_recipes(["data_size"])
    full = size.config("frac10", seed=0, quick=False, family="cnn")
    quick = size.config("frac10", seed=0, quick=True, family="cnn")
    assert (full["epochs"], full["train_per_class"]) == (100, 35)
    assert (quick["epochs"], quick["train_per_class"], quick["dataset"]) == (2, 35, "digits")


def test_claims_are_evaluated_per_family_unless_they_name_arms() -> None:
    recipe = recipe_from_dict({
        "name": "x", "kind": "image", "families": {"vit": {"model": "v"}, "cnn": {"model": "c"}},
        "variants": {"a": {}, "b": {}}, "metrics": ["test_acc1"],
        "claims": [
            {"text": "b beats a", "metric": "test_acc1", "variant": "b", "against": "a", "expect": "higher"},
            {"text": "cnn beats vit on a", "metric": "test_acc1", "variant": "cnn/a", "against": "vit/a", "expect": "higher",
             "minus": ["cnn/b", "vit/b"]},
        ],
    })
    assert recipe.arm_names() == ["vit/a", "vit/b", "cnn/a", "cnn/b"]
    got = [(i, f, c.variant, c.against, c.minus) for i, f, c in recipe.evaluated_claims()]
    assert got == [(0, "vit", "vit/b", "vit/a", None), (0, "cnn", "cnn/b", "cnn/a", None),
                   (1, "", "cnn/a", "vit/a", ("cnn/b", "vit/b"))]


def test_unknown_recipe_name_suggests_the_nearest() -> None:
    with pytest.raises(ConfigError, match="did you mean 'cutmix'"):
        load_recipes(["cutmx"])


def test_missing_recipe_folder_names_the_fix(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match="--recipes"):
        load_recipes(recipe_dir=tmp_path / "nowhere")


@pytest.mark.parametrize(
    "change,message",
    [
        ({"kind": "video"}, "unknown recipe kind"),
        ({"metrics": ["test_acc2"]}, "did you mean 'test_acc1'"),
        ({"claims": [{"text": "t", "metric": "test_acc1", "variant": "z", "against": "a", "expect": "higher"}]}, "unknown variant"),
        ({"claims": [{"text": "t", "metric": "test_acc1", "variant": "a", "expect": "higher"}]}, "against"),
        ({"claims": [{"text": "t", "metric": "test_acc1", "variant": "a", "against": "a", "expect": "equal"}]}, "margin"),
        ({"claims": [{"text": "t", "metric": "test_acc1", "variant": "a", "against": "a", "expect": "bigger"}]}, "expectation"),
        ({"colour": 1}, "unknown recipe key"),
        ({"variants": {}}, "empty"),
        ({"kind": "seq2seq", "families": {"f": {}}}, "needs kind 'image'"),
        ({"families": {"f": 3}}, "mapping of base overrides"),
        ({"variants": {"a/b": {}}}, "may not contain '/'"),
        ({"families": {"f": {}}, "claims": [{"text": "t", "metric": "test_acc1", "variant": "f/a", "against": "a",
                                              "expect": "higher"}]}, "or none of them"),
        ({"families": {"f": {}}, "claims": [{"text": "t", "metric": "test_acc1", "variant": "g/a", "against": "f/a",
                                              "expect": "higher"}]}, "unknown variant"),
        ({"claims": [{"text": "t", "metric": "test_acc1", "variant": "f/a", "against": "f/a", "expect": "higher"}]},
         "no 'families'"),
        ({"claims": [{"text": "t", "metric": "test_acc1", "variant": "a", "against": "a", "expect": "higher",
                      "minus": ["a"]}]}, "list of two"),
        ({"claims": [{"text": "t", "metric": "test_acc1", "variant": "a", "against": "a", "expect": "equal", "margin": 1,
                      "minus": ["a", "a"]}]}, "needs expect"),
    ],
)
def test_bad_recipes_raise_config_errors(change: dict, message: str) -> None:
    data = {"name": "x", "kind": "image", "variants": {"a": {}}, "metrics": ["test_acc1"], **change}
    with pytest.raises(ConfigError, match=message):
        recipe_from_dict(data)


def _claim(**extra):
    return {"text": "t", "metric": "test_acc1", "variant": "b", "against": "a", **extra}


@pytest.mark.parametrize(
    "change,message",
    [
        ({"claims": [_claim(expect="higher", test="superiority")]}, "unknown claim test 'superiority'"),
        ({"claims": [_claim(expect="higher", test="noninferiority")]}, "test 'noninferiority' needs a positive 'margin'"),
        ({"claims": [_claim(expect="higher", test="noninferiority", margin=-0.5)]}, "needs a positive 'margin'"),
        ({"claims": [_claim(expect="equal", test="noninferiority", margin=0.5)]}, "needs expect 'higher' or 'lower'"),
        ({"claims": [_claim(expect="higher", test="equivalence", margin=1.0)]}, "takes expect 'equal'"),
        ({"claims": [_claim(test="equivalence")]}, "needs a positive 'margin'"),
        ({"claims": [_claim(expect="match", test="direction", margin=1e-4)]}, "deterministic check"),
        ({"claims": [_claim(expect="higher", tests="direction")]}, "unknown claim key 'tests'; did you mean 'test'"),
        ({"claims": [_claim(expect="higher", margin=True)]}, "must be > 0"),
        ({"alpha": 0.5}, "'alpha' must be a number in \\(0, 0.5\\)"),
        ({"alpha": "0.05"}, "'alpha' must be a number"),
        ({"regime": [1]}, "'regime' must map each condition's name"),
        ({"regime": {"fits": {"text": "t", "arms": ["a"], "metric": "train_acc1"}}}, "exactly one of 'min' or 'max'"),
        ({"regime": {"fits": {"text": "t", "arms": ["a"], "metric": "train_acc1", "min": 1, "max": 2}}},
         "exactly one of 'min' or 'max'"),
        ({"regime": {"fits": {"text": "t", "arms": ["a"], "metric": "train_acc1", "min": "high"}}},
         "exactly one of 'min' or 'max'"),
        ({"regime": {"fits": {"text": "t", "arms": ["z"], "metric": "train_acc1", "min": 99}}}, "unknown variant 'z'"),
        ({"regime": {"fits": {"text": "t", "arms": "all", "metric": "train_acc1", "min": 99}}}, "or 'claim'"),
        ({"regime": {"fits": {"text": "t", "arms": "claim", "metric": "train_acc", "min": 99}}},
         "did you mean 'train_acc1'"),
        ({"regime": {"fits": {"text": "t", "arms": "claim", "metric": "train_acc1", "mni": 99}}}, "unknown regime key"),
        ({"regime": {"fits": {"arms": "claim", "metric": "train_acc1", "min": 99}}}, "missing key 'text'"),
        ({"claims": [_claim(expect="higher", regime=["fit"])]}, "unknown regime condition 'fit'"),
        ({"claims": [_claim(expect="higher", regime="fits")]}, "'regime' must be a list of condition names"),
        ({"untestable": {"text": "t"}}, "'untestable' must be a list"),
        ({"untestable": [{"text": "u", "reason": "r", "mde": 1.0, "paper_effect": 0.2}]}, "missing key 'seeds_needed'"),
        ({"untestable": [{"text": "u", "reason": "r", "mde": 0, "paper_effect": 0.2, "seeds_needed": 9}]},
         "'mde' must be a number > 0"),
        ({"untestable": [{"text": "u", "reason": "r", "mde": 1.0, "paper_effect": 0.2, "seeds_needed": 1}]},
         "'seeds_needed' must be an integer >= 2"),
        ({"untestable": [{"text": "u", "reason": "r", "mde": 1.0, "paper_effect": 0.2, "seeds_needed": 9, "why": 1}]},
         "unknown untestable key 'why'"),
        ({"claims": [_claim(expect="higher")],
          "untestable": [{"text": "t", "reason": "r", "mde": 1.0, "paper_effect": 0.2, "seeds_needed": 9}]},
         "also a claim that runs"),
    ],
)
def test_bad_protocol_keys_raise_one_line_config_errors_naming_the_key(change: dict, message: str) -> None:
    """Issue 29's schema (test, margin, alpha, regime, untestable): each mistake is refused in one line."""
    data = {"name": "x", "kind": "image", "variants": {"a": {}, "b": {}}, "metrics": ["test_acc1"], **change}
    with pytest.raises(ConfigError, match=message) as caught:
        recipe_from_dict(data)
    assert "\n" not in str(caught.value)


def test_claim_tests_follow_expect_unless_named() -> None:
    """direction for higher/lower, equivalence for equal (expect may be left out then), non-inferiority when named."""
    recipe = recipe_from_dict({
        "name": "x", "kind": "image", "variants": {"a": {}, "b": {}}, "metrics": ["test_acc1"],
        "claims": [_claim(expect="higher"), _claim(expect="lower", margin=2.0), _claim(expect="equal", margin=1.0),
                   _claim(test="equivalence", margin=1.0), _claim(expect="higher", test="noninferiority", margin=0.5),
                   _claim(expect="lower", test="non-inferiority", margin=0.5)],
    })
    got = [(c.test, c.expect, c.margin, c.expected_sign) for c in recipe.claims]
    assert got == [(DIRECTION, "higher", None, 1), (DIRECTION, "lower", 2.0, -1), (EQUIVALENCE, "equal", 1.0, 1),
                   (EQUIVALENCE, "equal", 1.0, 1), (NONINFERIORITY, "higher", 0.5, 1),
                   (NONINFERIORITY, "lower", 0.5, -1)]
    assert recipe.alpha == 0.05 and recipe.regime == {} and recipe.untestable == []


def test_regime_conditions_resolve_their_arms_within_the_claims_family() -> None:
    recipe = recipe_from_dict({
        "name": "x", "kind": "image", "families": {"vit": {"model": "v"}, "cnn": {"model": "c"}},
        "variants": {"a": {}, "b": {}, "c": {}}, "metrics": ["test_acc1"], "alpha": 0.01,
        "regime": {
            "overfits": {"text": "a overfits", "arms": ["a"], "metric": "train_val_gap", "min": 2.0},
            "fits": {"text": "all fit", "arms": "claim", "metric": "train_acc1", "min": 99},
            "cool": {"text": "vit/c is cool", "arms": ["vit/c"], "metric": "temperature", "max": 1.5},
        },
        "claims": [_claim(expect="higher", regime=["overfits", "fits"]),
                   {"text": "x", "metric": "test_acc1", "variant": "cnn/a", "against": "vit/a", "minus": ["cnn/b", "vit/b"],
                    "expect": "higher", "regime": ["overfits", "fits", "cool"]}],
        "untestable": [{"text": "u", "reason": "too small", "mde": 1.2, "paper_effect": 0.16, "seeds_needed": 60}],
    })
    assert recipe.alpha == 0.01 and recipe.untestable[0].seeds_needed == 60
    overfits, fits, cool = (recipe.regime[k] for k in ("overfits", "fits", "cool"))
    assert (overfits.bound, overfits.threshold, fits.arms, cool.bound) == ("min", 2.0, None, "max")
    assert overfits.holds(2.0) and not overfits.holds(1.99) and cool.holds(1.5) and not cool.holds(1.6)
    (_, fam, within), _, (_, _, across) = recipe.evaluated_claims()
    assert fam == "vit" and within.regime == ("overfits", "fits")
    assert recipe.condition_arms(overfits, within, "vit") == ["vit/a"]
    assert recipe.condition_arms(fits, within, "vit") == ["vit/b", "vit/a"]
    assert recipe.condition_arms(overfits, across, "") == ["vit/a", "cnn/a"]  # a plain name: every family's arm
    assert recipe.condition_arms(fits, across, "") == ["cnn/a", "vit/a", "cnn/b", "vit/b"]
    assert recipe.condition_arms(cool, across, "") == ["vit/c"]


def test_shipped_recipes_state_their_tests_and_regimes() -> None:
    """Issue 29: Mish vs Swish as non-inferiority at 0.5 pp, "about equal" as TOST, the transfer claim once, and the
    regime conditions each claim needs."""
    by_name = {r.name: r for r in load_recipes()}
    mish = {c.text: c for c in by_name["mish"].claims}
    assert (mish["Mish is at least as good as Swish"].test, mish["Mish is at least as good as Swish"].margin) == (
        NONINFERIORITY, 0.5)
    posenc = by_name["posenc"]
    assert [c.test for c in posenc.claims] == [DIRECTION, DIRECTION, EQUIVALENCE]
    assert all(c.regime == ("fits",) for c in posenc.claims) and posenc.regime["fits"].arms is None
    transfer = by_name["vit_transfer"]
    assert len(transfer.claims) == 1 and transfer.claims[0].margin is None and transfer.claims[0].regime == ("fits",)
    assert transfer.regime["fits"].arms == ("scratch",) and transfer.regime["fits"].threshold == 95.0
    cutmix = by_name["cutmix"]
    assert [c.regime for c in cutmix.claims] == [("overfits",)] * 3
    assert cutmix.base["mix_prob"] == 0.5 and cutmix.seeds == 8  # the CutMix paper's CIFAR setting; PROTOCOL.md
    assert cutmix.regime["overfits"].arms == ("baseline",) and cutmix.regime["overfits"].metric == "train_val_gap"
    smoothing = by_name["label_smoothing"]
    assert [(c.test, c.regime) for c in smoothing.claims] == [(DIRECTION, ("overconfident",)), (EQUIVALENCE, ())]
    assert smoothing.regime["overconfident"].metric == "temperature" and smoothing.regime["overconfident"].threshold == 1.0
    assert all(r.alpha == 0.05 for r in by_name.values())
    # every recipe pins its precision (issue 29: results must not depend on a machine's precision probe)
    for recipe in by_name.values():
        if recipe.kind != "legendre":
            assert recipe.base["amp"] == "off", recipe.name
    assert by_name["transformer_label_smoothing"].base["num_test"] == 5000


def test_the_protocol_note_names_every_untestable_claim_and_ships_with_the_recipes() -> None:
    """Issue 29: PROTOCOL.md (committed before the run) lists each claim declared untestable, and the wheel carries it
    (package data), so an installed protocol hashes like the checkout's."""
    from vitlab.reproduce.protocol import PROTOCOL_NOTE

    folder = Path(load_recipes(["cutmix"])[0].path).parent
    note = (folder / PROTOCOL_NOTE).read_text(encoding="utf-8")
    for recipe in load_recipes():
        for item in recipe.untestable:
            assert str(item.seeds_needed) in note and f"{item.mde:.3g}" in note, (recipe.name, item.text)
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    assert "reproduce/PROTOCOL.md" in pyproject.read_text(encoding="utf-8")


def test_every_image_arm_builds_its_model_and_gives_logits_for_its_data() -> None:
    # reference: the data's image shape (mnist5k 1×28×28; the quick digits 1×8×8) and 10 classes
    import torch

    from vitlab.train.tasks.image import build_model
    from vitlab.train.tasks.image_config import config_from_dict

    shapes = {"mnist5k": (1, 28, 28), "digits": (1, 8, 8)}
    for recipe in load_recipes():
        if recipe.kind != "image":
            continue
        for family, variant in recipe.arms():
            for quick in (False, True):
                cfg = config_from_dict(recipe.config(variant, seed=0, quick=quick, family=family))
                if cfg.init is not None:  # starts from a pre-training run (tested in test_reproduce_end_to_end.py)
                    continue
                model = build_model(cfg, shapes[cfg.dataset], 10).eval()
                with torch.no_grad():
                    assert model(torch.zeros(2, *shapes[cfg.dataset])).shape == (2, 10), (recipe.name, family, variant)


# ------------------------------------------------------------------------------------------ teacher arms (DeiT)
def _taught(student: dict, **extra) -> dict:
    """A recipe of a teacher arm, a plain arm and ``student`` (its overrides)."""
    return {"name": "x", "kind": "image", "metrics": ["test_acc1"],
            "variants": {"teacher": {"model": "resnet8"}, "plain": {}, "student": student}, **extra}


def test_a_teacher_arm_is_read_within_the_students_family() -> None:
    recipe = recipe_from_dict(_taught({"distill": {"teacher": "teacher", "kind": "hard"}}))
    assert [recipe.teacher_of(v) for v in ("teacher", "plain", "student")] == [None, None, "teacher"]
    families = recipe_from_dict({"name": "f", "kind": "image", "metrics": ["test_acc1"],
                                 "families": {"vit": {"model": "v"}, "cnn": {"model": "c"}},
                                 "variants": {"t": {}, "s": {"distill": {"teacher": "t"}},
                                              "x": {"distill": {"teacher": "cnn/t"}}}})
    assert families.teacher_of("s", family="vit") == "vit/t" and families.teacher_of("x", family="vit") == "cnn/t"


@pytest.mark.parametrize(
    "change,message",
    [
        ({"variants": {"teacher": {}, "student": {"distill": {"teacher": "teachr"}}}},
         "arm 'student': unknown teacher arm 'teachr'; did you mean 'teacher'"),
        ({"variants": {"teacher": {}, "student": {"distill": {"teacher": "runs/mnist5k_resnet"}}}},
         "unknown teacher arm 'runs/mnist5k_resnet'"),  # a folder: in a recipe, the teacher is one of its arms
        ({"variants": {"teacher": {}, "student": {"distill": {"teacher": "student"}}}}, "is its own teacher"),
        ({"variants": {"teacher": {}, "mid": {"distill": {"teacher": "teacher"}},
                       "student": {"distill": {"teacher": "mid"}}}},
         "arm 'student': its teacher arm 'mid' is itself distilled"),
        ({"base": {"distill": {"teacher": "teacher"}}, "variants": {"teacher": {}, "student": {}}},
         "arm 'teacher' is its own teacher"),
        ({"variants": {"teacher": {}, "student": {"distill": "teacher"}}}, "'distill' must be a mapping"),
        ({"variants": {"teacher": {}, "student": {"distill": {"kind": "hard"}}}}, "'distill' must be a mapping"),
        ({"variants": {"teacher": {}, "student": {}}, "quick": {"distill": {"teacher": "nobody"}}},
         "arm 'teacher' with --quick: unknown teacher arm 'nobody'"),
        ({"kind": "seq2seq", "variants": {"teacher": {}, "student": {"distill": {"teacher": "teacher"}}}},
         "in an image recipe"),
        ({"pretrain": {"config": {"distill": {"teacher": "teacher"}}}, "variants": {"teacher": {}, "student": {}}},
         "the shared pre-training cannot be distilled"),
        ({"families": {"vit": {}, "cnn": {}}, "variants": {"t": {}, "s": {"distill": {"teacher": "gpu/t"}}}},
         "arm 'vit/s': unknown teacher arm 'gpu/t'"),
    ],
)
def test_bad_teacher_arms_are_refused_in_one_line(change: dict, message: str) -> None:
    data = {"name": "x", "kind": "image", "metrics": ["test_acc1"], **change}
    with pytest.raises(ConfigError, match=message) as caught:
        recipe_from_dict(data)
    assert "\n" not in str(caught.value)


def test_the_shipped_deit_recipe() -> None:
    """Issue 29's DeiT claim: the student against the plain ViT, paired by seed; the claim against its teacher is
    declared untestable before the run (PROTOCOL.md), and the teacher arm still runs because it teaches."""
    (deit,) = load_recipes(["deit"])
    assert deit.arm_names() == ["teacher", "vit", "deit"] and deit.seeds == 5 and deit.base["amp"] == "off"
    assert deit.teacher_of("deit") == "teacher" and deit.teacher_of("deit", quick=True) == "teacher"
    assert [(c.variant, c.against, c.metric, c.expect, c.test) for c in deit.claims] == [
        ("deit", "vit", "test_acc1", "higher", DIRECTION)]
    assert [(u.text, u.seeds_needed) for u in deit.untestable] == [("The distilled ViT beats its CNN teacher", 25)]
    assert all(c.regime == ("fits",) for c in deit.claims) and deit.regime["fits"].arms is None  # the arms compared
    assert (deit.regime["fits"].metric, deit.regime["fits"].threshold) == ("train_acc1", 95.0)
    student, plain, teacher = (deit.config(v, seed=0, quick=False) for v in ("deit", "vit", "teacher"))
    assert student["distill"] == {"teacher": "teacher", "kind": "hard", "alpha": 0.5, "tau": 1.0}
    assert (student["model"], plain["model"], teacher["model"]) == ("deit_mnist_conv4_28", "vit_mnist_conv4_28",
                                                                    "resnet8")
    # the student is the plain ViT's recipe plus the distillation (mnist5k_deit.yaml vs mnist5k_vit.yaml)
    assert {k: v for k, v in student.items() if k not in ("model", "distill")} == {
        k: v for k, v in plain.items() if k != "model"}
    assert all(c["train_per_class"] == 105 for c in (student, plain, teacher))
    quick = deit.config("deit", seed=0, quick=True)
    assert (quick["dataset"], quick["epochs"]) == ("digits", 2)
