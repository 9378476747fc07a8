"""The ``vitlab`` command.

Each subcommand is a function ``cmd_<name>(args) -> int`` and a parser built in :func:`build_parser`.
Errors a person can cause are raised as :class:`vitlab.errors.VitlabError` (or ``ValueError``,
``FileNotFoundError``, ...); :func:`main` prints them as one line on stderr and returns exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import fnmatch
import json
import os
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vitlab import __version__
from vitlab.errors import ConfigError
from vitlab.models import create_model, list_models
from vitlab.models.vit import VisionTransformer, count_parameters
from vitlab.recipes import DEFAULT_RECIPE, describe, list_recipes, recipe_dir, recipe_path

if TYPE_CHECKING:  # for annotations only
    from vitlab.data.base import ImageDataset
    from vitlab.deploy.predict import Predictor
    from vitlab.train.distributed import DistContext
    from vitlab.train.tasks.image import Evaluation
    from vitlab.train.tasks.image_config import ImageConfig

# The rest of vitlab is imported inside each command (the train, data, viz and reproduce layers pull in
# matplotlib, scipy, PIL and the data pipeline): `vitlab --help` then costs what `import vitlab` costs.

DEFAULT_RUNS = "runs"


def _default_run_dir(*parts: str) -> Path:
    """``runs/<part>-<part>-<YYYYmmdd-HHMMSS>``: a new folder name for each run."""

    return Path(DEFAULT_RUNS) / "-".join([*parts, time.strftime("%Y%m%d-%H%M%S")])


def cmd_train(args: argparse.Namespace) -> int:
    """Train the recipe (default: a ViT on the embedded 28×28 MNIST set) into a run folder, or continue one with
    --resume."""

    from vitlab.train.engine import train  # per command, see the note on imports above
    from vitlab.train.tasks import config_from_raw, resolve_config, task_name

    recipe = _recipe_file(args.config, args.set or [])
    if args.list_keys:
        return _list_keys(resolve_config(recipe, args.set or []))
    if args.resume:
        if args.auto_resume:
            raise ValueError("--resume and --auto-resume exclude each other; use --auto-resume with --out DIR")
        if args.config or args.set:
            raise ValueError("--resume continues a run with its saved config; drop --config/--set")
        run_dir = Path(args.resume)
        train(None, run_dir, resume=True, quiet=args.quiet)
    else:
        cfg = config_from_raw(resolve_config(recipe, args.set or []), str(recipe) if recipe else "config")
        if args.auto_resume and not args.out:
            raise ValueError("--auto-resume needs --out DIR: the folder to continue after a restart")
        name = (cfg.dataset, cfg.model) if task_name(cfg) == "image" else (task_name(cfg), cfg.dataset)
        run_dir = Path(args.out) if args.out else _default_run_dir(*name)
        train(cfg, run_dir, quiet=args.quiet, auto_resume=args.auto_resume)
    if os.environ.get("RANK", "0") == "0":
        print(f"run folder: {run_dir}")
    return 0


def _recipe_file(config: str | None, overrides: list[str]) -> Path | None:
    """The YAML behind ``--config`` (a shipped recipe name or a file); without one, the default recipe
    (:data:`vitlab.recipes.DEFAULT_RECIPE`, an image recipe), or no file when ``--set task=...`` asks for
    another task (its dataclass defaults then apply)."""

    if config:
        return recipe_path(config)
    other_task = any(o.replace(" ", "").startswith("task=") and o.replace(" ", "") != "task=image" for o in overrides)
    return None if other_task else recipe_path(DEFAULT_RECIPE)


def _list_keys(raw: dict) -> int:
    """Print the config keys of the recipe's task with their values (defaults, or the recipe's)."""

    from vitlab.train.tasks import config_class, config_from_raw  # per command, see the note on imports above

    task = str(raw.get("task", "image"))
    cfg = config_from_raw(raw) if raw else config_class(task)()
    print(f"config keys of task: {task} (set with --set KEY=VALUE or in a --config YAML file)")
    for key, value in cfg.to_dict().items():
        print(f"  {key:18s} {value!r}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a trained run on a split of its dataset (or of another dataset with the same shapes)."""


    from vitlab.train.distributed import DistContext  # per command, see the note on imports above
    from vitlab.train.tasks.image import evaluate, load_run, run_amp, run_transform
    from vitlab.train.tasks.image_stream import uses_stream

    model, cfg, info = load_run(args.run_dir, command="eval")
    dataset = args.data or cfg.dataset
    root = args.data_root if args.data_root is not None else (cfg.data_root if dataset == cfg.dataset else None)
    context = DistContext()
    threads = torch.get_num_threads()
    try:  # the run's precision and thread count, so that the run's own final evaluation is reproduced exactly
        torch.set_num_threads(cfg.threads or threads)
        amp = run_amp(info, context.device)
        target = dataclasses.replace(cfg, dataset=dataset, data_root=root)
        if uses_stream(target):  # a folder at img_size, or shards: the streaming pipeline the run trained with
            result, count = _evaluate_streamed(model, target, info, args.split, context, amp)
        else:
            data = _in_memory_split(dataset, root, cfg, info, args.split)
            result, count = evaluate(model, data, run_transform(cfg, info), context, amp=amp), len(data)
    finally:
        torch.set_num_threads(threads)
    metrics = {"dataset": dataset, "split": args.split, "n": count, "loss": result.loss,
               "acc1": result.acc1, "acc5": result.acc5, "ece": result.ece}
    if result.acc5 != result.acc5:  # NaN: 5 classes or fewer, where top-5 is always 1
        del metrics["acc5"]
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        for key, value in metrics.items():
            print(f"{key:8s} {value:.4f}" if isinstance(value, float) else f"{key:8s} {value}")
    return 0


