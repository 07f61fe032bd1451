"""Each effect names the cells of runs it reads (where a study that decides in rounds adds seeds): checked by changing
one cell's runs at a time and seeing which effects move.

The map from evidence to cells below is written here on its own, from what each field of the evidence measures:
a field of an arm at a block size is that cell; a pair kind within an arm is that arm's cell at the full block,
across arms both; the basin's checkpoints are P-T cells at the sweep's block size (the final one is the P-T cell
itself)."""

from __future__ import annotations

import math
from dataclasses import replace
from itertools import combinations, product

import pytest

from transferscope.claims import CLAIMS, Evidence, PerPair, PerSeed, ScoreCell, TargetEvidence, judge
from transferscope.claims.base import effect_key
from transferscope.vocab.arms import PT, PT_PT, PT_RIT, RIT, RIT_RIT, Cell

SEEDS = (0, 1, 2, 3, 4)
FULL, SMALL = 28, 2
CHECKPOINTS = (0.0, 1.0, 2.0, 4.0)
FINAL = CHECKPOINTS[-1]
MODULES = ("conv", "layer1", "layer2", "layer3")


def seeds(base: float, step: float) -> PerSeed:
    return PerSeed({s: base + step * ((s * 7) % 5) for s in SEEDS})


def within(base: float) -> PerPair:
    return PerPair({p: base + 0.003 * ((p[0] * 3 + p[1]) % 7) for p in combinations(SEEDS, 2)})


def across(base: float) -> PerPair:
    return PerPair({p: base + 0.004 * ((p[0] + 2 * p[1]) % 5) for p in product(SEEDS, SEEDS)})


def target(name: str, distance: float, k: float) -> TargetEvidence:
    acc = {(PT, FULL): seeds(0.8 + k, 0.01), (RIT, FULL): seeds(0.6 + k, 0.012), (PT, SMALL): seeds(0.5 + k, 0.011),
           (RIT, SMALL): seeds(0.45 + k, 0.013)}
    return TargetEvidence(
        name, distance=distance, distance_source="declared", accuracy=acc,
        speed={c: seeds(v.values[0] - 0.1, 0.02) for c, v in acc.items()},
        uncommon={PT_PT: within(0.1 + k), RIT_RIT: within(0.2 + k), PT_RIT: across(0.25 + k)},
        common={PT_PT: within(0.05), RIT_RIT: within(0.06), PT_RIT: across(0.07)},
        cka_layers=("a", "b"), cka={PT_PT: (within(0.9), within(0.8)), RIT_RIT: (within(0.5), within(0.6))},
        param_distance={PT_PT: within(3.0 + k), RIT_RIT: within(9.0 + k)},
        start_distance={PT: seeds(1.0 + k, 0.1), RIT: seeds(5.0 + k, 0.2)},
        barrier={PT_PT: within(0.01), RIT_RIT: within(0.3), PT_RIT: across(0.4)},
        criticality_modules=MODULES,
        criticality={PT: {s: (0.1, 0.3 + 0.01 * s, 0.2, 0.9) for s in SEEDS}},
        basin={e: seeds(0.6 + 0.05 * i + k, 0.01) for i, e in enumerate(CHECKPOINTS)}, basin_final=FINAL,
        basin_block=FULL,
        top_eigenvalue={PT: seeds(2.0, 0.3), RIT: seeds(5.0, 0.4)},
        deviation={PT: seeds(0.1, 0.01), RIT: seeds(0.9, 0.05)},
        grad_lipschitz={PT: seeds(1.0, 0.1), RIT: seeds(3.0, 0.2)},
        principal={PT: seeds(0.2, 0.01), RIT: seeds(0.6, 0.03)})


def evidence() -> Evidence:
    ts = (target("near", 1.0, 0.0), target("mid", 2.0, 0.03), target("far", 3.0, -0.05))
    cells = tuple(ScoreCell(t.name, b, 0.1 * i + 0.01 * j, {"neg_mmd2_rbf": -float(i), "leep": -float(i + j)})
                  for i, t in enumerate(ts) for j, b in enumerate((FULL, SMALL)))
    return Evidence(ts, FULL, (FULL, SMALL), 2, cells)


def every_cell(ev: Evidence) -> list[Cell]:
    out = []
    for t in ev.targets:
        out += [Cell(arm, t.name, b) for arm, b in product((PT, RIT), (FULL, SMALL))]
        out += [Cell(PT, t.name, t.basin_block, e) for e in t.basin if e != t.basin_final]
    return out


