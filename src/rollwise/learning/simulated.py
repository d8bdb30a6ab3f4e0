"""Simulated change histories with known risk factors, for tests and the benchmark.

Changes have Kamei-style features (size, spread, fix, the author's experience, the files' age and
developers); whether one fails is drawn from a known logistic model of them, with an interaction
(a big change by a newcomer), heavy tails, a few missing values and a drift half-way (the team
starts reviewing large changes, so size matters less and spread more). Pure: a seed in, rows out.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np

COLUMNS = ("commit", "time", "ns", "nd", "nf", "entropy", "la", "ld", "lt", "fix", "ndev", "age", "nuc",
           "exp", "rexp", "sexp", "bug")
START = 1_577_836_800.0  # 2020-01-01T00:00:00Z


def simulate_history(rows: int, seed: int = 0, base_logit: float = -2.2, drift: bool = True,
                     missing: float = 0.02) -> dict[str, np.ndarray]:
    """Columns of a simulated history, by name (``bug`` the outcome, ``time`` epoch seconds)."""
    rng = np.random.default_rng(seed)
    nf = 1 + rng.negative_binomial(1, 0.35, rows)
    nd = np.minimum(nf, 1 + rng.binomial(nf - 1, 0.4))
    ns = np.minimum(nd, 1 + rng.binomial(nd - 1, 0.3))
    la = np.round(np.exp(rng.normal(2.5, 1.6, rows)) * np.sqrt(nf))
    ld = np.round(la * rng.beta(1.2, 2.5, rows))
    lt = np.round(np.exp(rng.normal(5.5, 1.3, rows)) * nf)
    spread = rng.beta(2, 2, rows)
    entropy = np.where(nf > 1, spread * np.log2(nf), 0.0)
    fix = (rng.random(rows) < 0.3).astype(float)
    exp = np.round(np.exp(rng.normal(4.0, 1.8, rows)))
    rexp = np.round(exp * rng.beta(1, 4, rows))
    sexp = np.round(exp * rng.beta(2, 2, rows))
    ndev = 1 + rng.poisson(np.log1p(lt) / 2)
    age = np.exp(rng.normal(3.0, 1.5, rows))
    nuc = 1 + rng.poisson(np.log1p(lt), rows)
    late = np.arange(rows) >= rows // 2 if drift else np.zeros(rows, dtype=bool)
    size = np.log1p(la + ld)
    logit = (base_logit + np.where(late, 0.25, 0.55) * (size - 3) + np.where(late, 0.45, 0.15) * entropy
             + 0.8 * fix - 0.35 * (np.log1p(exp) - 4) + 0.25 * np.log1p(ndev) - 0.15 * np.log1p(age)
             + 0.9 * ((size > 5) & (exp < 20)))
    bug = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    time = START + np.cumsum(rng.exponential(3600.0 * 2, rows))
    columns = {"time": time, "ns": ns, "nd": nd, "nf": nf, "entropy": np.round(entropy, 4), "la": la, "ld": ld,
               "lt": lt, "fix": fix, "ndev": ndev, "age": np.round(age, 3), "nuc": nuc, "exp": exp,
               "rexp": rexp, "sexp": sexp, "bug": bug}
    for name in ("age", "lt", "sexp", "entropy"):
        holes = rng.random(rows) < missing
        columns[name] = np.where(holes, np.nan, columns[name].astype(float))
    return columns


def history_csv(columns: dict[str, np.ndarray], shuffle_seed: int | None = None,
                shuffle_labels: bool = False) -> str:
    """CSV text of a history: ISO times, ``True``/``False`` fix, ``NA`` holes; rows optionally shuffled."""
    rows = len(columns["bug"])
    order = np.arange(rows)
    labels = columns["bug"]
    if shuffle_seed is not None:
        rng = np.random.default_rng(shuffle_seed)
        order = rng.permutation(rows)
        if shuffle_labels:
            labels = labels[rng.permutation(rows)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for i in order:
        stamp = np.datetime_as_string(np.datetime64(int(columns["time"][i]), "s")) + "Z"
        cells: list[object] = [f"c{i:06d}", stamp]
        for name in COLUMNS[2:-1]:
            value = float(columns[name][i])
            cells.append("NA" if math.isnan(value) else ("True" if value else "False") if name == "fix"
                         else f"{value:g}")
        cells.append(int(labels[i]))
        writer.writerow(cells)
    return out.getvalue()
