"""Recommenders behind one contract (`base.Recommender`), found by name (`registry`).

Modules here: `base` (the contract), `registry` (names and discovery), `runs` (trained runs on
disk and the best of each name), `baselines` (popularity, user history, transitions), `knn`
(SKNN and V-SKNN session neighbours), `oracle` (the synthetic world's exact probabilities).
A new model is a new module that registers its names: no other code needs to change.
"""
