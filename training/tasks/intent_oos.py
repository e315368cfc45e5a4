"""`python -m training intent-oos --profile quick|full [--share 0.25] [--seed 0] [--data DIR] [--out training/results]
[--reports artifacts] [--rescore]`

Out-of-scope evaluation: a seeded share of the intents is held out of training altogether; the model is
trained (same profile, same code as `train intent`) on the rest, and its test messages of the held-out
intents are the out-of-scope messages. For each OOS score (training/tasks/intent_ood.py) it reports
AUROC, the OOS recall at 5 % in-scope hand-off (threshold set on test, the usual figure), the same with
the threshold set on validation (what serving does), and the whole served rule (low confidence or out
of scope). Writes <out>/intent_oos_<profile>.md (table), <out>/intent_oos_<profile>.png (in-scope
hand-off vs OOS recall), <reports>/reports/intent_oos_<profile>.json and the model outputs beside it
(`--rescore` scores them again without training). The test split is never used for a choice.
`--supcon W [--supcon-temperature T] [--label-smoothing E]` trains with an out-of-scope objective
(training/tasks/intent.py; default: plain cross-entropy, as `train intent`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from training.common import set_seed, torch_device
from training.data.intents import encoder_dir, load_tokenizer, stratified_split, subset
from training.data.schema import IntentDataset
from training.metrics.classification import accuracy
from training.metrics.ood import Mahalanobis, auroc, handed_off, handoff_tradeoff, msp_score, threshold_at_handoff
from training.models.intent import BertIntentModel, IntentConfig
from training.report import format_table, write_report
from training.tasks.base import TrainArgs
from training.tasks.intent import PROFILES, IntentProfile, calibrate, fit, load_data
from training.tasks.intent_encode import encode
from training.tasks.intent_ood import (
    EVAL_SCORES,
    FIT_ROWS_PER_CLASS,
    SCORES,
    TARGET_HANDOFF,
    Outputs,
    predict_outputs,
    rows_per_class,
    scores,
    subset_encoded,
)
from training.tasks.intent_plots import save_oos_plot

GOAL_RECALL = 0.85
LABELS = {
    "msp": "max softmax (calibrated)",
    "energy": "energy (logits)",
    "mahalanobis": "Mahalanobis (embedding)",
    "knn": "nearest training message (cosine, embedding)",
}
PARTS = ("fit", "val", "in", "oos")  # statistics rows, validation, test in-scope, test out-of-scope


def split_classes(n_labels: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (in-scope class ids, held-out class ids), both sorted; round(share * n_labels) held out."""
    k = round(share * n_labels)
    if not 0 < k < n_labels:
        raise ValueError(f"share {share} of {n_labels} intents holds out {k}; need at least one on each side")
    held = np.sort(np.random.default_rng(seed).choice(n_labels, size=k, replace=False))
    return np.setdiff1d(np.arange(n_labels), held), held


def restrict(ds: IntentDataset, classes: np.ndarray) -> IntentDataset:
    """The rows of `classes`, relabelled 0..len(classes)-1 in the order of `classes`."""
    rows = np.flatnonzero(np.isin(ds.label, classes))
    part = subset(ds, rows)
    remap = np.full(len(ds.labels), -1, dtype=np.int64)
    remap[classes] = np.arange(classes.shape[0])
    labels = tuple(ds.labels[c] for c in classes)
    return IntentDataset(texts=part.texts, label=remap[part.label], labels=labels, source=ds.source, meta=part.meta)


