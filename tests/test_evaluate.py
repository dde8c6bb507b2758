"""Evaluation API: the tidy robustness table, and each sanity flag firing on a flawed table and not on a sound one."""
import pandas as pd
import pytest
import torch

from advrep import evaluate as E
from advrep import models


def rows(spec):
    """Build a results table from {(attack, kind, steps, restarts): {eps: acc}}."""
    out = []
    for (name, kind, steps, restarts), accs in spec.items():
        for eps, acc in accs.items():
            out.append({"attack": name, "kind": kind, "norm": "linf", "eps": eps, "steps": steps,
                        "restarts": restarts, "loss": "ce", "n": 1000, "robust_acc": acc})
    return pd.DataFrame(out)


SOUND = rows({
    ("FGSM", "fgsm", 1, 1): {0.0: 0.99, 0.1: 0.60, 0.3: 0.20, 1.0: 0.0},
    ("PGD-20", "pgd", 20, 1): {0.0: 0.99, 0.1: 0.40, 0.3: 0.05, 1.0: 0.0},
    ("PGD-100x5", "pgd", 100, 5): {0.0: 0.99, 0.1: 0.39, 0.3: 0.04, 1.0: 0.0},
    ("transfer", "transfer", 20, 1): {0.0: 0.99, 0.1: 0.80, 0.3: 0.50, 1.0: 0.10},
})


def triggered(df):
    flags = E.sanity_flags(df, large_eps={"linf": 1.0})
    return set(flags.loc[flags["triggered"], "flag"])


def test_sound_evaluation_raises_no_flag():
    assert triggered(SOUND) == set()


def test_each_flag_fires_on_its_symptom():
    masked = rows({
        ("FGSM", "fgsm", 1, 1): {0.0: 0.99, 0.1: 0.30, 0.3: 0.20, 1.0: 0.15},
        ("PGD-20", "pgd", 20, 1): {0.0: 0.99, 0.1: 0.70, 0.3: 0.80, 1.0: 0.60},
        ("PGD-100x5", "pgd", 100, 5): {0.0: 0.99, 0.1: 0.45, 0.3: 0.40, 1.0: 0.30},
        ("gradient-free", "gradfree", 100, 1): {0.0: 0.99, 0.1: 0.10, 0.3: 0.02, 1.0: 0.0},
    })
    assert triggered(masked) == {
        "accuracy rises with eps", "accuracy not ~0 at a huge eps", "single-step stronger than iterative",
        "more steps or restarts help a lot", "transfer, gradient-free or BPDA beats white-box"}
    flags = E.sanity_flags(masked, large_eps={"linf": 1.0}).set_index("flag")
    assert "PGD-20: 70.0% at eps 0.1 -> 80.0% at eps 0.3" in flags.loc["accuracy rises with eps", "detail"]
    assert "masking" in flags.loc["transfer, gradient-free or BPDA beats white-box", "suggests"]


def test_noise_sized_differences_do_not_fire():
    df = SOUND.copy()
    df.loc[(df.attack == "PGD-20") & (df.eps == 0.3), "robust_acc"] = 0.21  # +1 point over FGSM at n=1000
    df.loc[(df.attack == "FGSM") & (df.eps == 0.3), "robust_acc"] = 0.20
    assert "single-step stronger than iterative" not in triggered(df)


def test_robustness_table_on_a_model():
    torch.manual_seed(0)
    model = models.build({"arch": "mlp", "dataset": "mnist", "widths": [32]}).eval()
    x = torch.rand(64, 1, 28, 28)
    y = model(x).argmax(1)  # clean accuracy 1 by construction
    specs = [E.AttackSpec("FGSM", "fgsm"), E.AttackSpec("PGD-10", "pgd", steps=10)]
    df = E.robustness(model, x, y, specs, [0.0, 0.05, 0.5], batch_size=32)
    assert list(df["attack"]) == ["FGSM"] * 3 + ["PGD-10"] * 3
    assert (df["clean_acc"] == 1.0).all()
    assert (df.loc[df.eps == 0.0, "robust_acc"] == 1.0).all()
    assert (df["max_distortion"] <= df["eps"] + 1e-6).all()
    big = df[df.eps == 0.5]
    assert (big["robust_acc"] < 0.05).all() and (big["mean_distortion"] > 0).all()


def test_spec_validation_names_the_attack():
    with pytest.raises(ValueError, match="attack 'x': unknown kind 'magic'"):
        E.AttackSpec("x", "magic")
    with pytest.raises(ValueError, match="needs a surrogate"):
        E.AttackSpec("t", "transfer")


