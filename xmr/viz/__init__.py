"""Pictures of the shared space: PCA of all modalities in one basis, query projection, figures."""

from xmr.viz.figures import interpolated_pr, pca_map_figure, pr_curve_figure, rank_cdf_figure
from xmr.viz.pca import PCABasis, fit_pca, subsample_indices

__all__ = ["PCABasis", "fit_pca", "interpolated_pr", "pca_map_figure", "pr_curve_figure",
           "rank_cdf_figure", "subsample_indices"]