def _seed0(p: PerSeed) -> PerSeed:
    return PerSeed({s: v + (0.37 if s == 0 else 0.0) for s, v in p.values.items()})


def _pairs0(p: PerPair, position: int | None, by: float = 0.37) -> PerPair:
    """Pairs whose model of the changed cell is seed 0's: ``position`` 0 or 1 across arms, None within one."""
    def hit(k):
        return 0 in k if position is None else k[position] == 0
    return PerPair({k: v + (by if hit(k) else 0.0) for k, v in p.values.items()})


def changed(ev: Evidence, cell: Cell) -> Evidence:
    """``ev`` with seed 0's run of ``cell`` giving other numbers, in every field that run feeds."""
    out = []
    for t in ev.targets:
        if t.name != cell.target:
            out.append(t)
            continue
        if cell.checkpoint >= 0:  # a basin checkpoint's runs feed its basin figure only
            out.append(replace(t, basin={e: _seed0(v) if e == cell.checkpoint else v for e, v in t.basin.items()}))
            continue
        arm, b = cell.arm, cell.block
        kw: dict = {"accuracy": {c: _seed0(v) if c == (arm, b) else v for c, v in t.accuracy.items()},
                    "speed": {c: _seed0(v) if c == (arm, b) else v for c, v in t.speed.items()}}
        if b == FULL:  # the analyses of models read the unshuffled runs
            mine, pos = (PT_PT, 0) if arm == PT else (RIT_RIT, 1)

            def pairs(d: dict, mine=mine, pos=pos) -> dict:
                return {k: (_pairs0(v, None) if k == mine else _pairs0(v, pos) if k == PT_RIT else v)
                        for k, v in d.items()}

            kw.update(uncommon=pairs(t.uncommon), common=pairs(t.common), param_distance=pairs(t.param_distance),
                      barrier=pairs(t.barrier),
                      cka={k: tuple(_pairs0(x, None, 0.1 * (i + 1)) for i, x in enumerate(v)) if k == mine else v
                           for k, v in t.cka.items()},
                      start_distance={a: _seed0(v) if a == arm else v for a, v in t.start_distance.items()},
                      criticality={a: {s: (c[::-1] if s == 0 and a == arm else c) for s, c in per.items()}
                                   for a, per in t.criticality.items()},
                      **{f: {a: _seed0(v) if a == arm else v for a, v in getattr(t, f).items()}
                         for f in ("top_eigenvalue", "deviation", "grad_lipschitz", "principal")})
            if arm == PT and t.basin_block == FULL:  # the final checkpoint's basin runs are the P-T runs
                kw["basin"] = {e: _seed0(v) if e == t.basin_final else v for e, v in t.basin.items()}
        out.append(replace(t, **kw))
    return replace(ev, targets=tuple(out))


def effects(ev: Evidence) -> dict:
    return {effect_key(v.claim, e): e for v in judge(ev, CLAIMS) for e in v.effects}


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=1e-12)


def test_each_effect_names_exactly_the_cells_whose_runs_move_it():
    ev = evidence()
    base = effects(ev)
    reads: dict = {k: set() for k in base}
    for cell in every_cell(ev):
        for k, e in effects(changed(ev, cell)).items():
            if k in base and not (_same(e.value, base[k].value) and _same(e.se, base[k].se)):
                reads[k].add(cell)
    seed_effects = {k: e for k, e in base.items() if e.counted != "(target, block size) cells"}
    assert len(seed_effects) > 60 and {k[0] for k in seed_effects} == {c.id for c in CLAIMS} - {"L4"}
    for k, e in seed_effects.items():
        assert set(e.cells) == reads[k], (k, sorted(e.cells), sorted(reads[k]))


def test_an_effect_whose_unit_is_not_the_seed_names_no_cells():
    """L4 counts (target, block size) cells: more seeds do not decide it, so it names none."""
    l4 = [e for k, e in effects(evidence()).items() if k[0] == "L4"]
    assert l4 and all(e.cells == () and e.n == 6 for e in l4)


def test_the_basin_cells_are_at_the_sweeps_block_size():
    ev = evidence()
    ev = replace(ev, targets=tuple(replace(t, basin_block=SMALL) for t in ev.targets))
    n9 = [e for k, e in effects(ev).items() if k[0] in ("N9", "L5")]
    assert n9 and all(c.block == SMALL and c.arm == PT for e in n9 for c in e.cells)
    assert any(c.checkpoint == -1.0 for e in n9 for c in e.cells)  # the final checkpoint: the P-T cell itself