def test_bpda_attack_needs_its_twin_and_bypasses_kwta():
    from advrep import attacks as A

    with pytest.raises(ValueError, match="needs the module to take gradients from"):
        E.AttackSpec(name="b", kind="bpda")
    torch.manual_seed(0)
    m = models.build({"arch": "mlp", "dataset": "mnist", "widths": [64], "activation": "kwta", "gamma": 0.1}).eval()
    twin = A.with_bpda(m, lambda x: isinstance(x, models.KWTA), lambda x: models.SoftKWTA(x.gamma, 0.1))
    x = torch.rand(16, 1, 28, 28)
    torch.testing.assert_close(twin(x), m(x))  # same forward values: successes on the twin are the model's
    spec = E.AttackSpec(name="b", kind="bpda", steps=10, via=twin)
    xa = E.run_attack(spec, m, x, m(x).argmax(1), 0.1)
    assert (xa - x).abs().max() <= 0.1 + 1e-6 and xa.min() >= 0 and xa.max() <= 1
    assert not any(isinstance(mod, A.BPDA) for mod in m.modules())  # the model under test is untouched


def test_matched_subset_keeps_the_clean_accuracy():
    clean = torch.tensor([True] * 70 + [False] * 30)[torch.randperm(100, generator=torch.Generator().manual_seed(0))]
    idx = E.matched_subset(clean, 20, seed=1)
    assert len(idx) == 20 and len(set(idx.tolist())) == 20
    assert clean[idx].float().mean().item() == pytest.approx(0.7)
    assert torch.equal(idx, E.matched_subset(clean, 20, seed=1))


def test_the_worst_case_counts_a_small_subset_where_it_ran_and_keeps_the_larger_images():
    big = (torch.arange(8), torch.tensor([True, True, True, True, False, False, True, True]))
    fast = (torch.arange(10), torch.tensor([True] * 9 + [False]))
    small = (torch.tensor([1, 6]), torch.tensor([False, True]))  # inside the larger subset
    idx, ok = E.common_worst([fast, big, small], min_n=8)
    assert idx.tolist() == list(range(8))  # the 8-image subset, not the 2 images of the smallest
    assert ok.tolist() == [True, False, True, True, False, False, True, True]
    idx, ok = E.common_worst([fast, big, small])  # no min_n: the images every run covered
    assert idx.tolist() == [1, 6] and ok.tolist() == [False, True]


def test_every_attack_runs_on_the_same_images_and_the_worst_case_is_a_row():
    torch.manual_seed(0)
    model = models.build({"arch": "mlp", "dataset": "mnist", "widths": [16]}).eval()
    x = torch.rand(40, 1, 28, 28)
    y = model(x).argmax(1)
    specs = [E.AttackSpec("FGSM", kind="fgsm"), E.AttackSpec("PGD-5", steps=5),
             E.AttackSpec("PGD-10 (subset)", steps=10, max_n=10, slow=True)]
    ev = E.evaluate(model, x, y, specs, [0.0, 0.05], slow_eps=[0.05], seed=0)
    t = ev.table
    attacks_ = t[t["kind"] != "worst"]
    assert set(attacks_["n"][attacks_["attack"] != "PGD-10 (subset)"]) == {40}
    assert set(attacks_["n"][attacks_["attack"] == "PGD-10 (subset)"]) == {10}
    w = t[(t["attack"] == E.WORST) & (t["eps"] == 0.05)].iloc[0]
    per = t[(t["eps"] == 0.05) & t["attack"].isin(["FGSM", "PGD-5"])]
    assert w["n"] == 40 and w["robust_acc"] <= per["robust_acc"].min() + 1e-9
    ws = t[(t["attack"] == E.WORST_ALL) & (t["eps"] == 0.05)].iloc[0]
    assert ws["n"] == 10
    idx, ok = ev.correct[("PGD-10 (subset)", 0.05)]
    assert len(idx) == 10 and len(ok) == 10


def test_a_reference_correctness_gives_two_models_the_same_slow_subset():
    # a paired comparison needs both models on the same images: each matched on its own clean accuracy, two
    # models' subsets differ
    torch.manual_seed(0)
    a, b = (models.build({"arch": "mlp", "dataset": "mnist", "widths": [16]}).eval() for _ in range(2))
    x = torch.rand(60, 1, 28, 28)
    y = torch.arange(60) % 10
    ref = torch.arange(60) % 3 == 0  # a reference model's correctness: one in three
    own = E.predict(b, x, 60) == y
    assert not torch.equal(E.matched_subset(own, 12), E.matched_subset(ref, 12))
    spec = [E.AttackSpec("PGD-2 (subset)", steps=2, max_n=12, slow=True)]
    idx = [E.evaluate(m, x, y, spec, [0.05], slow_eps=[0.05], seed=0, subset_ok=ok).correct[("PGD-2 (subset)", 0.05)][0]
           for m, ok in ((a, ref), (b, ref), (b, None))]
    assert torch.equal(idx[0], E.matched_subset(ref, 12)) and torch.equal(idx[1], idx[0])
    assert torch.equal(idx[2], E.matched_subset(own, 12))
