"""Suite kits: what a kind of suite brings beyond per-case checks (a loader for its dataset
format, a suite-level analysis, a relation between cases): bias (counterfactual templates, BBQ
items, Fairlearn disparities) and robustness (metamorphic perturbations, shrunk with hypothesis)."""
