"""nextsong: predicts the next song a listener will play in a session.

The pipeline (see ARCHITECTURE.md): generate or import a world, split it by time, build the
training-window graph, train, evaluate, recommend. Each step reads the previous step's artifacts.
"""

__version__ = "0.1.0"