def _in_memory_split(dataset: str, root: str | None, cfg: ImageConfig, info: dict, split: str) -> ImageDataset:
    """Split ``split`` of ``dataset`` held in memory, checked against the run's image shape and classes."""
    from vitlab.data.registry import load_splits  # per command, see the note on imports above

    splits = load_splits(dataset, root, val_fraction=cfg.val_fraction, seed=0)
    if split not in splits:
        raise ValueError(f"unknown split '{split}'; choose one of {sorted(splits)}")
    data = splits[split]
    if list(data.image_shape) != list(info["image_shape"]):
        raise ValueError(
            f"{dataset} images are {tuple(data.image_shape)} "
            f"but the model expects {tuple(info['image_shape'])} (C, H, W)"
        )
    if data.num_classes != len(info["classes"]):
        raise ValueError(
            f"{dataset} has {data.num_classes} classes but the model was trained on {len(info['classes'])}"
        )
    return data


def _evaluate_streamed(model: torch.nn.Module, cfg: ImageConfig, info: dict, split: str, context: DistContext,
                       amp: str) -> tuple[Evaluation, int]:
    """Score a streamed run (a folder at ``img_size``, or shards) through the streaming pipeline it trained with,
    in bounded memory: the split's own loader, the run's normalisation and evaluation resize / crop."""
    from vitlab.train.tasks.image_stream import StreamImageTask  # per command, see the note on imports above

    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown split '{split}'; choose one of ['test', 'train', 'val']")
    task = StreamImageTask(cfg)
    task.load_data(info)
    if list(task.train_set.classes) != list(info["classes"]):
        raise ValueError(
            f"{cfg.data_root} has the classes {task.train_set.classes[:5]}... but the model was trained on "
            f"{info['classes'][:5]}...; point --data-root at a folder with the run's class folders"
        )
    task.modes.update({k: v for k, v in info.get("data_modes", {}).items() if k in task.modes})  # as the run read them
    return task.score(model, split, context, amp), len(task.splits[split])


def cmd_predict(args: argparse.Namespace) -> int:
    """Classify image files, folders (recursively) and globs with a run folder or an exported ONNX model: one row
    per image on stdout, or in --out (CSV or JSON lines); unreadable files are reported and counted."""
    from vitlab.deploy.predict import (  # per command, see the note above
        Predictor,
        expand_inputs,
        predict_to_file,
        prediction_format,
    )

    if args.topk < 1:
        raise ValueError(f"--topk must be >= 1, got {args.topk}; e.g. --topk 3")
    if args.out is not None:
        prediction_format(args.out)  # before the model loads
    predictor = Predictor.load(args.source)
    if args.explain:
        return _explain(args, predictor)
    paths = expand_inputs(args.images)
    if args.out is None:
        return _print_predictions(predictor, paths, args)
    summary = predict_to_file(predictor, paths, args.out, args.topk, args.batch_size)
    if summary.images == 0:
        Path(args.out).unlink()
        raise ValueError("no image files among the inputs; pass files, folders or globs of images")
    print(f"vitlab: predicted {summary.line}; rows in {args.out}{' (errors in their rows)' if summary.failed else ''}",
          file=sys.stderr)
    return 0


