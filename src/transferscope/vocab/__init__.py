"""The vocabulary of transferscope, torch-free, at the bottom of the import layers.

What every other layer speaks and none owns: the arms and pair kinds of the experiment (:mod:`.arms`), the typed
records of the analyses (:mod:`.results`: one model or one pair; :mod:`.records`: a study's target, and an arm's
figures over seeds), the typed evidence the claims judge (:mod:`.evidence`) and the caveats that travel with it
(:mod:`.caveats`). These modules import nothing of the project but :mod:`transferscope.jsonio` and each other,
and never torch (an import-linter contract in ``pyproject.toml`` checks both), so the claims, the report and a
colleague's notebook read a results folder without the training stack.
"""
