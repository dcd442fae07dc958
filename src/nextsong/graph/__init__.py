"""The listening graph of the training window.

`edges` turns the training period's events into edge tables (Polars, no torch); `build` turns the
edge tables and the catalog into a PyTorch Geometric `HeteroData`; `io` saves and loads it
(safetensors + JSON, never pickle); `draw` pictures one listener's neighbourhood. Importing this
package imports neither torch nor PyG: the modules that need them import them inside functions.
"""
