"""Readable, deterministic names for synthetic artists and songs.

Names are built from word lists by the id's digits in mixed radix, after a fixed shuffle drawn
from the world's random generator, so the same seed always names the same song the same way and
artist names stay unique (a number is appended once the combinations run out).
"""

from __future__ import annotations

import numpy as np

ADJECTIVES = (
    "Amber Blue Broken Burning Crimson Crystal Dark Distant Electric Empty Endless Fading Falling "
    "Feral Frozen Gentle Golden Hollow Honey Hidden Last Lazy Little Lonely Lost Loud Lucky Lunar "
    "Midnight Neon Northern Open Paper Quiet Restless Rusty Salt Secret Silent Silver Slow "
    "Solar Static Stray Sudden Summer Sweet Tender Velvet Violet Wandering Wild Winter Wooden "
    "Young Yellow Copper Bitter Brave Cosmic"
).split()
NOUNS = (
    "Anchors Arrows Bells Birds Bridges Candles Cars Clouds Comets Crowns Dreams Echoes Embers "
    "Engines Feathers Fields Fires Flowers Foxes Gardens Ghosts Harbors Hearts Horses Islands "
    "Kings Lanterns Letters Lights Lines Machines Mirrors Moons Mountains Oceans Owls Parades "
    "Pilots Rivers Roads Roses Sailors Shadows Signals Sparks Stars Storms Streets Tides Towers "
    "Trains Waves Wolves Windows Wires Years Radios Saints Sisters Brothers Cities Rockets Kites"
).split()
TITLE_NOUNS = (
    "Heart Night Road River Fire Rain Light Dream Song Sky Sea Love Home Morning Summer Storm "
    "Ghost Star Shadow City Garden Window Echo Flame Wave Moon Sun Signal Letter Machine Mirror "
    "Highway Harbor Island Lantern Feather Ember Comet Anthem Ballad Lullaby Promise Secret "
    "Silence Thunder Velvet Winter Horizon Skyline Memory Kingdom Satellite Paradise Riot"
).split()
ARTIST_FORMS = ("The {adj} {noun}", "{adj} {noun}", "{noun} of {adj2}")


def artist_names(n: int, rng: np.random.Generator) -> list[str]:
    adjectives = [ADJECTIVES[i] for i in rng.permutation(len(ADJECTIVES))]
    nouns = [NOUNS[i] for i in rng.permutation(len(NOUNS))]
    per_form = len(adjectives) * len(nouns)
    capacity = per_form * len(ARTIST_FORMS)
    names = []
    for index in range(n):
        cycle, code = divmod(index, capacity)
        form, rest = divmod(code, per_form)
        adj_index, noun_index = divmod(rest, len(nouns))
        adj = adjectives[adj_index]
        name = ARTIST_FORMS[form].format(
            adj=adj, adj2=adj.lower() + " " + nouns[noun_index - 1].lower(), noun=nouns[noun_index]
        )
        names.append(name if cycle == 0 else f"{name} {cycle + 1}")
    return names


def song_titles(n: int, rng: np.random.Generator) -> list[str]:
    """Titles may repeat across artists, as real ones do; the song_id is the identity."""
    adj = rng.integers(0, len(ADJECTIVES), n)
    noun = rng.integers(0, len(TITLE_NOUNS), n)
    shape = rng.integers(0, 4, n)
    titles = []
    for a, b, s in zip(adj.tolist(), noun.tolist(), shape.tolist(), strict=True):
        if s == 0:
            titles.append(f"{ADJECTIVES[a]} {TITLE_NOUNS[b]}")
        elif s == 1:
            other = TITLE_NOUNS[-b - 1].lower()
            titles.append(f"{TITLE_NOUNS[b]} of {ADJECTIVES[a].lower()} {other}")
        elif s == 2:
            titles.append(f"The {TITLE_NOUNS[b]}")
        else:
            titles.append(f"{ADJECTIVES[a]} {TITLE_NOUNS[b]} ({TITLE_NOUNS[-b - 1]})")
    return titles