def _print_predictions(predictor: Predictor, paths: Iterable[Path], args: argparse.Namespace) -> int:
    """``path: class p, class p`` per image on stdout; unreadable files on stderr (all unreadable: exit 2)."""
    from vitlab.deploy.predict import predict_files  # per command, see the note above

    failures: list[dict] = []

    def write(row: dict) -> None:
        if "error" in row:
            failures.append(row)
        else:
            print(_top_line(row["path"], row["top"]))

    summary = predict_files(predictor, paths, write, args.topk, args.batch_size)
    if summary.images == 0:
        raise ValueError("no image files among the inputs; pass files, folders or globs of images")
    if len(failures) == summary.images:
        raise ValueError(failures[0]["error"] + ("" if len(failures) == 1 else f" (and {len(failures) - 1} more "
                                                 "unreadable files)"))
    for row in failures:
        print(f"vitlab: skipped: {row['error']}", file=sys.stderr)
    if summary.images > 1:
        print(f"vitlab: predicted {summary.line}", file=sys.stderr)
    return 0


def _top_line(path: str | Path, top: list[list]) -> str:
    """``path: class p, class p`` (probabilities to 3 decimals): one image's line on stdout."""
    return f"{path}: " + ", ".join(f"{c} {p:.3f}" for c, p in top)


