"""Names the command line needs before any heavy import: the baselines and their space."""

__all__ = ["BASELINES", "BASELINE_SPACE"]

# The baselines `recnas train --baseline` knows, and the space the in-space ones are presets of.
# deepfm / dcnv2: the closest designs BASELINE_SPACE expresses (7 LayerNorm blocks); deepfm_lib /
# dcn_lib: the structure of the libraries' DeepFM / DCN, outside any space (recnas.space.presets).
BASELINES: tuple[str, ...] = ("dlrm", "deepfm", "dcnv2", "deepfm_lib", "dcn_lib")
BASELINE_SPACE = "ctr_extended"
