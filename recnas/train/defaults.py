"""Training defaults that every config and command line shares (no heavy imports, so the CLIs can read them)."""

#: Row-wise Adagrad lr of the embedding tables (NASRec's 0.12): the default of every training config.
TABLE_LR = 0.12

#: Adagrad epsilon of the dense (non-table) weights in standalone and production training.
#: Measured (``reports/recipe/NOTES.md``): with the former 1e-2, a dense weight whose gradients are
#: small (most of them, at a batch-mean loss) moves ~100x less than its lr says, and TorchRec's DLRM
#: trailed deepctr-torch's models by 0.03-0.05 validation log loss on the real Criteo sample; at 1e-8
#: (torch's own order of magnitude) it is within seed noise of them.
DENSE_EPS = 1e-8

#: The dense epsilon every run used before ``dense_eps`` existed (the tables' 1e-2, shared). A recipe
#: at this value has the identity it had then, so ground truths built with it stay valid.
LEGACY_DENSE_EPS = 1e-2