def _explain(args: argparse.Namespace, predictor: Predictor) -> int:
    """--explain: the files' classes and a ViT's attention rollout drawn into one PNG (Abnar & Zuidema 2020)."""
    from vitlab.deploy.predict import expand_inputs, top_classes  # per command, see the note above
    from vitlab.deploy.preprocessing import preprocess_file
    from vitlab.viz.vit import plot_attention_rollout

    if predictor.model is None:
        raise ValueError("--explain needs the run folder (the ONNX graph has no attention maps); pass the run")
    if not isinstance(predictor.model, VisionTransformer):
        raise ValueError(f"--explain draws a ViT's attention rollout, but {args.source} holds a "
                         f"{predictor.model_name}; drop --explain or use a ViT run")
    if not str(args.explain).lower().endswith(".png"):
        raise ValueError(f"--explain writes a PNG; name the file *.png, got {args.explain}")
    files = list(expand_inputs(args.images))
    images = [preprocess_file(path, predictor.spec) for path in files]  # a bad file: its one-line error
    titles = []
    for path, top in zip(files, top_classes(predictor, images, args.topk)):
        print(_top_line(path, top))
        titles.append(f"{Path(path).name}: {top[0][0]} ({top[0][1]:.2f})")
    batch = predictor.spec.transform()(torch.stack(images), None, train=False)
    with torch.no_grad():
        maps = predictor.model.attention_rollout(batch)
    plot_attention_rollout(batch, maps, args.explain, titles)
    print(f"attention rollout: {args.explain}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a trained image run as ONNX or a torch.export program, verified on the run's test split."""
    from vitlab.deploy.export import export_run  # per command, see the note above

    report = export_run(args.run_dir, args.format, args.out, opset=args.opset, quantize=args.quantize)
    print(report.line)
    print(f"preprocessing: {report.preprocessing}")
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    """Decode a source sequence with a trained seq2seq run (greedy, or beam search with --beam N)."""
    from vitlab.train.tasks.seq2seq import translate  # per command, see the note on imports above

    print(translate(args.run_dir, args.text, beam=args.beam, max_len=args.max_len, alpha=args.alpha))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """Print the registered image models and the seq2seq Transformer, one per line, with parameter counts."""


    names = list_models(args.pattern)
    transformer = fnmatch.fnmatch("transformer", args.pattern)
    if not names and not transformer:
        raise ValueError(f"no model matches '{args.pattern}'; run `vitlab models` to see them all")
    for name in names:
        model = create_model(name)
        print(f"{name:28s} {count_parameters(model) / 1e6:8.2f}M params  (task: image)")
    if transformer:
        from vitlab.data.sequence import Vocab  # per command, see the note on imports above
        from vitlab.train.tasks.seq2seq import Seq2SeqConfig, build_model

        cfg = Seq2SeqConfig()
        model = build_model(cfg, len(Vocab()), max_len=cfg.max_len + 2)
        print(f"{'transformer':28s} {count_parameters(model) / 1e6:8.2f}M params  (task: seq2seq; "
              "sizes from the config: d_model, num_heads, ...)")
    return 0


PLOTS = ("activations", "posenc", "mixing")  # `vitlab plot NAME --out PATH`
DEMOS = ("legendre",)  # `vitlab demo NAME --out DIR`


def cmd_plot(args: argparse.Namespace) -> int:
    """Write one of the technique plots as a PNG."""
    from vitlab.viz import techniques  # matplotlib: per command, so that `vitlab --help` stays fast

    out = Path(args.out) if args.out else Path(f"{args.name}.png")
    if out.suffix.lower() != ".png":
        raise ValueError(f"vitlab plot writes PNG files; give --out a .png name (e.g. {out.with_suffix('.png')})")
    plot = {"activations": techniques.plot_activations, "posenc": techniques.plot_posenc,
            "mixing": techniques.plot_mixing}[args.name]
    print(f"wrote {plot(out)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run one of the demos: ``legendre`` reproduces the PyTorch tutorial's fit of sin(x) by a + b·P3(c + d·x)
    (:func:`vitlab.autograd.fit_legendre_p3`) and writes ``legendre_fit.png`` in ``--out``."""
    from vitlab.autograd import fit_legendre_p3  # per command, so that `vitlab --help` stays fast
    from vitlab.viz.techniques import plot_legendre_fit

    fit = fit_legendre_p3()
    path = plot_legendre_fit(fit["x"], fit["y"], fit["y_pred"], Path(args.out) / "legendre_fit.png", fit)
    print(f"final loss {fit['loss']:.6f}; wrote {path}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Rerun the papers' comparisons (the shipped reproduce recipes) and write report.md / report.html."""
    from vitlab.reproduce import reproduce  # per command, see the note on imports above

    if args.seeds is not None and args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}; e.g. --seeds 3")
    out = args.out or ("runs/reproduce-quick" if args.quick else "runs/reproduce")
    parts = ["vitlab reproduce", *args.names, *(["--seeds", str(args.seeds)] if args.seeds else []),
             *(["--quick"] if args.quick else []), "--out", out]
    md, page = reproduce(args.names or None, out, args.seeds, args.quick, args.jobs, args.recipes,
                         progress=not args.no_progress, command=" ".join(parts))
    print(f"wrote {md} and {page}")
    return 0


def cmd_shards(args: argparse.Namespace) -> int:
    """Write an image folder's train / val / test splits as WebDataset-style tar shards (vitlab.data.shards)."""

    from vitlab.data.shards import write_shards  # per command, see the note on imports above

    out = Path(args.out)
    created = not out.exists()
    try:
        written = write_shards(args.folder, out, max_count=args.max_count, seed=args.seed,
                               val_fraction=args.val_fraction, verify=args.verify)
    except BaseException:  # no half-written shard folder left behind
        if created and out.is_dir():
            shutil.rmtree(out, ignore_errors=True)
        raise
    for split, counts in written.items():
        print(f"{split}: {counts['samples']} images in {counts['shards']} shard(s) under {out / split}")
    print(f"train on them with: vitlab train --set dataset=folder --set data_root={out} --set img_size=224")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    """Print the shipped recipes, one line each: name and the first comment line of its YAML."""
    from vitlab.reproduce.recipes import load_recipes  # per command, see the note on imports above

    print("training recipes (vitlab train --config NAME):")
    for name in list_recipes():
        print(f"  {name:30s} {describe(recipe_dir() / f'{name}.yaml')}")
    print("reproduce recipes (vitlab reproduce NAME):")
    for recipe in load_recipes():
        print(f"  {recipe.name:30s} {describe(recipe.path) if recipe.path else recipe.title}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="vitlab",
        description="Vision Transformers and the techniques that train image classifiers, from the papers.",
    )
    parser.add_argument("--version", action="version", version=f"vitlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_train_command(sub)
    _add_eval_command(sub)
    _add_predict_command(sub)
    _add_export_command(sub)
    _add_translate_command(sub)
    _add_models_command(sub)
    _add_plot_and_demo_command(sub)
    _add_reproduce_command(sub)
    _add_shards_command(sub)
    _add_recipes_command(sub)
    return parser


def _add_train_command(sub: argparse._SubParsersAction) -> None:
    """`vitlab train`: a recipe into a run folder, or --resume / --auto-resume."""
    train = sub.add_parser(
        "train",
        help="train a model (default: a ViT on the embedded 28x28 MNIST set; task: seq2seq for the Transformer)",
        description="Train an image classifier (task: image, the default) or the encoder-decoder Transformer on a "
        "sequence task (task: seq2seq, e.g. --config transformer_reverse) into a run folder.",
        epilog="List a task's config keys and defaults with `vitlab train --list-keys` (image) or "
        "`vitlab train --list-keys --set task=seq2seq`; with --config, the recipe's values.",
    )
    train.add_argument("--config", default=None, metavar="NAME|FILE",
                       help="shipped recipe name (`vitlab recipes`) or YAML file; default: mnist5k_vit")
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a config key "
                       "(repeatable; a.b=v changes one nested key, e.g. model_args.act=mish)")
    train.add_argument("--list-keys", action="store_true", help="print the task's config keys and values, then exit")
    train.add_argument("--out", default=None, help="run folder (default: runs/<dataset>-<model>-<time>)")
    train.add_argument("--resume", default=None, metavar="RUN_DIR",
                       help="continue the run in RUN_DIR from its last checkpoint")
    train.add_argument(
        "--auto-resume",
        action="store_true",
        help="continue --out DIR from its last checkpoint if it has one, else start it (for torchrun --max-restarts)",
    )
    train.add_argument("--quiet", action="store_true",
                       help="no progress bars: one line per epoch (seq2seq: per eval_every steps)")
    train.set_defaults(func=cmd_train)


def _add_eval_command(sub: argparse._SubParsersAction) -> None:
    """`vitlab eval`: a run's metrics on a split."""
    evaluate = sub.add_parser("eval", help="evaluate a trained run")
    evaluate.add_argument("run_dir", help="a run folder written by `vitlab train`")
    evaluate.add_argument("--data", default=None, help="dataset name (default: the run's)")
    evaluate.add_argument("--data-root", default=None, help="dataset folder")
    evaluate.add_argument("--split", default="test", help="train, val or test (default: test)")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.set_defaults(func=cmd_eval)


def _add_predict_command(sub: argparse._SubParsersAction) -> None:
    """`vitlab predict`: classes of image files, folders and globs."""
    predict = sub.add_parser("predict", help="classify image files, folders or globs with a run or an ONNX export")
    predict.add_argument("source", metavar="RUN|MODEL.onnx",
                         help="a run folder written by `vitlab train`, or an .onnx file written by `vitlab export`")
    predict.add_argument("images", nargs="+", help="image files, folders (searched recursively) or globs")
    predict.add_argument("--topk", type=int, default=3, help="how many classes per image (default 3)")
    predict.add_argument("--out", default=None, metavar="PREDS.csv|PREDS.jsonl",
                         help="write one row per image to this CSV or JSON-lines file (default: print)")
    predict.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    predict.add_argument("--explain", metavar="OUT.png", default=None,
                         help="ViT runs: draw each image with its attention rollout (Abnar & Zuidema 2020) into "
                         "OUT.png")
    predict.set_defaults(func=cmd_predict)


def _add_export_command(sub: argparse._SubParsersAction) -> None:
    """`vitlab export`: a run as ONNX or a torch.export program, verified."""
    export = sub.add_parser("export", help="export a trained image run as ONNX or torch.export (.pt2), verified")
    export.add_argument("run_dir", help="a run folder written by `vitlab train`")
    export.add_argument("--format", required=True, choices=("onnx", "pt2"), help="onnx (onnxruntime) or pt2")
    export.add_argument("--out", default=None, help="model file (default: RUN/model.onnx, model.int8.onnx, model.pt2)")
    export.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    export.add_argument("--quantize", default=None, choices=("int8",),
                        help="ONNX only: onnxruntime's dynamic int8 quantization (accuracy and speed reported)")
    export.set_defaults(func=cmd_export)


def _add_translate_command(sub: argparse._SubParsersAction) -> None:
    """`vitlab translate`: decode with a seq2seq run."""
    trans = sub.add_parser("translate", help="decode a sequence with a trained seq2seq run")
    trans.add_argument("run_dir", help="run folder written by `vitlab train` with task: seq2seq")
    trans.add_argument("text", help='source symbols, e.g. "3 1 2"')
    trans.add_argument("--beam", type=int, default=1, help="beam size (1: greedy decoding)")
    trans.add_argument("--max-len", type=int, default=None, help="most output tokens (default: the task's longest + 1)")
    trans.add_argument("--alpha", type=float, default=None,
                       help="beam search length penalty (default: the run's length_penalty)")
    trans.set_defaults(func=cmd_translate)


def _add_models_command(sub: argparse._SubParsersAction) -> None:
    """`vitlab models`: the registered models."""
    models = sub.add_parser("models", help="list the registered models")
    models.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'vit_tiny*'")
    models.set_defaults(func=cmd_models)


def _add_plot_and_demo_command(sub: argparse._SubParsersAction) -> None:
    """`vitlab plot` and `vitlab demo`: the technique plots and demos."""
    plot = sub.add_parser("plot", help="write a technique's plot as a PNG")
    plot.add_argument("name", choices=sorted(PLOTS), help="which plot")
    plot.add_argument("--out", default=None, help="output PNG path, ending in .png (default: NAME.png)")
    plot.set_defaults(func=cmd_plot)

    demo = sub.add_parser("demo", help="run a demo")
    demo.add_argument("name", choices=sorted(DEMOS), help="which demo")
    demo.add_argument("--out", default="demo", help="output folder for its plots (default: ./demo)")
    demo.set_defaults(func=cmd_demo)


def _add_reproduce_command(sub: argparse._SubParsersAction) -> None:
    """`vitlab reproduce`: the papers' comparisons."""
    repro = sub.add_parser("reproduce", help="rerun the papers' comparisons with several seeds and write a report")
    repro.add_argument("names", nargs="*", help="recipes to run (default: all; see `vitlab recipes`)")
    repro.add_argument("--seeds", type=int, default=None,
                       help="seeds per recipe (default: each recipe's own: 5 for image claims, "
                       "3 for the Transformer; 2 with --quick)")
    repro.add_argument("--quick", action="store_true", help="tiny budgets: the whole run in a few minutes")
    repro.add_argument("--out", default=None, help="output folder (default: runs/reproduce or runs/reproduce-quick)")
    repro.add_argument("--jobs", type=int, default=None, help="parallel runs (default: one per CPU core; 1 on a GPU)")
    repro.add_argument("--recipes", default=None, metavar="DIR",
                       help="folder of recipe YAMLs (default: the shipped ones)")
    repro.add_argument("--no-progress", action="store_true", help="no progress bar")
    repro.set_defaults(func=cmd_reproduce)


def _add_shards_command(sub: argparse._SubParsersAction) -> None:
    """`vitlab shards`: an image folder as tar shards."""
    shards = sub.add_parser("shards", help="write an image folder as tar shards (WebDataset layout) for streaming")
    shards.add_argument("folder", help="image folder: CLASS/*.jpg, or train/ and test/ [val/] of those")
    shards.add_argument("out", help="new or empty output folder (receives train/, val/, test/)")
    shards.add_argument("--max-count", type=int, default=1000, help="images per shard at most (default: 1000)")
    shards.add_argument("--seed", type=int, default=0, help="seed of the split and of the order in the shards")
    shards.add_argument("--val-fraction", type=float, default=0.1,
                        help="validation share when there is no val/ (default: 0.1)")
    shards.add_argument("--verify", action="store_true", help="decode every image first; refuse a corrupt one")
    shards.set_defaults(func=cmd_shards)


def _add_recipes_command(sub: argparse._SubParsersAction) -> None:
    """`vitlab recipes`: the shipped recipes."""
    recipes = sub.add_parser("recipes", help="list the shipped recipes (for train --config NAME and reproduce NAME)")
    recipes.set_defaults(func=cmd_recipes)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("vitlab: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, KeyError) as error:
        message = _os_error_message(error) if isinstance(error, OSError) else str(error).strip()
        message = message.splitlines()[0] if message else type(error).__name__
        print(f"vitlab: error: {message}", file=sys.stderr)
        return 2


# errno -> what a person can do about it
_OS_ERROR_HINTS = {
    errno.ENOSPC: "free disk space or choose another --out",
    errno.EDQUOT: "free disk space or choose another --out",
    errno.EACCES: "choose a folder you can write to (--out) or fix its permissions",
    errno.EPERM: "choose a folder you can write to (--out) or fix its permissions",
    errno.EROFS: "the file system is read-only; choose another --out",
    errno.ENOTDIR: "a part of the path is a file, not a folder; fix the path",
}


def _os_error_message(error: OSError) -> str:
    """'<what went wrong>: <path>; <what to do>' for a file-system error (one line, no errno number)."""
    what = error.strerror or str(error) or type(error).__name__
    where = f": {error.filename}" if error.filename is not None else ""
    hint = _OS_ERROR_HINTS.get(error.errno)
    return f"{what}{where}" + (f"; {hint}" if hint else "")


if __name__ == "__main__":
    raise SystemExit(main())
