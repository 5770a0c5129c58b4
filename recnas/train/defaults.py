"""Training defaults that every config and command line shares (no heavy imports, so the CLIs can read them)."""

#: Row-wise Adagrad lr of the embedding tables (NASRec's 0.12): the default of every training config.
TABLE_LR = 0.12
