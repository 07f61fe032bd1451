"""Faults of the configuration and of what users name (issue: reliability): study names and labels used as path
components, every config field's range, a non-UTF-8 file, the memory a study needs; user labels in figures; each
with the one-line error a user sees."""

from __future__ import annotations

import numpy as np

# ------------------------------------------------------------------------------------------------------------------
# 14. user strings in figures are drawn as given (no mathtext)

LABELS = ["$x$", "a_b^c", "50%", "$a^b^c$"]  # the last is not even valid mathtext: it failed the whole figure


def _drawn_texts(monkeypatch):
    """Patch the figures' save so that each figure's texts are collected as matplotlib draws them: (the string given,
    the string it draws, whether it is drawn as mathtext)."""
    import matplotlib.text

    from transferscope.report import figures

    seen: list[tuple[str, str, bool]] = []
    save = figures._save

    def spy(fig, path):
        out = save(fig, path)  # draws the figure (raises where matplotlib cannot)
        for t in fig.findobj(matplotlib.text.Text):
            given = t.get_text()
            if given:
                drawn, math = t._preprocess_math(given)
                seen.append((given, drawn, bool(math)))
        return out

    monkeypatch.setattr(figures, "_save", spy)
    return seen


def test_figures_draw_user_labels_as_given(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from transferscope.report import figures
    from transferscope.study.records import BarrierResult, CKAResult

    seen = _drawn_texts(monkeypatch)
    arm = SimpleNamespace(acc_mean=0.5, acc_std=0.1, n=2, speed_mean_acc_k=0.4, speed_steps_to_frac=10.0)
    imgs = np.zeros((2, 1, 8, 8), np.uint8)
    figures.image_grid(tmp_path / "g.png", [(lab, imgs, [lab, lab]) for lab in LABELS], title=LABELS[0])
    figures.gain_bars(tmp_path / "b.png", [{"target": lab, "P-T": arm, "RI-T": arm} for lab in LABELS])
    figures.shuffle_lines(tmp_path / "s.png", [{"target": lab, "block_size": 8, "P-T": arm, "RI-T": arm}
                                               for lab in LABELS], 1, 0.9)
    figures.training_curves(tmp_path / "t.png", {(lab, 8): {"P-T": [np.linspace(0, 1, 8)]} for lab in LABELS},
                            {}, 2)
    bar = BarrierResult([0.0, 0.5, 1.0], [1.0, 2.0, 1.0], [0.1, 0.5, 0.1], 0.4, 1.0, "exact", 10)
    figures.barrier_lines(tmp_path / "r.png", {lab: {"P-T/P-T": bar} for lab in LABELS})
    cka = CKAResult(LABELS, [0.5] * 4, [0.4] * 4, 10, 20, 2)
    figures.cka_lines(tmp_path / "c.png", {lab: {"P-T/RI-T": cka} for lab in LABELS})
    figures.gain_by_checkpoint(tmp_path / "k.png", {lab: [(0.0, 0.1), (1.0, 0.2)] for lab in LABELS})
    eff = [SimpleNamespace(unit="acc", outcome="holds", low=0.0, high=0.2, value=0.1, side="above", bound=0.0,
                           margin=0.0, target=lab, name=lab, n=2) for lab in LABELS]
    figures.forest_plot(tmp_path / "f.png", [SimpleNamespace(claim="N1", outcome="holds", effects=eff)])
    for lab in LABELS:
        shown = [(given, drawn, math) for given, drawn, math in seen if lab in given]
        assert shown, f"{lab!r} was not drawn"
        for given, drawn, math in shown:
            assert drawn == given and not math, (lab, given, drawn)
    assert all(not math for _, _, math in seen)  # no text of any figure is parsed as mathtext
    assert len(list(tmp_path.glob("*.png"))) == 8


def test_every_figure_function_draws_plain_text():
    """A figure function added later gets the same protection: each public one runs with mathtext off."""
    import inspect

    from transferscope.report import figures

    public = [f for n, f in vars(figures).items() if inspect.isfunction(f) and not n.startswith("_")
              and f.__module__ == figures.__name__]
    assert len(public) >= 16
    assert all(getattr(f, "__wrapped__", None) is not None for f in public), [f.__name__ for f in public]
