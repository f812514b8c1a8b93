"""The top-level keys of a small preset file on mlp-diabetes, for tests that write presets."""

from __future__ import annotations


def preset_text(description: str = "mine", measure: str = "train") -> str:
    """A valid preset: backprop on mlp-diabetes, one seed, `measure`, 4 draws, no tuning."""
    return (
        f'description = "{description}"\ntasks = ["mlp-diabetes"]\nestimators = ["backprop"]\n'
        f'seeds = 1\nmeasure = ["{measure}"]\ndraws = 4\ntune = false\n'
    )
