"""The `oracle` row: a synthetic world's exact next-song probabilities as a recommender.

It wraps `synth.oracle.Oracle`, which reads the hidden `truth/` the generator wrote, and scores
each song by its true probability of being the next one. No model can rank better on average, so
its metrics are the ceiling of the evaluation. It needs the world's truth (`World.has_truth`)
and real session ids of that world (the truth holds each session's hour and mood); it learns
nothing from the training events. Saving it stores only the path of its world.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nextsong.errors import ConfigError
from nextsong.models.base import Recommender, SessionBatch, TrainingData
from nextsong.models.registry import register


@register("oracle", kind="oracle")
class OracleRecommender(Recommender):
    """Scores = the generator's true next-song probabilities (float64, rows sum to 1)."""

    def _fit(self, data: TrainingData) -> None:
        self._load(data.world_path)

    def _load(self, world: Path) -> None:
        from nextsong.synth.oracle import Oracle

        self.world = Path(world)
        self.oracle = Oracle.load(self.world)

    def _score(self, batch: SessionBatch) -> np.ndarray:
        if (batch.session_id < 0).any():
            raise ConfigError(
                "the oracle needs the world's real session ids (it reads each session's hour and "
                "mood from truth/), got session_id -1"
            )
        return self.oracle.next_song_probabilities(
            batch.user_id,
            batch.session_id,
            batch.previous_song,
            batch.previous_skipped,
            batch.now_us,
        )

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {}, {"world": str(self.world.resolve())}

    def load_state(self, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
        self._load(Path(metadata["world"]))