def score_table(
    out: dict[str, Outputs], temperature: float, maha: Mahalanobis, conf_threshold: float
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """Outputs of PARTS -> (table rows, raw figures per score, curves per score)."""
    val, test_in, test_oos = out["val"], out["in"], out["oos"]
    rows, raw, curves = [], {}, {}
    # Today's rule alone: hand off below the calibrated confidence threshold (97 % automated accuracy).
    low_in = msp_score(test_in.logits, temperature) > 1.0 - conf_threshold
    low_oos = msp_score(test_oos.logits, temperature) > 1.0 - conf_threshold
    raw["trained_confidence_threshold"] = {
        "threshold": conf_threshold,
        "in_scope_handoff": float(low_in.mean()),
        "oos_recall": float(low_oos.mean()),
    }
    rows.append(
        {
            "hand-off rule": f"today: confidence < {conf_threshold:.3f} (97 % automated accuracy on validation)",
            "AUROC": "",
            "OOS recall @ 5 % in-scope (test threshold)": "",
            "validation threshold: in-scope / OOS handed off": f"{low_in.mean():.1%} / {low_oos.mean():.1%}",
            "with the low-confidence rule: in-scope / OOS": "",
        }
    )
    for name in EVAL_SCORES:
        ref = out["fit"].embedding
        s_val, s_in, s_oos = (scores(name, o, temperature, maha, ref) for o in (val, test_in, test_oos))
        t_test = threshold_at_handoff(s_in, TARGET_HANDOFF)
        t_val = threshold_at_handoff(s_val, TARGET_HANDOFF)
        both_in, both_oos = low_in | (s_in > t_val), low_oos | (s_oos > t_val)
        fig = {
            "auroc": auroc(s_in, s_oos),
            "oos_recall_at_5pct_test_threshold": handed_off(s_oos, t_test),
            "in_scope_handoff_at_test_threshold": handed_off(s_in, t_test),
            "val_threshold": t_val,
            "in_scope_handoff_val_threshold": handed_off(s_in, t_val),
            "oos_recall_val_threshold": handed_off(s_oos, t_val),
            "served_in_scope_handoff": float(both_in.mean()),
            "served_oos_recall": float(both_oos.mean()),
        }
        raw[name] = fig
        curves[name] = handoff_tradeoff(s_in, s_oos)
        rows.append(
            {
                "hand-off rule": LABELS[name],
                "AUROC": f"{fig['auroc']:.3f}",
                "OOS recall @ 5 % in-scope (test threshold)": f"{fig['oos_recall_at_5pct_test_threshold']:.1%}",
                "validation threshold: in-scope / OOS handed off": (
                    f"{fig['in_scope_handoff_val_threshold']:.1%} / {fig['oos_recall_val_threshold']:.1%}"
                ),
                "with the low-confidence rule: in-scope / OOS": (
                    f"{fig['served_in_scope_handoff']:.1%} / {fig['served_oos_recall']:.1%}"
                ),
            }
        )
    return rows, raw, curves


def run_oos(args: TrainArgs, profile: IntentProfile, encoder: Path, share: float, results: Path) -> dict[str, Any]:
    t_start = time.perf_counter()
    set_seed(args.seed)
    device = torch_device(args.device)
    train_all, test_all = load_data(args)
    in_classes, oos_classes = split_classes(len(train_all.labels), share, args.seed)
    train_in = restrict(train_all, in_classes)
    test_in = restrict(test_all, in_classes)
    test_oos = subset(test_all, np.flatnonzero(np.isin(test_all.label, oos_classes)))
    train, val = stratified_split(train_in, profile.val_share, seed=args.seed)
    tokenizer = load_tokenizer(profile.max_len, encoder)
    enc_train, enc_val, enc_in, enc_oos = (encode(d, tokenizer) for d in (train, val, test_in, test_oos))
    config = IntentConfig.from_pretrained_dir(encoder, n_labels=len(in_classes), max_len=profile.max_len)
    model = BertIntentModel.from_pretrained_encoder(config, encoder).to(device)

    t_train = time.perf_counter()
    fitted = fit(model, enc_train, enc_val, profile, args.max_epochs or profile.max_epochs, device, args.seed)
    train_seconds = time.perf_counter() - t_train
    fit_rows = rows_per_class(enc_train.label, FIT_ROWS_PER_CLASS.get(args.profile), args.seed)
    encs = {"fit": subset_encoded(enc_train, fit_rows), "val": enc_val, "in": enc_in, "oos": enc_oos}
    out = {k: predict_outputs(model, e, device, desc=f"predict {k}") for k, e in encs.items()}
    command = f"python -m training intent-oos --profile {args.profile} --share {share:g} --seed {args.seed}" + (
        f" --data {args.data_dir}" if args.data_dir is not None else ""
    )
    default = PROFILES[args.profile]
    for flag, field in (
        ("--supcon", "supcon_weight"),
        ("--supcon-temperature", "supcon_temperature"),
        ("--label-smoothing", "label_smoothing"),
    ):
        if getattr(profile, field) != getattr(default, field):
            command += f" {flag} {getattr(profile, field):g}"
    base = {
        "profile": args.profile,
        "command": command,
        "data": {
            "source": train_all.source,
            "held_out_share": share,
            "in_scope_intents": len(in_classes),
            "labels": len(train_all.labels),
            "held_out_intents": [train_all.labels[c] for c in oos_classes],
            "train": len(train),
            "val": len(val),
            "test_in_scope": len(test_in),
            "test_out_of_scope": len(test_oos),
            "statistics_rows": int(fit_rows.shape[0]),
        },
        "device": device,
        "profile_settings": asdict(profile),
        "epochs": fitted["history"],
        "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - t_start,
    }
    stem = f"intent_oos_{args.profile}"
    (args.out_dir / "reports").mkdir(parents=True, exist_ok=True)
    np.savez(  # the raw outputs: `--rescore` tries the scores again without training
        args.out_dir / "reports" / f"{stem}_outputs.npz",
        **{f"{k}_{f}": getattr(o, f) for k, o in out.items() for f in ("logits", "embedding", "label")},
    )
    return score_and_write(out, base, profile, args.out_dir, results)


def score_and_write(
    out: dict[str, Outputs], base: dict[str, Any], profile: IntentProfile, reports: Path, results: Path
) -> dict[str, Any]:
    """Scores, table, curve and report from the model outputs of PARTS (a fresh run or `--rescore`)."""
    temperature, conf_threshold = calibrate(out["val"].logits, out["val"].label, profile.target_automated_accuracy)
    maha = Mahalanobis.fit(out["fit"].embedding, out["fit"].label, out["val"].logits.shape[1])
    rows, raw, curves = score_table(out, temperature, maha, conf_threshold)
    d, stem = base["data"], f"intent_oos_{base['profile']}"
    name = "BANKING77" if d["source"].startswith("banking77") else d["source"]
    n_labels = d.get("labels", d["in_scope_intents"] + len(d["held_out_intents"]))
    title = f"{name}: {len(d['held_out_intents'])} of {n_labels} intents held out ({base['profile']})"
    plot = save_oos_plot(results / f"{stem}.png", curves, raw, title, LABELS)
    best = max(EVAL_SCORES, key=lambda s: raw[s]["oos_recall_at_5pct_test_threshold"])
    served = max(SCORES, key=lambda s: raw[s]["oos_recall_at_5pct_test_threshold"])
    report = {
        **base,
        "in_scope_test_accuracy": accuracy(out["in"].label, out["in"].logits.argmax(1)),
        "temperature": temperature,
        "scores": raw,
        "best_score": best,
        "best_servable_score": served,
        "goal_oos_recall": GOAL_RECALL,
        "goal_met": raw[best]["oos_recall_at_5pct_test_threshold"] >= GOAL_RECALL,
        "plot": str(plot),
    }
    report_path = write_report(reports, stem, report)
    _write_markdown(results / f"{stem}.md", report, rows, plot)
    print(format_table(rows))
    acc = report["in_scope_test_accuracy"]
    print(f"[intent-oos] in-scope accuracy {acc:.2%}; report {report_path}", file=sys.stderr)
    return report


def _write_markdown(path: Path, report: dict[str, Any], rows: list[dict[str, Any]], plot: Path) -> None:
    d = report["data"]
    lines = [
        f"# Out-of-scope detection: {d['source'].split('/')[0]}, {len(d['held_out_intents'])} intents held out",
        "",
        f"Command: `{report['command']}` ({report['total_seconds'] / 60:.1f} min on {report['device']}, "
        f"{os.cpu_count()} cores shared with other jobs)"
        + (f"; scored again with `{report['rescored_with']}`." if report.get("rescored_with") else "."),
        f"Training: {d['train']} messages of {d['in_scope_intents']} intents; validation {d['val']}; test "
        f"{d['test_in_scope']} in-scope + {d['test_out_of_scope']} out-of-scope messages. In-scope test accuracy "
        f"{report['in_scope_test_accuracy']:.2%}. Mahalanobis statistics and nearest-neighbour reference: "
        f"{d['statistics_rows']} training rows.",
        "",
        format_table(rows),
        "",
        f"Goal: OOS recall >= {report['goal_oos_recall']:.0%} at <= 5 % in-scope hand-off: "
        + ("met" if report["goal_met"] else "not met")
        + f" (best: {LABELS[report['best_score']]}; served: {LABELS[report['best_servable_score']]}).",
        "",
        f"![in-scope hand-off vs OOS recall]({plot.name})",
        "",
        f"Held-out intents: {', '.join(d['held_out_intents'])}.",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training intent-oos", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    ap.add_argument("--share", type=float, default=0.25, help="share of the intents held out as out-of-scope")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=None, help="folder with train.csv/test.csv (default: BANKING77)")
    ap.add_argument("--out", type=Path, default=Path("training/results"), help="markdown table and PNG")
    ap.add_argument("--reports", type=Path, default=Path("artifacts"), help="<reports>/reports/intent_oos_*.json")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--max-epochs", type=int, default=None)
    ap.add_argument("--rescore", action="store_true", help="score the outputs a previous run saved (no training)")
    ap.add_argument("--supcon", type=float, default=0.0, help="weight of a supervised contrastive loss (0 = off)")
    ap.add_argument("--supcon-temperature", type=float, default=None, help="its temperature (profile: 0.1)")
    ap.add_argument("--label-smoothing", type=float, default=0.0, help="cross-entropy label smoothing (0 = off)")
    ns = ap.parse_args(argv)
    if ns.rescore:
        rescore(ns.reports, ns.profile, ns.out)
        return 0
    args = TrainArgs(ns.profile, ns.data, ns.reports, ns.seed, ns.device, ns.max_epochs)
    profile = replace(PROFILES[ns.profile], supcon_weight=ns.supcon, label_smoothing=ns.label_smoothing)
    if ns.supcon_temperature is not None:
        profile = replace(profile, supcon_temperature=ns.supcon_temperature)
    run_oos(args, profile, encoder_dir(), ns.share, ns.out)
    return 0


def rescore(reports: Path, profile: str, results: Path) -> dict[str, Any]:
    """Table and curve again from <reports>/reports/intent_oos_<profile>_outputs.npz and its report."""
    stem = reports / "reports" / f"intent_oos_{profile}"
    base = json.loads(stem.with_suffix(".json").read_text())
    with np.load(f"{stem}_outputs.npz") as f:
        out = {k: Outputs(f[f"{k}_logits"], f[f"{k}_embedding"], f[f"{k}_label"]) for k in PARTS}
    keep = ("profile", "command", "data", "device", "profile_settings", "epochs", "train_seconds", "total_seconds")
    kept = {k: base[k] for k in keep if k in base}
    kept["rescored_with"] = f"python -m training intent-oos --profile {profile} --reports {reports} --rescore"
    return score_and_write(out, kept, PROFILES[profile], reports, results)
