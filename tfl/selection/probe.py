"""The linear probe: how well a linear classifier separates the classes on a backbone's frozen features.

Multinomial logistic regression with an L2 penalty, fitted full-batch with
L-BFGS from zeros (deterministic: no random initialisation, no shuffling) on
standardised features. The penalty is chosen from `L2_GRID` by stratified
3-fold cross-validation on the training features only, then the probe is
refitted on all of them and scored once on the validation split, so the
validation score is not the maximum over the grid (which would flatter every
backbone, the noisier ones most).

It is what stage 1 trains (a softmax layer on pooled features), without its
augmented copies and dropout: a few seconds per backbone instead of minutes.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

# Penalties on the mean cross-entropy of standardised features.
L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
FOLDS = 3


@dataclasses.dataclass
class ProbeResult:
    """A linear probe's score on the validation split.

    Args:
        accuracy: validation accuracy.
        loss: validation cross-entropy.
        stderr: standard error of the accuracy, sqrt(p (1 - p) / n).
        num_val: validation images scored.
        l2: the penalty chosen by cross-validation on the training features.
        cv_accuracy: the mean cross-validation accuracy at that penalty.
    """

    accuracy: float
    loss: float
    stderr: float
    num_val: int
    l2: float
    cv_accuracy: float


def _softmax_fit(x, y, num_classes: int, l2: float, max_iter: int = 300):
    """(W, b) minimising mean cross-entropy + l2/2 ||W||^2, from zeros."""
    from scipy.optimize import minimize

    n, d = x.shape
    onehot = np.eye(num_classes)[y]

    def objective(theta):
        w = theta[:d * num_classes].reshape(d, num_classes)
        b = theta[d * num_classes:]
        logits = x @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.sum(onehot * np.log(np.maximum(p, 1e-12))) / n + 0.5 * l2 * np.sum(w * w)
        g = (p - onehot) / n
        grad = np.concatenate([(x.T @ g + l2 * w).ravel(), g.sum(axis=0)])
        return loss, grad

    theta = np.zeros(d * num_classes + num_classes)
    res = minimize(objective, theta, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return res.x[:d * num_classes].reshape(d, num_classes), res.x[d * num_classes:]


def _predict(x, w, b):
    logits = x @ w + b
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def _folds(y, k: int):
    """Fold index per sample: within each class, in order, round-robin (stratified, deterministic)."""
    fold = np.zeros(len(y), np.int64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        fold[idx] = np.arange(len(idx)) % k
    return fold


def linear_probe(train_x, train_y, val_x, val_y, num_classes: int) -> ProbeResult:
    """Fits the probe on the training features and scores it on the validation features.

    Args:
        train_x, val_x: `(n, dim)` pooled features.
        train_y, val_y: integer labels.
        num_classes: number of classes.

    Returns:
        A `ProbeResult`.

    Examples:
        >>> r = linear_probe(feats.train[0], labels, feats.val, val_labels, 2)
        >>> round(r.accuracy, 3)
        0.941
    """
    train_x = np.asarray(train_x, np.float64)
    val_x = np.asarray(val_x, np.float64)
    train_y = np.asarray(train_y, np.int64)
    val_y = np.asarray(val_y, np.int64)
    mean = train_x.mean(axis=0)
    std = train_x.std(axis=0) + 1e-6
    train_x = (train_x - mean) / std
    val_x = (val_x - mean) / std
    fold = _folds(train_y, FOLDS)
    best_l2, best_cv = L2_GRID[-1], -1.0
    for l2 in L2_GRID:
        correct = 0
        for k in range(FOLDS):
            fit, held = fold != k, fold == k
            if not held.any() or not fit.any():
                continue
            w, b = _softmax_fit(train_x[fit], train_y[fit], num_classes, l2)
            correct += int(np.sum(_predict(train_x[held], w, b).argmax(axis=1) == train_y[held]))
        cv = correct / len(train_y)
        if cv > best_cv + 1e-12:  # ties keep the smaller penalty seen first
            best_l2, best_cv = l2, cv
    w, b = _softmax_fit(train_x, train_y, num_classes, best_l2)
    p = _predict(val_x, w, b)
    accuracy = float(np.mean(p.argmax(axis=1) == val_y))
    loss = float(-np.mean(np.log(np.maximum(p[np.arange(len(val_y)), val_y], 1e-12))))
    stderr = math.sqrt(accuracy * (1 - accuracy) / len(val_y)) if len(val_y) else float("nan")
    return ProbeResult(accuracy, loss, stderr, int(len(val_y)), float(best_l2), float(best_cv))
