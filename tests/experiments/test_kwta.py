"""The k-WTA section's reading of its verdicts: which edge over the ReLU twin the adaptive attacks leave."""
import pandas as pd

from advrep.experiments import kwta


def _verdicts(rows):
    return pd.DataFrame([{"dataset": ds, "net": "cnn", "model": m, "eps": e, "all_diff": d, "all_ci95": h,
                          "all_n": n, "verdict": "holds" if d > h else "masked"} for ds, m, e, d, h, n in rows])


def test_the_edge_left_is_the_cell_surest_above_zero_not_the_largest_gap():
    v = _verdicts([("mnist", "kwta", 0.15, 0.33, 0.20, 30),  # largest gap, but a wide interval (a slow subset)
                   ("mnist", "kwta", 0.2, 0.17, 0.03, 500),  # smaller, and surely above zero
                   ("mnist", "kwta_batch", 0.3, 0.02, 0.02, 200),  # reaches zero
                   ("cifar10", "kwta", 0.03, 0.50, 0.01, 250)])  # not MNIST: not the claim's
    row, above, total = kwta._edge_left(v)
    assert (row.model, row.eps) == ("kwta", 0.2) and (above, total) == (2, 3)
    text = kwta.reading({}, v, {}, {"mnist": {}})
    assert "stays above its twin in 2 of 3 MNIST cells" in text and "eps 0.2, n=500" in text
    none = _verdicts([("mnist", "kwta", 0.2, 0.01, 0.02, 500), ("mnist", "kwta", 0.3, -0.01, 0.02, 500)])
    assert kwta._edge_left(none)[1] == 0
    assert "no k-WTA layer stays above its ReLU twin" in kwta.reading({}, none, {}, {"mnist": {}})
    assert kwta._edge_left(_verdicts([("cifar10", "kwta", 0.03, 0.5, 0.01, 250)])) is None


def test_a_cell_with_the_fast_attacks_only_is_no_test_of_the_claim():
    v = _verdicts([("mnist", "kwta", 0.1, 0.20, 0.03, 250),  # an edge, but only the fast attacks ran here
                   ("mnist", "kwta", 0.15, 0.05, 0.03, 200),  # an edge under the slow ones too
                   ("mnist", "kwta", 0.3, 0.00, 0.00, 200)])
    v["slow_attacks"] = [False, True, True]
    v.loc[0, "verdict"] = "not resolved"
    row, above, total = kwta._edge_left(v)
    assert row.eps == 0.15 and (above, total) == (1, 2)
    text = kwta.reading({}, v, {}, {"mnist": {}})
    assert "1 of 2 MNIST cells (layer, eps) where the slow attacks ran (eps 0.15, 0.3" in text
    assert "1 of them with an edge under those: not resolved" in text


def test_the_section_names_a_subset_of_autoattack_by_its_parts_and_says_which_data_did_not_run():
    p = {"attacks": [{"name": "AutoAttack", "kind": "autoattack", "parts": None},
                     {"name": "APGD-CE + APGD-T (BPDA)", "kind": "autoattack_bpda", "parts": ["apgd-ce", "apgd-t"]},
                     {"name": "PGD-20", "kind": "pgd"}],
         "datasets": {"mnist": {"nets": [{"name": "cnn"}]}, "cifar10": {"nets": []}}}
    text = kwta._autoattacks(p)
    assert "AutoAttack is the standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square)" in text
    assert "APGD-CE + APGD-T (BPDA) is APGD-CE and APGD-T as standard AutoAttack runs them" in text
    assert "without FAB-T and Square" in text and "BPDA's backward pass" in text
    setting = {"net": "ResNet-18", "epochs": 100, "images": 50000}
    assert "Not run in this profile:** cifar10" in kwta._not_run(p, setting)
    assert kwta._not_run({"datasets": {"mnist": {"nets": [{"name": "cnn"}]}}}, setting) == ""
