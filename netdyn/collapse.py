"""Neural collapse of one layer's features (Papyan, Han and Donoho 2020; docs/methods.md §24).

With features h_i (rows of ``features``), class means mu_c, the global mean mu_G, centred means m_c = mu_c - mu_G:

* NC1 = tr(Sigma_W Sigma_B^+) / C, Sigma_W the within-class covariance (1/N) sum_i (h_i - mu_{y_i})(...)^T and
  Sigma_B = (1/C) sum_c m_c m_c^T (its pseudo-inverse: eigenvalues below 1e-10 of the largest are dropped);
* NC2: ``nc2_norm``, the coefficient of variation (std / mean) of ||m_c||; ``nc2_angle``, the standard deviation of
  the pairwise cosines of the m_c (c < c'); ``nc2_etf``, ||G - E||_F / ||E||_F, G the Gram matrix of the unit m_c and
  E = C/(C-1) (I - 11^T/C) that of a simplex equiangular tight frame;
* NC3 = || W / ||W||_F - M^T / ||M||_F ||_F^2, W the classifier's rows [C, d] and M the centred means as columns;
* NC4 = the fraction of samples on which the net's prediction differs from the nearest class mean's.

All are 0 at full collapse. Classes with no sample are left out.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class ClassMeans(NamedTuple):
    means: torch.Tensor  # [C, d] class means of the present classes
    centred: torch.Tensor  # [C, d] class means minus the global mean
    classes: torch.Tensor  # [C] the class labels present


def class_means(features: torch.Tensor, labels: torch.Tensor) -> ClassMeans:
    features = features.double()
    classes = torch.unique(labels)
    means = torch.stack([features[labels == c].mean(dim=0) for c in classes])
    return ClassMeans(means, means - features.mean(dim=0), classes)


def nc1(features: torch.Tensor, labels: torch.Tensor) -> float:
    """tr(Sigma_W Sigma_B^+) / C."""
    stats = class_means(features, labels)
    index = torch.searchsorted(stats.classes, labels)
    within = features.double() - stats.means[index]
    sigma_w = within.T @ within / len(features)
    sigma_b = stats.centred.T @ stats.centred / len(stats.classes)
    return float(torch.trace(sigma_w @ torch.linalg.pinv(sigma_b, rtol=1e-10, hermitian=True))) / len(stats.classes)


def simplex_etf_gram(classes: int) -> torch.Tensor:
    """The Gram matrix of the unit vectors of a simplex equiangular tight frame of ``classes`` vectors."""
    return classes / (classes - 1) * (torch.eye(classes, dtype=torch.float64) - 1.0 / classes)


def nc2(features: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """``nc2_norm``, ``nc2_angle`` and ``nc2_etf`` (module docstring)."""
    centred = class_means(features, labels).centred
    norms = centred.norm(dim=1)
    unit = centred / norms.unsqueeze(1)
    gram = unit @ unit.T
    upper = torch.triu_indices(len(gram), len(gram), offset=1)
    target = simplex_etf_gram(len(gram))
    return {
        "nc2_norm": float(norms.std(unbiased=False) / norms.mean()),
        "nc2_angle": float(gram[upper[0], upper[1]].std(unbiased=False)),
        "nc2_etf": float((gram - target).norm() / target.norm()),
    }


def nc3(features: torch.Tensor, labels: torch.Tensor, classifier: torch.Tensor) -> float:
    """|| W/||W|| - M^T/||M|| ||_F^2 over the present classes; ``classifier`` is the output layer's weight [C, d]."""
    stats = class_means(features, labels)
    weights = classifier.double()[stats.classes]
    return float(((weights / weights.norm() - stats.centred / stats.centred.norm()) ** 2).sum())


def nc4(features: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor) -> float:
    """The fraction of samples whose prediction differs from the class of the nearest class mean."""
    stats = class_means(features, labels)
    nearest = stats.classes[torch.cdist(features.double(), stats.means).argmin(dim=1)]
    return float((nearest != predictions.to(nearest.device)).double().mean())
